"""Issue 20's findings against the Python receiver, each on the wire: the CLI in a
subprocess, hostile datagrams over real UDP sockets, and what it printed, wrote and
held open. These use only what the CLI had before the fix, so they ran (and
failed) on b25defe."""

from __future__ import annotations

import os
import re
import resource
import socket
import struct
import subprocess
import sys
import time

import pytest

from conftest import CLI, PYTHON_DIR, TIMEOUT
from mediafork_tlv import Audio, Direction, End, Format, Signaling

RX = Direction.RX


def sender(addr):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(addr)
    return s


def header_sizes(path):
    b = open(path, "rb").read()
    return len(b), struct.unpack_from("<I", b, 4)[0], struct.unpack_from("<I", b, 40)[0]


def test_finding2_spoofed_rate_summary_comes(tmp_path):
    """One spoofed format packet saying 10 MHz, then a second of audio at that rate
    (20 MB): the CLI kept it all for its tone analysis and ran a pure-Python FFT over
    2^23 points at exit: no summary after 60 s (15 s already with 2.6 MB). Now the
    format packet is refused with a warning and the analysis is bounded by samples,
    whatever the rate claims."""
    cli = CLI("--listen", "127.0.0.1:0", "--wav", str(tmp_path))
    try:
        s = sender(cli.addr)
        s.send(Format(201, RX, 1, 10_000_000, 1, 20).to_bytes())
        cli.wait_for(lambda l: l.startswith("FORMAT"))
        for seq in range(1, 771):
            s.send(Audio(201, RX, seq, bytes(range(256)) * 101 + bytes(144)).to_bytes())  # 26,000 bytes
            cli.count(lambda l: l.startswith("AUDIO"), seq)
        s.close()
        t0 = time.monotonic()
    finally:
        rc = cli.stop(timeout=TIMEOUT)  # the summary must come within TIMEOUT
    took = time.monotonic() - t0
    out = "\n".join(cli.lines)
    assert rc == 0, out[-3000:]
    assert re.search(r"^TOTAL packets=770 bytes=20020000 ", out, re.M), out[-3000:]
    assert re.search(r"rate 10000000 Hz is not a positive multiple of 8000 up to 48000", out), out[:3000]
    assert took < TIMEOUT
    assert not list(tmp_path.iterdir()), "nothing written for a refused format"


def test_finding3_gap_fill_bounded_by_the_streams_clock(tmp_path):
    """format 5 MHz, audio seq 1, audio seq 1000 made a 100,000,048-byte WAV (built in
    memory first); at 8 kHz a jump of 1000 still wrote 10 s. Now the refused format
    writes nothing, and at 8 kHz the silence is what the stream's own clock explains."""
    cli = CLI("--listen", "127.0.0.1:0", "--wav", str(tmp_path))
    try:
        s = sender(cli.addr)
        s.send(Format(31, RX, 1, 5_000_000, 1, 20).to_bytes())
        s.send(Audio(31, RX, 1, b"\x11" * 320).to_bytes())
        s.send(Audio(31, RX, 1000, b"\x11" * 320).to_bytes())
        cli.count(lambda l: l.startswith("AUDIO") and "stream=31 " in l, 2)
        s.send(Format(32, RX, 1, 8000, 1, 20).to_bytes())
        s.send(Audio(32, RX, 1, b"\x11" * 320).to_bytes())
        s.send(Audio(32, RX, 1000, b"\x11" * 320).to_bytes())
        cli.count(lambda l: l.startswith("AUDIO") and "stream=32 " in l, 2)
        s.close()
    finally:
        rc = cli.stop()
    assert rc == 0
    on_disk = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert not (tmp_path / "stream-31-RX.wav").exists()
    # 8 kHz: two packets of 160 samples, and for the 998 missing ones no more silence
    # than the audio already in the file (160 samples): 480 samples in all.
    assert header_sizes(tmp_path / "stream-32-RX.wav") == (44 + 960, 36 + 960, 960)
    assert on_disk == 44 + 960


def test_finding4_rate_2pow31_summary_and_wavs_at_exit(tmp_path):
    """A rate of 2^31 or more: struct.error on every frame, then in close(): exit 1,
    no summary, the other streams' WAVs never finalised."""
    cli = CLI("--listen", "127.0.0.1:0", "--wav", str(tmp_path))
    try:
        s = sender(cli.addr)
        s.send(Format(41, RX, 1, 2 ** 31, 1, 20).to_bytes())
        s.send(Format(42, RX, 1, 2 ** 32 - 1, 1, 20).to_bytes())
        s.send(Format(43, RX, 1, 8000, 1, 20).to_bytes())
        for seq in (1, 2, 3):
            for sid in (41, 42, 43):
                s.send(Audio(sid, RX, seq, b"\x11" * 320).to_bytes())
        cli.count(lambda l: l.startswith("AUDIO"), 9)
        s.close()
    finally:
        rc = cli.stop()
    out = "\n".join(cli.lines)
    assert rc == 0, out
    assert "Traceback" not in out
    assert out.count("is not a positive multiple of 8000 up to 48000") >= 2
    assert "SUMMARY 3 stream(s), 3 direction(s)" in out
    assert re.search(r"^TOTAL packets=9 ", out, re.M)
    assert header_sizes(tmp_path / "stream-43-RX.wav") == (44 + 960, 36 + 960, 960), "finalised"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stream-43-RX.wav"]


