"""ESP with alg=aes-gmac, ealg=null (RFC 4543 ENCR_NULL_AUTH_AES_GMAC), transport mode.

scapy 2.5 has no AES-GMAC, so this one suite is written here from RFC 4543 and RFC 4303 with
python-cryptography's AES-GCM: nothing is encrypted; the ICV is the GCM tag of an empty
plaintext whose additional authenticated data is the whole ESP packet before the ICV
(SPI || sequence number || IV || payload || padding || pad length || next header). The nonce
is salt || IV (the salt from TS 33.203 Annex I, the IV 8 random bytes).

The same interface as scapy's `SecurityAssociation`: `encrypt(pkt, seq_num)`, `decrypt(pkt)`.
"""

import os
import struct

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.packet import raw

ESP_PROTO = 50
ICV_LEN = 16


def split(b):
    """(IP header bytes, offset of the next-header byte, payload) of a packet without IPv6
    extension headers (the UE kernel sends none)."""
    if b[0] >> 4 == 4:
        ihl = (b[0] & 15) * 4
        return bytearray(b[:ihl]), 9, b[ihl:]
    return bytearray(b[:40]), 6, b[40:]


def join(header, nh_at, nh, payload):
    """The packet with `payload` after `header`, its next header `nh`, lengths and the IPv4
    header checksum set."""
    header[nh_at] = nh
    if header[0] >> 4 == 4:
        header[2:4] = struct.pack("!H", len(header) + len(payload))
        header[10:12] = b"\0\0"
        words = struct.unpack("!%dH" % (len(header) // 2), bytes(header))
        s = sum(words)
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        header[10:12] = struct.pack("!H", ~s & 0xFFFF)
        return IP(bytes(header) + payload)
    header[4:6] = struct.pack("!H", len(payload))
    return IPv6(bytes(header) + payload)


class GmacSa:
    """One direction of an aes-gmac SA: SPI, key (IK) and salt."""

    def __init__(self, spi, key, salt):
        self.spi, self.aead, self.salt = spi, AESGCM(key), salt

    def encrypt(self, pkt, seq_num):
        header, nh_at, payload = split(raw(pkt))
        pad = (-(len(payload) + 2)) % 4
        body = payload + bytes(range(1, pad + 1)) + bytes([pad, header[nh_at]])
        iv = os.urandom(8)
        authed = struct.pack("!II", self.spi, seq_num) + iv + body
        icv = self.aead.encrypt(self.salt + iv, b"", authed)
        return join(header, nh_at, ESP_PROTO, authed + icv)

    def decrypt(self, pkt):
        """The inner packet; raises cryptography's InvalidTag on a bad ICV."""
        header, nh_at, esp = split(raw(pkt))
        if header[nh_at] != ESP_PROTO or len(esp) < 16 + 2 + ICV_LEN:
            raise ValueError("not an ESP packet of this suite")
        authed, icv = esp[:-ICV_LEN], esp[-ICV_LEN:]
        self.aead.decrypt(self.salt + authed[8:16], icv, authed)
        body = authed[16:]
        pad, nh = body[-2], body[-1]
        return join(header, nh_at, nh, body[:len(body) - 2 - pad])
