"""An IMS phone, as small as it can be while doing what TS 24.229 and TS 33.203 ask.

SIP travels on the UE kernel's own TCP/UDP sockets; the IPsec shim (shim.py) protects what
the SA selectors say. What a phone does, step by step:

1. Listen on port_us (TCP and UDP) for the P-CSCF's requests, and on port_uc (UDP) for
   responses; choose spi_uc, spi_us.
2. Send REGISTER unprotected to the P-CSCF's port 5060 with Security-Client (the algorithm
   pairs it supports, its SPIs and ports), Require/Proxy-Require: sec-agree and an
   Authorization carrying only its private identity.
3. Take the 401: RAND||AUTN from the nonce, the P-CSCF's SPIs/ports from Security-Server.
   The USIM checks AUTN (MAC-A, SQN freshness) and returns RES, CK, IK - or AUTS, which goes
   back in a new unprotected REGISTER (resynchronisation, RFC 3310 3.4).
4. Install the four SAs, connect port_uc -> port_ps through them and send REGISTER with
   Security-Verify (a copy of Security-Server) and the digest over password RES.
5. 200 OK: registered. Calls, re-registrations and the de-registration go over the SAs;
   the P-CSCF reaches the UE at port_us.

Over UDP a client transaction retransmits its request on timer E (RFC 3261 17.1.2.2):
after T1, 2*T1, ... capped at T2, until a response arrives.
"""

import base64
import os
import select
import socket
import ssl
import struct
import time

import sip
from milenage import MacFailure, SyncFailure
from shim import SaSet

T1, T2 = 0.5, 4.0
LARGE_INVITE = 1400  # bytes of SDP: with headers well over the 1300-byte UDP limit


class AuthenticationRejected(Exception):
    """The USIM found AUTN's MAC wrong; carries the network's answer to our report."""

    def __init__(self, response):
        super().__init__("network authentication failed; answered %s" % response.start)
        self.response = response


class Flow:
    """One transport path: a TCP connection (framed) or a UDP socket with a fixed peer."""

    def __init__(self, sock, proto, peer):
        self.sock, self.proto, self.peer = sock, proto, peer
        self.framer = sip.Framer()

    @property
    def local_port(self):
        return self.sock.getsockname()[1]

    def send(self, msg):
        data = msg.to_bytes() if isinstance(msg, sip.Message) else msg
        if self.proto in ("tcp", "tls"):
            self.sock.sendall(data)
        else:
            self.sock.sendto(data, self.peer)


