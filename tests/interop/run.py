#!/usr/bin/python3
"""Runs the independent UE against the real akagate daemon on AF_PACKET.

Three network namespaces:

    daemon ns                 wire ns                        UE ns
    akagate (af_packet) --- veth ---> AF_PACKET socket  ==  shim thread  <==> TUN "uetun"
    10.0.0.1, fd00::1         (no addresses)                 (scenarios.py)   UE addresses,
                                                                              kernel sockets

With --mode routed a fourth, a Linux router, sits between the daemon and the wire: the UEs'
prefixes (10.0.1.0/24, fd00::1:0/112) are behind it, akagate has them as static routes via
10.0.0.254 / fd00::fe, and the shim sends to the router's MAC:

    daemon ns                router ns (kernel forwarding)            wire ns ...
    akagate --- veth --- 10.0.0.254, fd00::fe | 10.0.1.1, fd00::1:1 --- veth --- shim

The UE process (scenarios.py) is started inside the UE namespace; it opens its AF_PACKET
socket in the wire namespace first, so the UE kernel never sees the wire and only the shim
decides what reaches it. Exit status 0 when every selected scenario passed.

    run.py --akagate target/debug/akagate [--scenario NAME ...] [--verbose]

Without --scenario, INTEROP_SCENARIOS=a,b (or "all") names the scenarios; otherwise the
default ones run.

Needs root. Prints the daemon's log tail and counters when something fails.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import socket
import tempfile
import threading
import time
import tomllib

from daemonctl import control
from scscf import Scscf

HERE = os.path.dirname(os.path.abspath(__file__))
# The test certificate of the P-CSCF (pcscf.test, from the test CA), shared with the fast
# path's TLS tests.
TLS_DIR = os.path.join(HERE, "..", "..", "fastpath", "tests", "fixtures", "tls")
PORT_PC, PORT_PS = 5100, 6100
PCSCF_V4, PCSCF_V6 = "10.0.0.1", "fd00::1"
# Proxy mode: akagate's core side and SIPp's S-CSCF on the daemon namespace's loopback.
CORE_LOCAL, SCSCF_IP, SCSCF_PORT = "127.0.0.1:5070", "127.0.0.2", 5080
ECSCF_IP = "127.0.0.3"  # a second SIPp answering emergency calls as the E-CSCF
DNS_IP = "127.0.0.5"  # dns.py: NAPTR/SRV/A records of the core
VISITED = "visited.mnc001.mcc001.3gppnetwork.org"
PROXY_SCENARIOS = ["proxy-register-tcp", "proxy-calls-tcp", "proxy-network-deregister",
                   "proxy-emergency"]
# Routed mode: the router's addresses on the daemon's link and on the UEs' link.
ROUTER_PCSCF_SIDE = ("10.0.0.254", "fd00::fe")
ROUTER_UE_SIDE = ("10.0.1.1", "fd00::1:1")
ROUTED_SCENARIOS = ["routed", "reregister-new-ports", "udp-v6"]
ROUTES = """
[routes]
on-link = ["{v4}/24", "{v6}/112"]

[[routes.static]]
prefix = "10.0.1.0/24"
via = "{gw4}"

