"""An asyncio UDP receiver: per stream and direction state, PCM frames out.

    receiver = await listen("0.0.0.0", 9000)
    async for stream in receiver.streams():      # each stream and direction, as it starts
        async for frame in stream:              # decoded 16-bit PCM, until its end packet
            ...

or callbacks (on_stream, on_frame, on_end, on_close, on_sequence, on_packet,
on_invalid, on_refused, on_warning, on_error) given to Receiver(). Everything
runs on the event loop's thread.

Every datagram is hostile (ForkStream's format has no authentication): a stream
id is pinned to the address of its first packet, impossible formats, payload
sizes and sequence jumps are refused and counted, and the streams tracked,
their memory and (with WavRecorder) open files and bytes on disk are bounded;
a stream silent for idle_timeout is closed. See limits.py: the same rules as
`mediafork tlvdump`, held to the same vectors (testdata/tlv/hostile.json).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, Optional, Set, Tuple

from .audio import decode, samples
from .limits import (DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_STREAMS, MAX_SEQ_JUMP, MAX_WARNINGS,
                     MOVE_QUIET, MOVE_SLACK, SEQ_WINDOW, format_problem, rate_problem, valid_rate)
from .packets import (MAX_AUDIO_PAYLOAD, Audio, Direction, Encoding, End, Format, Gap, Packet, PacketError, Signaling,
                      Unknown, parse)

__all__ = ["Frame", "Stream", "Receiver", "listen", "parse_address", "address_string"]

_WINDOW_MASK = (1 << SEQ_WINDOW) - 1


@dataclass(frozen=True)
class Frame:
    """One audio packet, decoded."""

    stream_id: int
    direction: Direction
    sequence: int
    pcm: bytes  # signed 16-bit little-endian mono PCM
    sample_rate: int
    late: bool = False  # arrived after a higher sequence number (reordered)
    missing_before: int = 0  # sequence numbers skipped just before this one (a gap)
    segment: int = 1  # the stream's segment: a new one after a format change or a return from idle
    reported_gap: float = 0.0  # a gap packet reported that gap: the seconds it may fill (its time on the receiver's clock)

    @property
    def samples(self):
        """pcm as an array('h') of ints."""
        return samples(self.pcm)

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


class _Budget:
    """Bytes of frames queued for consumers, all streams together, and the bound."""

    __slots__ = ("used", "limit")

    def __init__(self, limit: int):
        self.used, self.limit = 0, limit


class _Feed:
    """A single-consumer async queue that does not need a loop to be created.
    With a budget, the frames queued in all feeds sharing it stay within its
    bytes: this feed's oldest go first, then the new one."""

    def __init__(self, maxlen: int = 0, budget: Optional[_Budget] = None):
        self._items: Deque = deque()
        self._waiter: Optional[asyncio.Future] = None
        self._closed = False
        self.maxlen = maxlen
        self.dropped = 0
        self._budget = budget

    def _size(self, item) -> int:
        return len(item.pcm) if self._budget is not None else 0

    def _drop_oldest(self) -> None:
        item = self._items.popleft()
        self.dropped += 1
        if self._budget is not None:
            self._budget.used -= self._size(item)

    def put(self, item) -> None:
        if self._closed:
            return
        if self.maxlen and len(self._items) >= self.maxlen:
            self._drop_oldest()
        n = self._size(item)
        if self._budget is not None:
            while self._items and self._budget.used + n > self._budget.limit:
                self._drop_oldest()
            if self._budget.used + n > self._budget.limit:
                self.dropped += 1
                return
            self._budget.used += n
        self._items.append(item)
        self._wake()

    def discard(self) -> None:
        """Close, dropping what is queued (a stream evicted: nobody will ask for it)."""
        while self._items:
            self._drop_oldest()
        self.close()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def __aiter__(self):
        return self

    async def __anext__(self):
        while not self._items:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._items.popleft()
        if self._budget is not None:
            self._budget.used -= self._size(item)
        return item


