"""The UE's IPsec layer: a TUN <-> Ethernet shim that does what XFRM does in a phone's kernel.

The kernel of the UE namespace owns the UEs' addresses (on the TUN device) and their TCP/UDP
sockets; every packet it sends to the P-CSCF is routed into the TUN. The shim reads it and
applies the policy of TS 33.203 7.1 by selector, exactly as XFRM policies would:

  UE:port_uc -> P-CSCF:port_ps   ESP with spi_ps   (the UE's requests)
  UE:port_us -> P-CSCF:port_pc   ESP with spi_pc   (the UE's responses to the P-CSCF)
  anything   -> P-CSCF:5060      in clear          (the unprotected first REGISTER)
  anything   -> P-CSCF:5061      in clear          (SIP over TLS, protected by TLS)
  anything else                  dropped

and sends the result as an Ethernet frame on the wire (an AF_PACKET socket on a veth end in a
namespace of its own, so the UE kernel never sees the wire). From the wire it accepts ESP under
spi_uc / spi_us (decrypted, the inner ports checked against the SA) and clear TCP/UDP from the
P-CSCF's port 5060, and writes the inner packet into the TUN. IP fragments from the wire are
reassembled first, as a kernel does before XFRM sees ESP (RFC 4303 3.4.1: a transport-mode SA
takes whole datagrams; the P-CSCF fragments a UDP message above the MTU after ESP). It answers
ARP and IPv6 neighbour solicitations for the UEs' addresses and resolves the P-CSCF's MAC the
same way.

ESP itself is scapy's `SecurityAssociation` (transport mode), except aes-gmac (gmac.py); keys
follow TS 33.203 Annex I.
"""

import fcntl
import hashlib
import hmac
import os
import select
import socket
import struct
import threading
import time

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import (ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr,
                                 ICMPv6NDOptSrcLLAddr, IPv6, IPv6ExtHdrFragment)
from scapy.layers.ipsec import ESP, SecurityAssociation
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from gmac import GmacSa

SIP_PORT = 5060
# Ports of the P-CSCF that take clear IP: SIP, and SIP over TLS (RFC 3261 26.2).
CLEAR_PORTS = (SIP_PORT, 5061)
TUNSETIFF = 0x400454CA
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000
ETH_P_ALL = 0x0003

SCAPY_CRYPT = {"null": "NULL", "aes-cbc": "AES-CBC", "des-ede3-cbc": "3DES", "aes-gcm": "AES-GCM"}
SCAPY_AUTH = {"hmac-sha-1-96": "HMAC-SHA1-96", "hmac-md5-96": "HMAC-MD5-96"}


def kdf_salt(ck, ik, fc, label):
    """TS 33.220 Annex B KDF with key CK||IK, S = FC || P0 || L0; the salt is the last 32 bits."""
    s = bytes([fc]) + label + struct.pack("!H", len(label))
    return hmac.new(ck + ik, s, hashlib.sha256).digest()[-4:]


def esp_keys(alg, ealg, ck, ik):
    """(integrity key, encryption key) of TS 33.203 Annex I for one SA set."""
    if ealg == "aes-gcm":
        # RFC 4106: the cipher key carries the salt at its end; GCM is its own integrity.
        return None, ck + kdf_salt(ck, ik, 0x59, b"AES_GCM_SALT")
    integ = {"hmac-sha-1-96": ik + bytes(4), "hmac-md5-96": ik}[alg]
    encr = {"null": None, "aes-cbc": ck, "des-ede3-cbc": ck + ck[:8]}[ealg]
    return integ, encr


def scapy_sa(spi, alg, ealg, ck, ik):
    """One direction's SA: scapy's, or ours for aes-gmac (gmac.py; scapy 2.5 lacks it)."""
    if alg == "aes-gmac":
        return GmacSa(spi, ik, kdf_salt(ck, ik, 0x58, b"AES_GMAC_SALT"))
    integ, encr = esp_keys(alg, ealg, ck, ik)
    auth = "NULL" if ealg == "aes-gcm" else SCAPY_AUTH[alg]
    return SecurityAssociation(ESP, spi=spi, crypt_algo=SCAPY_CRYPT[ealg], crypt_key=encr,
                               auth_algo=auth, auth_key=integ)