class Ue:
    """One phone: subscriber identity, USIM, sockets, SA sets, a registration, calls."""

    def __init__(self, world, name, sub, usim, ip, pcscf, transport, offers, port_uc, port_us):
        self.world, self.name = world, name
        self.impi, self.impu = sub["impi"], sub["impu"][0]
        self.domain = self.impi.split("@", 1)[1]
        self.usim, self.ip, self.pcscf = usim, ip, pcscf
        self.transport, self.offers = transport, offers
        self.port_uc, self.port_us = port_uc, port_us
        self.family = socket.AF_INET6 if ":" in ip else socket.AF_INET
        self.flows = []          # every open Flow, watched by pump()
        self.listeners = []      # listening TCP sockets (port_us)
        self.responses = []      # responses received, for the client transactions
        self.requests = []       # requests received (INVITE, ACK, BYE, NOTIFY...), for tests
        self.sa = None           # the SaSet in use
        self.security_server = None
        self.auth = None         # (realm, nonce, RES) of the current challenge
        self.nc = 0
        self.reg_call_id, self.reg_tag, self.reg_cseq = sip.token(), sip.token(4), 0
        self.service_routes = []
        self.protected = None    # Flow port_uc -> port_ps
        self.retransmissions = 0
        self.auto_answer = True  # INVITEs answered at once; else held for answer_held()
        self.tcp_server = True   # listen for TCP on port_us (a UDP-only phone does not)
        self.held = []           # (INVITE, Flow) not answered yet
        self.answer_sdp_size = 0  # pad the SDP answer of a 200 to this many bytes
        world.shim.add_ue(ip)

    # -- sockets -----------------------------------------------------------------------------

    def _socket(self, proto, port):
        """A socket bound to the UE's address and `port` (0: the kernel picks one)."""
        s = socket.socket(self.family, socket.SOCK_STREAM if proto == "tcp"
                          else socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.ip, port))
        s.settimeout(10)  # reads happen only when select() says so; sends may wait
        return s

    def open_server_ports(self):
        """Step 1: listen on port_us (TCP, UDP) and receive on port_uc (UDP)."""
        if self.tcp_server:
            lst = self._socket("tcp", self.port_us)
            lst.listen(8)
            self.listeners.append(lst)
        self.flows.append(Flow(self._socket("udp", self.port_us), "udp", None))
        if self.transport == "udp":
            self.protected = Flow(self._socket("udp", self.port_uc), "udp", None)
            self.flows.append(self.protected)

    def close_all(self):
        for f in self.flows:
            f.sock.close()
        for s in self.listeners:
            s.close()
        self.flows, self.listeners, self.protected = [], [], None

    def connect(self, local_port, remote_port, proto):
        """A new flow to the P-CSCF (TCP connects from `local_port`; 0 = ephemeral)."""
        peer = (self.pcscf, remote_port)
        if proto == "udp":
            f = Flow(self._socket("udp", local_port), "udp", peer)
        else:
            s = self._socket("tcp", local_port)
            s.connect(peer)
            f = Flow(s, "tcp", peer)
        self.flows.append(f)
        return f

    # -- receiving ---------------------------------------------------------------------------

    def fds(self):
        return [f.sock for f in self.flows] + self.listeners

    def readable(self, sock):
        """Handles one readable socket of this UE."""
        if sock in self.listeners:
            conn, peer = sock.accept()
            conn.settimeout(10)
            self.flows.append(Flow(conn, "tcp", peer[:2]))
            return
        flow = next(f for f in self.flows if f.sock is sock)
        if flow.proto == "udp":
            data, peer = sock.recvfrom(65535)
            msgs = [sip.Message.parse(data)]
            reply = Flow(sock, "udp", peer[:2])
        else:
            try:
                data = sock.recv(65535)
                # TLS: records already decrypted wait in the ssl object, not the socket.
                while data and isinstance(sock, ssl.SSLSocket) and sock.pending():
                    data += sock.recv(sock.pending())
            except (ConnectionResetError, ssl.SSLError):
                data = b""
            if not data:
                self.flows.remove(flow)
                sock.close()
                return
            msgs = flow.framer.feed(data)
            reply = flow
        for m in msgs:
            self.world.trace(self, "<-", m)
            m.arrived_on = (flow.proto, reply.peer)  # how it came: for the tests' checks
            if m.is_request():
                self.requests.append(m)
                self.on_request(m, reply)
            else:
                self.responses.append(m)

    def on_request(self, req, flow):
        """A UA server: answers what the P-CSCF sends (calls are answered at once)."""
        m = req.method
        if m == "INVITE" and not self.auto_answer:
            self.held.append((req, flow))
        elif m == "INVITE":
            self.answer_invite(req, flow)
        elif m in ("BYE", "OPTIONS", "NOTIFY", "MESSAGE", "CANCEL", "UPDATE"):
            self.send(flow, sip.response_to(req, 200, "OK"))

    def answer_held(self):
        """Answers the INVITEs held while `auto_answer` was off, on the flows they came on."""
        held, self.held = self.held, []
        for req, flow in held:
            self.answer_invite(req, flow)

    def answer_invite(self, req, flow):
        """180 then 200 with an SDP answer."""
        tag = sip.token(4)
        contact = ("Contact", "<sip:%s@%s:%d>" % (self.user, sip.host(self.ip), self.port_us))
        self.send(flow, sip.response_to(req, 180, "Ringing", tag, [contact]))
        ok = sip.response_to(req, 200, "OK", tag, [contact, ("Content-Type",
                                                            "application/sdp")])
        ok.body = sip.sdp(self.ip, self.answer_sdp_size)
        self.send(flow, ok)

    def send(self, flow, msg):
        self.world.trace(self, "->", msg)
        flow.send(msg)

    @property
    def user(self):
        return self.impu.split(":", 1)[1].split("@", 1)[0]

    # -- client transactions -----------------------------------------------------------------

    def transact(self, flow, req, timeout=10.0):
        """Sends `req` and returns its final response; over UDP with timer E/A retransmissions."""
        branch = req.get("via").split("branch=")[1].split(";")[0]
        self.send(flow, req)
        start = time.monotonic()
        interval, next_tx = T1, time.monotonic() + T1
        while time.monotonic() - start < timeout:
            for r in self.responses:
                if branch in r.get("via") and r.status >= 200:
                    self.responses.remove(r)
                    return r
                if branch in r.get("via") and r.status < 200 and flow.proto == "udp":
                    interval = T2  # a provisional response: timer E continues at T2
            if flow.proto == "udp" and time.monotonic() >= next_tx:
                self.retransmissions += 1
                self.send(flow, req)
                interval = min(interval * 2, T2)
                next_tx = time.monotonic() + interval
            self.world.pump(0.05)
        raise TimeoutError("%s: no final response to %s" % (self.name, req.start))

    def via(self, flow):
        return "SIP/2.0/%s %s:%d;branch=z9hG4bK%s;rport" % (
            flow.proto.upper(), sip.host(self.ip), flow.local_port, sip.token())

    # -- registration ------------------------------------------------------------------------

    def register_request(self, flow, expires, authorization, verify=None):
        self.reg_cseq += 1
        h = [("Via", self.via(flow)), ("Max-Forwards", "70"),
             ("From", "<%s>;tag=%s" % (self.impu, self.reg_tag)), ("To", "<%s>" % self.impu),
             ("Call-ID", self.reg_call_id), ("CSeq", "%d REGISTER" % self.reg_cseq),
             ("Contact", '<sip:%s@%s:%d>;expires=%d;+g.3gpp.icsi-ref="urn%%3Aurn-7%%3A3gpp-'
              'service.ims.icsi.mmtel"' % (self.user, sip.host(self.ip), self.port_us, expires)),
             ("Expires", str(expires)), ("Authorization", authorization),
             ("Security-Client", sip.security_client(self.offers, self.spi_uc, self.spi_us,
                                                     self.port_uc, self.port_us))]
        if verify:
            h.append(("Security-Verify", verify))
        h += [("Require", "sec-agree"), ("Proxy-Require", "sec-agree"),
              ("Supported", "path, sec-agree"), ("User-Agent", "akagate-interop-ue")]
        return sip.request("REGISTER", "sip:" + self.domain, h)

    def authorization(self, method="REGISTER", auts=None):
        """The Authorization of the next request under the current challenge (nc + 1)."""
        realm, nonce, res = self.auth
        uri = "sip:" + self.domain
        self.nc += 1
        nc, cnonce = "%08x" % self.nc, sip.token(4)
        resp = sip.digest_response(self.impi, realm, res if auts is None else b"", method, uri,
                                   nonce, nc, cnonce)
        a = ('Digest username="%s", realm="%s", nonce="%s", uri="%s", response="%s", '
             'algorithm=AKAv1-MD5, qop=auth, nc=%s, cnonce="%s"'
             % (self.impi, realm, nonce, uri, resp, nc, cnonce))
        if auts is not None:
            a += ', auts="%s"' % base64.b64encode(auts).decode()
        return a

    def new_sec_params(self, port_uc=None, port_us=None):
        """Fresh SPIs (spi_us = spi_uc + 1), and the ports to offer next."""
        self.spi_uc = 0x10000 + struct.unpack("!I", os.urandom(4))[0] % 0x7FFF0000
        self.spi_us = self.spi_uc + 1
        self.port_uc = port_uc or self.port_uc
        self.port_us = port_us or self.port_us

    def register(self, expires=600, max_resyncs=2):
        """Initial registration (steps 2-5). Returns the 200 OK."""
        self.new_sec_params()
        self.open_server_ports()
        authz = ('Digest username="%s", realm="%s", nonce="", uri="sip:%s", response=""'
                 % (self.impi, self.domain, self.domain))
        resyncs = 0
        while True:
            unprot = self.connect(0, 5060, self.transport)
            r = self.transact(unprot, self.register_request(unprot, expires, authz))
            self.flows.remove(unprot)  # the unprotected flow serves this one transaction
            unprot.sock.close()
            if r.status != 401:
                raise RuntimeError("%s: REGISTER answered %s" % (self.name, r.start))
            try:
                return self.answer_challenge(r, expires)
            except MacFailure:
                # RFC 3310 3.3 / TS 24.229 5.1.1.5.3: the network is not authentic; say so
                # with an empty response in a new unprotected REGISTER, then give up.
                p = sip.params(r.get("www-authenticate").split(" ", 1)[1])
                authz = ('Digest username="%s", realm="%s", nonce="%s", uri="sip:%s", '
                         'response="", algorithm=AKAv1-MD5' % (self.impi, p["realm"],
                                                              p["nonce"], self.domain))
                unprot = self.connect(0, 5060, self.transport)
                final = self.transact(unprot, self.register_request(unprot, expires, authz))
                self.flows.remove(unprot)
                unprot.sock.close()
                raise AuthenticationRejected(final)
            except SyncFailure as e:
                resyncs += 1
                if resyncs > max_resyncs:
                    raise
                self.world.note("%s: SQN out of range, resynchronising with AUTS" % self.name)
                authz = self.authorization(auts=e.auts)

    def answer_challenge(self, r401, expires, renewing=False):
        """Step 3-5: USIM, SAs, the protected REGISTER. Raises SyncFailure with AUTS."""
        self.last_challenge = r401
        p, rand, autn = sip.challenge(r401.get("www-authenticate"))
        try:
            res, ck, ik = self.usim.authenticate(rand, autn)
        except SyncFailure:
            self.auth, self.nc = (p["realm"], p["nonce"], b""), 0
            raise
        self.auth, self.nc = (p["realm"], p["nonce"], res), 0
        server_value = r401.get("security-server")
        mechs = sip.security_mechanisms(server_value)
        chosen = max(mechs, key=lambda m: float(m.get("q", "0")))
        alg, ealg = chosen["alg"], chosen.get("ealg", "null")
        if (alg, ealg) not in [tuple(o) for o in self.offers]:
            raise RuntimeError("%s: P-CSCF chose %s/%s, not offered" % (self.name, alg, ealg))
        server = {k.replace("-", "_"): int(chosen[k]) for k in ("spi-c", "spi-s", "port-c",
                                                                "port-s")}
        client = {"spi_c": self.spi_uc, "spi_s": self.spi_us, "port_c": self.port_uc,
                  "port_s": self.port_us}
        new_set = SaSet(self.ip, self.pcscf, client, server, alg, ealg, ck, ik)
        self.world.shim.install(new_set)
        old_protected = self.protected
        if self.transport == "tcp":
            # A new TCP connection port_uc -> port_ps through the new SAs, unless the ports
            # are reused and the open connection already is that flow.
            same = (old_protected is not None and old_protected.proto == "tcp"
                    and old_protected.local_port == self.port_uc
                    and old_protected.peer[1] == server["port_s"]
                    and old_protected in self.flows)
            flow = old_protected if same else self.connect(self.port_uc, server["port_s"], "tcp")
        else:
            if old_protected is None or old_protected.local_port != self.port_uc:
                old_protected = Flow(self._socket("udp", self.port_uc), "udp", None)
                self.flows.append(old_protected)
            flow = Flow(old_protected.sock, "udp", (self.pcscf, server["port_s"]))
            self.flows[self.flows.index(old_protected)] = flow
        req = self.register_request(flow, expires, self.authorization(), server_value)
        ok = self.transact(flow, req)
        if ok.status != 200:
            raise RuntimeError("%s: protected REGISTER answered %s" % (self.name, ok.start))
        if renewing and old_protected is not None and old_protected is not flow \
                and old_protected.proto == "tcp" and old_protected in self.flows:
            # Close the old connection while its SAs still carry the FIN exchange, then
            # delete the old set (TS 33.203 7.4).
            old_protected.sock.shutdown(socket.SHUT_WR)
            self.world.wait(lambda: old_protected not in self.flows, 1.0)
        self.world.shim.remove_older(self.ip, new_set)
        self.sa, self.security_server, self.protected = new_set, server_value, flow
        self.service_routes = ok.all("service-route")
        self.pcscf_ports = (server["port_c"], server["port_s"])
        return ok

    def reregister(self, new_ports, expires=600):
        """Re-registration (TS 33.203 7.4): REGISTER over the SAs in use with a new
        Security-Client (new SPIs; new ports or the same ones), 401, then the protected
        REGISTER over the new SAs."""
        old_us, old_listeners = self.port_us, list(self.listeners)
        if new_ports:
            self.new_sec_params(self.port_uc + 2, self.port_us + 2)
        else:
            self.new_sec_params()
        # The request goes over the old set, so it names the ports of the old Security-Client
        # in Via; the offer is the new one.
        flow = self.protected
        r = self.transact(flow, self.register_request(flow, expires, self.authorization(),
                                                      self.security_server))
        if r.status != 401:
            raise RuntimeError("%s: re-REGISTER answered %s" % (self.name, r.start))
        if new_ports:
            lst = self._socket("tcp", self.port_us)
            lst.listen(8)
            self.listeners.append(lst)
            self.flows.append(Flow(self._socket("udp", self.port_us), "udp", None))
        ok = self.answer_challenge(r, expires, renewing=True)
        if new_ports:
            for s in old_listeners:
                self.listeners.remove(s)
                s.close()
            for f in [f for f in self.flows if f.proto == "udp" and f.local_port == old_us]:
                self.flows.remove(f)
                f.sock.close()
        return ok

    def deregister(self):
        """REGISTER with Expires: 0 over the SAs (TS 24.229 5.1.1.6)."""
        flow = self.protected
        ok = self.transact(flow, self.register_request(flow, 0, self.authorization(),
                                                       self.security_server))
        if ok.status != 200:
            raise RuntimeError("%s: de-REGISTER answered %s" % (self.name, ok.start))
        # Close the connections while the SAs can still carry the FINs, then delete the SAs
        # (the daemon removes its own with the 200 OK, so what is late is dropped there).
        self.close_all()
        self.world.pump(0.2)
        self.world.shim.clear(self.ip)
        return ok

    # -- calls -------------------------------------------------------------------------------

    def call_flow(self):
        """The TCP flow port_uc -> port_ps a call's requests go on, connected if absent."""
        # RFC 3261 18.1.1: a request within 200 bytes of the MTU goes over TCP; the P-CSCF's
        # protected server port takes TCP under the same SA (TS 33.203 7.1), so a UE
        # registered over UDP opens a TCP connection port_uc -> port_ps for it.
        peer = (self.pcscf, self.pcscf_ports[1])
        flow = next((f for f in self.flows if f.proto == "tcp" and f.peer == peer
                     and f.local_port == self.port_uc), None)
        if flow is None:
            flow = self.connect(self.port_uc, self.pcscf_ports[1], "tcp")
        return flow

    def sec_agree_headers(self):
        """What every request after the registration carries for sec-agree (RFC 3329 2.3.1)."""
        return [("Security-Verify", self.security_server), ("Require", "sec-agree"),
                ("Proxy-Require", "sec-agree")]

    def invite(self, callee, flow, sdp_size=LARGE_INVITE):
        """A new INVITE to `callee` for `flow` (a large one by default, so over TCP)."""
        route = ["<sip:%s:%d;lr>" % (sip.host(self.pcscf), self.pcscf_ports[1])]
        route += self.service_routes
        h = [("Via", self.via(flow)), ("Max-Forwards", "70")]
        h += [("Route", r) for r in route]
        h += [("From", "<%s>;tag=%s" % (self.impu, sip.token(4))), ("To", "<%s>" % callee.impu),
              ("Call-ID", sip.token()), ("CSeq", "1 INVITE"),
              ("Contact", "<sip:%s@%s:%d>" % (self.user, sip.host(self.ip), self.port_us)),
              ("P-Preferred-Identity", "<%s>" % self.impu)]
        h += self.sec_agree_headers() + [("Content-Type", "application/sdp")]
        return sip.request("INVITE", callee.impu, h, sip.sdp(self.ip, sdp_size))

    def call(self, callee, sdp_size=LARGE_INVITE):
        """INVITE `callee` (a large one, so over TCP), wait for 200, ACK, then BYE.
        Returns (INVITE bytes sent, final response to INVITE, response to BYE)."""
        flow = self.call_flow()
        invite = self.invite(callee, flow, sdp_size)
        size = len(invite.to_bytes())
        ok = self.transact(flow, invite, timeout=15)
        if ok.status != 200:
            return size, ok, None
        return size, ok, self.ack_and_bye(callee, flow, invite, ok)

    def in_dialog(self, flow, invite, ok, method, cseq):
        """A request `method` (CSeq `cseq`) on `flow` in the dialog `ok` (the 200 to our
        `invite`) made."""
        # RFC 3261 12.1.2: the dialog's remote target is the Contact, its route set the
        # Record-Route in reverse.
        target = ok.get("contact").strip("<>").split(">")[0]
        hh = [("Via", self.via(flow)), ("Max-Forwards", "70")]
        hh += [("Route", r) for r in reversed(ok.all("record-route"))]
        hh += [("From", invite.get("from")), ("To", ok.get("to")),
               ("Call-ID", invite.get("call-id")), ("CSeq", "%d %s" % (cseq, method))]
        hh += self.sec_agree_headers()
        return sip.request(method, target, hh)

    def ack_and_bye(self, callee, flow, invite, ok):
        """ACKs the 200 `ok` to `invite` on `flow`, waits for the callee to get it (unless
        `callee` is None: a party we cannot watch), then ends the dialog with BYE; returns
        the response to the BYE."""
        call_id = invite.get("call-id")

        def in_dialog(method, cseq):
            return self.in_dialog(flow, invite, ok, method, cseq)

        self.send(flow, in_dialog("ACK", 1))
        if callee is None:
            self.world.pump(0.3)
            return self.transact(flow, in_dialog("BYE", 2))
        callee_acked = self.world.wait(lambda: any(
            r.method == "ACK" and r.get("call-id") == call_id for r in callee.requests), 5)
        if not callee_acked:
            raise RuntimeError("%s: the callee never got the ACK" % self.name)
        return self.transact(flow, in_dialog("BYE", 2))


