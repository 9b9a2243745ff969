"""The daemon's control socket (docs/OPERATIONS.md): one JSON request, one JSON line back."""

import json
import socket


def control(path, cmd):
    """Sends {"cmd": cmd} to the control socket at `path`; returns the decoded answer."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    try:
        s.connect(path)
        s.sendall(json.dumps({"cmd": cmd}).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return json.loads(buf)
