"""A seeded random-datagram loop: the CLI's receiver, WAV recorder and summary fed
arbitrary datagrams (random, mutated from the hostile vectors, and well-formed with
random fields) from three sources with the clock moving. After each datagram every
bound must hold; at the end the bytes on disk are bounded by the bytes received,
every WAV is finalised and the summary comes. The Go receiver's counterpart is
FuzzReceiver. MEDIAFORK_FUZZ_N sets the number of datagrams (default 20000)."""

from __future__ import annotations

import argparse
import io
import os
import random
import struct
import time

from conftest import TIMEOUT
from mediafork_tlv import Audio, Direction, End, Format, Gap, Receiver, Signaling
from mediafork_tlv.__main__ import Dump
from mediafork_tlv.limits import MAX_ANALYSED_SAMPLES, MAX_ANALYSED_TOTAL, MAX_SEGMENTS, MAX_WARNINGS, SEQ_WINDOW
from test_hostile import CASES, packets

N = int(os.environ.get("MEDIAFORK_FUZZ_N", "20000"))
SOURCES = [("127.0.0.1", 1001), ("127.0.0.1", 1002), ("127.0.0.2", 1001)]


def seed_datagrams() -> list:
    out = []
    for case in CASES:
        for d in case["datagrams"]:
            if "advance_ms" not in d:
                out.extend(p for p in packets(d)[:20] if len(p) <= 4000)
    return out


def random_datagram(rng: random.Random, seeds: list) -> bytes:
    kind = rng.randrange(7)
    sid = rng.choice([1, 2, 3, rng.randrange(1, 40), rng.randrange(1, 1 << 32)])
    d = Direction(rng.randrange(1, 4))
    if kind == 0:  # a seed, mutated
        b = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(4)):
            if b:
                b[rng.randrange(len(b))] = rng.randrange(256)
        if rng.random() < 0.2:
            b = b[:rng.randrange(len(b) + 1)]
        return bytes(b)
    if kind == 1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))
    if kind == 2:
        rate = rng.choice([8000, 16000, 48000, 44100, 0x7FFFFFFF, 2 ** 32 - 1, rng.randrange(1, 2 ** 32)])
        return Format(sid, d, rng.choice([1, 2, 3, 4, 9]), rate, rng.choice([1, 1, 1, 2]),
                      rng.choice([20, 20, 10, 1, 60000])).to_bytes()
    if kind == 3:
        return End(sid, d, rng.randrange(1 << 32), rng.randrange(256)).to_bytes()
    if kind == 4:
        return Signaling(sid, d, "c" * rng.randrange(70)).to_bytes()
    if kind == 5:
        return Gap(sid, d, rng.choice([1, 2, 50, rng.randrange(1, 5000), rng.randrange(1, 1 << 32)]),
                   rng.choice([1, 5, rng.randrange(1, 1 << 32)]), rng.randrange(256)).to_bytes()
    seq = rng.choice([1, 2, 3, rng.randrange(1, 10), rng.randrange(1, 5000), rng.randrange(1 << 32)])
    return Audio(sid, d, seq, bytes([rng.randrange(256)]) * rng.choice([0, 1, 159, 160, 320, 640, 1920, 3000])).to_bytes()


def test_random_datagrams_hold_every_bound(tmp_path):
    rng = random.Random(20)
    seeds = seed_datagrams()
    args = argparse.Namespace(encoding=None, rate=None, frame_ms=20, every=0, quiet=True, wav=str(tmp_path),
                              max_streams=8, idle_timeout=1.0, max_open_files=3)
    dump = Dump(args, out=io.StringIO())
    now = [0.0]
    r = Receiver(**dump.receiver_options(), clock=lambda: now[0], max_queued_bytes=1 << 20)
    announced = r.streams()  # a library consumer that never reads: its queues must stay bounded too
    received = 0
    for _ in range(N):
        if rng.random() < 0.02:
            now[0] += rng.choice([0.1, 0.5, 1.5])
            r.sweep()
        data = random_datagram(rng, seeds)
        received += len(data)
        r.handle(data, rng.choice(SOURCES))  # raises on a bug: no exception is swallowed here

        assert len(r.streams_by_key) <= 8
        assert r._budget.used <= 1 << 20 and len(announced._items) <= 8
        assert len(dump.wav._open) <= 3
        assert len(dump.wav._current) <= 8 and len(dump.wav.all_paths) <= 8
        assert dump.kept <= 2 * MAX_ANALYSED_TOTAL and all(n <= 2 * MAX_ANALYSED_SAMPLES for n in dump.pcm_len.values())
        assert len(dump.pcm) <= 8
        for s in r.streams_by_key.values():
            assert s._seq.mask.bit_length() <= SEQ_WINDOW
            assert len(s.warnings) <= MAX_WARNINGS
            assert len(dump.wav.all_paths.get(s.key, [])) <= MAX_SEGMENTS
    t0 = time.monotonic()
    dump.wav.close()
    dump.summary(r)
    assert time.monotonic() - t0 < TIMEOUT
    assert "TOTAL packets=" in dump.out.getvalue()
    assert r.datagrams == N and r.errors == 0
    on_disk = 0
    for p in tmp_path.glob("*.wav"):
        b = p.read_bytes()
        assert struct.unpack_from("<I", b, 40)[0] == len(b) - 44, f"{p} finalised"
        on_disk += len(b) - 44
    # every sample written is a decoded payload byte or two, or silence no longer than
    # the audio beside it: at most 4 bytes on disk per byte received; or silence a gap
    # packet reported, no longer in all, per stream, than the time on the clock
    streams = len(r.streams_by_key) + r.evicted
    assert on_disk <= 4 * received + streams * 2 * 48000 * now[0]
    assert not dump.wav._open
    # the loop reaches what it is for
    assert r.evicted > 100 and r.refused > 100 and r.foreign > 100 and r.invalid > 100 and r.unknown > 10
    assert len(list(tmp_path.glob("*.wav"))) > 100
