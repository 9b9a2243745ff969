#!/usr/bin/python3
"""The interop scenarios, run inside the UE namespace by run.py.

Each scenario uses fresh UE addresses, registers, does its part, de-registers, and checks the
daemon's own view through its control socket. Scenarios marked `default=False` run only
when named (`--scenario NAME`, or INTEROP_SCENARIOS=a,b from the Rust test); KNOWN_FAILURES.md
says why a scenario is kept out of the default run.
"""

import argparse
import ctypes
import hashlib
import hmac
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import tomllib
import traceback
import zlib

from scapy.layers.inet import IP, TCP, UDP
from scapy.packet import Raw

from daemonctl import control
from milenage import Usim, check_vectors
from scscf import received as scscf_received, run_terminating_call
from shim import Shim, normalise_ip, open_tun, wire_socket
import sip
from ue import (LARGE_INVITE, TLS_PORT, AuthenticationRejected, PlainUe, TlsPlainUe, TlsUe, Ue,
                World)

HERE = os.path.dirname(os.path.abspath(__file__))
PCSCF_V4, PCSCF_V6 = "10.0.0.1", "fd00::1"
TUN = "uetun"
TUN_MTU = 1400  # leaves room for ESP on a 1500-byte wire, as a phone's PMTU would
CLONE_NEWNET = 0x40000000

SHA1, MD5 = "hmac-sha-1-96", "hmac-md5-96"
ALGORITHM_PAIRS = [(a, e) for a in (SHA1, MD5) for e in ("null", "aes-cbc", "des-ede3-cbc")]
ALGORITHM_PAIRS += [(SHA1, "aes-gcm"), ("aes-gmac", "null")]


def setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns %s" % path)
    finally:
        os.close(fd)


def open_wire(netns, ifname):
    """The AF_PACKET socket on the wire, opened in the wire namespace; we come back after."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        setns("/var/run/netns/" + netns)
        s = wire_socket(ifname)
        mac = ":".join("%02x" % b for b in s.getsockname()[4])
    finally:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns(home, CLONE_NEWNET)
        os.close(home)
    return s, mac


def ip(*args):
    subprocess.run(("ip",) + args, check=True)


class Context:
    """What the scenarios share: the world of UEs, subscribers, daemon queries, addresses."""

    def __init__(self, world, subscribers, control_path):
        self.world, self.subs, self.control_path = world, subscribers, control_path
        self.next_host = 10
        self.usims = {}

    def control(self, cmd):
        reply = control(self.control_path, cmd)
        assert reply.get("ok"), reply
        return reply[cmd]

    def usim(self, sub, seq_ms=None):
        """The subscriber's USIM; kept across scenarios, like the card in a phone."""
        if seq_ms is not None or sub not in self.usims:
            r = self.subs[sub]
            self.usims[sub] = Usim(bytes.fromhex(r["k"]), bytes.fromhex(r["opc"]), seq_ms or 0)
        return self.usims[sub]

    def ue(self, name, sub, v6=False, transport="tcp", offers=((SHA1, "aes-cbc"),),
           seq_ms=None, announce=True, cls=Ue):
        """A new UE (a `cls`) with a fresh address on the TUN. With `announce` it resolves the
        P-CSCF from its own address first, as a host does (so the P-CSCF learns the UE's MAC
        from the ARP request / NS); without, the P-CSCF's MAC is found from a scout address that
        is no UE, and the P-CSCF meets the UE first in its REGISTER."""
        n = self.next_host
        self.next_host += 1
        if v6:
            addr, pcscf = "fd00::1:%x" % n, PCSCF_V6
            ip("-6", "addr", "add", addr + "/128", "dev", TUN, "nodad")
        else:
            addr, pcscf = "10.0.1.%d" % n, PCSCF_V4
            ip("addr", "add", addr + "/32", "dev", TUN)
        addr = normalise_ip(addr)
        u = cls(self.world, name, self.subs[sub], self.usim(sub, seq_ms), addr, pcscf, transport,
               [list(o) for o in offers], 20000 + n * 10, 20000 + n * 10 + 1)
        self.world.ues.append(u)
        scout = normalise_ip("fd00::1:fe" if v6 else "10.0.1.254")
        self.world.shim.resolve(pcscf, addr if announce else scout)
        return u

    def registration(self, u):
        """The daemon's registration entry for this UE, or None."""
        for r in self.control("registrations"):
            if r.get("impi") == u.impi and normalise_ip(str(r.get("ue"))) == u.ip:
                return r
        return None

    def active_set(self, u):
        sets = [s for s in self.control("sas") if s.get("impi") == u.impi
                and s.get("state") == "active" and normalise_ip(str(s.get("ue"))) == u.ip]
        return sets[0] if len(sets) == 1 else None

    def done(self, *ues):
        for u in ues:
            u.close_all()
            if u in self.world.ues:
                self.world.ues.remove(u)


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


def check_registered(ctx, u):
    """The daemon's view agrees with the UE's: one active set, the pair and ports we hold."""
    s = ctx.active_set(u)
    expect(s is not None, "%s: no single active SA set at the daemon" % u.name)
    expect((s["alg"], s["ealg"]) == (u.sa.alg, u.sa.ealg), "%s: daemon has %s/%s" %
           (u.name, s["alg"], s["ealg"]))
    expect((s["spi_uc"], s["spi_us"], s["port_uc"], s["port_us"]) ==
           (u.spi_uc, u.spi_us, u.port_uc, u.port_us),
           "%s: daemon's UE-side SPIs/ports differ: %s" % (u.name, s))
    srv = u.sa.server
    expect((s["spi_pc"], s["spi_ps"], s["port_pc"], s["port_ps"]) ==
           (srv["spi_c"], srv["spi_s"], srv["port_c"], srv["port_s"]),
           "%s: daemon's own SPIs/ports differ from its Security-Server: %s" % (u.name, s))
    expect(ctx.registration(u) is not None, "%s: not in the daemon's registrar" % u.name)


def check_deregistered(ctx, u):
    """Neither a registration nor an SA set of the UE is left at the daemon."""
    expect(ctx.world.wait(lambda: ctx.registration(u) is None, 2),
           "%s: still registered at the daemon after de-registration" % u.name)
    expect(ctx.world.wait(lambda: not any(
        normalise_ip(str(s.get("ue"))) == u.ip for s in ctx.control("sas")), 2),
        "%s: SA sets left at the daemon after de-registration" % u.name)


def register_call_deregister(ctx, v6, transport):
    """Two UEs register; A calls B with a large INVITE; both de-register."""
    a = ctx.ue("alice", 0, v6=v6, transport=transport)
    b = ctx.ue("bob", 1, v6=v6, transport=transport)
    a.register()
    check_registered(ctx, a)
    b.register()
    check_registered(ctx, b)
    size, ok, bye = a.call(b)
    expect(size > 1300, "INVITE only %d bytes" % size)
    expect(ok.status == 200, "INVITE answered %s" % ok.start)
    expect(bye is not None and bye.status == 200, "BYE answered %s" % (bye and bye.start))
    check_invite_path(ctx, b, size)
    for u in (a, b):
        u.deregister()
        check_deregistered(ctx, u)
    ctx.done(a, b)


def deregister_all(ctx, *ues):
    """Each UE de-registers; nothing of it is left at the daemon."""
    for u in ues:
        u.deregister()
        check_deregistered(ctx, u)
    ctx.done(*ues)


def check_invite_path(ctx, callee, size):
    """The whole INVITE reached the callee over TCP from the P-CSCF's port_pc - the
    connection the P-CSCF opened to port_us through spi_us, never one from port 5060."""
    inv = [r for r in callee.requests if r.method == "INVITE"][-1]
    expect(len(inv.body) >= LARGE_INVITE, "callee got %d bytes of SDP" % len(inv.body))
    proto, peer = inv.arrived_on
    ctx.world.note("INVITE of %d bytes reached %s over %s from %s" % (size, callee.name, proto,
                                                                     peer))
    expect(proto == "tcp" and peer == (callee.pcscf, callee.pcscf_ports[0]),
           "INVITE came over %s from %s, not TCP from port_pc" % (proto, peer))


def sc_tcp_v4(ctx):
    register_call_deregister(ctx, False, "tcp")


def sc_tcp_v6(ctx):
    register_call_deregister(ctx, True, "tcp")


def udp_register_with_loss(ctx, v6):
    """UDP registration as phones do it: the 401 and the 200 OK are each lost once on the
    radio, so the UE's timer E retransmits both REGISTERs and the daemon must answer the
    retransmissions; then the UE de-registers over UDP."""
    u = ctx.ue("carol", 2, v6=v6, transport="udp")
    ctx.world.shim.lose_next(u.ip, "clear", 1)
    ctx.world.shim.lose_next(u.ip, "esp", 1)
    before = ctx.control("stats")["sip"].get("retransmissions_absorbed", 0)
    u.register()
    check_registered(ctx, u)
    expect(u.retransmissions >= 2, "only %d retransmissions" % u.retransmissions)
    after = ctx.control("stats")["sip"].get("retransmissions_absorbed", 0)
    ctx.world.note("%d REGISTER retransmissions; daemon retransmissions_absorbed %d -> %d" %
                   (u.retransmissions, before, after))
    expect(after >= before + 2, "the daemon did not absorb both retransmitted REGISTERs")
    u.deregister()
    check_deregistered(ctx, u)
    ctx.done(u)


def sc_udp_v4(ctx):
    udp_register_with_loss(ctx, False)


def sc_udp_v6(ctx):
    udp_register_with_loss(ctx, True)


def unannounced_udp_register(ctx, v6):
    """A UE that never ARPs / solicits the P-CSCF from its own address registers over UDP:
    the daemon resolves the UE itself while it holds the 401, so nothing is lost and timer E
    never fires (it used to drop the 401, `drop_egress_no_neighbor`, costing one
    retransmission per new UE)."""
    held = worker_counter(ctx, "neighbor_queued")
    lost = worker_counter(ctx, "drop_egress_no_neighbor")
    u = ctx.ue("olivia", 4, v6=v6, transport="udp", announce=False)
    u.register()
    check_registered(ctx, u)
    expect(u.retransmissions == 0, "%d REGISTER retransmissions" % u.retransmissions)
    expect(worker_counter(ctx, "neighbor_queued") > held, "nothing waited for the UE's MAC")
    expect(worker_counter(ctx, "drop_egress_no_neighbor") == lost,
           "a packet was dropped for want of the UE's MAC")
    u.deregister()
    check_deregistered(ctx, u)
    ctx.done(u)


