"""Receiver state: sequence gaps, reordering, duplicates, format, warnings, frames."""

from __future__ import annotations

import asyncio
import math
import socket
import struct

from mediafork_tlv import (Audio, Direction, Encoding, End, EndReason, Format, Receiver, Signaling, dominant_hz,
                           listen, samples)
from mediafork_tlv.g711 import ULAW

RX, TX = Direction.RX, Direction.TX


def tone_l16(hz: float, n: int, start: int = 0, rate: int = 8000) -> bytes:
    return b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * hz * (start + i) / rate))) for i in range(n))


def ulaw_encode_table():
    # nearest µ-law code per value, from the decoding table (enough for a test tone)
    pairs = sorted((v, c) for c, v in enumerate(ULAW) if c != 0x7F)
    return pairs


def tone_pcmu(hz: float, n: int, start: int = 0) -> bytes:
    import bisect
    pairs = ulaw_encode_table()
    values = [v for v, _ in pairs]
    out = bytearray()
    for i in range(n):
        x = int(8000 * math.sin(2 * math.pi * hz * (start + i) / 8000))
        j = min(bisect.bisect_left(values, x), len(values) - 1)
        out.append(pairs[j][1])
    return bytes(out)


class Recorder:
    """Collects every callback."""

    def __init__(self):
        self.events = []

    def options(self, **kw):
        cb = lambda name: (lambda *a: self.events.append((name,) + a))  # noqa: E731
        return dict(on_stream=cb("stream"), on_packet=cb("packet"), on_frame=cb("frame"), on_sequence=cb("sequence"),
                    on_end=cb("end"), on_invalid=cb("invalid"), on_warning=cb("warning"), **kw)

    def of(self, name):
        return [e[1:] for e in self.events if e[0] == name]


def audio(seq, direction=RX, stream=5, payload=b"\0" * 320):
    return Audio(stream, direction, seq, payload).to_bytes()


def test_in_order_stream():
    rec = Recorder()
    r = Receiver(**rec.options())
    r.handle(Signaling(5, RX, "ch", "100", "alice", "bob", 7).to_bytes())
    for seq in range(1, 6):
        r.handle(audio(seq))
    r.handle(End(5, RX, 5, EndReason.HANGUP).to_bytes())
    s = r.streams_by_key[(5, RX)]
    assert (s.packets, s.bytes, s.first_seq, s.last_seq, s.missing, s.reordered, s.duplicates) == (5, 1600, 1, 5, 0, 0, 0)
    assert s.signaling.caller_id == "alice" and s.end.reason == EndReason.HANGUP and s.ended
    assert not s.audio_before_signaling
    assert len(rec.of("stream")) == 1 and len(rec.of("frame")) == 5 and len(rec.of("end")) == 1
    assert not rec.of("sequence") and not rec.of("warning")


def test_gap_reorder_duplicate_accounting():
    rec = Recorder()
    r = Receiver(**rec.options())
    for seq in (1, 2, 5, 3, 3, 6, 6, 4, 2, 9):
        r.handle(audio(seq))
    s = r.streams_by_key[(5, RX)]
    # 5 skips 3,4 (missing 2); 3 is late (missing 1); 3 again: duplicate; 6; 6 again: duplicate;
    # 4 late (missing 0); 2 again: duplicate (not the latest: still told apart); 9 skips 7,8.
    assert s.missing == 2
    assert s.reordered == 2
    assert s.duplicates == 3
    assert s.packets == 10 and s.last_seq == 9 and s.first_seq == 1
    assert rec.of("sequence") == [(s, "gap", 5, 3), (s, "reorder", 3, 5), (s, "duplicate", 3, 5),
                                  (s, "duplicate", 6, 6), (s, "reorder", 4, 6), (s, "duplicate", 2, 6),
                                  (s, "gap", 9, 7)]
    frames = [f for f, _ in rec.of("frame")]
    assert [f.sequence for f in frames] == [1, 2, 5, 3, 6, 4, 9], "duplicates are not delivered"
    assert [f.late for f in frames] == [False, False, False, True, False, True, False]
    assert [f.missing_before for f in frames] == [0, 0, 2, 0, 0, 0, 2]
    assert s.audio_before_signaling


