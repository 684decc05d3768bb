#!/usr/bin/env python3
"""Records FreeSWITCH's DTMF events for `uuid_send_dtmf`, byte for byte.

Usage: record.py OUT DIGITS [SECONDS] [ESL_HOST:PORT] [PASSWORD]

Connects to the event socket (default 127.0.0.1:8021, ClueCon), subscribes
`event plain DTMF`, places `originate {origination_uuid=U}loopback/9000/default
9001 XML default` (the dist build's dialplan: 9001 sends 1000 Hz, 9000 440 Hz),
runs `uuid_send_dtmf U DIGITS` on the a-leg and writes every DTMF event message
that arrives within SECONDS (default 3) to OUT exactly as read from the socket
(Content-Length, Content-Type, blank line, the event-plain body), then hangs up.
"""
import socket
import sys
import time
import uuid


class ESL:
    def __init__(self, addr, password):
        host, port = addr.rsplit(":", 1)
        self.s = socket.create_connection((host, int(port)))
        self.buf = b""
        self.events = []
        self.read()  # auth/request
        self.cmd("auth " + password)

    def read(self):
        """One message: (raw bytes, headers, body)."""
        while b"\n\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise EOFError
            self.buf += d
        head, rest = self.buf.split(b"\n\n", 1)
        hdrs = dict(l.split(": ", 1) for l in head.decode().split("\n") if ": " in l)
        n = int(hdrs.get("Content-Length", 0))
        while len(rest) < n:
            rest += self.s.recv(65536)
        body, self.buf = rest[:n], rest[n:]
        return head + b"\n\n" + body, hdrs, body.decode()

    def cmd(self, c):
        self.s.sendall((c + "\n\n").encode())
        while True:
            raw, h, body = self.read()
            if h.get("Content-Type") in ("command/reply", "api/response"):
                return h.get("Reply-Text", "") + body
            self.events.append((raw, body))


def main():
    out, digits = sys.argv[1], sys.argv[2]
    secs = float(sys.argv[3]) if len(sys.argv) > 3 else 3
    esl = ESL(sys.argv[4] if len(sys.argv) > 4 else "127.0.0.1:8021", sys.argv[5] if len(sys.argv) > 5 else "ClueCon")
    print(esl.cmd("event plain DTMF"))
    a = str(uuid.uuid4())
    print(esl.cmd("api originate {origination_uuid=%s}loopback/9000/default 9001 XML default" % a))
    time.sleep(1)
    b = esl.cmd("api uuid_getvar %s other_loopback_leg_uuid" % a).strip()
    print("a-leg", a, "b-leg", b)
    print(esl.cmd("api uuid_send_dtmf %s %s" % (a, digits)))
    esl.s.settimeout(0.2)
    t0 = time.time()
    while time.time() - t0 < secs:
        try:
            esl.events.append(esl.read()[::2])
        except socket.timeout:
            pass
    esl.s.settimeout(None)
    print(esl.cmd("api uuid_kill %s" % a))
    with open(out, "wb") as f:
        for raw, body in esl.events:
            if "Event-Name: DTMF\n" in body:
                f.write(raw)
                h = dict(l.split(": ", 1) for l in body.split("\n") if ": " in l)
                print(h["Channel-Name"], h["Unique-ID"], h["DTMF-Digit"], h["DTMF-Duration"], h["DTMF-Source"])


main()