class PlainUe(Ue):
    """A phone without sec-agree (a Wi-Fi client, a lab phone), for a P-CSCF whose profile
    has sec-agree-required = false: no Security-Client, no SAs. It registers with AKA over one
    flow to port 5060 (a TCP connection, or a UDP socket) and keeps using that flow for
    everything: the P-CSCF accepts its requests only there and sends its requests there."""

    def register_request(self, flow, expires, authorization, verify=None):
        req = super().register_request(flow, expires, authorization)
        req.headers = [(n, v) for n, v in req.headers
                       if n.lower() not in ("security-client", "require", "proxy-require")]
        req.headers = [(n, "path" if n.lower() == "supported" else v) for n, v in req.headers]
        return req

    def register(self, expires=600, max_resyncs=0):
        self.new_sec_params()
        flow = self.connect(0, 5060, self.transport)
        authz = ('Digest username="%s", realm="%s", nonce="", uri="sip:%s", response=""'
                 % (self.impi, self.domain, self.domain))
        r = self.transact(flow, self.register_request(flow, expires, authz))
        if r.status != 401 or not self.accept_security_server(r.get("security-server")):
            raise RuntimeError("%s: REGISTER answered %s (Security-Server %r)" % (
                self.name, r.start, r.get("security-server")))
        p, rand, autn = sip.challenge(r.get("www-authenticate"))
        res, _ck, _ik = self.usim.authenticate(rand, autn)
        self.auth, self.nc = (p["realm"], p["nonce"], res), 0
        # The answer on the same flow: the P-CSCF takes it from nowhere else.
        ok = self.transact(flow, self.register_request(flow, expires, self.authorization()))
        if ok.status != 200:
            raise RuntimeError("%s: second REGISTER answered %s" % (self.name, ok.start))
        self.protected = flow
        self.service_routes = ok.all("service-route")
        self.pcscf_ports = (5060, 5060)
        return ok

    def accept_security_server(self, value):
        """Whether the 401's Security-Server (None if absent) is what this phone expects."""
        return not value

    def call_flow(self):
        return self.protected

    def sec_agree_headers(self):
        return []

    def deregister(self):
        ok = self.transact(self.protected, self.register_request(
            self.protected, 0, self.authorization()))
        if ok.status != 200:
            raise RuntimeError("%s: de-REGISTER answered %s" % (self.name, ok.start))
        self.close_all()
        return ok