def test_directions_and_streams_are_independent():
    r = Receiver()
    for seq in (1, 2, 3):
        r.handle(audio(seq, RX))
    for seq in (1, 3):
        r.handle(audio(seq, TX))
    r.handle(audio(10, RX, stream=6))
    assert r.streams_by_key[(5, RX)].missing == 0
    assert r.streams_by_key[(5, TX)].missing == 1
    assert r.streams_by_key[(6, RX)].first_seq == 10
    assert len(r.streams_by_key) == 3


def test_packet_older_than_the_first_seen():
    r = Receiver()
    for seq in (5, 6, 2):
        r.handle(audio(seq))
    s = r.streams_by_key[(5, RX)]
    assert (s.first_seq, s.missing, s.reordered) == (2, 2, 1)  # 3 and 4 never came


def test_invalid_and_unknown_counted():
    rec = Recorder()
    r = Receiver(**rec.options())
    r.handle(bytes.fromhex("0102"), ("127.0.0.1", 1))
    r.handle(bytes.fromhex("7f000c0000000509deadbeef"))
    assert r.invalid == 1 and r.unknown == 1 and not r.streams_by_key
    (data, addr, err), = rec.of("invalid")
    assert addr == ("127.0.0.1", 1) and "shorter" in str(err)


def test_format_packet_drives_decoding():
    rec = Recorder()
    r = Receiver(**rec.options())  # assumes l16 at 8 kHz unless told
    r.handle(Signaling(5, TX).to_bytes())
    r.handle(Format(5, TX, Encoding.PCMU, 8000, 1, 20).to_bytes())
    payload = bytes(range(160))
    r.handle(Audio(5, TX, 1, payload).to_bytes())
    (frame, s), = rec.of("frame")
    assert list(frame.samples) == list(ULAW[:160])
    assert frame.sample_rate == 8000 and s.encoding == Encoding.PCMU and s.format is not None
    assert abs(frame.duration - 0.020) < 1e-9
    assert not rec.of("warning")


def test_wrong_size_without_format_packet_warns_once():
    rec = Recorder()
    r = Receiver(**rec.options())
    for seq in range(1, 5):
        r.handle(audio(seq, payload=b"\xff" * 160))  # pcmu sized, read as l16
    (s, msg), = rec.of("warning")
    assert "payload 160 bytes" in msg and "pcmu" in msg and "l16 at 8 kHz/10 ms" in msg and "--encoding" in msg


def test_final_partial_frame_does_not_warn():
    rec = Recorder()
    r = Receiver(**rec.options())
    r.handle(audio(1))
    r.handle(audio(2, payload=b"\0" * 100))
    assert not rec.of("warning")
    assert len(rec.of("frame")) == 2


def test_undecodable_format_is_counted_not_decoded():
    rec = Recorder()
    r = Receiver(**rec.options())
    r.handle(bytes.fromhex("04" "0010" "00000005" "01" "09" "00001f40" "01" "0014"))
    r.handle(audio(1))
    s = r.streams_by_key[(5, RX)]
    assert s.undecodable == 1 and s.packets == 1 and not rec.of("frame")
    assert "format packet refused: encoding code 9" in rec.of("warning")[0][1]
    assert "counted, not decoded" in rec.of("warning")[0][1]
    assert s.refused == 1 and r.refused == 1