def sc_unannounced_udp_v4(ctx):
    unannounced_udp_register(ctx, False)


def sc_unannounced_udp_v6(ctx):
    unannounced_udp_register(ctx, True)


def sc_udp_call_v4(ctx):
    """UDP-registered UEs call: the large INVITE goes over TCP (RFC 3261 18.1.1)."""
    register_call_deregister(ctx, False, "udp")


def sc_udp_call_v6(ctx):
    register_call_deregister(ctx, True, "udp")


def sc_algorithms(ctx):
    """Every algorithm pair, offered alone: once over TCP/IPv4, once over UDP/IPv6;
    register, check the daemon chose that pair, de-register."""
    for i, pair in enumerate(ALGORITHM_PAIRS):
        for v6, transport in ((False, "tcp"), (True, "udp")):
            u = ctx.ue("alg%d" % i, 0, v6=v6, transport=transport, offers=[pair])
            u.register()
            check_registered(ctx, u)
            u.deregister()
            check_deregistered(ctx, u)
            ctx.done(u)
        ctx.world.note("%s + %s over TCP/IPv4 and UDP/IPv6" % pair)


def sc_resync(ctx):
    """The USIM's SQN is ahead of the network's: the UE answers the first challenge with
    AUTS, the network resynchronises and the second challenge is accepted."""
    u = ctx.ue("dave", 3, seq_ms=1 << 20)
    u.register()
    check_registered(ctx, u)
    expect(max(u.usim.seq) > 1 << 20, "the USIM never accepted a resynchronised SQN")
    u.deregister()
    check_deregistered(ctx, u)
    ctx.done(u)


def sc_resync_udp_401_lost(ctx):
    """AUTS over UDP whose new 401 is lost on the radio: the UE's timer E retransmits the
    REGISTER carrying AUTS; the daemon answers the retransmission with the same 401 (its
    server transaction absorbs it: no second resynchronisation, no second vector), and the UE
    registers with it."""
    u = ctx.ue("erin", 3, transport="udp", seq_ms=1 << 21)
    send = u.transact

    def transact(flow, req, timeout=10.0):
        if "auts=" in (req.get("authorization") or ""):
            ctx.world.shim.lose_next(u.ip, "clear", 1)
        return send(flow, req, timeout)

    u.transact = transact
    before = ctx.control("stats")["sip"].get("retransmissions_absorbed", 0)
    u.register()
    check_registered(ctx, u)
    expect(max(u.usim.seq) > 1 << 21, "the USIM never accepted a resynchronised SQN")
    expect(u.retransmissions >= 1, "the REGISTER with AUTS was never retransmitted")
    after = ctx.control("stats")["sip"].get("retransmissions_absorbed", 0)
    expect(after >= before + 1, "the daemon did not absorb the retransmitted AUTS REGISTER")
    u.deregister()
    check_deregistered(ctx, u)
    ctx.done(u)


def sc_resync_network_ahead(ctx):
    """The network's SQN is 2^29 SEQs ahead of the USIM's, beyond its delta of 2^28 (TS
    33.102 C.2.1): the USIM refuses the challenge with AUTS, the HSS takes SQN_MS from it
    and the next challenge is accepted."""
    u = ctx.ue("grace", 4, seq_ms=0)
    u.register()
    check_registered(ctx, u)
    expect(max(u.usim.seq) < 1 << 28, "the USIM accepted a SEQ beyond delta")
    u.deregister()
    check_deregistered(ctx, u)
    ctx.done(u)


def worker_counter(ctx, name):
    return sum(w["counters"].get(name, 0) for w in ctx.control("stats")["workers"])


def sc_routed(ctx):
    """run.py --mode routed: the UEs sit behind a Linux router (kernel forwarding) and akagate
    reaches their prefix through its static route, resolving only the router. Two UEs register
    and call each other over IPv4/TCP and IPv6/UDP; the daemon's gateways are resolved, it
    never lacked a next hop, and it never solicited a UE (nothing answers for a UE on its
    link: a solicitation would have been a lost packet, `drop_egress_no_neighbor`)."""
    lost = worker_counter(ctx, "drop_egress_no_neighbor")
    register_call_deregister(ctx, False, "tcp")
    register_call_deregister(ctx, True, "udp")
    expect(worker_counter(ctx, "gateways_unresolved") == 0, "a gateway is unresolved")
    expect(worker_counter(ctx, "drop_egress_no_route") == 0, "a packet had no route")
    expect(worker_counter(ctx, "drop_egress_no_neighbor") == lost,
           "a packet was dropped for want of a next hop's MAC")
    asked = {k: v for k, v in ctx.world.shim.counters.items() if k.startswith("error")}
    expect(not asked, "shim errors %s" % asked)
    ctx.world.note("gateway probes %d, solicitations %d" % (
        worker_counter(ctx, "gateway_probes"), worker_counter(ctx, "solicitations")))


def sc_protection(ctx):
    """The daemon enforces the SAs against this UE: an ESP packet with a bad ICV and a
    replayed one are dropped (the UE's TCP retransmits and the call still completes), and
    SIP sent in clear to the protected port is dropped, never answered."""
    a = ctx.ue("heidi", 0)
    b = ctx.ue("ivan", 1)
    a.register()
    b.register()
    invalid = worker_counter(ctx, "drop_esp_invalid")
    ctx.world.shim.tamper_next(a.ip)
    size, ok, bye = a.call(b)
    expect(ok.status == 200 and bye is not None and bye.status == 200,
           "call with a tampered first segment failed")
    after_tamper = worker_counter(ctx, "drop_esp_invalid")
    expect(after_tamper > invalid, "bad ICV not counted (drop_esp_invalid %d -> %d)" %
           (invalid, after_tamper))
    ctx.world.shim.replay_last(a.ip)
    expect(ctx.world.wait(lambda: worker_counter(ctx, "drop_esp_invalid") > after_tamper, 2),
           "replayed ESP packet not counted in drop_esp_invalid")
    clear = worker_counter(ctx, "drop_clear_to_protected")
    opts = ("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bKclear\r\n"
            "Content-Length: 0\r\n\r\n" % (a.domain, a.ip, a.port_uc)).encode()
    ctx.world.shim.inject(IP(src=a.ip, dst=a.pcscf) / UDP(sport=a.port_uc,
                                                          dport=a.pcscf_ports[1]) / opts)
    expect(ctx.world.wait(lambda: worker_counter(ctx, "drop_clear_to_protected") > clear, 2),
           "clear SIP to port_ps not counted in drop_clear_to_protected")
    ctx.world.note("bad ICV, replay and clear text to port_ps each dropped and counted")
    for u in (a, b):
        u.deregister()
        check_deregistered(ctx, u)
    ctx.done(a, b)


def sc_mac_failure(ctx):
    """The USIM holds a wrong K, so AUTN's MAC fails: the UE reports it with an empty
    response; the network answers with a final error, registers nothing and keeps no SAs."""
    u = ctx.ue("judy", 2)
    r = ctx.subs[2]
    u.usim = Usim(bytes(16), bytes.fromhex(r["opc"]))
    try:
        u.register()
        raise AssertionError("registered with a wrong K")
    except AuthenticationRejected as e:
        ctx.world.note("MAC failure reported; the network answered %s" % e.response.start)
        expect(400 <= e.response.status < 700, "answered %s" % e.response.start)
    check_deregistered(ctx, u)
    ctx.done(u)


def reregister_twice(ctx, new_ports, v6=False, transport="tcp"):
    """Two re-registrations (new SPIs each time; new ports or the same ones); a call reaches
    the re-registered UE after each; de-registration."""
    a = ctx.ue("erin", 0, v6=v6, transport=transport)
    b = ctx.ue("frank", 1, v6=v6, transport=transport)
    a.register()
    b.register()
    for _ in range(2):
        old = (b.spi_uc, b.spi_us, b.port_uc, b.port_us)
        b.reregister(new_ports)
        check_registered(ctx, b)
        expect(b.spi_uc not in old[:2] and b.spi_us not in old[:2], "SPIs not renewed")
        expect((b.port_uc, b.port_us) != old[2:] if new_ports else
               (b.port_uc, b.port_us) == old[2:], "ports %s -> %s" % (old[2:], (b.port_uc,
                                                                             b.port_us)))
        size, ok, bye = a.call(b)
        expect(ok.status == 200 and bye is not None and bye.status == 200,
               "call after re-registration failed")
        ctx.world.note("re-registered with %s ports (%d, %d); call completed" % (
            "new" if new_ports else "the same", b.port_uc, b.port_us))
    for u in (a, b):
        u.deregister()
        check_deregistered(ctx, u)
    ctx.done(a, b)


def sc_reregister_new_ports(ctx):
    reregister_twice(ctx, True)


def sc_reregister_udp_v6(ctx):
    reregister_twice(ctx, True, v6=True, transport="udp")


def sc_reregister_same_ports(ctx):
    reregister_twice(ctx, False)


def sc_gcm_null(ctx):
    """AES-GCM offered as OpenSIPS and handsets do, `alg=null; ealg=aes-gcm` alone: the
    daemon chooses it, echoes it in Security-Server, keys it per TS 33.203 Annex I (the GCM
    salt from the TS 33.220 KDF); calls both ways with an hmac-sha-1-96 + aes-cbc UE."""
    a = ctx.ue("gina", 0, offers=[("null", "aes-gcm")])
    b = ctx.ue("hank", 1)
    a.register()
    check_registered(ctx, a)
    expect("alg=null" in a.security_server.replace(" ", "") and
           "ealg=aes-gcm" in a.security_server.replace(" ", ""),
           "Security-Server does not echo the offer: %s" % a.security_server)
    b.register()
    for caller, callee in ((a, b), (b, a)):
        size, ok, bye = caller.call(callee)
        expect(ok.status == 200 and bye is not None and bye.status == 200,
               "%s -> %s: call failed" % (caller.name, callee.name))
        check_invite_path(ctx, callee, size)
    ctx.world.note("alg=null + ealg=aes-gcm registered; calls to and from it completed")
    deregister_all(ctx, a, b)


