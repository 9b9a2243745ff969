"""Milenage (3GPP TS 35.206) and the USIM side of AKA (TS 33.102 6.3), written from the
specification for the interop UE; it shares no code with akagate.

The five functions all encrypt with AES-128 under the subscriber key K:

    TEMP = E_K(RAND xor OPc)
    OUTi = E_K(rot(TEMP xor OPc, r_i) xor c_i) xor OPc          (i = 2..5)
    OUT1 = E_K(TEMP xor rot(IN1 xor OPc, r1) xor c1) xor OPc,    IN1 = SQN||AMF||SQN||AMF

f1 = OUT1[0:8] (MAC-A), f1* = OUT1[8:16] (MAC-S), f2 = OUT2[8:16] (RES), f5 = OUT2[0:6] (AK),
f3 = OUT3 (CK), f4 = OUT4 (IK), f5* = OUT5[0:6] (AK for resynchronisation).
"""

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# Rotation amounts (bits) and constants c1..c5 of TS 35.206 4.1.
R = {1: 64, 2: 0, 3: 32, 4: 64, 5: 96}
C = {i: (0 if i == 1 else 1 << (i - 2)).to_bytes(16, "big") for i in range(1, 6)}


def xor(a, b):
    return bytes(x ^ y for x, y in zip(a, b))


def rot(x, bits):
    """Cyclic left rotation of a 128-bit string by `bits` (a multiple of 8 here)."""
    n = bits // 8
    return x[n:] + x[:n]


def aes(key, block):
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def opc_from_op(k, op):
    """OPc = E_K(OP) xor OP."""
    return xor(aes(k, op), op)


class Milenage:
    """The f1..f5* functions for one subscriber (K, OPc)."""

    def __init__(self, k, opc):
        self.k, self.opc = k, opc

    def _out(self, i, temp):
        return xor(aes(self.k, xor(rot(xor(temp, self.opc), R[i]), C[i])), self.opc)

    def _temp(self, rand):
        return aes(self.k, xor(rand, self.opc))

    def f1(self, rand, sqn, amf):
        """(MAC-A, MAC-S)."""
        in1 = sqn + amf + sqn + amf
        temp = self._temp(rand)
        out1 = xor(aes(self.k, xor(xor(temp, rot(xor(in1, self.opc), R[1])), C[1])), self.opc)
        return out1[:8], out1[8:]

    def f2345(self, rand):
        """(RES, CK, IK, AK)."""
        temp = self._temp(rand)
        out2 = self._out(2, temp)
        return out2[8:], self._out(3, temp), self._out(4, temp), out2[:6]

    def f5star(self, rand):
        """AK used to conceal SQN_MS in AUTS."""
        return self._out(5, self._temp(rand))[:6]


class SyncFailure(Exception):
    """The challenge's SQN is not acceptable: answer with AUTS (TS 33.102 6.3.3)."""

    def __init__(self, auts):
        super().__init__("SQN out of range")
        self.auts = auts


class MacFailure(Exception):
    """AUTN's MAC-A is wrong: the network is not authentic."""


class Usim:
    """The UE's USIM: verifies AUTN, keeps the SQN state of TS 33.102 Annex C.

    SQN = SEQ (43 bits) || IND (5 bits). The USIM keeps the highest SEQ accepted for each
    IND value and accepts a SQN when its SEQ is larger than the one stored for its IND and not
    more than DELTA ahead of the highest SEQ seen (C.2.1, C.2.2).
    """

    IND_BITS = 5
    DELTA = 1 << 28

    def __init__(self, k, opc, seq_ms=0):
        self.mil = Milenage(k, opc)
        self.seq = [seq_ms] * (1 << self.IND_BITS)
        self.accepted = []       # every SQN accepted, in order (for the restart checks)
        self.stale = 0           # challenges refused as not fresh: SEQ not above SEQ_MS(IND)

    def highest_sqn(self):
        """SQN_MS reported in AUTS: the highest SEQ accepted, with its IND."""
        ind = max(range(len(self.seq)), key=lambda i: self.seq[i])
        return (self.seq[ind] << self.IND_BITS) | ind

    def authenticate(self, rand, autn):
        """RES, CK, IK for a fresh, authentic challenge; raises SyncFailure / MacFailure."""
        res, ck, ik, ak = self.mil.f2345(rand)
        sqn = xor(autn[:6], ak)
        amf, mac = autn[6:8], autn[8:16]
        if self.mil.f1(rand, sqn, amf)[0] != mac:
            raise MacFailure()
        value = int.from_bytes(sqn, "big")
        seq, ind = value >> self.IND_BITS, value & ((1 << self.IND_BITS) - 1)
        if seq <= self.seq[ind]:
            self.stale += 1  # a replayed or reused SQN (C.2.2)
            raise SyncFailure(self.auts(rand))
        if seq - max(self.seq) > self.DELTA:
            raise SyncFailure(self.auts(rand))
        self.seq[ind] = seq
        self.accepted.append(value)
        return res, ck, ik

    def auts(self, rand):
        """AUTS = (SQN_MS xor AK*) || MAC-S, MAC-S over the dummy AMF 0000 (TS 33.102 6.3.3)."""
        sqn_ms = self.highest_sqn().to_bytes(6, "big")
        mac_s = self.mil.f1(rand, sqn_ms, b"\0\0")[1]
        return xor(sqn_ms, self.mil.f5star(rand)) + mac_s


def check_vectors(path):
    """Checks this Milenage against the TS 35.208 test sets in `path`; returns how many."""
    import json

    with open(path) as f:
        sets = json.load(f)["test_sets"]
    for t in sets:
        h = {k: bytes.fromhex(v) for k, v in t.items() if isinstance(v, str)}
        opc = opc_from_op(h["K"], h["OP"])
        assert opc == h["OPc"], "set %d: OPc" % t["test_set"]
        m = Milenage(h["K"], opc)
        assert m.f1(h["RAND"], h["SQN"], h["AMF"]) == (h["f1"], h["f1star"]), t["test_set"]
        assert m.f2345(h["RAND"]) == (h["f2"], h["f3"], h["f4"], h["f5"]), t["test_set"]
        assert m.f5star(h["RAND"]) == h["f5star"], t["test_set"]
    return len(sets)


if __name__ == "__main__":
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    n = check_vectors(os.path.join(here, "fixtures", "milenage_ts35208.json"))
    print("milenage: %d TS 35.208 test sets agree" % n)