class SaSet:
    """The four SAs of one registration, seen from the UE (the mirror of the P-CSCF's)."""

    def __init__(self, ue_ip, pcscf_ip, client, server, alg, ealg, ck, ik):
        self.ue_ip, self.pcscf_ip = ue_ip, pcscf_ip
        self.client, self.server = client, server  # dicts: spi_c, spi_s, port_c, port_s
        self.alg, self.ealg = alg, ealg
        # Outbound: UE port_uc -> port_ps under spi_ps; UE port_us -> port_pc under spi_pc.
        self.out = {
            (client["port_c"], server["port_s"]): scapy_sa(server["spi_s"], alg, ealg, ck, ik),
            (client["port_s"], server["port_c"]): scapy_sa(server["spi_c"], alg, ealg, ck, ik),
        }
        # Inbound: spi_uc carries port_ps -> port_uc, spi_us carries port_pc -> port_us.
        self.inb = {
            client["spi_c"]: (scapy_sa(client["spi_c"], alg, ealg, ck, ik),
                              (server["port_s"], client["port_c"])),
            client["spi_s"]: (scapy_sa(client["spi_s"], alg, ealg, ck, ik),
                              (server["port_c"], client["port_s"])),
        }
        self.seq = {ports: 0 for ports in self.out}


def ports_of(pkt):
    """(proto, sport, dport) of a scapy IP/IPv6 packet, or None if it is not TCP/UDP."""
    for layer in (TCP, UDP):
        if layer in pkt:
            return layer, pkt[layer].sport, pkt[layer].dport
    return None


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