def sc_pipelined(ctx):
    """Requests pipelined over the protected connection: the phone writes two MESSAGEs in
    one send (one TCP segment through ESP), then three (two segments, one message straddling
    them); the P-CSCF frames every one (RFC 3261 18.3) and routes it to the callee, and each
    is answered in its own transaction. Phones and proxies pipeline when several requests
    are due at once; the worker's framer cuts whole messages out of the socket's ring where
    they lie and gathers only the one that straddles."""
    a = ctx.ue("vera", 0)
    b = ctx.ue("walt", 1)
    a.register()
    b.register()
    flow = a.call_flow()
    for n in (2, 3):
        reqs = []
        for i in range(n):
            h = [("Via", a.via(flow)), ("Max-Forwards", "70")]
            h += [("Route", "<sip:%s:%d;lr>" % (sip.host(a.pcscf), a.pcscf_ports[1]))]
            h += [("Route", r) for r in a.service_routes]
            h += [("From", "<%s>;tag=%s" % (a.impu, sip.token(4))), ("To", "<%s>" % b.impu),
                  ("Call-ID", sip.token()), ("CSeq", "%d MESSAGE" % (i + 1)),
                  ("P-Preferred-Identity", "<%s>" % a.impu),
                  ("Content-Type", "text/plain")]
            reqs.append(sip.request("MESSAGE", b.impu, h, b"pipelined %d of %d" % (i + 1, n)))
        data = b"".join(r.to_bytes() for r in reqs)
        # Two fit one segment; three (1.6 KB) do not: the kernel cuts them at its MSS, one
        # message straddling the two segments.
        expect((len(data) < 1300) == (n == 2), "%d requests in %d bytes" % (n, len(data)))
        for r in reqs:
            ctx.world.trace(a, "->", r)
        flow.send(data)
        branches = [r.get("via").split("branch=")[1].split(";")[0] for r in reqs]

        def answered(br):
            return any(br in r.get("via") and r.status >= 200 for r in a.responses)
        expect(ctx.world.wait(lambda: all(answered(br) for br in branches), 10),
               "%d pipelined MESSAGEs: answered %d" % (n, sum(map(answered, branches))))
        finals = [r for r in a.responses if r.status >= 200 and
                  any(br in r.get("via") for br in branches)]
        expect(all(r.status == 200 for r in finals), "answers: %s" %
               [r.start for r in finals])
        got = [r for r in b.requests if r.method == "MESSAGE" and b"pipelined" in r.body]
        expect(len(got) >= n, "the callee got %d MESSAGEs" % len(got))
        for r in finals:
            a.responses.remove(r)
        b.requests = [r for r in b.requests if r not in got]
        ctx.world.note("%d MESSAGEs in one send over ESP: each framed, routed, answered" % n)
    deregister_all(ctx, a, b)


def options_from_other_flow(u):
    """An OPTIONS from the UE's address on a new flow (another connection / UDP port)."""
    flow = u.connect(0, 5060, u.transport)
    h = [("Via", u.via(flow)), ("Max-Forwards", "70"),
         ("From", "<%s>;tag=%s" % (u.impu, sip.token(4))), ("To", "<%s>" % u.impu),
         ("Call-ID", sip.token()), ("CSeq", "1 OPTIONS")]
    r = u.transact(flow, sip.request("OPTIONS", u.impu, h))
    u.flows.remove(flow)
    flow.sock.close()
    return r


def sc_no_sec_agree(ctx):
    """sec-agree-required = false (this run's profile): a phone without sec-agree registers
    with AKA but no SAs, over TCP and over UDP; an IPsec UE calls it (the INVITE arrives on
    the flow it registered from) and it calls the IPsec UE; the same phone on another flow
    is refused with 403; nothing of it is left after de-registration, and a TCP-bound
    registration ends when its connection does."""
    a = ctx.ue("olga", 0)
    a.register()
    check_registered(ctx, a)
    for transport in ("tcp", "udp"):
        b = ctx.ue("pete", 1, transport=transport, cls=PlainUe)
        b.register()
        reg = ctx.registration(b)
        expect(reg is not None and reg.get("registered"), "%s: not registered" % b.name)
        expect(reg.get("transport") == transport, "registered over %s" % reg.get("transport"))
        # Over UDP the flow stays UDP: keep the INVITE within one datagram on the wire.
        sdp = LARGE_INVITE if transport == "tcp" else 300
        size, ok, bye = a.call(b, sdp_size=sdp)
        expect(ok.status == 200 and bye is not None and bye.status == 200,
               "IPsec UE -> no-IPsec UE over %s failed" % transport)
        inv = [r for r in b.requests if r.method == "INVITE"][-1]
        expect(inv.arrived_on == (transport, (b.pcscf, 5060)),
               "INVITE reached the no-IPsec UE over %s from %s, not its registered flow" %
               inv.arrived_on)
        size, ok, bye = b.call(a, sdp_size=sdp)
        expect(ok.status == 200 and bye is not None and bye.status == 200,
               "no-IPsec UE -> IPsec UE over %s failed" % transport)
        r = options_from_other_flow(b)
        expect(r.status == 403, "request from another flow answered %s" % r.start)
        ctx.world.note("no sec-agree over %s: registered, calls both ways, other flow 403" %
                       transport)
        deregister_all(ctx, b)
    # A TCP-bound registration lives as long as its connection: the phone closes it, and
    # the daemon ends the registration (nothing could reach the phone any more).
    c = ctx.ue("quinn", 1, transport="tcp", cls=PlainUe)
    c.register()
    expect(ctx.registration(c) is not None, "quinn: not registered")
    c.close_all()
    expect(ctx.world.wait(lambda: ctx.registration(c) is None, 3),
           "quinn: still registered after its connection closed")
    ctx.done(c)
    deregister_all(ctx, a)


def sc_tls(ctx):
    """SIP over TLS on port 5061 (RFC 3261 26.2) from Python's ssl module: the phone checks
    the P-CSCF's certificate, agrees on sec-agree mechanism `tls` (RFC 3329: Security-Client
    tls, 401 with Security-Server tls, Security-Verify echoed) and registers with AKA bound to
    its TLS connection (no IPsec); an IPsec UE calls it (the INVITE arrives inside its TLS
    connection) and it calls back, a request on another TLS connection is refused 403, and it
    de-registers; the same over IPv6. A TLS phone without sec-agree registers bound to its
    connection too."""
    a = ctx.ue("olga", 0)
    a.register()
    check_registered(ctx, a)
    b = ctx.ue("pete", 1, transport="tls", cls=TlsUe)
    b.register()
    reg = ctx.registration(b)
    expect(reg is not None and reg.get("registered"), "pete: not registered over TLS")
    expect(b.protected.sock.version() is not None, "pete: no TLS session")
    expect(b.security_server.startswith("tls"), "401 had Security-Server %r" % b.security_server)
    size, ok, bye = a.call(b)
    expect(ok.status == 200 and bye is not None and bye.status == 200,
           "IPsec UE -> TLS UE failed")
    inv = [r for r in b.requests if r.method == "INVITE"][-1]
    expect(inv.arrived_on == ("tls", (b.pcscf, TLS_PORT)),
           "INVITE reached the TLS UE over %s from %s, not its TLS connection" % inv.arrived_on)
    expect(len(inv.body) >= LARGE_INVITE, "TLS UE got %d bytes of SDP" % len(inv.body))
    size, ok, bye = b.call(a)
    expect(ok.status == 200 and bye is not None and bye.status == 200,
           "TLS UE -> IPsec UE failed")
    r = options_from_other_flow(b)
    expect(r.status == 403, "request on another TLS connection answered %s" % r.start)
    ctx.world.note("TLS (%s): registered on its connection, calls both ways, other "
                   "connection 403" % b.protected.sock.version())
    deregister_all(ctx, b)
    # The same over IPv6.
    d = ctx.ue("pete6", 1, v6=True, transport="tls", cls=TlsUe)
    d.register()
    expect(ctx.registration(d) is not None, "pete6: not registered over TLS on IPv6")
    deregister_all(ctx, d)
    c = ctx.ue("quinn", 1, transport="tls", cls=TlsPlainUe)
    c.register()
    expect(ctx.registration(c) is not None, "quinn: not registered over TLS without sec-agree")
    deregister_all(ctx, c, a)


def call_answered(ctx, caller, callee, sdp_size=LARGE_INVITE):
    """A call that must complete; returns the INVITE's size."""
    size, ok, bye = caller.call(callee, sdp_size)
    expect(ok.status == 200, "INVITE answered %s" % ok.start)
    expect(bye is not None and bye.status == 200, "BYE answered %s" % (bye and bye.start))
    return size


def registered_pair(ctx):
    a = ctx.ue("alice", 0)
    b = ctx.ue("bob", 1)
    for u in (a, b):
        u.register()
        check_registered(ctx, u)
    return a, b


def reboot(u):
    """The phone loses every state at once, as a reboot does: its SAs go first, so whatever the
    kernel sends for the sockets it closes finds no policy and is dropped (a rebooting phone
    sends nothing), then the sockets close without a FIN (SO_LINGER 0). Its ports and address
    stay, as many phones bind the same protected ports again."""
    u.world.shim.clear(u.ip)
    for f in u.flows:
        if f.proto == "tcp":
            f.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    u.close_all()
    u.world.pump(0.2)


def sc_reboot_same_ports(ctx):
    """A registered phone reboots and registers again from the same address and ports while
    its old registration, SAs and connections are still live at the P-CSCF (TS 33.203 7.4:
    the new set wins once used): the registration completes at once and calls reach it in
    both directions, over new connections, not the stale ones."""
    a, b = registered_pair(ctx)
    call_answered(ctx, a, b)
    call_answered(ctx, b, a)
    ports = (b.port_uc, b.port_us)
    for n in range(2):
        reboot(b)
        t = time.monotonic()
        b.register()
        took = time.monotonic() - t
        check_registered(ctx, b)
        expect((b.port_uc, b.port_us) == ports, "ports changed: %s" % ((b.port_uc, b.port_us),))
        expect(took < 3.0, "registration after the reboot took %.1f s" % took)
        t = time.monotonic()
        call_answered(ctx, a, b)
        call_answered(ctx, b, a)
        ctx.world.note("reboot %d: registered in %.2f s, calls both ways in %.2f s" % (
            n + 1, took, time.monotonic() - t))
    deregister_all(ctx, a, b)