[[routes.static]]
prefix = "fd00::1:0/112"
via = "{gw6}"
"""



def shard_of(impi, shards):
    """The slowpath shard that owns `impi` with `shards` shards: FNV-1a of its lower-cased
    bytes modulo the count (the rule docs/ARCHITECTURE.md "Slowpath shards" states)."""
    h = 0xcbf29ce484222325
    for b in impi.lower().encode():
        h = ((h ^ b) * 0x100000001b3) % (1 << 64)
    return h % max(shards, 1)


def sh(*args, check=True):
    return subprocess.run(args, check=check, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


class Bed:
    """Namespaces, the veth pair and the daemon; torn down by close()."""

    def __init__(self, work, proxy=False, routed=False, shards=1):
        tag = "%d" % os.getpid()
        self.ns_d, self.ns_w, self.ns_u = "akgi%sd" % tag, "akgi%sw" % tag, "akgi%su" % tag
        self.veth_d, self.veth_w = "akgi%sd" % tag, "akgi%sw" % tag
        self.ns_r = "akgi%sr" % tag if routed else None
        self.work, self.daemon = work, None
        self.sock = os.path.join(work, "akagate.sock")
        self.log = os.path.join(work, "akagate.log")
        self.namespaces = [self.ns_d, self.ns_w, self.ns_u] + ([self.ns_r] if routed else [])
        for ns in self.namespaces:
            sh("ip", "netns", "add", ns)
        if routed:
            # Two links: daemon <-> router's P-CSCF side, router's UE side <-> wire.
            rd, ru = "akgi%sp" % tag, "akgi%sq" % tag
            sh("ip", "link", "add", self.veth_d, "netns", self.ns_d, "type", "veth", "peer",
               "name", rd, "netns", self.ns_r)
            sh("ip", "link", "add", ru, "netns", self.ns_r, "type", "veth", "peer",
               "name", self.veth_w, "netns", self.ns_w)
            self.router(rd, ru)
        else:
            sh("ip", "link", "add", self.veth_d, "netns", self.ns_d, "type", "veth", "peer",
               "name", self.veth_w, "netns", self.ns_w)
        for ns, dev in ((self.ns_d, self.veth_d), (self.ns_w, self.veth_w)):
            # No addresses and no IPv6 on the wire: neither kernel answers or resets anything.
            sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.%s.disable_ipv6=1" % dev)
            if shutil.which("ethtool"):
                sh("ip", "netns", "exec", ns, "ethtool", "-K", dev, "tx", "off", "rx", "off",
                   check=False)
            sh("ip", "-n", ns, "link", "set", dev, "up")
        sh("ip", "-n", self.ns_u, "link", "set", "lo", "up")
        shutil.copy(os.path.join(HERE, "fixtures", "subscribers.toml"), work)
        cores = os.cpu_count() or 1
        worker = cores - 1 if cores > 1 else 0
        # Issue 10: N slowpath shards on the cores the worker leaves (on a 2-core box all on
        # core 0: shards may share a core).
        free = [c for c in range(cores) if c != worker] or [worker]
        slowpath = ("slowpath = [%s]" % ", ".join(str(free[i % len(free)]) for i in range(shards))
                    if shards > 1 else "")
        with open(os.path.join(HERE, "fixtures", "akagate.toml.in")) as f:
            template = f.read()
        with open(os.path.join(work, "akagate.toml"), "w") as f:
            f.write(template.format(veth=self.veth_d, ns=self.ns_d, v4=PCSCF_V4, v6=PCSCF_V6,
                                  pc=PORT_PC, ps=PORT_PS, worker=worker, slowpath=slowpath,
                                  sock=self.sock, tls_dir=TLS_DIR))
            if proxy:
                # SIP to the core over TCP; only the loopback may speak for the core.
                # The next hops by name, resolved by akagate as RFC 3263 says (NAPTR, SRV,
                # A) from the DNS server of dns.py.
                f.write('\n[ims-core]\nnext-hops = ["sip:scscf.ims.test"]\n'
                        'dns-servers = ["%s"]\n'
                        'local = "%s"\ntrusted = ["127.0.0.0/8"]\n'
                        'visited-network-id = "%s"\n'
                        'emergency-next-hops = ["sip:ecscf.ims.test:%d;transport=tcp"]\n'
                        'emergency-numbers = ["112"]\nanonymous-emergency = true\n'
                        % (DNS_IP, CORE_LOCAL, VISITED, SCSCF_PORT))
            if routed:
                f.write(ROUTES.format(v4=PCSCF_V4, v6=PCSCF_V6, gw4=ROUTER_PCSCF_SIDE[0],
                                      gw6=ROUTER_PCSCF_SIDE[1]))
        sh("ip", "-n", self.ns_d, "link", "set", "lo", "up")

    def router(self, rd, ru):
        """The router namespace: the Linux kernel forwards between the P-CSCF's link (`rd`)
        and the UEs' link (`ru`), resolving both sides with its own ARP/ND."""
        r = self.ns_r
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        sh("ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv6.conf.all.forwarding=1")
        for dev, (v4, v6), (l4, l6) in ((rd, ROUTER_PCSCF_SIDE, (24, 112)),
                                        (ru, ROUTER_UE_SIDE, (24, 112))):
            if shutil.which("ethtool"):
                sh("ip", "netns", "exec", r, "ethtool", "-K", dev, "tx", "off", "rx", "off",
                   check=False)
            sh("ip", "-n", r, "addr", "add", "%s/%d" % (v4, l4), "dev", dev)
            sh("ip", "-n", r, "-6", "addr", "add", "%s/%d" % (v6, l6), "dev", dev, "nodad")
            sh("ip", "-n", r, "link", "set", dev, "up")

    def start_daemon(self, akagate, log_mode="w"):
        env = dict(os.environ, AKAGATE_LOG=os.environ.get("AKAGATE_LOG", "info"))
        self.daemon = subprocess.Popen(
            ["ip", "netns", "exec", self.ns_d, akagate, "--config",
             os.path.join(self.work, "akagate.toml")],
            stdout=open(self.log, log_mode), stderr=subprocess.STDOUT, env=env)
        for _ in range(200):
            if self.daemon.poll() is not None:
                break
            try:
                control(self.sock, "stats")
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("akagate did not start:\n" + open(self.log).read())

    def serve_restarts(self, akagate):
        """A UNIX socket in the work directory through which a scenario (in the UE namespace)
        has the daemon killed with SIGKILL and started again on the same files: each line
        "kill9" is answered "ok <ms>" (the new daemon's start-up time) once its control socket
        answers, or "error ..."."""
        path = os.path.join(self.work, "restart.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)

        def serve():
            while True:
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    if conn.recv(64).strip() != b"kill9":
                        conn.sendall(b"error unknown command\n")
                        continue
                    try:
                        self.daemon.kill()  # SIGKILL: no shutdown, nothing flushed
                        self.daemon.wait()
                        t = time.monotonic()
                        self.start_daemon(akagate, "a")
                        conn.sendall(b"ok %d\n" % int((time.monotonic() - t) * 1000))
                    except Exception as e:  # reported to the scenario, which fails
                        conn.sendall(("error %s\n" % e).encode())

        threading.Thread(target=serve, daemon=True).start()
        self.restart_server = srv
        return path

    def stop_daemon(self):
        """SIGTERM; returns the exit status."""
        if self.daemon is None:
            return 0
        self.daemon.terminate()
        try:
            status = self.daemon.wait(15)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            status = self.daemon.wait()
        self.daemon = None
        return status

    def close(self):
        self.stop_daemon()
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--akagate", required=True, help="the daemon binary")
    ap.add_argument("--scenario", action="append", default=[],
                    help="run only these (default: every default scenario)")
    ap.add_argument("--verbose", action="store_true", help="print every SIP message")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--mode", choices=("embedded", "proxy", "routed"), default="embedded",
                    help="proxy: akagate in front of SIPp playing the S-CSCF; routed: the UEs "
                    "behind a Linux router, akagate with static routes to them")
    ap.add_argument("--skip", action="append", default=[],
                    help="leave these scenarios out of the default run")
    ap.add_argument("--slowpath-shards", type=int, default=1,
                    help="run the daemon with this many slowpath shards ([cores] slowpath)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("interop: skipped: not root (network namespaces, TUN and AF_PACKET need it)")
        return 0
    work = tempfile.mkdtemp(prefix="akagate-interop-")
    bed = None
    scscf = ecscf = dns = None
    status = 1
    try:
        proxy = args.mode == "proxy"
        routed = args.mode == "routed"
        bed = Bed(work, proxy, routed, args.slowpath_shards)
        if proxy:
            with open(os.path.join(HERE, "fixtures", "subscribers.toml"), "rb") as f:
                subs = tomllib.load(f)["subscriber"]
            # With shards, a subscriber of the last shard: nothing the core sends may reach
            # it by falling to shard 0.
            proxy_sub = next(i for i, s in enumerate(subs)
                             if shard_of(s["impi"], args.slowpath_shards)
                             == args.slowpath_shards - 1)
            sub = subs[proxy_sub]
            scscf = Scscf(work, bed.ns_d, SCSCF_IP, SCSCF_PORT, "tcp", sub, VISITED)
            scscf.write_vectors(8)
            scscf.start()
            ecscf = Scscf(work, bed.ns_d, ECSCF_IP, SCSCF_PORT, "tcp", sub, VISITED, "ecscf")
            ecscf.write_vectors(4)
            ecscf.start()
            dns = subprocess.Popen(["ip", "netns", "exec", bed.ns_d, sys.executable,
                                    os.path.join(HERE, "dns.py"), DNS_IP, "53"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
            time.sleep(0.5)
        bed.start_daemon(args.akagate)
        cmd = ["ip", "netns", "exec", bed.ns_u, sys.executable,
               os.path.join(HERE, "scenarios.py"), "--wire-netns", bed.ns_w,
               "--wire-if", bed.veth_w, "--control", bed.sock,
               "--restart-socket", bed.serve_restarts(args.akagate),
               "--subscribers", os.path.join(HERE, "fixtures", "subscribers.toml")]
        wanted = args.scenario or [s for s in os.environ.get("INTEROP_SCENARIOS", "").split(",")
                                   if s.strip()]
        if proxy:
            wanted = args.scenario or PROXY_SCENARIOS
            cmd += ["--daemon-netns", bed.ns_d, "--scscf-log", scscf.trace,
                    "--ecscf-log", ecscf.trace, "--proxy-subscriber", str(proxy_sub)]
        if routed:
            wanted = args.scenario or ROUTED_SCENARIOS
            cmd += sum((["--via", a] for a in ROUTER_UE_SIDE), [])
        cmd += ["--shards", str(args.slowpath_shards)]
        cmd += sum((["--scenario", s.strip()] for s in wanted), [])
        cmd += sum((["--skip", s] for s in args.skip), [])
        if args.verbose:
            cmd.append("--verbose")
        status = subprocess.call(cmd)
        if proxy and status == 0:
            errors = scscf.check_relayed_registration("10.0.1.")
            for e in errors:
                print("interop: S-CSCF side: " + e)
            if errors:
                status = 1
            else:
                print("interop: S-CSCF side: relayed REGISTERs and the UE's digest check out")
        if status != 0:
            try:
                print("== akagate stats\n" + json.dumps(control(bed.sock, "stats")["stats"],
                                                        indent=None)[:6000])
            except OSError as e:
                print("== akagate stats unavailable: %s" % e)
        daemon_status = bed.stop_daemon()
        if daemon_status != 0:
            print("interop: akagate exited with status %d" % daemon_status)
            status = status or 1
        if status != 0:
            print("== akagate log (tail)")
            print("".join(open(bed.log).readlines()[-40:]))
    finally:
        if dns is not None:
            dns.kill()
            dns.wait()
        if ecscf is not None:
            ecscf.stop()
        if scscf is not None:
            scscf.stop()
            if status != 0 and os.path.exists(scscf.log):
                print("== SIPp log (tail)\n" + "".join(open(scscf.log).readlines()[-30:]))
        if bed is not None:
            bed.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("interop: work directory kept: %s" % work)
    return status


if __name__ == "__main__":
    sys.exit(main())