class _Sequence:
    """One direction's sequence bookkeeping: first and highest numbers, a window
    of the ones seen below the highest (a bitmask: bit i is highest - i), and a
    refused jump the next packet may confirm."""

    __slots__ = ("started", "first", "last", "mask", "pending", "allow", "missing")

    def __init__(self):
        self.started = False
        self.first = self.last = 0
        self.mask = 0
        self.pending = -1
        self.allow = -1  # a number a gap packet announced: taken however far it jumps
        self.missing = 0

    def _seen(self, seq: int) -> bool:
        back = self.last - seq
        return back < SEQ_WINDOW and (self.mask >> back) & 1 == 1

    def account(self, seq: int) -> Tuple[str, int]:
        """("ok"|"gap"|"reorder"|"duplicate"|"refused", missing before it (gaps))."""
        if not self.started:
            self.started, self.first, self.last, self.mask, self.pending = True, seq, seq, 1, -1
            return "ok", 0
        confirmed = (self.pending >= 0 and seq == self.pending + 1) or (seq == self.allow and seq > self.last)
        if seq > self.last:
            jump = seq - self.last
            if jump > MAX_SEQ_JUMP and not confirmed:
                self.pending = seq
                return "refused", 0
            self.pending = -1
            self.missing += jump - 1
            self.mask = ((self.mask << jump) | 1) & _WINDOW_MASK if jump < SEQ_WINDOW else 1
            self.last = seq
            return ("gap", jump - 1) if jump > 1 else ("ok", 0)
        if self.last - seq > MAX_SEQ_JUMP:
            if not confirmed:
                self.pending = seq
                return "refused", 0
            self.pending = -1  # the sender started counting again lower down: follow it
            self.last, self.mask = seq, 1
            return "ok", 0
        if self._seen(seq):
            return "duplicate", 0
        self.pending = -1
        if seq < self.first:  # older than the first seen: the ones between are missing too
            self.missing += self.first - seq - 1
            self.first = seq
        elif self.missing > 0:
            self.missing -= 1  # a late packet fills a gap counted earlier
        self.mask |= 1 << (self.last - seq)
        return "reorder", 0


class Stream:
    """What arrived for one stream id and direction.

    Iterate it (`async for frame in stream`) for its frames until its end
    packet (or until it is closed: idle, evicted); one consumer per stream."""

    def __init__(self, stream_id: int, direction: Direction, encoding: Encoding, rate: int, frame_ms: int,
                 queue: int, source: str, now: float, budget: Optional[_Budget] = None):
        self.stream_id = stream_id
        self.direction = direction
        self.source = source  # the address it is pinned to: its first packet's ("host:port")
        self.signaling: Optional[Signaling] = None
        self.format: Optional[Format] = None  # the format packet it is decoded by, when one came and was accepted
        self.encoding = encoding  # what the audio is decoded as: the format packet's, else the receiver's
        self.sample_rate = rate
        self.frame_ms = frame_ms
        self.end: Optional[End] = None
        self.packets = 0  # audio packets, duplicates included, refused ones not
        self.bytes = 0  # audio payload bytes
        self.missing = 0  # sequence numbers not (yet) received
        self.reordered = 0  # packets that came after a higher sequence number
        self.duplicates = 0
        self.refused = 0  # format packets, payloads and sequence jumps refused
        self.foreign = 0  # packets from another address, dropped
        self.undecodable = 0  # audio packets counted, not decoded (its format packet was refused)
        self.gaps = 0  # gap packets (0x06) taken: gaps the sender announced
        self.gap_frames = 0  # the frames they said were missing
        self.moved = 0  # times a gap packet moved the stream to another source (resumed elsewhere)
        self.last_gap: Optional[Gap] = None
        self._announced: Optional[Gap] = None  # a gap packet whose next sequence has not come yet
        self.last_audio: Optional[float] = None  # its last audio packet, on the receiver's clock
        self.closed: Optional[str] = None  # "idle" once the idle timeout closed it; "evicted"
        self.segment = 1  # +1 at each format change after audio and each return from idle
        self.audio_before_signaling = False
        self.started = time.monotonic()
        self.last_active = now  # on the receiver's clock
        self.warned = False  # a payload-size warning was given
        self.warnings: list = []  # the first warning of each kind
        self._warned: Set[str] = set()
        self._decodable = True
        self._seq = _Sequence()
        self._queue = queue
        self._budget = budget
        self._feed: Optional[_Feed] = None
        self.full_frames = 0  # payloads of exactly the expected size

    def __repr__(self) -> str:
        return f"<Stream {self.stream_id} {self.direction}: {self.packets} packets, end={self.end}>"

    @property
    def key(self) -> Tuple[int, Direction]:
        return self.stream_id, self.direction

    @property
    def ended(self) -> bool:
        return self.end is not None

    @property
    def first_seq(self) -> int:
        return self._seq.first

    @property
    def last_seq(self) -> int:  # the highest seen
        return self._seq.last

    @property
    def decodable(self) -> bool:
        return self._decodable

    @property
    def frame_bytes(self) -> int:
        """Payload bytes of one full frame in the current encoding, rate and frame length."""
        return self.sample_rate * self.frame_ms // 1000 * self.encoding.bytes_per_sample

    def __aiter__(self):
        if self._feed is None:
            self._subscribe()
        return self._feed.__aiter__()

    def _subscribe(self) -> None:
        self._feed = _Feed(self._queue, self._budget)
        if self.end is not None or self.closed is not None:
            self._feed.close()

    @property
    def dropped_frames(self) -> int:
        """Frames dropped because the consumer fell more than `queue` frames (or the receiver's
        max_queued_bytes) behind."""
        return self._feed.dropped if self._feed else 0


