#!/usr/bin/python3
"""The IMS core's DNS for the proxy-mode interop run (run.py --mode proxy): python3-dnslib
serves the RFC 3263 records akagate resolves its next hops with (NAPTR -> SRV -> A), on an
address and port given on the command line, until killed.

    dns.py ADDRESS PORT
"""

import sys
import time

from dnslib.server import DNSServer
from dnslib.zoneresolver import ZoneResolver

# The S-CSCF (SIPp on 127.0.0.2:5080, TCP) by NAPTR: SIP over TCP preferred to UDP; both
# lead by SRV to core1; the E-CSCF (SIPp on 127.0.0.3:5080) by its A record.
ZONE = """
scscf.ims.test.           60 IN NAPTR 10 50 "s" "SIP+D2T" "" _sip._tcp.scscf.ims.test.
scscf.ims.test.           60 IN NAPTR 20 50 "s" "SIP+D2U" "" _sip._udp.scscf.ims.test.
_sip._tcp.scscf.ims.test. 60 IN SRV   10 60 5080 core1.ims.test.
_sip._udp.scscf.ims.test. 60 IN SRV   10 60 5080 core1.ims.test.
core1.ims.test.           60 IN A     127.0.0.2
ecscf.ims.test.           60 IN A     127.0.0.3
"""


def main():
    address, port = sys.argv[1], int(sys.argv[2])
    resolver = ZoneResolver(ZONE)
    servers = [DNSServer(resolver, address=address, port=port, tcp=tcp) for tcp in (False, True)]
    for s in servers:
        s.start_thread()
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main()