def sc_callee_closes(ctx):
    """The callee closes the P-CSCF's connection (port_pc -> its port_us) just as the next
    INVITE for it arrives: the daemon never writes after the callee's FIN but opens a new
    connection from port_pc (or, if the INVITE met the closed socket's RST, sends it again
    on one), so the second call completes instead of ending in 408 after 32 s."""
    a, b = registered_pair(ctx)
    call_answered(ctx, a, b)
    peer = (b.pcscf, b.pcscf_ports[0])
    conn = next((f for f in b.flows if f.proto == "tcp" and f.peer == peer), None)
    expect(conn is not None, "bob has no connection from port_pc")
    b.flows.remove(conn)
    conn.sock.close()
    t = time.monotonic()
    size = call_answered(ctx, a, b)
    ctx.world.note("second call answered %.1f s after bob closed" % (time.monotonic() - t))
    check_invite_path(ctx, b, size)
    expect(not any(f is conn for f in b.flows), "the old connection is back")
    deregister_all(ctx, a, b)


def sc_caller_closes(ctx):
    """The caller resets its connection (port_uc -> port_ps) after its INVITE's 100 Trying,
    before the callee answers: the daemon sends the 180 and 200 on a new connection from
    port_pc to the caller's port_us (RFC 3261 18.2.2; the UE's server port, the one it
    listens on), instead of dropping them for want of a connection."""
    a, b = registered_pair(ctx)
    b.auto_answer = False
    flow = a.call_flow()
    invite = a.invite(b, flow)
    call_id = invite.get("call-id")
    a.send(flow, invite)
    expect(ctx.world.wait(lambda: b.held, 10), "bob never got the INVITE")
    expect(ctx.world.wait(lambda: any(r.status == 100 for r in a.responses), 2),
           "no 100 Trying on alice's connection")
    # SO_LINGER 0: closed with RST, as a phone dropping its socket does; no TIME-WAIT, so
    # alice can connect from port_uc again for the ACK.
    a.flows.remove(flow)
    flow.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    flow.sock.close()
    ctx.world.pump(0.3)
    b.auto_answer = True
    b.answer_held()

    def final():
        return next((r for r in a.responses if r.status == 200
                     and r.get("call-id") == call_id), None)

    expect(ctx.world.wait(lambda: final() is not None, 10), "alice never got the 200 OK")
    ok = final()
    a.responses = [r for r in a.responses if r.get("call-id") != call_id]
    proto, peer = ok.arrived_on
    ctx.world.note("200 OK reached alice over %s from %s" % (proto, peer))
    expect(proto == "tcp" and peer == (a.pcscf, a.pcscf_ports[0]),
           "the 200 OK came over %s from %s, not a new connection from port_pc" % (proto, peer))
    a.protected = a.connect(a.port_uc, a.pcscf_ports[1], "tcp")
    bye = a.ack_and_bye(b, a.protected, invite, ok)
    expect(bye.status == 200, "BYE answered %s" % bye.start)
    deregister_all(ctx, a, b)


UDP_FALLBACK_SDP = 700  # bytes of SDP: the forwarded INVITE is 1300-1372 bytes (fits the MTU)


def sc_udp_callee_without_tcp(ctx):
    """RFC 3261 18.1.1: the callee registered over UDP and takes no TCP (its port_us answers
    the SYN with RST). The INVITE the P-CSCF sends over TCP only for its size is retried over
    UDP, since it fits the MTU, instead of failing with 480 at once."""
    a = ctx.ue("alice", 0, transport="udp")
    b = ctx.ue("bob", 1, transport="udp")
    b.tcp_server = False
    for u in (a, b):
        u.register()
        check_registered(ctx, u)
    before = ctx.control("stats")["sip"].get("udp_fallbacks", 0)
    call_answered(ctx, a, b, UDP_FALLBACK_SDP)
    inv = [r for r in b.requests if r.method == "INVITE"][-1]
    proto, peer = inv.arrived_on
    size = len(inv.to_bytes())
    ctx.world.note("INVITE of %d bytes reached bob over %s from %s" % (size, proto, peer))
    expect(size > 1300, "the forwarded INVITE is only %d bytes: it never needed TCP" % size)
    expect(proto == "udp" and peer == (b.pcscf, b.pcscf_ports[0]),
           "INVITE came over %s from %s, not UDP from port_pc" % (proto, peer))
    after = ctx.control("stats")["sip"].get("udp_fallbacks", 0)
    expect(after == before + 1, "udp_fallbacks %d -> %d" % (before, after))
    deregister_all(ctx, a, b)


BIG_ANSWER_SDP = 2800  # bytes of SDP in the callee's 200: the relayed 200 is over 3 KB


def sc_udp_big_response(ctx):
    """Issue 14, "UDP must work too": a UDP-registered caller sends a small INVITE over UDP;
    the callee answers 200 with a large SDP, so the P-CSCF relays a 200 of over 3 KB back over
    UDP through the caller's SAs (a response has no TCP to go over, RFC 3261 18.2.2). It leaves
    as one ESP packet (RFC 4303 3.1.1) in IP fragments; the shim reassembles them before it
    opens the ESP, over IPv4 and IPv6. Before, the daemon refused (and earlier lost) it."""
    for v6 in (False, True):
        a = ctx.ue("big-a", 0, v6=v6, transport="udp")
        b = ctx.ue("big-b", 1, v6=v6, transport="tcp")
        b.answer_sdp_size = BIG_ANSWER_SDP
        for u in (a, b):
            u.register()
            check_registered(ctx, u)
        frags_before = worker_counter(ctx, "tx_fragments")
        with ctx.world.shim.lock:
            reassembled_before = len(ctx.world.shim.reassembled)
        flow = a.protected
        invite = a.invite(b, flow, 200)
        expect(len(invite.to_bytes()) < 1300, "the INVITE itself fits UDP")
        ok = a.transact(flow, invite, timeout=15)
        expect(ok.status == 200, "INVITE answered %s" % ok.start)
        size = len(ok.to_bytes())
        proto, peer = ok.arrived_on
        ctx.world.note("200 OK of %d bytes reached the caller over %s from %s" % (size, proto,
                                                                                  peer))
        expect(size > 3000 and len(ok.body) >= BIG_ANSWER_SDP,
               "the 200 is %d bytes, its SDP %d" % (size, len(ok.body)))
        expect(proto == "udp" and peer == (a.pcscf, a.pcscf_ports[1]),
               "200 came over %s from %s, not UDP from port_ps" % (proto, peer))
        with ctx.world.shim.lock:
            got = ctx.world.shim.reassembled[reassembled_before:]
        expect(any(n > size for n in got),
               "no ESP datagram above the 200's size was reassembled: %s" % got)
        frags = worker_counter(ctx, "tx_fragments") - frags_before
        expect(frags >= 3, "the daemon sent %d fragments" % frags)
        bye = a.ack_and_bye(b, flow, invite, ok)
        expect(bye is not None and bye.status == 200, "BYE answered %s" % (bye and bye.start))
        expect(worker_counter(ctx, "drop_udp_too_large") == 0, "a UDP message was refused")
        deregister_all(ctx, a, b)


def proxy_register(ctx, transport):
    """Proxy mode (run.py --mode proxy, SIPp as the S-CSCF): the UE registers through akagate
    with the S-CSCF's vector - AUTN verified by the UE's own USIM, the SAs built from the CK/IK
    akagate took out of the 401 - then de-registers. run.py checks what SIPp received."""
    u = ctx.ue("proxied", ctx.proxy_sub, transport=transport)
    ok = u.register()
    www = u.last_challenge.get("www-authenticate")
    # Parameter names only: quoted values (the nonce's base64 may hold "ck=") blanked first.
    names = re.findall(r'(?:^|,)\s*(?:Digest\s+)?([A-Za-z-]+)\s*=',
                       re.sub(r'"[^"]*"', '""', www))
    expect(not {n.lower() for n in names} & {"ck", "ik"},
           "the 401 reached the UE with CK/IK: %s" % www)
    expect(u.last_challenge.get("security-server") is not None, "401 without Security-Server")
    expect(ok.all("service-route") == ["<sip:orig@127.0.0.2:5080;lr>"],
           "Service-Route not relayed: %s" % ok.all("service-route"))
    check_registered(ctx, u)
    impus = ctx.registration(u).get("impus", [])
    tel = [i for i in ctx.subs[ctx.proxy_sub]["impu"] if i.startswith("tel:")]
    expect(tel and tel[0] in impus, "P-Associated-URI not taken: %s" % impus)
    u.deregister()
    check_deregistered(ctx, u)
    ctx.done(u)


def sc_proxy_register_tcp(ctx):
    proxy_register(ctx, "tcp")


class FarEnd:
    """A party behind the IMS core (SIPp answers for it)."""

    def __init__(self, impu):
        self.impu = impu