Callback = Optional[Callable[..., None]]


def address_string(addr) -> str:
    """An address as datagram_received gives it, as "host:port" ("[v6]:port"); "-" for none."""
    if not addr:
        return "-"
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class Receiver(asyncio.DatagramProtocol):
    """TLV packets in, per stream and direction state and PCM frames out.

    encoding, rate and frame_ms say how to decode a direction that sent no
    format packet (ForkStream and mediafork with format_packet: false).
    Callbacks, all optional, called on the event loop's thread:
      on_stream(stream)                    first packet of a stream and direction (again after it was closed idle)
      on_packet(packet, stream, addr)      every valid packet taken, after bookkeeping (stream is None for Unknown)
      on_frame(frame, stream)              every decoded audio packet but duplicates
      on_sequence(stream, kind, seq, ref)  kind "gap" (ref = expected), "reorder" or "duplicate" (ref = highest seen)
      on_end(stream)                       end packet
      on_close(stream, reason)             closed without an end packet: "idle" (idle_timeout), "evicted" (max_streams)
      on_invalid(data, addr, error)        a datagram that is not a valid packet
      on_refused(stream, kind, message, addr)  a packet dropped: kind "foreign" (another address than the stream's),
                                           "format", "size" or "jump" (impossible)
      on_warning(stream, message)          format trouble and refusals, once per stream and kind
      on_error(data, addr, exception)      handling a datagram raised (a bug, or a callback's): counted, not fatal
    queue: frames kept per direction for a slow `async for` consumer (older ones are dropped).
    max_queued_bytes: bytes of frames kept for slow consumers, all directions together (the oldest go first).
    max_streams: streams (id and direction) tracked at once; a new one beyond evicts the least recently active.
    idle_timeout: seconds without a packet after which a stream is closed (its WAV finalised).
    clock: the receiver's clock in seconds (time.monotonic).
    """

    def __init__(self, *, encoding: Encoding = Encoding.L16, rate: int = 8000, frame_ms: int = 20,
                 on_stream: Callback = None, on_packet: Callback = None, on_frame: Callback = None,
                 on_sequence: Callback = None, on_end: Callback = None, on_invalid: Callback = None,
                 on_warning: Callback = None, on_refused: Callback = None, on_close: Callback = None,
                 on_error: Callback = None, queue: int = 500, max_queued_bytes: int = DEFAULT_MAX_QUEUED_BYTES,
                 max_streams: int = DEFAULT_MAX_STREAMS,
                 idle_timeout: float = DEFAULT_IDLE_TIMEOUT, clock: Callable[[], float] = time.monotonic):
        self.encoding = Encoding(encoding)
        if not valid_rate(rate):
            raise ValueError(f"rate: {rate_problem(rate)}")
        if not isinstance(frame_ms, int) or frame_ms <= 0 or \
                rate * frame_ms // 1000 * self.encoding.bytes_per_sample > MAX_AUDIO_PAYLOAD:
            raise ValueError(f"frame_ms: {frame_ms} ms of {self.encoding} at {rate} Hz does not fit one packet")
        if max_streams < 1 or not idle_timeout > 0:
            raise ValueError(f"max_streams {max_streams}, idle_timeout {idle_timeout}: must be positive")
        self.rate, self.frame_ms = rate, frame_ms
        self.on_stream, self.on_packet, self.on_frame = on_stream, on_packet, on_frame
        self.on_sequence, self.on_end, self.on_invalid, self.on_warning = on_sequence, on_end, on_invalid, on_warning
        self.on_refused, self.on_close, self.on_error = on_refused, on_close, on_error
        self.queue = queue
        self._budget = _Budget(max_queued_bytes)
        self.max_streams, self.idle_timeout, self.clock = max_streams, idle_timeout, clock
        # the streams tracked, the least recently active first
        self.streams_by_key: "OrderedDict[Tuple[int, Direction], Stream]" = OrderedDict()
        self.datagrams = 0  # every datagram handled
        self.invalid = 0
        self.unknown = 0
        self.refused = 0
        self.foreign = 0
        self.evicted = 0
        self.errors = 0
        # totals of the streams evicted, for a summary
        self.gone = dict(packets=0, bytes=0, missing=0, reordered=0, duplicates=0, refused=0, foreign=0)
        self.transport: Optional[asyncio.DatagramTransport] = None
        self._stream_feeds: Set[_Feed] = set()
        self._closed: Optional[asyncio.Future] = None
        self._sweeper: Optional[asyncio.TimerHandle] = None

    # asyncio.DatagramProtocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        self._sweeper = loop.call_later(self._sweep_every(), self._tick)

    def _sweep_every(self) -> float:
        return max(0.01, min(1.0, self.idle_timeout / 4))

    def _tick(self) -> None:
        try:
            self.sweep()
        finally:
            if self._closed is not None and not self._closed.done():
                self._sweeper = asyncio.get_running_loop().call_later(self._sweep_every(), self._tick)

    def datagram_received(self, data: bytes, addr) -> None:
        try:
            self.handle(data, addr)
        except Exception as e:  # a bug or a callback's: one datagram is lost, not the receiver
            self.errors += 1
            if self.on_error:
                self.on_error(bytes(data), addr, e)

    def error_received(self, exc: Exception) -> None:  # ICMP errors on some systems: nothing to do
        pass

    def connection_lost(self, exc) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        for feed in list(self._stream_feeds):
            feed.close()
        for s in self.streams_by_key.values():
            if s._feed is not None:
                s._feed.close()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)

    # the API

    @property
    def address(self) -> Tuple:
        """The (host, port) packets go to."""
        return self.transport.get_extra_info("sockname")

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def wait_closed(self) -> None:
        if self._closed is not None:
            await self._closed

    def streams(self) -> "_Feed":
        """An async iterator of each Stream (stream id and direction) as it starts,
        from now until the receiver closes. Frames of the streams it yields are kept
        for their `async for` from the start."""
        feed = _Feed(self.max_streams)  # a consumer that falls behind loses the oldest announcements
        self._stream_feeds.add(feed)
        return feed

    def forget(self, stream: Stream) -> None:
        """Drop an ended stream's state (long-running services)."""
        self.streams_by_key.pop(stream.key, None)

    def sweep(self) -> None:
        """Close the streams silent for idle_timeout (the receiver does it on its own
        every second or so): on_close(stream, "idle"); a later packet opens them again."""
        cutoff = self.clock() - self.idle_timeout
        for s in list(self.streams_by_key.values()):
            if s.last_active > cutoff:
                break  # the rest were active later
            if s.closed is not None or s.end is not None:
                continue
            s.closed = "idle"
            if s._feed is not None:
                s._feed.close()
            if self.on_close:
                self.on_close(s, "idle")

    def handle(self, data: bytes, addr=None) -> Optional[Packet]:
        """Process one datagram from addr (datagram_received calls it; tests may too)."""
        self.datagrams += 1
        try:
            p = parse(data)
        except PacketError as e:
            self.invalid += 1
            if self.on_invalid:
                self.on_invalid(bytes(data), addr, e)
            return None
        if isinstance(p, Unknown):  # DTMF, talk-back and whatever comes next: skipped
            self.unknown += 1
            if self.on_packet:
                self.on_packet(p, None, addr)
            return p
        if isinstance(p, Gap):
            s = self._gap(p, address_string(addr), addr)
            if self.on_packet:
                self.on_packet(p, s, addr)
            return p
        s = self._admit(p.stream_id, p.direction, address_string(addr), addr)
        if s is None:
            return None
        frame = None
        if isinstance(p, Audio):
            frame = self._audio(s, p, addr)
        elif isinstance(p, Signaling):
            s.signaling = p
        elif isinstance(p, Format):
            self._format(s, p, addr)
        elif isinstance(p, End):
            s.end = p
        if self.on_packet:
            self.on_packet(p, s, addr)
        if frame is not None:
            if self.on_frame:
                self.on_frame(frame, s)
            if s._feed is not None and s.end is None:
                s._feed.put(frame)
        if isinstance(p, End):
            if s._feed is not None:
                s._feed.close()
            if self.on_end:
                self.on_end(s)
        return p

    # internals

    def _admit(self, stream_id: int, direction: Direction, src: str, addr) -> Optional[Stream]:
        """The stream of a packet from src, made if new, or None when the stream id is
        pinned to another address (all its directions: the first packet's). Once a
        stream has gone idle (not ended), a packet from a new address moves it there."""
        now = self.clock()
        key = (stream_id, direction)
        s = self.streams_by_key.get(key)
        if s is None:
            for d in Direction:
                sib = self.streams_by_key.get((stream_id, d))
                if d != direction and sib is not None and sib.source != src and sib.closed is None and sib.end is None:
                    self._foreign(sib, src, addr)
                    return None
            while len(self.streams_by_key) >= self.max_streams:
                self._evict(next(iter(self.streams_by_key.values())))
            s = Stream(stream_id, direction, self.encoding, self.rate, self.frame_ms, self.queue, src, now, self._budget)
            self.streams_by_key[key] = s
            self._announce(s)
        else:
            if s.source != src:
                if s.closed is None or s.end is not None:
                    self._foreign(s, src, addr)
                    return None
                self._warn(s, "moved", f"source moved from {s.source} to {src} after the idle timeout")
                s.source = src
            if s.closed is not None:  # back from idle: a new segment, announced again
                s.closed = None
                s.segment += 1
                s._feed = None
                self._announce(s)
            self.streams_by_key.move_to_end(key)
        s.last_active = now
        return s

    def _gap(self, g: Gap, src: str, addr) -> Optional[Stream]:
        """A gap packet from src: the stream's next audio is announced (its sequence
        taken however far it jumps, its gap filled with silence up to
        MAX_REPORTED_GAP_SECONDS) and counted. From another source than the one the
        stream is pinned to, it moves the stream there when that is plausible for a
        stream resumed elsewhere (MOVE_QUIET, MOVE_SLACK); otherwise it is foreign.
        A gap packet of a stream not seen yet, or ended, says nothing."""
        s = self.streams_by_key.get((g.stream_id, g.direction))
        if s is None:
            return None
        if s.end is not None:
            if s.source != src:
                self._foreign(s, src, addr)
            return None
        if s.source != src:
            if not self._may_move(s, g):
                self._foreign(s, src, addr)
                return None
            self._warn(s, "moved-gap", f"source moved from {s.source} to {src} with a gap packet (the stream resumed "
                                       "elsewhere)", every=True)
            s.source = src
            s.moved += 1
        if s.closed is not None:  # back from idle: a new segment, announced again
            s.closed = None
            s.segment += 1
            s._feed = None
            self._announce(s)
        s._announced = s.last_gap = g
        s.gaps += 1
        s.gap_frames += g.missing_frames
        s.last_active = self.clock()
        self.streams_by_key.move_to_end(s.key)
        return s

    def _may_move(self, s: Stream, g: Gap) -> bool:
        """Whether a gap packet from another source may move s there: the stream has
        been silent MOVE_QUIET or more (a packet spoofed while it streams is refused),
        the packet continues its sequence, and it claims no more missing frames than
        the time since its last packet holds, plus MOVE_SLACK."""
        quiet = self.clock() - s.last_active
        if quiet < MOVE_QUIET or g.next_sequence <= s.last_seq:
            return False
        frame_ms = s.format.frame_ms if s.format is not None else self.frame_ms
        return (g.next_sequence - s.last_seq - 1) * frame_ms / 1000 <= quiet + MOVE_SLACK

    def _announce(self, s: Stream) -> None:
        live = [f for f in self._stream_feeds if not f._closed]
        if live:
            s._subscribe()
        for f in live:
            f.put(s)
        if self.on_stream:
            self.on_stream(s)

    def _evict(self, s: Stream) -> None:
        del self.streams_by_key[s.key]
        self.evicted += 1
        for k in self.gone:
            self.gone[k] += getattr(s, k)
        s.closed = "evicted"
        if s._feed is not None:
            s._feed.discard()
        if self.on_close:
            self.on_close(s, "evicted")

    def _foreign(self, s: Stream, src: str, addr) -> None:
        s.foreign += 1
        self.foreign += 1
        if self.on_refused:
            self.on_refused(s, "foreign", f"from {src}, pinned to {s.source}: dropped", addr)
        self._warn(s, "foreign", f"packets from {src} dropped: the stream is pinned to {s.source}")

    def _refuse(self, s: Stream, kind: str, msg: str, addr) -> None:
        s.refused += 1
        self.refused += 1
        if self.on_refused:
            self.on_refused(s, kind, msg, addr)
        self._warn(s, kind, msg)

    def _warn(self, s: Stream, kind: str, msg: str, every: bool = False) -> None:
        """Report once per stream and kind (every time with every=True); the first
        of each kind is kept in stream.warnings."""
        first = kind not in s._warned
        if first:
            s._warned.add(kind)
            if len(s.warnings) < MAX_WARNINGS:
                s.warnings.append(msg)
        if (first or every) and self.on_warning:
            self.on_warning(s, msg)

    def _format(self, s: Stream, f: Format, addr) -> None:
        problem = format_problem(f)
        if problem is not None:
            if s.format is None:
                s._decodable = False
                self._refuse(s, "format", f"format packet refused: {problem}; the audio is counted, not decoded", addr)
            else:
                self._refuse(s, "format", f"format packet refused: {problem}; still decoding as {s.encoding} at "
                                          f"{s.sample_rate} Hz", addr)
            return
        if s.format == f:
            return  # said again
        if s.packets and (not s._decodable or f.encoding != s.encoding or f.sample_rate != s.sample_rate):
            self._warn(s, "format-change", f"format changes from {s.encoding} at {s.sample_rate} Hz to {f.encoding} at "
                                           f"{f.sample_rate} Hz after {s.packets} audio packets: a new WAV file",
                       every=True)
            s.segment += 1
        s.format = f
        s._decodable = True
        s.encoding, s.sample_rate, s.frame_ms = f.encoding, f.sample_rate, f.frame_ms

    def _audio(self, s: Stream, a: Audio, addr) -> Optional[Frame]:
        f = s.format
        if f is not None and len(a.payload) > f.frame_bytes:
            self._refuse(s, "size", f"payload {len(a.payload)} bytes is more than one {f.frame_ms} ms frame of "
                                    f"{f.encoding} at {f.sample_rate} Hz ({f.frame_bytes} bytes)", addr)
            return None
        if s.signaling is None and s.packets == 0:
            s.audio_before_signaling = True
        prev = s._seq.last
        announced = s._announced is not None and a.sequence == s._announced.next_sequence
        if announced:
            s._seq.allow = a.sequence  # a jump a gap packet announced is taken at once
        kind, missing_before = s._seq.account(a.sequence)
        s._seq.allow = -1
        now = self.clock()
        reported = 0.0  # the time a reported gap may fill: since the last audio
        if announced and kind == "gap" and s.last_audio is not None:
            reported = max(now - s.last_audio, 1e-9)
        if s._announced is not None and a.sequence >= s._announced.next_sequence:
            s._announced = None
        if kind != "refused":
            s.last_audio = now
        if kind == "refused":
            self._refuse(s, "jump", f"sequence {a.sequence} jumps more than {MAX_SEQ_JUMP} from {prev}: refused "
                                    "(a packet continuing from it is taken)", addr)
            return None
        s.missing = s._seq.missing
        s.packets += 1
        s.bytes += len(a.payload)
        if kind == "duplicate":
            s.duplicates += 1
        elif kind == "reorder":
            s.reordered += 1
        if kind != "ok" and self.on_sequence:
            ref = prev + 1 if kind == "gap" else s._seq.last
            self.on_sequence(s, kind, a.sequence, ref)
        if kind == "duplicate":
            return None
        if not s._decodable:
            s.undecodable += 1
            return None
        if len(a.payload) == s.frame_bytes:
            s.full_frames += 1
        elif f is None and not s.warned and not (len(a.payload) < s.frame_bytes and s.full_frames):
            # A short payload after full ones is a final partial frame; anything else means
            # the assumed format is probably wrong.
            s.warned = True
            self._warn(s, "size-hint", size_hint(len(a.payload), s.encoding, s.sample_rate, s.frame_ms))
        return Frame(s.stream_id, s.direction, a.sequence, decode(a.payload, s.encoding), s.sample_rate,
                     late=kind == "reorder", missing_before=missing_before, segment=s.segment, reported_gap=reported)



