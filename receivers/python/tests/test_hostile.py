"""The hostile vectors shared with `mediafork tlvdump` (testdata/tlv/hostile.json),
each sent over real UDP sockets (one per source label) to a running receiver
writing WAV files, and its counters, streams and files checked."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import struct
from pathlib import Path

import pytest

from conftest import REPO, TIMEOUT
from mediafork_tlv import Audio, Direction, End, Format, Gap, Receiver, Signaling, WavRecorder, listen

HOSTILE = REPO / "testdata" / "tlv" / "hostile.json"
CASES = json.loads(HOSTILE.read_text(encoding="utf-8"))["cases"]


def packets(d) -> list:
    """A vector datagram's bytes (several for audio with a count or several streams)."""
    if "hex" in d:
        return [bytes.fromhex(d["hex"])]
    if "signaling" in d:
        s = d["signaling"]
        return [Signaling(s["stream"], Direction[s["dir"]], s.get("channel", "")).to_bytes()]
    if "format" in d:
        f = d["format"]
        return [Format(f["stream"], Direction[f["dir"]], f["encoding"], f["rate"], f["channels"], f["frame_ms"]).to_bytes()]
    if "end" in d:
        e = d["end"]
        return [End(e["stream"], Direction[e["dir"]], e["last_seq"], e["reason"]).to_bytes()]
    if "gap" in d:
        g = d["gap"]
        return [Gap(g["stream"], Direction[g["dir"]], g["next"], g["missing"], g["reason"]).to_bytes()]
    if "raw" in d:
        r = d["raw"]
        return [struct.pack("!BHIB", r["type"], 8 + r["bytes"], r["stream"], r["dir"]) + bytes(r["bytes"])]
    a = d["audio"]
    payload = bytes([a.get("fill", 17)]) * a["bytes"]
    seqs = a.get("seqs") or [a["seq"] + i for i in range(a.get("count", 1))]
    return [Audio(a["stream"] + i, Direction[a["dir"]], seq, payload).to_bytes()
            for i in range(a.get("streams", 1)) for seq in seqs]


def wav_facts(path: Path):
    """(rate, samples, silent samples) of a WAV file, checking it was finalised."""
    b = path.read_bytes()
    assert len(b) >= 44 and b[:4] == b"RIFF", path
    assert struct.unpack_from("<I", b, 4)[0] == len(b) - 8, f"{path}: RIFF size finalised"
    assert struct.unpack_from("<I", b, 40)[0] == len(b) - 44, f"{path}: data size finalised"
    data = b[44:]
    silent = sum(1 for i in range(0, len(data) - 1, 2) if data[i] == 0 and data[i + 1] == 0)
    return struct.unpack_from("<I", b, 24)[0], len(data) // 2, silent


class Clock:
    def __init__(self):
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


async def run_case(case, wav_dir: Path):
    rc = case.get("receiver", {})
    clock = Clock()
    rec = WavRecorder(str(wav_dir), max_open_files=rc.get("max_open_files", 0))
    handled = asyncio.Event()
    kw = dict(on_frame=rec.on_frame, on_end=rec.on_end, on_close=rec.on_close, clock=clock,
              max_streams=rc.get("max_streams", 4096), idle_timeout=rc.get("idle_timeout_ms", 10000) / 1000)
    r = await listen("127.0.0.1", 0, **kw)
    inner = r.datagram_received

    def received(data, addr):
        inner(data, addr)
        handled.set()

    r.datagram_received = received
    host, port = r.address[:2]
    socks, addrs = {}, {}
    try:
        for d in case["datagrams"]:
            if "advance_ms" in d:
                clock.t += d["advance_ms"] / 1000
                r.sweep()
                continue
            s = socks.get(d["from"])
            if s is None:
                s = socks[d["from"]] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.connect((host, port))
                addrs[d["from"]] = "%s:%d" % s.getsockname()
            for p in packets(d):
                handled.clear()
                want = r.datagrams + 1
                s.send(p)
                # one at a time: each is handled before the next goes, so the order
                # across sources is the vector's
                while r.datagrams < want:
                    await asyncio.wait_for(handled.wait(), TIMEOUT)
                    handled.clear()
    finally:
        r.close()
        for s in socks.values():
            s.close()
        await asyncio.wait_for(r.wait_closed(), TIMEOUT)
        rec.close()
    return r, rec, addrs


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_hostile_vector(case, tmp_path):
    r, rec, addrs = asyncio.run(run_case(case, tmp_path))
    exp = case["expect"]
    assert {"invalid": r.invalid, "unknown": r.unknown, "refused": r.refused, "foreign": r.foreign,
            "evicted": r.evicted} == exp["counts"]
    streams = sorted(r.streams_by_key.values(), key=lambda s: s.key)
    assert len(streams) == len(exp["streams"]), [s.key for s in streams]
    for s, want in zip(streams, exp["streams"]):
        got = dict(stream=s.stream_id, dir=s.direction.name, packets=s.packets, bytes=s.bytes, missing=s.missing,
                   reordered=s.reordered, duplicates=s.duplicates, refused=s.refused, foreign=s.foreign,
                   undecodable=s.undecodable, encoding=str(s.encoding), rate=s.sample_rate, ended=s.ended,
                   closed=s.closed or "", gaps=s.gaps, gap_frames=s.gap_frames, moved=s.moved, wavs=[])
        for path in rec.all_paths.get(s.key, []):
            rate, n, silent = wav_facts(Path(path))
            got["wavs"].append(dict(file=os.path.basename(path), rate=rate, samples=n, silent=silent))
        want = dict(want)
        for k in ("gaps", "gap_frames", "moved"):
            want.setdefault(k, 0)

        assert s.source == addrs[want.pop("from")], f"stream {s.key} pinned"
        assert got == want
    files = sorted(tmp_path.glob("*.wav"))
    assert len(files) == exp["files"], files
    for f in files:
        wav_facts(f)  # every one finalised, the evicted ones' too
