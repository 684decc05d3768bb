"""An asyncio UDP receiver: per stream and direction state, PCM frames out.

    receiver = await listen("0.0.0.0", 9000)
    async for stream in receiver.streams():      # each stream and direction, as it starts
        async for frame in stream:              # decoded 16-bit PCM, until its end packet
            ...

or callbacks (on_stream, on_frame, on_end, on_sequence, on_packet, on_invalid,
on_warning) given to Receiver(). Everything runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Dict, Optional, Set, Tuple

from .audio import decode, samples
from .packets import (Audio, Direction, Encoding, End, Format, Packet, PacketError, Signaling, Unknown,
                      parse)

__all__ = ["Frame", "Stream", "Receiver", "listen", "parse_address"]

SEEN_WINDOW = 4096  # sequence numbers remembered per direction to tell a duplicate from a late packet


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

    @property
    def samples(self):
        """pcm as an array('h') of ints."""
        return samples(self.pcm)

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


class _Feed:
    """A single-consumer async queue that does not need a loop to be created."""

    def __init__(self, maxlen: int = 0):
        self._items: Deque = deque()
        self._waiter: Optional[asyncio.Future] = None
        self._closed = False
        self.maxlen = maxlen
        self.dropped = 0

    def put(self, item) -> None:
        if self._closed:
            return
        if self.maxlen and len(self._items) >= self.maxlen:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._wake()

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
        return self._items.popleft()


class Stream:
    """What arrived for one stream id and direction.

    Iterate it (`async for frame in stream`) for its frames until its end
    packet; one consumer per stream."""

    def __init__(self, stream_id: int, direction: Direction, encoding: Encoding, rate: int, frame_ms: int,
                 queue: int):
        self.stream_id = stream_id
        self.direction = direction
        self.signaling: Optional[Signaling] = None
        self.format: Optional[Format] = None  # the format packet, when one came
        self.encoding = encoding  # what the audio is decoded as: the format packet's, else the receiver's
        self.sample_rate = rate
        self.frame_ms = frame_ms
        self.end: Optional[End] = None
        self.packets = 0  # audio packets, duplicates included
        self.bytes = 0  # audio payload bytes
        self.first_seq = 0
        self.last_seq = 0  # the highest seen
        self.missing = 0  # sequence numbers not (yet) received
        self.reordered = 0  # packets that came after a higher sequence number
        self.duplicates = 0
        self.undecodable = 0  # audio packets in an encoding this library cannot decode
        self.audio_before_signaling = False
        self.started = time.monotonic()
        self.warned = False  # a payload-size warning was given
        self._seen: Set[int] = set()
        self._seen_order: Deque[int] = deque()
        self._queue = queue
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
    def frame_bytes(self) -> int:
        """Payload bytes of one full frame in the current encoding, rate and frame length."""
        return self.sample_rate * self.frame_ms // 1000 * self.encoding.bytes_per_sample

    def __aiter__(self):
        if self._feed is None:
            self._subscribe()
        return self._feed.__aiter__()

    def _subscribe(self) -> None:
        self._feed = _Feed(self._queue)
        if self.end is not None:
            self._feed.close()

    @property
    def dropped_frames(self) -> int:
        """Frames dropped because the consumer fell more than `queue` frames behind."""
        return self._feed.dropped if self._feed else 0

    def _remember(self, seq: int) -> None:
        self._seen.add(seq)
        self._seen_order.append(seq)
        if len(self._seen_order) > SEEN_WINDOW:
            self._seen.discard(self._seen_order.popleft())

    def _account(self, seq: int) -> Tuple[str, int]:
        """Sequence bookkeeping for one audio packet: ("ok"|"gap"|"reorder"|"duplicate", reference),
        the reference being the expected number for a gap, the highest seen otherwise."""
        if self.packets == 0:
            self.first_seq = self.last_seq = seq
            self._remember(seq)
            return "ok", seq
        if seq == self.last_seq + 1:
            self.last_seq = seq
            self._remember(seq)
            return "ok", seq
        if seq > self.last_seq:
            expected = self.last_seq + 1
            self.missing += seq - expected
            self.last_seq = seq
            self._remember(seq)
            return "gap", expected
        if seq in self._seen:
            self.duplicates += 1
            return "duplicate", self.last_seq
        self.reordered += 1
        if seq < self.first_seq:  # older than the first we saw: the ones between are missing too
            self.missing += self.first_seq - seq - 1
            self.first_seq = seq
        elif self.missing > 0:
            self.missing -= 1  # a late packet fills a gap counted earlier
        self._remember(seq)
        return "reorder", self.last_seq


Callback = Optional[Callable[..., None]]


class Receiver(asyncio.DatagramProtocol):
    """TLV packets in, per stream and direction state and PCM frames out.

    encoding, rate and frame_ms say how to decode a direction that sent no
    format packet (ForkStream and mediafork with format_packet: false).
    Callbacks, all optional, called on the event loop's thread:
      on_stream(stream)                    first packet of a stream and direction
      on_packet(packet, stream, addr)      every valid packet, after bookkeeping (stream is None for Unknown)
      on_frame(frame, stream)              every decoded audio packet but duplicates
      on_sequence(stream, kind, seq, ref)  kind "gap" (ref = expected), "reorder" or "duplicate" (ref = highest seen)
      on_end(stream)                       end packet
      on_invalid(data, addr, error)        a datagram that is not a valid packet
      on_warning(stream, message)          format trouble: payload sizes that do not fit, undecodable formats
    queue: frames kept per direction for a slow `async for` consumer (older ones are dropped).
    """

    def __init__(self, *, encoding: Encoding = Encoding.L16, rate: int = 8000, frame_ms: int = 20,
                 on_stream: Callback = None, on_packet: Callback = None, on_frame: Callback = None,
                 on_sequence: Callback = None, on_end: Callback = None, on_invalid: Callback = None,
                 on_warning: Callback = None, queue: int = 500):
        self.encoding, self.rate, self.frame_ms = Encoding(encoding), rate, frame_ms
        self.on_stream, self.on_packet, self.on_frame = on_stream, on_packet, on_frame
        self.on_sequence, self.on_end, self.on_invalid, self.on_warning = on_sequence, on_end, on_invalid, on_warning
        self.queue = queue
        self.streams_by_key: Dict[Tuple[int, Direction], Stream] = {}
        self.invalid = 0
        self.unknown = 0
        self.transport: Optional[asyncio.DatagramTransport] = None
        self._stream_feeds: Set[_Feed] = set()
        self._closed: Optional[asyncio.Future] = None

    # asyncio.DatagramProtocol

    def connection_made(self, transport) -> None:
        self.transport = transport
        self._closed = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr) -> None:
        self.handle(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP errors on some systems: nothing to do
        pass

    def connection_lost(self, exc) -> None:
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
        feed = _Feed()
        self._stream_feeds.add(feed)
        return feed

    def forget(self, stream: Stream) -> None:
        """Drop an ended stream's state (long-running services)."""
        self.streams_by_key.pop(stream.key, None)

    def handle(self, data: bytes, addr=None) -> Optional[Packet]:
        """Process one datagram (datagram_received calls it; tests may too)."""
        try:
            p = parse(data)
        except PacketError as e:
            self.invalid += 1
            if self.on_invalid:
                self.on_invalid(bytes(data), addr, e)
            return None
        if isinstance(p, Unknown):
            self.unknown += 1
            if self.on_packet:
                self.on_packet(p, None, addr)
            return p
        s = self._stream(p.stream_id, p.direction)
        frame = None
        if isinstance(p, Audio):
            frame = self._audio(s, p)
        elif isinstance(p, Signaling):
            s.signaling = p
        elif isinstance(p, Format):
            self._format(s, p)
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

    def _stream(self, stream_id: int, direction: Direction) -> Stream:
        s = self.streams_by_key.get((stream_id, direction))
        if s is None:
            s = Stream(stream_id, direction, self.encoding, self.rate, self.frame_ms, self.queue)
            self.streams_by_key[s.key] = s
            live = [f for f in self._stream_feeds if not f._closed]
            if live:
                s._subscribe()
            for f in live:
                f.put(s)
            if self.on_stream:
                self.on_stream(s)
        return s

    def _warn(self, s: Stream, msg: str) -> None:
        if self.on_warning:
            self.on_warning(s, msg)

    def _format(self, s: Stream, f: Format) -> None:
        if s.packets and (f.encoding != s.encoding or f.sample_rate != s.sample_rate):
            self._warn(s, f"format packet after {s.packets} audio packets changes {s.encoding}/{s.sample_rate} Hz "
                          f"to {f.encoding}/{f.sample_rate} Hz")
        s.format = f
        if not isinstance(f.encoding, Encoding) or f.channels != 1 or f.sample_rate <= 0:
            self._warn(s, f"cannot decode encoding {f.encoding} with {f.channels} channel(s) at {f.sample_rate} Hz; "
                          "its audio is counted, not decoded")
            return
        s.encoding, s.sample_rate, s.frame_ms = f.encoding, f.sample_rate, f.frame_ms or s.frame_ms

    def _audio(self, s: Stream, a: Audio) -> Optional[Frame]:
        if s.signaling is None and s.packets == 0:
            s.audio_before_signaling = True
        kind, ref = s._account(a.sequence)
        s.packets += 1
        s.bytes += len(a.payload)
        if kind != "ok" and self.on_sequence:
            self.on_sequence(s, kind, a.sequence, ref)
        if kind == "duplicate":
            return None
        f = s.format
        if f is not None and (not isinstance(f.encoding, Encoding) or f.channels != 1 or f.sample_rate <= 0):
            s.undecodable += 1
            return None
        if len(a.payload) == s.frame_bytes:
            s.full_frames += 1
        elif f is None and not s.warned and not (len(a.payload) < s.frame_bytes and s.full_frames):
            # A short payload after full ones is a final partial frame; anything else means
            # the assumed format is probably wrong.
            s.warned = True
            self._warn(s, size_hint(len(a.payload), s.encoding, s.sample_rate, s.frame_ms))
        return Frame(s.stream_id, s.direction, a.sequence, decode(a.payload, s.encoding), s.sample_rate,
                     late=kind == "reorder", missing_before=a.sequence - ref if kind == "gap" else 0)


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
        _, proto = await loop.create_datagram_endpoint(lambda: Receiver(**kw), sock=sock)
    except BaseException:
        sock.close()
        raise
    return proto
