"""SIPp playing the S-CSCF / I-CSCF behind akagate in proxy mode (issue 9).

`Scscf` writes SIPp's injection file with AKA vectors computed by this suite's own Milenage
(milenage.py, checked against TS 35.208), starts SIPp (Debian `sip-tester`) with
fixtures/scscf.xml in the daemon's namespace, and afterwards checks what SIPp received: the
REGISTERs as akagate relays them (TS 24.229 5.2.2: Path, Require/Supported path,
P-Visited-Network-ID, P-Charging-Vector, integrity-protected, no Security-* or sec-agree) and
the UE's digest response, verified against the XRES of the vector (RFC 3310), which akagate
never saw.
"""

import base64
import hashlib
import os
import re
import subprocess
import time

import sip
from milenage import Milenage

HERE = os.path.dirname(os.path.abspath(__file__))


def md5_hex(s):
    return hashlib.md5(s).hexdigest()


def received(trace):
    """The SIP messages a SIPp `-trace_msg` file says were received, in order."""
    if not os.path.exists(trace):
        return []
    text = open(trace, "rb").read().decode("utf-8", "replace")
    out = []
    for block in re.split(r"-{20,}[^\n]*\n", text):
        m = re.match(r"\s*(UDP|TCP) message received \[\d+\] bytes :\s*\n\n?", block)
        if not m:
            continue
        raw = block[m.end():].rstrip("\n").replace("\r\n", "\n").replace("\n", "\r\n")
        if not raw.endswith("\r\n\r\n"):
            raw += "\r\n\r\n" if not raw.endswith("\r\n") else "\r\n"
        out.append(sip.Message.parse(raw.encode()))
    return out


def run_uac(netns, target, scenario, fields, work, pump, port):
    """Runs SIPp as a UAC playing fixtures/`scenario` once against `target` with one row of
    injected `fields`, while `pump()` runs the UE; returns SIPp's exit status."""
    csv = os.path.join(work, scenario + ".csv")
    with open(csv, "w") as f:
        f.write("SEQUENTIAL\n%s\n" % ";".join(fields))
    log = os.path.join(work, scenario + ".log")
    cmd = ["ip", "netns", "exec", netns, "sipp", target, "-sf",
           os.path.join(HERE, "fixtures", scenario), "-inf", csv, "-i", "127.0.0.2",
           "-p", str(port), "-t", "t1", "-m", "1", "-nostdin", "-timeout", "20s",
           "-timeout_error", "-trace_msg", "-message_file", log + ".messages"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)
    end = time.monotonic() + 25
    while proc.poll() is None and time.monotonic() < end:
        pump(0.05)
    if proc.poll() is None:
        proc.kill()
    status = proc.wait()
    if status != 0:
        print("".join(open(log, errors="replace").readlines()[-25:]))
    return status


def run_terminating_call(netns, target, ue, path, work, pump):
    """SIPp as the S-CSCF delivers a call (fixtures/scscf-mt.xml) to `ue`'s contact with
    Route `path`, through akagate's core side at `target`; `pump()` runs the UE meanwhile.
    Returns SIPp's exit status (0: the call went through: 200, ACK, BYE answered)."""
    contact = "sip:%s@%s:%d" % (ue.user, sip.host(ue.ip), ue.port_us)
    path_uri = path.strip().strip("<>").split(";")[0]  # SIPp fields are ';'-separated
    return run_uac(netns, target, "scscf-mt.xml", [contact, path_uri, ue.impu], work, pump,
                   5081)


