"""Just enough SIP for a phone: build and parse messages (RFC 3261), frame them on a TCP
stream, sec-agree headers (RFC 3329, TS 33.203 7.1) and the AKAv1-MD5 digest (RFC 3310)."""

import base64
import hashlib
import os
import re

COMPACT = {"v": "via", "i": "call-id", "l": "content-length", "f": "from", "t": "to",
           "m": "contact", "c": "content-type", "k": "supported"}


def token(n=8):
    return os.urandom(n).hex()


class Message:
    """A parsed SIP message: `start` line, `headers` as (name, value) in order, `body`."""

    def __init__(self, start, headers, body=b""):
        self.start, self.headers, self.body = start, headers, body

    @classmethod
    def parse(cls, data):
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("utf-8", "replace").split("\r\n")
        headers = []
        for line in lines[1:]:
            if line[:1] in (" ", "\t") and headers:  # folded continuation line
                headers[-1] = (headers[-1][0], headers[-1][1] + " " + line.strip())
                continue
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        return cls(lines[0], headers, body)

    def is_request(self):
        return not self.start.startswith("SIP/2.0 ")

    @property
    def method(self):
        return self.start.split(" ", 1)[0] if self.is_request() else self.cseq[1]

    @property
    def status(self):
        return None if self.is_request() else int(self.start.split(" ")[1])

    def all(self, name):
        """Every value of header `name` (compact forms and comma-separated lists joined)."""
        name = name.lower()
        out = []
        for n, v in self.headers:
            if COMPACT.get(n.lower(), n.lower()) == name:
                out.append(v)
        return out

    def get(self, name):
        v = self.all(name)
        return v[0] if v else None

    @property
    def cseq(self):
        n, m = self.get("CSeq").split()
        return int(n), m

    def to_bytes(self):
        lines = [self.start] + ["%s: %s" % h for h in self.headers if h[0] != "Content-Length"]
        lines.append("Content-Length: %d" % len(self.body))
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + self.body


def request(method, uri, headers, body=b""):
    return Message("%s %s SIP/2.0" % (method, uri), list(headers), body)


def response_to(req, code, reason, to_tag=None, extra=()):
    """A response copying Via, From, To (tagged), Call-ID, CSeq and Record-Route."""
    h = [("Via", v) for v in req.all("via")]
    h.append(("From", req.get("from")))
    to = req.get("to")
    if to_tag and ";tag=" not in to:
        to += ";tag=" + to_tag
    h.append(("To", to))
    h += [("Call-ID", req.get("call-id")), ("CSeq", req.get("cseq"))]
    h += [("Record-Route", v) for v in req.all("record-route")]
    h += list(extra)
    return Message("SIP/2.0 %d %s" % (code, reason), h)


class Framer:
    """Splits a TCP byte stream into SIP messages by Content-Length (RFC 3261 18.3)."""

    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += data
        out = []
        while True:
            self.buf = self.buf.lstrip(b"\r\n")  # keep-alive CRLFs
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return out
            m = re.search(rb"(?im)^(?:content-length|l)\s*:\s*(\d+)", self.buf[:end])
            total = end + 4 + (int(m.group(1)) if m else 0)
            if len(self.buf) < total:
                return out
            out.append(Message.parse(self.buf[:total]))
            self.buf = self.buf[total:]


def params(text):
    """`a=1; b="x"` -> {"a": "1", "b": "x"} (names lower-cased, quotes removed)."""
    out = {}
    for part in re.findall(r'([^;,=\s]+)\s*(?:=\s*("[^"]*"|[^;,\s]*))?', text):
        out[part[0].lower()] = part[1].strip('"') if part[1] else ""
    return out


def security_mechanisms(value):
    """Security-Server/-Verify value -> list of parameter dicts, one per mechanism."""
    return [params(m) for m in value.split(",") if m.strip()]


def security_client(offers, spi_c, spi_s, port_c, port_s):
    """The UE's Security-Client: one ipsec-3gpp mechanism per (alg, ealg) offered."""
    return ", ".join(
        "ipsec-3gpp; alg=%s; ealg=%s; prot=esp; mod=trans; spi-c=%d; spi-s=%d; port-c=%d; "
        "port-s=%d" % (alg, ealg, spi_c, spi_s, port_c, port_s) for alg, ealg in offers)


def challenge(www_authenticate):
    """WWW-Authenticate: Digest ... -> (params, RAND, AUTN)."""
    p = params(www_authenticate.split(" ", 1)[1])
    nonce = base64.b64decode(p["nonce"])
    return p, nonce[:16], nonce[16:32]


def md5(s):
    return hashlib.md5(s).hexdigest()


def digest_response(username, realm, password, method, uri, nonce, nc, cnonce, qop="auth"):
    """RFC 2617 response with qop=auth; for AKAv1-MD5 the password is RES as raw bytes."""
    ha1 = md5(username.encode() + b":" + realm.encode() + b":" + password)
    ha2 = md5(("%s:%s" % (method, uri)).encode())
    return md5(("%s:%s:%s:%s:%s:%s" % (ha1, nonce, nc, cnonce, qop, ha2)).encode())


def host(ip):
    return "[%s]" % ip if ":" in ip else ip


def sdp(ip, pad_to=0):
    """An audio offer/answer, padded with a= lines to `pad_to` bytes (large INVITEs)."""
    net = "IP6" if ":" in ip else "IP4"
    s = ("v=0\r\no=- 1 1 IN %s %s\r\ns=-\r\nc=IN %s %s\r\nt=0 0\r\n"
         "m=audio 49170 RTP/AVP 96\r\na=rtpmap:96 AMR-WB/16000\r\n" % (net, ip, net, ip))
    while len(s) < pad_to:
        s += "a=x-pad:" + "y" * min(64, max(1, pad_to - len(s) - 10)) + "\r\n"
    return s.encode()