def sc_proxy_calls_tcp(ctx):
    """Proxy mode: a call from the UE out through the core (SIPp answers as the far end,
    TS 24.229 5.2.6) and a call from the core in to the UE (SIPp as the S-CSCF sends the
    INVITE to the UE's contact along the Path akagate put in the REGISTER, TS 24.229 5.2.7):
    both with double Record-Route, ACK and BYE along the recorded routes, the terminating
    INVITE delivered from port_pc to the UE's port_us through the SAs."""
    u = ctx.ue("proxied", ctx.proxy_sub, transport="tcp")
    u.register()
    flow = u.call_flow()
    invite = u.invite(FarEnd("sip:+15559999@ims.mnc001.mcc001.3gppnetwork.org"), flow)
    ok = u.transact(flow, invite, timeout=15)
    expect(ok.status == 200, "outgoing INVITE answered %s" % ok.start)
    # RFC 5658 double record-routing, as the caller's route set reads it (RFC 3261 12.1.2:
    # the Record-Route in reverse): akagate's access side first, then its core side.
    route_set = list(reversed([e.strip() for v in ok.all("record-route") for e in v.split(",")]))
    # With slowpath shards both entries also name the shard that owns the dialog (the same
    # one: `;agshard=<hh>`, docs/ARCHITECTURE.md "Slowpath shards").
    tags = [re.findall(r";agshard=([0-9a-f]{2})", e) for e in route_set[:2]]
    expect(len(tags) == 2 and tags[0] == tags[1],
           "the two Record-Route entries name different shards: %s" % route_set)
    plain = [re.sub(r";agshard=[0-9a-f]{2}", "", e) for e in route_set[:2]]
    expect(plain == ["<sip:%s:%d;lr>" % (u.pcscf, u.pcscf_ports[1]),
                     "<sip:127.0.0.1:5070;lr>"],
           "the caller's route set does not start at akagate's access then core side: %s"
           % route_set)
    bye = u.ack_and_bye(None, flow, invite, ok)
    expect(bye.status == 200, "BYE answered %s" % bye.start)
    regs = [m for m in scscf_received(ctx.scscf_log) if m.method == "REGISTER"
            and u.ip in (m.all("via") or [""])[-1]]
    expect(regs, "no REGISTER of this UE at the S-CSCF")
    path = regs[-1].get("path")
    before = len([r for r in u.requests if r.method == "INVITE"])
    status = run_terminating_call(ctx.daemon_netns, "127.0.0.1:5070", u, path,
                                  os.path.dirname(ctx.scscf_log), ctx.world.pump)
    expect(status == 0, "SIPp's terminating call failed (status %d)" % status)
    invites = [r for r in u.requests if r.method == "INVITE"]
    expect(len(invites) == before + 1, "the UE got %d INVITEs" % (len(invites) - before))
    proto, peer = invites[-1].arrived_on
    expect(proto == "tcp" and peer == (u.pcscf, u.pcscf_ports[0]),
           "terminating INVITE came over %s from %s, not TCP from port_pc" % (proto, peer))
    expect(any(r.method == "BYE" for r in u.requests), "the UE never got the BYE")
    u.deregister()
    check_deregistered(ctx, u)
    ctx.done(u)


def fnv1a_shard(data, shards):
    """FNV-1a of `data` (lower-cased ASCII) modulo `shards`: the slowpath's shard rule for a
    name, and for an address's bytes when nothing else names the shard."""
    h = 0xcbf29ce484222325
    for b in data.lower():
        h = ((h ^ b) * 0x100000001b3) % (1 << 64)
    return h % max(shards, 1)


def send_in_netns(netns, peer, msg, source=None):
    """Sends `msg` over a new TCP connection from the namespace `netns` (from address
    `source` if given) to `peer` and returns the first response (None without one within
    5 s)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    try:
        setns("/var/run/netns/" + netns)
        s = socket.create_connection(peer, timeout=5,
                                     source_address=(source, 0) if source else None)
    finally:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.setns(home, CLONE_NEWNET)
        os.close(home)
    with s:
        s.sendall(msg.to_bytes())
        framer = sip.Framer()
        end = time.monotonic() + 5
        while time.monotonic() < end:
            data = s.recv(65535)
            if not data:
                return None
            for m in framer.feed(data):
                if not m.is_request():
                    return m
    return None


def sc_proxy_network_deregister(ctx):
    """Proxy mode: akagate subscribes to the UE's reg event at the S-CSCF after its first
    200 (TS 24.229 5.2.3); the S-CSCF (SIPp) then deactivates the UE's contact in a NOTIFY,
    and akagate removes the registration and its SAs at once (5.2.5.1)."""
    u = ctx.ue("proxied", ctx.proxy_sub, transport="tcp")
    u.register()
    check_registered(ctx, u)
    expect(ctx.world.wait(lambda: any(
        m.method == "SUBSCRIBE" for m in scscf_received(ctx.scscf_log)), 2),
        "akagate never subscribed to the reg event")
    s = [m for m in scscf_received(ctx.scscf_log) if m.method == "SUBSCRIBE"][-1]
    expect(s.start.split()[1] == u.impu, "SUBSCRIBE is for %s, not the UE's IMPU" % s.start)
    expect(s.get("event") == "reg", "SUBSCRIBE Event %r" % s.get("event"))
    expect(s.get("p-asserted-identity") == "<sip:127.0.0.1:5070>",
           "SUBSCRIBE asserts %r, not the P-CSCF" % s.get("p-asserted-identity"))
    before = ctx.control("stats")["sip"].get("core_deregistrations", 0)
    # The NOTIFY goes in akagate's subscription dialog, whose Call-ID SIPp's UAC cannot take
    # from an injection file (it matches responses by its own Call-ID), so the harness
    # writes it on a kernel TCP socket in the daemon's namespace.
    body = ('<?xml version="1.0"?>\n<reginfo xmlns="urn:ietf:params:xml:ns:reginfo" '
            'version="1" state="full">\n<registration aor="%s" id="a1" state="terminated">\n'
            '<contact id="c1" state="terminated" event="deactivated"><uri>sip:%s@%s:%d</uri>'
            '</contact>\n</registration>\n</reginfo>\n'
            % (u.impu, u.user, sip.host(u.ip), u.port_us)).encode()
    notify = sip.request("NOTIFY", s.get("contact").strip("<>"), [
        ("Via", "SIP/2.0/TCP 127.0.0.2:5083;branch=z9hG4bK%s" % sip.token()),
        ("Max-Forwards", "70"), ("From", "<%s>;tag=regsubd" % u.impu),
        ("To", s.get("from")), ("Call-ID", s.get("call-id")), ("CSeq", "2 NOTIFY"),
        ("Event", "reg"), ("Subscription-State", "terminated;reason=noresource"),
        ("Content-Type", "application/reginfo+xml")], body)
    # From a core address that hashes to another shard than the UE's: the NOTIFY must find
    # the shard that subscribed by the Request-URI (our Contact), not by where it comes from.
    ue_shard = fnv1a_shard(u.impi.encode(), ctx.shards)
    source = next("127.0.0.%d" % k for k in range(3, 250)
                  if ctx.shards == 1
                  or fnv1a_shard(bytes([127, 0, 0, k]), ctx.shards) != ue_shard)
    answer = send_in_netns(ctx.daemon_netns, ("127.0.0.1", 5070), notify, source)
    expect(answer is not None and answer.status == 200,
           "the NOTIFY was answered %s" % (answer and answer.start))
    check_deregistered(ctx, u)
    after = ctx.control("stats")["sip"].get("core_deregistrations", 0)
    expect(after == before + 1, "core_deregistrations %d -> %d" % (before, after))
    ctx.world.shim.clear(u.ip)
    ctx.done(u)
def unprotected_register(u):
    """`u`'s unprotected REGISTER with an empty Authorization (step 1); its final answer."""
    u.new_sec_params()
    authz = ('Digest username="%s", realm="%s", nonce="", uri="sip:%s", response=""'
             % (u.impi, u.domain, u.domain))
    unprot = u.connect(0, 5060, u.transport)
    r = u.transact(unprot, u.register_request(unprot, 600, authz))
    u.flows.remove(unprot)
    unprot.sock.close()
    return r


def sc_challenge_hijack(ctx):
    """Issue 14: a stranger sends REGISTERs naming the victim's IMPI from another address,
    between the victim's 401 and its protected REGISTER and once it is registered. The
    victim's challenge stays (its protected REGISTER gets 200), the stranger learns the same
    nonce (the unanswered vector is reused, no SQN spent), and the daemon keeps showing the
    victim's address for its registration."""
    victim = ctx.ue("victor", 2)
    stranger = ctx.ue("mallory", 2)
    victim.open_server_ports()
    r = unprotected_register(victim)
    expect(r.status == 401, "victim's REGISTER answered %s" % r.start)
    before = ctx.control("stats")["sip"].get("vectors_reused", 0)
    r2 = unprotected_register(stranger)
    expect(r2.status == 401, "stranger's REGISTER answered %s" % r2.start)
    nonce = lambda m: sip.challenge(m.get("www-authenticate"))[0]["nonce"]
    expect(nonce(r2) == nonce(r), "the stranger got another vector: an SQN spent")
    after = ctx.control("stats")["sip"].get("vectors_reused", 0)
    expect(after == before + 1, "vectors_reused %d -> %d" % (before, after))
    victim.answer_challenge(r, 600)
    check_registered(ctx, victim)
    r3 = unprotected_register(stranger)
    expect(r3.status == 401, "stranger's second REGISTER answered %s" % r3.start)
    check_registered(ctx, victim)
    reg = ctx.registration(victim)
    expect(reg is not None, "the registration no longer shows the victim's address")
    victim.deregister()
    check_deregistered(ctx, victim)
    ctx.done(victim, stranger)