class Scscf:
    def __init__(self, work, netns, ip, port, transport, subscriber, visited, name="scscf"):
        self.work, self.netns, self.ip, self.port = work, netns, ip, port
        self.transport, self.sub, self.visited = transport, subscriber, visited
        self.csv = os.path.join(work, name + "-vectors.csv")
        self.trace = os.path.join(work, name + "-messages.log")
        self.log = os.path.join(work, name + ".log")
        self.vectors = []
        self.proc = None

    def write_vectors(self, count, first_seq=1):
        """`count` vectors for the subscriber, SQN = SEQ || IND 0 with rising SEQ."""
        mil = Milenage(bytes.fromhex(self.sub["k"]), bytes.fromhex(self.sub["opc"]))
        amf = bytes.fromhex(self.sub.get("amf", "8000"))
        realm = self.sub["impi"].split("@", 1)[1]
        impus = ", ".join("<%s>" % u for u in self.sub["impu"])
        rows = []
        for i in range(count):
            rand = os.urandom(16)
            sqn = ((first_seq + i) << 5).to_bytes(6, "big")
            res, ck, ik, ak = mil.f2345(rand)
            mac_a = mil.f1(rand, sqn, amf)[0]
            autn = bytes(a ^ b for a, b in zip(sqn, ak)) + amf + mac_a
            nonce = base64.b64encode(rand + autn).decode()
            self.vectors.append({"nonce": nonce, "xres": res, "ck": ck, "ik": ik,
                                 "realm": realm})
            rows.append(";".join([realm, nonce, ck.hex(), ik.hex(), impus]))
        with open(self.csv, "w") as f:
            f.write("SEQUENTIAL\n" + "\n".join(rows) + "\n")

    def start(self):
        cmd = ["ip", "netns", "exec", self.netns, "sipp", "-sf",
               os.path.join(HERE, "fixtures", "scscf.xml"), "-inf", self.csv,
               "-i", self.ip, "-p", str(self.port), "-t",
               "t1" if self.transport == "tcp" else "u1",
               "-trace_msg", "-message_file", self.trace, "-nostdin", "-max_recv_loops", "10"]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=open(self.log, "w"), stderr=subprocess.STDOUT)
        time.sleep(0.5)
        if self.proc.poll() is not None:
            raise RuntimeError("SIPp did not start:\n" + open(self.log).read())

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def received(self):
        """The SIP messages SIPp received, in order (parsed by sip.py)."""
        return received(self.trace)

    def check_relayed_registration(self, ue_ip):
        """The three REGISTERs of one UE as relayed by akagate. Returns a list of failures."""
        regs = [m for m in self.received() if m.method == "REGISTER"]
        errors = []

        def need(cond, what):
            if not cond:
                errors.append(what)

        need(len(regs) >= 3, "S-CSCF got %d REGISTERs, not 3" % len(regs))
        if len(regs) < 3:
            return errors
        vector = self.vectors[0]
        for i, r in enumerate(regs[:3]):
            name = ("initial", "protected", "de-")[i] + "REGISTER"
            for h in ("security-client", "security-verify"):
                need(r.get(h) is None, "%s still has %s" % (name, h))
            for h in ("require", "proxy-require", "supported"):
                need("sec-agree" not in (r.get(h) or "").lower(),
                     "%s: sec-agree left in %s" % (name, h))
            need("path" in [t.strip() for t in (r.get("require") or "").split(",")],
                 "%s: no Require: path" % name)
            need("path" in [t.strip() for t in (r.get("supported") or "").split(",")],
                 "%s: no path in Supported" % name)
            path = r.get("path") or ""
            need(re.match(r"<sip:[^@>]+@127\.0\.0\.1:\d+;lr(;agshard=[0-9a-f]{2})?>$", path) is not None,
                 "%s: Path %r is not the P-CSCF's core-side URI" % (name, path))
            need((r.get("p-visited-network-id") or "").strip('"') == self.visited,
                 "%s: P-Visited-Network-ID %r" % (name, r.get("p-visited-network-id")))
            need("icid-value=" in (r.get("p-charging-vector") or ""),
                 "%s: no icid in P-Charging-Vector" % name)
            vias = r.all("via")
            need(len(vias) >= 2 and "127.0.0.1" in vias[0] and ue_ip in vias[1],
                 "%s: Via %r is not P-CSCF over UE" % (name, vias))
            auth = sip.params((r.get("authorization") or "Digest x=y").split(" ", 1)[1])
            want = "no" if i == 0 else "yes"
            need(auth.get("integrity-protected") == want,
                 "%s: integrity-protected=%r, not %r" % (name, auth.get("integrity-protected"),
                                                        want))
            if i == 0:
                continue
            # The answer to the challenge, checked with the XRES akagate never had.
            need(auth.get("nonce") == vector["nonce"], "%s: nonce differs" % name)
            expected = sip.digest_response(auth.get("username"), auth.get("realm"),
                                           vector["xres"], "REGISTER", auth.get("uri"),
                                           auth.get("nonce"), auth.get("nc"),
                                           auth.get("cnonce"))
            need(auth.get("response") == expected,
                 "%s: digest response does not match XRES (RFC 3310)" % name)
        return errors