def size_hint(size: int, encoding: Encoding, rate: int, frame_ms: int) -> str:
    """Why a payload size does not fit the assumed format, and what would."""
    want = rate * frame_ms // 1000 * encoding.bytes_per_sample
    fits = []
    for enc in (Encoding.PCMU, Encoding.L16):
        for r in (8000, 16000, 24000, 32000, 48000):
            for ms in (20, 10, 30, 40):
                if r * ms // 1000 * enc.bytes_per_sample == size and len(fits) < 3:
                    name = "pcmu/pcma" if enc == Encoding.PCMU else "l16"
                    fits.append(f"{name} at {r // 1000} kHz/{ms} ms")
    guess = (" or ".join(fits) + "?") if fits else "no common format fits."
    return (f"payload {size} bytes, but {encoding} at {rate // 1000} kHz/{frame_ms} ms is {want} "
            f"and no format packet came: {guess} pass --encoding/--rate")


def parse_address(s: str, default_host: str = "0.0.0.0") -> Tuple[str, int]:
    """'host:port', '[v6]:port' or ':port' as (host, port)."""
    host, sep, port = s.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"address {s!r}: want host:port")
    host = host.strip("[]") or default_host
    return host, int(port)


async def listen(host: str = "0.0.0.0", port: int = 9000, *, rcvbuf: int = 8 << 20, **kw) -> Receiver:
    """A Receiver bound to host:port (port 0 picks a free one: see .address)."""
    proto = Receiver(**kw)  # its arguments are checked before a socket is opened
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    family, _, _, _, sockaddr = infos[0]
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        except OSError:
            pass  # the kernel's limit applies
        sock.bind(sockaddr)
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: proto, sock=sock)
    except BaseException:
        sock.close()
        raise
    return proto