def _limit_files():
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, 128))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts descriptors in /proc")
def test_finding5_spoofed_ids_do_not_starve_a_real_call(tmp_path):
    """Under `ulimit -n 128`, 200 one-packet spoofed stream ids each kept a WAV open
    (closed only by an end packet that never comes): a traceback per packet, and the
    next real call got no WAV. Now open files are bounded and the call gets its file."""
    cli = CLI("--listen", "127.0.0.1:0", "--wav", str(tmp_path), preexec_fn=_limit_files)
    try:
        spoof, real = sender(cli.addr), sender(cli.addr)
        for sid in range(1, 201):
            spoof.send(Audio(5000 + sid, RX, 1, bytes(320)).to_bytes())
            cli.count(lambda l: l.startswith("AUDIO"), sid)
        fds = len(os.listdir(f"/proc/{cli.proc.pid}/fd"))
        real.send(Signaling(77, RX, "real").to_bytes())
        real.send(Format(77, RX, 1, 8000, 1, 20).to_bytes())
        for seq in range(1, 51):
            real.send(Audio(77, RX, seq, struct.pack("<160h", *([seq * 100] * 160))).to_bytes())
            cli.count(lambda l: l.startswith("AUDIO"), 200 + seq)
        real.send(End(77, RX, 50, 1).to_bytes())
        cli.wait_for(lambda l: l.startswith("END"))
    finally:
        rc = cli.stop()
    out = "\n".join(cli.lines)
    assert rc == 0, out[-3000:]
    assert "Traceback" not in out and "Too many open files" not in out, out[-3000:]
    assert fds <= 64 + 16, f"{fds} descriptors open after 200 spoofed ids under a limit of 128"
    path = tmp_path / "stream-77-RX.wav"
    assert header_sizes(path) == (44 + 50 * 320, 36 + 50 * 320, 50 * 320)
    data = path.read_bytes()[44:]
    assert data == b"".join(struct.pack("<160h", *([seq * 100] * 160)) for seq in range(1, 51))
    assert re.search(r"^TOTAL packets=250 ", out, re.M)


def test_class_lines_for_foreign_refused_idle_and_evicted(tmp_path):
    """What an operator sees: a line for each packet dropped from another source or
    refused, for each stream closed idle or evicted, and the counts in the total."""
    cli = CLI("--listen", "127.0.0.1:0", "--wav", str(tmp_path), "--idle-timeout", "0.3", "--max-streams", "3")
    try:
        a, b = sender(cli.addr), sender(cli.addr)
        a.send(Audio(9, RX, 1, bytes(320)).to_bytes())
        cli.wait_for(lambda l: l.startswith("AUDIO"))
        b.send(Audio(9, RX, 2, bytes(320)).to_bytes())
        cli.wait_for(lambda l: l.startswith("FOREIGN"))
        a.send(Audio(9, RX, 50000, bytes(320)).to_bytes())
        cli.wait_for(lambda l: l.startswith("REFUSED"))
        cli.wait_for(lambda l: l.startswith("IDLE       stream=9 dir=RX"))
        for sid in (11, 12, 13):
            b.send(Audio(sid, RX, 1, bytes(320)).to_bytes())
        cli.wait_for(lambda l: l.startswith("EVICTED    stream=9 dir=RX"))
    finally:
        rc = cli.stop()
    out = "\n".join(cli.lines)
    assert rc == 0, out
    assert re.search(r"^FOREIGN    stream=9 dir=RX from=127\.0\.0\.1:\d+ pinned=127\.0\.0\.1:\d+ \(dropped\)$", out, re.M)
    assert re.search(r"^REFUSED    stream=9 dir=RX from=127\.0\.0\.1:\d+: sequence 50000 jumps more than 3000", out, re.M)
    assert re.search(r"^TOTAL packets=4 bytes=1280 .* refused=1 foreign=1 unknown=0 evicted=1$", out, re.M), out
    assert "and 1 stream(s) no longer tracked" in out


def test_bad_rate_flag_refused():
    p = subprocess.run([sys.executable, "-m", "mediafork_tlv", "--listen", "127.0.0.1:0", "--rate", "1600000"],
                       cwd=str(PYTHON_DIR), capture_output=True, text=True, timeout=TIMEOUT)
    assert p.returncode == 2 and "rate 1600000 Hz is not a positive multiple of 8000 up to 48000" in p.stderr