def test_async_iterators_over_a_real_socket():
    """listen on port 0, send two directions over UDP, read them with `async for`."""

    async def main():
        r = await listen("127.0.0.1", 0)
        host, port = r.address[:2]
        assert port != 0
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        got = {}

        async def consume(stream):
            frames = [f async for f in stream]  # ends at the end packet
            got[stream.direction] = (stream, frames)

        async def send():
            for d, hz, enc in ((RX, 440, Encoding.L16), (TX, 1000, Encoding.PCMU)):
                out.sendto(Signaling(77, d, "chan", "100", "a", "b", 1).to_bytes(), (host, port))
                out.sendto(Format(77, d, enc, 8000).to_bytes(), (host, port))
            for seq in range(1, 26):
                start = (seq - 1) * 160
                out.sendto(Audio(77, RX, seq, tone_l16(440, 160, start)).to_bytes(), (host, port))
                out.sendto(Audio(77, TX, seq, tone_pcmu(1000, 160, start)).to_bytes(), (host, port))
                await asyncio.sleep(0)  # let the receiver keep up; the socket buffer is large anyway
            for d in (RX, TX):
                out.sendto(End(77, d, 25, EndReason.HANGUP).to_bytes(), (host, port))

        async def accept():
            tasks = []
            async for stream in r.streams():
                tasks.append(asyncio.ensure_future(consume(stream)))
                if len(tasks) == 2:
                    break
            await asyncio.gather(*tasks)

        try:
            await asyncio.wait_for(asyncio.gather(accept(), send()), 60)
        finally:
            r.close()
            out.close()
        await asyncio.wait_for(r.wait_closed(), 60)
        return got

    got = asyncio.run(main())
    for d, hz in ((RX, 440), (TX, 1000)):
        stream, frames = got[d]
        assert [f.sequence for f in frames] == list(range(1, 26)), "every frame, in order"
        assert stream.signaling.channel_id == "chan" and stream.end.last_sequence == 25
        pcm = b"".join(f.pcm for f in frames)
        assert len(pcm) == 25 * 160 * 2
        assert abs(dominant_hz(samples(pcm), 8000) - hz) < 10


def test_slow_consumer_keeps_the_newest_frames():
    async def main():
        r = Receiver(queue=3)
        it = r.streams()
        for seq in range(1, 11):
            r.handle(audio(seq))
        stream = await it.__anext__()
        r.handle(End(5, RX, 10, 1).to_bytes())
        frames = [f.sequence async for f in stream]
        return frames, stream

    frames, stream = asyncio.run(main())
    assert frames == [8, 9, 10] and stream.dropped_frames == 7


def test_no_queue_without_a_consumer():
    r = Receiver()
    for seq in range(1, 1000):
        r.handle(audio(seq))
    assert r.streams_by_key[(5, RX)]._feed is None


def test_queued_frames_bounded_in_bytes_for_all_streams():
    """Slow (here: absent) consumers: what is queued for them stays within
    max_queued_bytes, all streams together; an evicted stream's queue is dropped."""

    async def main():
        r = Receiver(queue=1000, max_queued_bytes=3200, max_streams=2)
        announced = r.streams()
        for sid in (1, 2):
            for seq in range(1, 51):
                r.handle(Audio(sid, RX, seq, bytes(320)).to_bytes())
        assert r._budget.used <= 3200
        s1, s2 = r.streams_by_key[(1, RX)], r.streams_by_key[(2, RX)]
        assert s1.dropped_frames + s2.dropped_frames == 100 - 3200 // 320
        # The first stream's frames hold the budget: the second's were dropped.
        assert len(s1._feed._items) == 10 and not s2._feed._items
        r.handle(Audio(3, RX, 1, bytes(320)).to_bytes())  # evicts stream 1: its queue goes
        assert s1.closed == "evicted" and [f async for f in s1] == []
        assert r._budget.used == 320  # stream 3's frame
        r.handle(Audio(2, RX, 51, bytes(320)).to_bytes())
        got = await asyncio.wait_for(s2.__aiter__().__anext__(), 60)
        return r, got, announced

    r, got, announced = asyncio.run(main())
    assert got.sequence == 51 and r._budget.used == 320
    assert len(announced._items) <= 2, "announcements to a consumer that does not come are bounded too"