def sc_proxy_emergency(ctx):
    """Emergency calls in proxy mode (TS 24.229 5.2.10): a registered UE's INVITE to
    urn:service:sos goes through its SAs to the E-CSCF (a second SIPp), not along its
    Service-Route, with the identity akagate asserts; an unregistered UE's emergency INVITE on
    the unprotected port goes there too (anonymous-emergency = true), with no identity; both
    are answered, ACKed and ended with BYE."""
    u = ctx.ue("sos", ctx.proxy_sub, transport="tcp")
    u.register()
    flow = u.call_flow()
    invite = u.invite(FarEnd("urn:service:sos"), flow)
    invite.start = "INVITE urn:service:sos SIP/2.0"
    ok = u.transact(flow, invite, timeout=15)
    expect(ok.status == 200, "emergency INVITE answered %s" % ok.start)
    bye = u.ack_and_bye(None, flow, invite, ok)
    expect(bye.status == 200, "BYE answered %s" % bye.start)
    got = [m for m in scscf_received(ctx.ecscf_log) if m.method == "INVITE"]
    expect(got and got[-1].start.startswith("INVITE urn:service:sos "),
           "the E-CSCF never got the emergency INVITE")
    expect(got[-1].get("p-asserted-identity") == "<%s>" % u.impu,
           "emergency INVITE asserts %r" % got[-1].get("p-asserted-identity"))
    expect(not any(m.get("call-id") == invite.get("call-id")
                   for m in scscf_received(ctx.scscf_log)),
           "the emergency INVITE went to the S-CSCF")
    u.deregister()
    check_deregistered(ctx, u)
    ctx.done(u)
    # A UE that is not registered (no SAs): over TCP to port 5060.
    a = ctx.ue("anon-sos", 1, transport="tcp")
    a.open_server_ports()
    flow = a.connect(0, 5060, "tcp")
    a.pcscf_ports, a.service_routes = (5060, 5060), []
    inv = a.invite(FarEnd("urn:service:sos"), flow)
    inv.start = "INVITE urn:service:sos SIP/2.0"
    inv.headers = [(n, v) for n, v in inv.headers if n.lower() not in (
        "route", "security-verify", "require", "proxy-require")]
    a.sec_agree_headers = lambda: []
    ok = a.transact(flow, inv, timeout=15)
    expect(ok.status == 200, "anonymous emergency INVITE answered %s" % ok.start)
    bye = a.ack_and_bye(None, flow, inv, ok)
    expect(bye.status == 200, "anonymous BYE answered %s" % bye.start)
    got = [m for m in scscf_received(ctx.ecscf_log) if m.method == "INVITE"][-1]
    expect(got.get("call-id") == inv.get("call-id"), "the E-CSCF never got it")
    expect(got.get("p-asserted-identity") is None and got.get("p-preferred-identity") is None,
           "an identity was passed on for an unauthenticated caller")
    stats = ctx.control("stats")["sip"]
    expect(stats.get("emergency_sessions", 0) >= 2, "emergency_sessions %s" % stats)
    ctx.done(a)
# -- hostile packets through the whole daemon ------------------------------------------------

REPLAY_WINDOW = 1984  # fastpath/src/esp/replay.rs: 32 words of 64 bits, less one word


def esp_null_sha1(u, src, sa_ports, inner, proto, seq, spi=None, pad=None, next_header=None,
                  tamper=False, sa_set=None):
    """An ESP packet (RFC 4303, transport mode) built by hand under the UE's outbound SA for
    `sa_ports` (hmac-sha-1-96 with null encryption, so every field can be set wrong on
    purpose): `inner` is the transport header and data, `pad` the padding bytes (RFC 4303
    2.4: 1, 2, 3, ... unless given), `next_header` the trailer's protocol."""
    sa = (sa_set or u.sa).out[sa_ports]
    if pad is None:
        n = -(len(inner) + 2) % 4
        pad = bytes(range(1, n + 1))
    body = struct.pack("!II", spi if spi is not None else sa.spi, seq) + inner + pad + bytes(
        [len(pad), proto if next_header is None else next_header])
    icv = hmac.new(sa.auth_key, body, hashlib.sha1).digest()[:12]
    if tamper:
        icv = icv[:-1] + bytes([icv[-1] ^ 1])
    return IP(src=src, dst=u.pcscf, proto=50) / Raw(body + icv)


def udp_segment(src, dst, sport, dport, data):
    """A UDP header and `data` with the checksum over the pseudo header of src/dst."""
    return raw_bytes(IP(src=src, dst=dst) / UDP(sport=sport, dport=dport) / Raw(data))[20:]


def raw_bytes(pkt):
    return bytes(pkt)


def next_seq(ctx, u, ports, jump=1):
    """The next sequence number of the UE's SA for `ports`, shared with the shim's own use."""
    with ctx.world.shim.lock:
        u.sa.seq[ports] += jump
        return u.sa.seq[ports]


def udp_sip(u, text, timeout=3.0):
    """Sends `text` in clear over UDP from the UE's address to the SIP port; the answer's
    start line, or None."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((u.ip, 0))
    s.settimeout(timeout)
    s.sendto(text, (u.pcscf, 5060))
    try:
        data = s.recv(65535)
        return data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    except socket.timeout:
        return None
    finally:
        s.close()


def tcp_sip(u, data):
    """Sends `data` in clear over a TCP connection from the UE's address to the SIP port; what
    came back first: the answer's start line, "" if the daemon closed or reset the connection
    without a word, None if nothing came."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((u.ip, 0))
    s.settimeout(3.0)
    s.connect((u.pcscf, 5060))
    try:
        s.sendall(data)
        return s.recv(65535).split(b"\r\n", 1)[0].decode("utf-8", "replace")
    except ConnectionResetError:
        return ""
    except (socket.timeout, BrokenPipeError):
        return None
    finally:
        s.close()


def tcp_sip_reset(u, data):
    """True if the daemon reset the TCP connection `data` was sent on (and said nothing)."""
    return tcp_sip(u, data) == ""


def options(u, branch, extra=""):
    return ("OPTIONS sip:%s SIP/2.0\r\nVia: SIP/2.0/UDP %s:%d;branch=z9hG4bK%s;rport\r\n"
            "Max-Forwards: 70\r\nFrom: <%s>;tag=h1\r\nTo: <%s>\r\nCall-ID: %s@%s\r\n"
            "CSeq: 1 OPTIONS\r\n%sContent-Length: 0\r\n\r\n" % (
                u.domain, u.ip, u.port_uc, branch, u.impu, u.impu, branch, u.ip,
                extra)).encode()