class Shim(threading.Thread):
    """One thread moving packets between the TUN device and the wire for every UE."""

    def __init__(self, tun_fd, wire, mac):
        super().__init__(daemon=True, name="ipsec-shim")
        self.tun, self.wire, self.mac = tun_fd, wire, mac
        self.lock = threading.Lock()
        self.ue_ips = set()
        self.sets = {}            # UE IP -> [SaSet], newest first
        self.neigh = {}           # P-CSCF IP (or router IP) -> MAC
        self.via = {}             # P-CSCF IP -> the router the UEs reach it through (routed)
        self.neigh_answers = {}   # P-CSCF IP -> ARP/ND answers seen
        self.neigh_event = threading.Condition(self.lock)
        self.counters = {}
        self.drop_next = {}       # (UE IP, "clear"|"esp") -> number of inbound packets to lose
        self.tamper = set()       # UE IPs whose next outbound ESP packet gets a bad ICV
        self.last_esp = {}        # UE IP -> its last ESP frame sent (for a replay)
        self.in_seqs = {}         # inbound SPI -> sequence numbers accepted, in order
        self.frags = {}           # (version, src, dst, id) -> ({offset: (data, more)}, [first])
        self.reassembled = []     # lengths of the datagrams put together from fragments
        self.stopping = False
        self.trace = False        # print one line per packet (--verbose)

    # -- control, called by UEs ------------------------------------------------------------

    def add_ue(self, ip):
        with self.lock:
            self.ue_ips.add(ip)

    def install(self, sa_set):
        """Makes `sa_set` the UE's newest set (outbound prefers it); older ones stay inbound."""
        with self.lock:
            self.sets.setdefault(sa_set.ue_ip, []).insert(0, sa_set)

    def remove_older(self, ue_ip, keep):
        """Drops every SA set of the UE but `keep` (after a re-registration's 200 OK)."""
        with self.lock:
            self.sets[ue_ip] = [s for s in self.sets.get(ue_ip, []) if s is keep]

    def clear(self, ue_ip):
        with self.lock:
            self.sets.pop(ue_ip, None)

    def lose_next(self, ue_ip, kind, n=1):
        """Test hook: loses the next `n` inbound packets of `kind` for the UE (radio loss)."""
        with self.lock:
            self.drop_next[(ue_ip, kind)] = n

    def tamper_next(self, ue_ip):
        """Test hook: flips the last ICV bit of the UE's next outbound ESP packet."""
        with self.lock:
            self.tamper.add(ue_ip)

    def replay_last(self, ue_ip):
        """Test hook: sends the UE's last ESP frame again, unchanged (same sequence number)."""
        with self.lock:
            frame = self.last_esp[ue_ip]
        self.wire.send(frame)

    def inject(self, pkt):
        """Test hook: sends an IP packet to the P-CSCF in clear, bypassing the policy."""
        self.wire.send(raw(Ether(src=self.mac, dst=self.neigh[pkt.dst],
                                 type=0x0800 if pkt.version == 4 else 0x86DD) / pkt))

    def count(self, what, pkt=None):
        self.counters[what] = self.counters.get(what, 0) + 1
        if self.trace and pkt is not None:
            p = ports_of(pkt)
            spi = (" spi %d" % pkt[ESP].spi) if ESP in pkt else ""
            flags = (" [%s]" % pkt[TCP].flags) if TCP in pkt else ""
            print("   shim %-22s %s:%s -> %s:%s%s%s" % (what, pkt.src, p and p[1], pkt.dst,
                                                      p and p[2], spi, flags), flush=True)

    def resolve(self, ip, src, timeout=3.0):
        """The P-CSCF's MAC, by ARP (IPv4) or neighbour solicitation (IPv6) from UE address
        `src`, as a host does before its first packet from a new address (so the P-CSCF learns
        the UE's MAC too). Called from a UE's thread while the shim thread takes the answer.
        When the UEs sit behind a router (`via`), the router is resolved instead and frames to
        the P-CSCF go to the router's MAC, as a phone's default route does."""
        target = self.via.get(ip, ip)
        deadline = time.monotonic() + timeout
        with self.lock:
            answers = self.neigh_answers.get(target, 0)
            while self.neigh_answers.get(target, 0) == answers:
                self._send_solicit(target, src)
                self.neigh_event.wait(0.3)
                if time.monotonic() > deadline:
                    raise TimeoutError("no ARP/ND answer from %s" % target)
            self.neigh[ip] = self.neigh[target]
            return self.neigh[ip]

    def _send_solicit(self, ip, src):
        if ":" in ip:
            tgt = socket.inet_pton(socket.AF_INET6, ip)
            snm = "ff02::1:ff" + tgt[13:].hex()[:2] + ":" + tgt[14:].hex()
            mac = "33:33:ff:" + ":".join("%02x" % b for b in tgt[13:])
            f = (Ether(src=self.mac, dst=mac) / IPv6(src=src, dst=snm, hlim=255)
                 / ICMPv6ND_NS(tgt=ip) / ICMPv6NDOptSrcLLAddr(lladdr=self.mac))
        else:
            f = Ether(src=self.mac, dst="ff:ff:ff:ff:ff:ff") / ARP(
                op=1, hwsrc=self.mac, psrc=src, pdst=ip)
        self.wire.send(raw(f))

    # -- the packet loop ---------------------------------------------------------------------

    def run(self):
        while not self.stopping:
            r, _, _ = select.select([self.tun, self.wire], [], [], 0.2)
            for src in r:
                try:
                    if src == self.tun:
                        self.outbound(os.read(self.tun, 65535))
                    else:
                        self.inbound(self.wire.recv(65535))
                except Exception as e:  # a bad packet never stops the shim
                    self.count("error:%s" % type(e).__name__)

    def outbound(self, b):
        pkt = IP(b) if b[0] >> 4 == 4 else IPv6(b)
        p = ports_of(pkt)
        if p is None:
            return self.count("out_drop_not_tcp_udp", pkt)
        _, sport, dport = p
        with self.lock:
            sa, ports = None, (sport, dport)
            for s in self.sets.get(pkt.src, []):
                if s.pcscf_ip == pkt.dst and ports in s.out:
                    s.seq[ports] += 1
                    sa, seq = s.out[ports], s.seq[ports]
                    break
        if sa is not None:
            out = raw(sa.encrypt(pkt, seq_num=seq))
            with self.lock:
                if pkt.src in self.tamper:
                    self.tamper.discard(pkt.src)
                    out = out[:-1] + bytes([out[-1] ^ 1])
                    self.count("out_esp_tampered")
            out = IP(out) if pkt.version == 4 else IPv6(out)
            self.count("out_esp", pkt)
        elif dport in CLEAR_PORTS:
            out = pkt
            self.count("out_clear", pkt)
        else:
            return self.count("out_drop_no_policy", pkt)
        dst_mac = self.neigh.get(pkt.dst)
        if dst_mac is None:  # UEs resolve the P-CSCF before they send (Ue.start)
            return self.count("out_drop_no_neighbour", pkt)
        frame = raw(Ether(src=self.mac, dst=dst_mac, type=0x0800 if pkt.version == 4
                          else 0x86DD) / out)
        if sa is not None:
            self.last_esp[pkt.src] = frame
        self.wire.send(frame)

    def inbound(self, frame):
        eth = Ether(frame)
        if eth.src == self.mac:
            return  # our own frame, seen again by the packet socket
        if ARP in eth:
            return self.arp(eth[ARP])
        if ICMPv6ND_NS in eth:
            return self.ns(eth)
        if ICMPv6ND_NA in eth:
            return self.learn(eth[ICMPv6ND_NA].tgt, eth.src)
        pkt = eth.payload
        if not isinstance(pkt, (IP, IPv6)) or pkt.dst not in self.ue_ips:
            return
        pkt = self.reassemble(pkt)
        if pkt is None:
            return  # a fragment; the datagram is not complete yet
        if ESP in pkt:
            return self.inbound_esp(pkt)
        p = ports_of(pkt)
        if p is not None and p[1] in CLEAR_PORTS:
            if self._lose(pkt.dst, "clear"):
                return
            self.count("in_clear", pkt)
            return os.write(self.tun, raw(pkt))
        self.count("in_drop_no_policy", pkt)

    def inbound_esp(self, pkt):
        spi = pkt[ESP].spi
        with self.lock:
            found = None
            for s in self.sets.get(pkt.dst, []):
                if spi in s.inb and s.pcscf_ip == pkt.src:
                    found = s.inb[spi]
                    break
        if found is None:
            return self.count("in_drop_unknown_spi", pkt)
        sa, want = found
        seq = pkt[ESP].seq
        inner = sa.decrypt(pkt)  # raises on a bad ICV
        p = ports_of(inner)
        if p is None or (p[1], p[2]) != want:
            return self.count("in_drop_selector", inner)
        with self.lock:
            seqs = self.in_seqs.setdefault(spi, [])
            if seq in seqs:
                # RFC 4303 3.3.3: the P-CSCF sent a sequence number twice under one key.
                self.counters["in_seq_reused"] = self.counters.get("in_seq_reused", 0) + 1
            seqs.append(seq)
        if self._lose(pkt.dst, "esp"):
            return
        self.count("in_esp", inner)
        os.write(self.tun, raw(inner))

    def reassemble(self, pkt):
        """The datagram `pkt` belongs to: `pkt` itself if it is no fragment, None while
        fragments are missing, else the whole datagram re-parsed (RFC 791 3.2: fragments of
        one datagram share source, destination, protocol and identification; RFC 8200 4.5:
        source, destination and the Fragment header's identification). No timeout: a test
        run is short."""
        if isinstance(pkt, IP):
            if not (pkt.flags.MF or pkt.frag):
                return pkt
            key = (4, pkt.src, pkt.dst, pkt.proto, pkt.id)
            off, more = pkt.frag * 8, bool(pkt.flags.MF)
            data = raw(pkt)[pkt.ihl * 4:pkt.len]
        elif IPv6ExtHdrFragment in pkt:
            f = pkt[IPv6ExtHdrFragment]
            key = (6, pkt.src, pkt.dst, f.id)
            off, more = f.offset * 8, bool(f.m)
            data = raw(f.payload)[:pkt.plen - 8]  # no extension headers before it here
        else:
            return pkt
        parts, heads = self.frags.setdefault(key, ({}, []))
        parts[off] = (data, more)
        if off == 0:
            heads.append(pkt)
        self.count("in_fragment")
        ends = [o + len(d) for o, (d, m) in parts.items() if not m]
        if not ends or not heads:
            return None
        body, at = b"", 0
        while at < ends[0]:
            if at not in parts:
                return None
            body += parts[at][0]
            at += len(parts[at][0])
        del self.frags[key]
        first = heads[0]
        if key[0] == 4:
            whole = IP(raw(IP(src=first.src, dst=first.dst, proto=first.proto, ttl=first.ttl,
                              id=first.id, tos=first.tos) / body))
        else:
            whole = IPv6(raw(IPv6(src=first.src, dst=first.dst, nh=first[IPv6ExtHdrFragment].nh,
                                  hlim=first.hlim, tc=first.tc, fl=first.fl) / body))
        with self.lock:
            self.reassembled.append(len(body))
        self.count("in_reassembled", whole)
        return whole

    def _lose(self, ue_ip, kind):
        with self.lock:
            n = self.drop_next.get((ue_ip, kind), 0)
            if n:
                self.drop_next[(ue_ip, kind)] = n - 1
                self.count("lost_%s" % kind)
                return True
        return False

    def arp(self, a):
        if a.op == 1 and a.pdst in self.ue_ips:
            self.wire.send(raw(Ether(src=self.mac, dst=a.hwsrc) / ARP(
                op=2, hwsrc=self.mac, psrc=a.pdst, hwdst=a.hwsrc, pdst=a.psrc)))
        elif a.op == 2:
            self.learn(a.psrc, a.hwsrc)

    def ns(self, eth):
        tgt = eth[ICMPv6ND_NS].tgt
        if tgt not in self.ue_ips:
            return
        self.wire.send(raw(Ether(src=self.mac, dst=eth.src) / IPv6(
            src=tgt, dst=eth[IPv6].src, hlim=255) / ICMPv6ND_NA(tgt=tgt, R=0, S=1, O=1)
            / ICMPv6NDOptDstLLAddr(lladdr=self.mac)))

    def learn(self, ip, mac):
        with self.lock:
            self.neigh[ip] = mac
            self.neigh_answers[ip] = self.neigh_answers.get(ip, 0) + 1
            self.neigh_event.notify_all()


def wire_socket(ifname):
    """An AF_PACKET socket on `ifname` (opened in the current network namespace)."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.bind((ifname, 0))
    return s


def normalise_ip(ip):
    """The textual form scapy uses for an address (IPv6 compressed)."""
    fam = socket.AF_INET6 if ":" in ip else socket.AF_INET
    return socket.inet_ntop(fam, socket.inet_pton(fam, ip))