TLS_PORT = 5061
TLS_CA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "fastpath",
                      "tests", "fixtures", "tls", "ca.pem")


class TlsUe(PlainUe):
    """A phone that protects SIP with TLS instead of IPsec (RFC 3261 26.2; TS 33.203 for
    TLS-based access): Python's ssl module over a kernel TCP connection to port 5061, the
    P-CSCF's certificate checked against the test CA under the name pcscf.test. It offers
    sec-agree mechanism `tls` (RFC 3329 2.2), expects `Security-Server: tls` in the 401 and
    echoes it in Security-Verify from then on (2.3.1); it registers with AKA, bound to its
    TLS connection like a PlainUe to its flow. With `sec_agree` off it sends no sec-agree."""

    sec_agree = True

    def register_request(self, flow, expires, authorization, verify=None):
        req = super().register_request(flow, expires, authorization)
        if self.sec_agree:
            req.headers = [(n, v) for n, v in req.headers if n.lower() != "supported"]
            req.headers += [("Security-Client", "tls")] + self.sec_agree_headers() + [
                ("Supported", "path, sec-agree")]
        return req

    def accept_security_server(self, value):
        if not self.sec_agree:
            return not value
        self.security_server = value
        return value is not None and value.split(";")[0].strip().lower() == "tls"

    def sec_agree_headers(self):
        if not self.sec_agree:
            return []
        verify = [("Security-Verify", self.security_server)] if self.security_server else []
        return verify + [("Require", "sec-agree"), ("Proxy-Require", "sec-agree")]

    def connect(self, local_port, remote_port, proto):
        if proto != "tls":
            return super().connect(local_port, remote_port, proto)
        s = self._socket("tcp", local_port)
        s.connect((self.pcscf, TLS_PORT))
        ctx = ssl.create_default_context(cafile=TLS_CA)
        f = Flow(ctx.wrap_socket(s, server_hostname="pcscf.test"), "tls",
                 (self.pcscf, TLS_PORT))
        self.flows.append(f)
        return f

    def register(self, expires=600, max_resyncs=0):
        ok = super().register(expires, max_resyncs)
        self.pcscf_ports = (TLS_PORT, TLS_PORT)
        return ok


class TlsPlainUe(TlsUe):
    """A TLS phone without sec-agree (no Security-Client): flow-bound to its connection."""

    sec_agree = False


class World:
    """Every UE of a run, the shim, and the loop that reads their sockets."""

    def __init__(self, shim, verbose=False):
        self.shim, self.verbose, self.ues = shim, verbose, []

    def note(self, text):
        print("   " + text, flush=True)

    def trace(self, ue, arrow, msg):
        if self.verbose:
            print("   %-6s %s %s" % (ue.name, arrow, msg.start), flush=True)
            for name in ("Security-Client", "Security-Server", "Security-Verify"):
                for v in msg.all(name):
                    print("            %s: %s" % (name, v), flush=True)

    def pump(self, timeout):
        """Reads whatever arrives on any UE socket within `timeout` seconds."""
        owners = {}
        for ue in self.ues:
            for s in ue.fds():
                owners[s] = ue
        if not owners:
            time.sleep(timeout)
            return
        r, _, _ = select.select(list(owners), [], [], timeout)
        for s in r:
            owners[s].readable(s)

    def wait(self, pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            self.pump(0.05)
        return pred()