def sc_hostile(ctx):
    """Hostile packets through the whole daemon, each with its exact outcome: ESP with a wrong
    ICV, a replayed and a too-old sequence number, an unknown SPI, truncated, with bad padding
    or a wrong next header, ESP carrying the unprotected port, clear TCP to the protected port,
    one UE's packet through another UE's SA, a spoofed source, a SYN flood from one address,
    then SIP over the unprotected port with an absurd Content-Length, a header flood, a
    64 KiB+ message, too many headers and a NUL byte, and a wrong Security-Verify.
    Each is dropped and counted or answered with its SIP error; the registered UEs keep
    calling and a new UE still registers afterwards (docs/OPERATIONS.md, hostile packets)."""
    pair = ((SHA1, "null"),)
    a = ctx.ue("mallory", 0, offers=pair)
    b = ctx.ue("trent", 1, offers=pair)
    a.register()
    b.register()
    inject = ctx.world.shim.inject
    ports = (a.port_uc, a.pcscf_ports[1])
    opts = options(a, "hostile")
    inner = udp_segment(a.ip, a.pcscf, a.port_uc, a.pcscf_ports[1], opts)

    def outcome(name, counter, send, n=1):
        before = worker_counter(ctx, counter)
        send()
        ok = ctx.world.wait(lambda: worker_counter(ctx, counter) >= before + n, 2)
        after = worker_counter(ctx, counter)
        expect(ok and after == before + n, "%s: %s %d -> %d, not +%d" % (
            name, counter, before, after, n))
        ctx.world.note("%-28s -> %s +%d" % (name, counter, n))

    # A valid packet first: the SA takes it (the OPTIONS is answered over the SA).
    esp_in = worker_counter(ctx, "esp_in")
    good = esp_null_sha1(a, a.ip, ports, inner, 17, next_seq(ctx, a, ports))
    inject(good)
    expect(ctx.world.wait(lambda: worker_counter(ctx, "esp_in") > esp_in, 2),
           "a valid hand-made ESP packet was not taken")
    outcome("wrong ICV", "drop_esp_invalid", lambda: inject(
        esp_null_sha1(a, a.ip, ports, inner, 17, next_seq(ctx, a, ports), tamper=True)))
    outcome("replayed sequence number", "drop_esp_invalid", lambda: inject(good))
    jumped = esp_null_sha1(a, a.ip, ports, inner, 17,
                           next_seq(ctx, a, ports, REPLAY_WINDOW + 100))
    outcome("sequence number jump (valid)", "esp_in", lambda: inject(jumped))
    outcome("too-old sequence number", "drop_esp_invalid", lambda: inject(
        esp_null_sha1(a, a.ip, ports, inner, 17, next_seq(ctx, a, ports) - REPLAY_WINDOW - 50)))
    outcome("unknown SPI", "drop_esp_unknown_spi", lambda: inject(
        esp_null_sha1(a, a.ip, ports, inner, 17, next_seq(ctx, a, ports), spi=0x7fff_fff0)))
    outcome("truncated ESP", "drop_esp_invalid", lambda: inject(
        IP(src=a.ip, dst=a.pcscf, proto=50) / Raw(raw_bytes(good[Raw])[:14])))
    outcome("ESP header cut short", "drop_ip_malformed", lambda: inject(
        IP(src=a.ip, dst=a.pcscf, proto=50) / Raw(raw_bytes(good[Raw])[:6])))
    outcome("bad padding", "drop_esp_invalid", lambda: inject(
        esp_null_sha1(a, a.ip, ports, inner + b"\0", 17, next_seq(ctx, a, ports),
                      pad=b"\x07")))
    outcome("wrong next header", "drop_esp_selector", lambda: inject(
        esp_null_sha1(a, a.ip, ports, inner, 17, next_seq(ctx, a, ports), next_header=47)))
    to_5060 = udp_segment(a.ip, a.pcscf, a.port_uc, 5060, opts)
    outcome("ESP to the unprotected port", "drop_esp_selector", lambda: inject(
        esp_null_sha1(a, a.ip, ports, to_5060, 17, next_seq(ctx, a, ports))))
    outcome("clear TCP to port_ps", "drop_clear_to_protected", lambda: inject(
        IP(src=a.ip, dst=a.pcscf) / TCP(sport=a.port_uc, dport=a.pcscf_ports[1], flags="S")))
    b_ports = (b.port_uc, b.pcscf_ports[1])
    b_inner = udp_segment(a.ip, a.pcscf, b.port_uc, b.pcscf_ports[1], options(b, "notme"))
    outcome("A's packet through B's SA", "drop_esp_address", lambda: inject(
        esp_null_sha1(b, a.ip, b_ports, b_inner, 17, next_seq(ctx, b, b_ports))))
    spoof = "10.0.1.250"
    outcome("spoofed source, A's SA", "drop_esp_address", lambda: inject(
        esp_null_sha1(a, spoof, ports, inner, 17, next_seq(ctx, a, ports))))
    # Six SYNs from one (spoofed) address to the SIP port: four half-open connections, the
    # rest dropped unanswered ([sip-limits] max-connections-per-source = 4).
    flooder = "10.0.1.251"
    outcome("SYN flood from one address", "drop_sip_conn_per_source", lambda: [inject(
        IP(src=flooder, dst=a.pcscf) / TCP(sport=30000 + i, dport=5060, flags="S", seq=1))
        for i in range(6)], n=2)
    # SIP over the unprotected port: framing errors reset the connection (RFC 3261 18.3).
    absurd = opts.replace(b"Content-Length: 0", b"Content-Length: 99999999999")
    outcome("absurd Content-Length (TCP)", "drop_framing",
            lambda: expect(tcp_sip_reset(a, absurd), "absurd Content-Length not reset"))
    flood = opts.replace(b"CSeq:", b"".join(b"X-Flood-%d: x\r\n" % i for i in range(2000))
                         + b"CSeq:")
    outcome("header flood (TCP, 30 KB)", "drop_framing",
            lambda: expect(tcp_sip_reset(a, flood), "header flood not reset"))
    big = opts.replace(b"Content-Length: 0", b"Content-Length: 70000") + b"x" * 70000
    outcome("64 KiB+ message (TCP)", "drop_framing",
            lambda: expect(tcp_sip_reset(a, big), "70 KB message not reset"))
    many = opts.replace(b"CSeq:", b"".join(b"X%d:x\r\n" % i for i in range(300)) + b"CSeq:")
    answer = tcp_sip(a, many.replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
    expect(answer == "SIP/2.0 400 Bad Request: too many headers",
           "300 headers answered %r" % answer)
    ctx.world.note("%-28s -> %s" % ("300 headers (TCP, 3 KB)", answer))
    nul = opts.replace(b"Max-Forwards: 70", b"Max-Forwards: 70\r\nSubject: a\0b")
    answer = udp_sip(a, nul)
    expect(answer == "SIP/2.0 400 Bad Request: NUL byte in a header",
           "NUL byte answered %r" % answer)
    ctx.world.note("%-28s -> %s" % ("NUL byte in a header (UDP)", answer))
    # A refresh over A's SAs whose Security-Verify is not the Security-Server sent
    # (RFC 3329 2.3.1): refused, A's registration untouched.
    bad_verify = a.security_server.replace("port-s=", "port-s=1")
    r = a.transact(a.protected, a.register_request(a.protected, 600, a.authorization(),
                                                   bad_verify))
    expect(r.start == "SIP/2.0 403 Security-Verify mismatch",
           "a wrong Security-Verify answered %r" % r.start)
    check_registered(ctx, a)
    ctx.world.note("%-28s -> %s" % ("wrong Security-Verify", r.start))
    # Nobody was hurt: the registered UEs call, a new UE registers.
    with ctx.world.shim.lock:
        a.sa.seq[ports] += REPLAY_WINDOW  # past everything injected above
    size, ok, bye = a.call(b)
    expect(ok.status == 200 and bye is not None and bye.status == 200,
           "call after the hostile packets failed")
    c = ctx.ue("walter", 2)
    c.register()
    check_registered(ctx, c)
    deregister_all(ctx, a, b, c)


def kill_and_restart(ctx):
    """kill -9 the daemon and start it again on the same files (run.py does it); returns the
    milliseconds until the new daemon's control socket answered."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(30)
        s.connect(ctx.restart_socket)
        s.sendall(b"kill9\n")
        reply = s.recv(256).decode().strip()
    expect(reply.startswith("ok "), "the daemon did not restart: %s" % reply)
    return int(reply.split()[1])


def drop_broken_connections(u):
    """The P-CSCF's TCP connections died with its process: the phone drops its ends without
    a FIN (SO_LINGER 0, so no TIME-WAIT holds port_uc) and keeps its SAs, sockets for UDP and
    listeners; its next request opens a new connection from port_uc to port_ps."""
    for f in [f for f in u.flows if f.proto == "tcp"]:
        f.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        f.sock.close()
        u.flows.remove(f)
    if u.protected is not None and u.protected.proto == "tcp":
        u.protected = u.connect(u.port_uc, u.pcscf_ports[1], "tcp")


def sc_callee_deregisters_in_call(ctx):
    """TS 24.229 5.2.8.1.2: alice calls bob (answered and ACKed) and bob de-registers while
    the call is up; the P-CSCF releases the dialog: alice gets a BYE over her SAs with
    `Reason: SIP;cause=480`, and answers it. With two slowpath shards, alice and bob
    (subscribers 0 and 1) are registered on different shards: the shard that owns the call
    (alice's) learns of bob's de-registration from bob's shard."""
    a, b = registered_pair(ctx)
    flow = a.call_flow()
    invite = a.invite(b, flow, LARGE_INVITE)
    call_id = invite.get("call-id")
    ok = a.transact(flow, invite, timeout=15)
    expect(ok.status == 200, "INVITE answered %s" % ok.start)
    a.send(flow, a.in_dialog(flow, invite, ok, "ACK", 1))
    expect(ctx.world.wait(lambda: any(
        r.method == "ACK" and r.get("call-id") == call_id for r in b.requests), 5),
        "bob never got the ACK")
    seen = len(a.requests)
    b.deregister()
    check_deregistered(ctx, b)
    ctx.done(b)

    def byes():
        return [r for r in a.requests[seen:] if r.method == "BYE" and r.get("call-id") == call_id]
    expect(ctx.world.wait(lambda: byes(), 5), "alice got no BYE after bob de-registered")
    reason = byes()[0].get("reason") or ""
    expect("cause=480" in reason, "the BYE's Reason is %r" % reason)
    ctx.world.pump(0.3)
    released = ctx.control("stats")["sip"].get("dialogs_released", 0)
    expect(released >= 1, "dialogs_released is %d" % released)
    deregister_all(ctx, a)


def sc_restart_keeps_registration(ctx):
    """Issue 14: two phones register (UDP and TCP) and call; the daemon is killed with
    SIGKILL and started again. Without registering again, over the SAs they already hold:
    the daemon shows both registered with the same sets; the UDP phone calls the TCP phone
    (INVITE in through its spi_ps, out to the callee on a new connection from port_pc), the
    TCP phone calls back on a new connection from port_uc, and both re-register (the
    re-REGISTER through the restored SAs is challenged, the new set completes)."""
    a = ctx.ue("alice", 0, transport="udp")
    b = ctx.ue("bob", 1, transport="tcp")
    for u in (a, b):
        u.register()
        check_registered(ctx, u)
    call_answered(ctx, a, b)
    before = {u.name: (ctx.active_set(u)["spi_pc"], ctx.active_set(u)["spi_ps"]) for u in (a, b)}
    shim = ctx.world.shim
    with shim.lock:
        seqs_before = {spi: list(shim.in_seqs.get(spi, [])) for u in (a, b)
                       for spi in (u.spi_uc, u.spi_us)}
    ms = kill_and_restart(ctx)
    stats = ctx.control("stats")
    restored = stats["slowpath"]["registrations_restored"]
    ctx.world.note("daemon restarted in %d ms, %d registration(s) restored" % (ms, restored))
    expect(restored >= 2, "only %d registration(s) restored" % restored)
    for u in (a, b):
        check_registered(ctx, u)
        now = (ctx.active_set(u)["spi_pc"], ctx.active_set(u)["spi_ps"])
        expect(now == before[u.name], "%s: the set changed: %s -> %s" % (u.name, before[u.name],
                                                                         now))
    for u in (a, b):
        drop_broken_connections(u)
    call_answered(ctx, a, b)
    call_answered(ctx, b, a)
    # RFC 4303 3.3.3: the restarted daemon's ESP sequence numbers lie beyond everything the
    # killed one sent under the same keys (its restart epoch), none repeated.
    with shim.lock:
        for spi, old in seqs_before.items():
            new = shim.in_seqs.get(spi, [])[len(old):]
            expect(new, "nothing received under SPI %#x after the restart" % spi)
            expect(min(new) > max(old or [0]), "SPI %#x: sequence numbers %s after %s" % (
                spi, new[:3], old[-3:]))
        expect(not shim.counters.get("in_seq_reused"), "a sequence number came twice")
    ctx.world.note("ESP sequence numbers after the restart start at %d" % min(
        shim.in_seqs[a.spi_uc][len(seqs_before[a.spi_uc]):]))
    for u in (a, b):
        u.reregister(new_ports=False)
        check_registered(ctx, u)
    call_answered(ctx, b, a)
    deregister_all(ctx, a, b)


def store_sqn_lines(path):
    """The SQN records' lines in the registration store's log at `path` (src/daemon/store/
    log.rs: a 16-byte magic, then `len:u32le crc:u32le body`, body = kind, key_len:u16le,
    key, value); reading stops at the first record that does not check (a torn tail)."""
    with open(path, "rb") as f:
        data = f.read()
    if not data.startswith(b"akagate-reglog1\n"):
        return []
    at, lines = 16, []
    while at + 8 <= len(data):
        length, crc = struct.unpack_from("<II", data, at)
        body = data[at + 8:at + 8 + length]
        if length < 3 or len(body) != length or zlib.crc32(body) != crc:
            break
        key_len = struct.unpack_from("<H", body, 1)[0]
        key, value = body[3:3 + key_len], body[3 + key_len:]
        if body[0:1] == b"P" and key.startswith(b"\0sqn "):
            lines.append(value.decode("utf-8", "replace"))
        at += 8 + length
    return lines


def sc_kill9_mid_registrations(ctx):
    """Issue 14: phones register one after another (INTEROP_KILL9_REGISTRATIONS, 40, over the
    five subscribers) and the daemon is killed with SIGKILL halfway, while one registration is
    in flight, then started again. No SQN is ever reused: each USIM accepts only SQNs strictly
    greater than every one it accepted before, across the restart, and refuses none as stale
    (SEQ not above SEQ_MS(IND): what a reused SQN would be; subscriber 4's network SQN is
    provisioned beyond the USIM's delta, so it resynchronises as out of range, also again
    after the restart, since the HSS starts from max(provisioned, stored)); every phone registered before the
    kill is restored; the subscriber file, the SQN state and its journal parse afterwards."""
    n = int(os.environ.get("INTEROP_KILL9_REGISTRATIONS", "40"))
    subs = len(ctx.subs)
    usims = [ctx.usim(i) for i in range(subs)]
    marks = [(len(u.accepted), u.stale) for u in usims]
    state = {"done": 0, "killed": threading.Event(), "before_kill": set(), "ms": None}

    def killer():
        while state["done"] < n // 2:
            time.sleep(0.01)
        # In the middle of the next registration (its REGISTER or its 401 on the way).
        time.sleep(0.02)
        state["before_kill"] = set(state["registered"])
        state["ms"] = kill_and_restart(ctx)
        state["killed"].set()

    state["registered"] = set()
    t = threading.Thread(target=killer, daemon=True)
    t.start()
    failed = 0
    for i in range(n):
        u = ctx.ue("kill9-%d" % i, i % subs, v6=True, transport="udp")
        try:
            u.register()
            state["registered"].add(i % subs)
        except Exception as e:  # the registration the kill cut short
            failed += 1
            ctx.world.note("registration %d failed across the kill: %s" % (i, e))
        ctx.world.shim.clear(u.ip)
        ctx.done(u)
        state["done"] += 1
    t.join(30)
    expect(state["killed"].is_set(), "the daemon was never killed")
    ctx.world.note("%d registrations, %d cut short by the kill; restarted in %d ms" % (
        n, failed, state["ms"]))
    expect(failed <= 2, "%d registrations failed" % failed)
    for i, u in enumerate(usims):
        new = u.accepted[marks[i][0]:]
        expect(all(b > a for a, b in zip(u.accepted, u.accepted[1:])),
               "subscriber %d: SQNs not strictly increasing: %s" % (i, u.accepted[-6:]))
        expect(u.stale == marks[i][1], "subscriber %d: %d stale challenge(s)" % (
            i, u.stale - marks[i][1]))
        expect(new, "subscriber %d never registered" % i)
    restored = ctx.control("stats")["slowpath"]["registrations_restored"]
    expect(restored >= len(state["before_kill"]), "%d restored, %d registered before" % (
        restored, len(state["before_kill"])))
    # The files parse, and the SQN state covers every SQN a USIM accepted.
    work = os.path.dirname(ctx.control_path)
    with open(os.path.join(work, "subscribers.toml"), "rb") as f:
        expect(len(tomllib.load(f)["subscriber"]) == subs, "subscriber file changed")
    # With slowpath shards each shard k >= 1 keeps its IMPIs' state in
    # subscribers.toml.sqn-state.shard<k> (and its journal) beside shard 0's.
    sqn_state = {}
    base = os.path.join(work, "subscribers.toml.sqn-state")
    shards = [base] + sorted(os.path.join(work, n) for n in os.listdir(work)
                             if re.fullmatch(r"subscribers\.toml\.sqn-state\.shard\d+", n))
    for path in shards:
        with open(path, "rb") as f:
            for k, v in tomllib.load(f).items():
                sqn_state[k] = max(sqn_state.get(k, 0), int(v, 16))
        with open(path + ".journal") as f:
            for line in f:
                fields = line.split()
                if len(fields) == 2:  # a line torn by a crash is no record (never fsynced)
                    sqn_state[fields[1]] = max(sqn_state.get(fields[1], 0),
                                               int(fields[0], 16))
    # A group commit with a registration store puts the batch's SQNs in the store's log
    # (one fdatasync for both; docs/ARCHITECTURE.md, "SQN group commit"): puts keyed
    # "\0sqn <impi>" whose value is the journal's line. The next start folds them in.
    for n in os.listdir(work):
        if re.fullmatch(r"subscribers\.toml\.registrations(\.shard\d+)?", n):
            for line in store_sqn_lines(os.path.join(work, n)):
                fields = line.split()
                if len(fields) == 2:
                    sqn_state[fields[1]] = max(sqn_state.get(fields[1], 0),
                                               int(fields[0], 16))
    for i, u in enumerate(usims):
        impi = ctx.subs[i]["impi"]
        expect(sqn_state.get(impi, -1) >= max(u.accepted),
               "%s: SQN state %s below an accepted SQN %x" % (impi, sqn_state.get(impi), max(
                   u.accepted)))


SCENARIOS = [
    # (name, function, in the default run)
    ("tcp-v4", sc_tcp_v4, True),
    ("udp-v4", sc_udp_v4, True),
    ("tcp-v6", sc_tcp_v6, True),
    ("udp-v6", sc_udp_v6, True),
    ("algorithms", sc_algorithms, True),
    ("resync", sc_resync, True),
    ("resync-network-ahead", sc_resync_network_ahead, True),
    ("resync-udp-401-lost", sc_resync_udp_401_lost, True),
    ("reregister-new-ports", sc_reregister_new_ports, True),
    ("reregister-udp-v6", sc_reregister_udp_v6, True),
    # Was KNOWN_FAILURES.md 1 (the 401 left under the pending SAs); fixed in the fast path's
    # egress, which keeps the old set until the new one has carried traffic.
    ("reregister-same-ports", sc_reregister_same_ports, True),
    ("protection", sc_protection, True),
    ("mac-failure", sc_mac_failure, True),
    ("udp-call-v4", sc_udp_call_v4, True),
    ("udp-call-v6", sc_udp_call_v6, True),
    ("unannounced-udp-v4", sc_unannounced_udp_v4, True),
    ("unannounced-udp-v6", sc_unannounced_udp_v6, True),
    ("gcm-null", sc_gcm_null, True),
    ("no-sec-agree", sc_no_sec_agree, True),
    ("tls", sc_tls, True),
    ("callee-closes", sc_callee_closes, True),
    ("reboot-same-ports", sc_reboot_same_ports, True),
    ("caller-closes", sc_caller_closes, True),
    ("udp-callee-without-tcp", sc_udp_callee_without_tcp, True),
    ("udp-big-response", sc_udp_big_response, True),
    ("pipelined", sc_pipelined, True),
    # Proxy mode only (run.py --mode proxy).
    ("proxy-register-tcp", sc_proxy_register_tcp, False),
    ("proxy-calls-tcp", sc_proxy_calls_tcp, False),
    ("proxy-network-deregister", sc_proxy_network_deregister, False),
    ("proxy-emergency", sc_proxy_emergency, False),
    # Routed mode only (run.py --mode routed).
    ("routed", sc_routed, False),
    ("challenge-hijack", sc_challenge_hijack, True),
    ("hostile", sc_hostile, True),
    ("callee-deregisters-in-call", sc_callee_deregisters_in_call, True),
    ("restart-keeps-registration", sc_restart_keeps_registration, True),
    ("kill9-mid-registrations", sc_kill9_mid_registrations, True),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wire-netns", required=True)
    ap.add_argument("--wire-if", required=True)
    ap.add_argument("--control", required=True)
    ap.add_argument("--subscribers", required=True)
    ap.add_argument("--scenario", action="append", default=[])
    ap.add_argument("--skip", action="append", default=[], help="leave these scenarios out")
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--restart-socket", help="run.py's socket that kill -9s and restarts the daemon")
    ap.add_argument("--daemon-netns", help="proxy mode: where SIPp runs")
    ap.add_argument("--scscf-log", help="proxy mode: SIPp's message trace of the S-CSCF")
    ap.add_argument("--ecscf-log", help="proxy mode: SIPp's message trace of the E-CSCF")
    ap.add_argument("--shards", type=int, default=1, help="the daemon's slowpath shards")
    ap.add_argument("--proxy-subscriber", type=int, default=0,
                    help="proxy mode: the subscriber SIPp serves (index in --subscribers)")
    ap.add_argument("--via", action="append", default=[],
                    help="routed mode: the router the UEs reach the P-CSCF of its family "
                    "through (one per family)")
    args = ap.parse_args()

    n = check_vectors(os.path.join(HERE, "fixtures", "milenage_ts35208.json"))
    print("interop: Milenage agrees with %d TS 35.208 test sets" % n)
    with open(args.subscribers, "rb") as f:
        subs = tomllib.load(f)["subscriber"]

    wire, mac = open_wire(args.wire_netns, args.wire_if)
    tun = open_tun(TUN)
    ip("link", "set", TUN, "up", "mtu", str(TUN_MTU))
    ip("route", "add", PCSCF_V4 + "/32", "dev", TUN)
    ip("-6", "route", "add", PCSCF_V6 + "/128", "dev", TUN)
    shim = Shim(tun, wire, mac)
    for router in args.via:
        shim.via[PCSCF_V6 if ":" in router else PCSCF_V4] = normalise_ip(router)
    shim.trace = args.verbose
    shim.start()
    ctx = Context(World(shim, args.verbose), subs, args.control)
    ctx.daemon_netns, ctx.scscf_log = args.daemon_netns, args.scscf_log
    ctx.ecscf_log = args.ecscf_log
    ctx.proxy_sub = args.proxy_subscriber
    ctx.shards = args.shards
    ctx.restart_socket = args.restart_socket

    wanted = args.scenario or [s for s, _, d in SCENARIOS if d]
    if wanted == ["all"]:
        wanted = [s for s, _, _ in SCENARIOS]
    wanted = [s for s in wanted if s not in args.skip]
    unknown = set(wanted) - {s for s, _, _ in SCENARIOS}
    if unknown:
        print("interop: unknown scenario(s): %s" % ", ".join(sorted(unknown)))
        return 2
    failed = []
    for name, fn, _ in SCENARIOS:
        if name not in wanted:
            continue
        t = time.monotonic()
        print("interop: %s ..." % name, flush=True)
        try:
            fn(ctx)
            print("interop: %s ok (%.1f s)" % (name, time.monotonic() - t), flush=True)
        except Exception:
            traceback.print_exc()
            print("interop: %s FAILED (%.1f s); shim counters %s" % (
                name, time.monotonic() - t, shim.counters), flush=True)
            failed.append(name)
            try:
                print("interop: the daemon's SA sets: %s" % json.dumps(ctx.control("sas")))
            except (OSError, AssertionError) as e:
                print("interop: no SA sets from the daemon: %s" % e)
            for u in list(ctx.world.ues):
                ctx.world.shim.clear(u.ip)
                ctx.done(u)
    shim.stopping = True
    print("interop: shim counters %s" % shim.counters)
    if failed:
        print("interop: FAILED: %s" % ", ".join(failed))
        return 1
    print("interop: every scenario passed: %s" % ", ".join(wanted))
    return 0


if __name__ == "__main__":
    sys.exit(main())
