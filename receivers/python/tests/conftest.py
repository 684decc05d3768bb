"""Shared helpers: the golden vectors' path, a CLI runner that waits on its output lines."""

from __future__ import annotations

import math
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

PYTHON_DIR = Path(__file__).resolve().parents[1]  # receivers/python
if str(PYTHON_DIR) not in sys.path:  # the package without installing it (pytest < 7 has no `pythonpath`)
    sys.path.insert(0, str(PYTHON_DIR))
REPO = PYTHON_DIR.parents[1]
# The same golden file the Go codec's tests read: <repo>/testdata/tlv/vectors.json.
VECTORS = REPO / "testdata" / "tlv" / "vectors.json"

TIMEOUT = 60  # seconds for anything to happen: generous, for a loaded 2-core machine


def goertzel_power(x, rate: int, hz: float) -> float:
    w = 2 * math.pi * hz / rate
    coeff = 2 * math.cos(w)
    s1 = s2 = 0.0
    for v in x:
        s1, s2 = v + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def dominant_goertzel(x, rate: int) -> int:
    """The strongest frequency, independently of the library: a Goertzel scan in
    10 Hz steps over 100 ms, refined in 1 Hz steps over 500 ms."""
    coarse = x[: rate // 10]
    best = max(range(100, rate // 2 - 50, 10), key=lambda hz: goertzel_power(coarse, rate, hz))
    fine = x[: rate // 2]
    return max(range(best - 10, best + 11), key=lambda hz: goertzel_power(fine, rate, hz))


class CLI:
    """`python -m mediafork_tlv` in a subprocess; its stdout lines are collected by a
    thread so that a test can wait for a line (an event) with a timeout."""

    def __init__(self, *args: str, preexec_fn=None):
        env = dict(os.environ, PYTHONPATH=str(PYTHON_DIR), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "mediafork_tlv", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env, cwd=str(PYTHON_DIR),
                                     preexec_fn=preexec_fn)
        self.lines: list = []
        self._q: "queue.Queue" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        listen = self.wait_for(lambda l: l.startswith("LISTEN"))
        host, _, port = listen.split("udp=", 1)[1].rpartition(":")
        self.addr = (host.strip("[]"), int(port))

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, pred, timeout: float = TIMEOUT) -> str:
        """The first line (already seen or new) for which pred is true."""
        for line in self.lines:
            if pred(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for a line; output so far:\n" + "\n".join(self.lines[-50:]))
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the CLI exited before the line came; output:\n" + "\n".join(self.lines[-50:]))
            self.lines.append(line)
            if pred(line):
                return line

    def count(self, pred, n: int, timeout: float = TIMEOUT) -> None:
        """Wait until n lines satisfy pred."""
        deadline = time.monotonic() + timeout
        while sum(1 for l in self.lines if pred(l)) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {n} lines; output so far:\n" + "\n".join(self.lines[-50:]))
            try:
                line = self._q.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError("the CLI exited early; output:\n" + "\n".join(self.lines[-50:]))
            self.lines.append(line)

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM, then the rest of the output (the summary) and the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout)
        while True:
            line = self._q.get(timeout=timeout)
            if line is None:
                break
            self.lines.append(line)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(TIMEOUT)
