"""The ForkStream TLV wire format (SPEC section 1): parse and build packets.

Every packet is one UDP datagram and starts with the same 8-byte header, all
integers big-endian::

    type u8 | packet_length u16 (whole packet) | stream_id u32 (non-zero) | direction u8

What follows depends on the type:

    signaling 0x01, 172 bytes  channel_id[64] exten[32] caller_id[32] called_id[32] timestamp u32
    audio     0x02, 12+N bytes sequence u32, then N bytes of audio
    end       0x03, 13 bytes   last_sequence u32, reason u8                     (extension)
    format    0x04, 16 bytes   encoding u8, sample_rate u32, channels u8, frame_ms u16 (extension)

Strings are NUL-terminated and zero-padded; a longer value is cut to 63/31
bytes on a UTF-8 character boundary.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Union

__all__ = [
    "PacketType", "Direction", "EndReason", "Encoding", "GapReason",
    "PacketError", "ShortPacket", "TooLarge", "LengthMismatch", "ZeroStreamID",
    "WrongSize", "InvalidDirection", "InvalidFormat",
    "Header", "Signaling", "Audio", "End", "Format", "Gap", "Unknown", "Packet",
    "parse", "parse_header", "truncate_utf8",
    "HEADER_SIZE", "SIGNALING_SIZE", "AUDIO_HEADER_SIZE", "END_SIZE", "FORMAT_SIZE", "GAP_SIZE",
    "MAX_PACKET_SIZE", "MAX_AUDIO_PAYLOAD",
]

HEADER_SIZE = 8
SIGNALING_SIZE = 172
AUDIO_HEADER_SIZE = HEADER_SIZE + 4
END_SIZE = HEADER_SIZE + 5
FORMAT_SIZE = HEADER_SIZE + 8
MAX_PACKET_SIZE = 65535
MAX_AUDIO_PAYLOAD = MAX_PACKET_SIZE - AUDIO_HEADER_SIZE

_HEADER = struct.Struct("!BHIB")
_SIGNALING = struct.Struct("!BHIB64s32s32s32sI")
_AUDIO = struct.Struct("!BHIBI")
_END = struct.Struct("!BHIBIB")
_FORMAT = struct.Struct("!BHIBBIBH")
_GAP = struct.Struct("!BHIBIIB")
GAP_SIZE = _GAP.size  # 17
assert _SIGNALING.size == SIGNALING_SIZE and _END.size == END_SIZE and _FORMAT.size == FORMAT_SIZE


class PacketType(enum.IntEnum):
    SIGNALING = 0x01
    AUDIO = 0x02
    END = 0x03  # extension: ForkStream receivers ignore it
    FORMAT = 0x04  # extension
    GAP = 0x06  # extension: audio missing before the next packet, and why


class Direction(enum.IntEnum):
    RX = 0x01  # the forked channel's read stream (the caller, on an inbound call)
    TX = 0x02  # its write stream
    MIXED = 0x03  # extension: both summed

    def __str__(self) -> str:
        return self.name


class EndReason(enum.IntEnum):
    HANGUP = 1  # hangup or normal close
    STOPPED = 2  # stopped on request
    MEDIA_LOST = 3  # WebSocket dropped without a close
    SHUTDOWN = 4  # mediafork shutting down

    def __str__(self) -> str:
        return self.name.lower().replace("_", "-")


class Encoding(enum.IntEnum):
    """The format packet's encoding byte; str() is the name mediafork's config uses."""

    L16 = 1  # signed 16-bit little-endian (what FreeSWITCH delivers)
    L16BE = 2  # signed 16-bit big-endian (network order, as RTP L16)
    PCMU = 3  # G.711 µ-law
    PCMA = 4  # G.711 A-law

    def __str__(self) -> str:
        return self.name.lower()

    @property
    def bytes_per_sample(self) -> int:
        return 2 if self in (Encoding.L16, Encoding.L16BE) else 1

    @classmethod
    def from_name(cls, name: str) -> "Encoding":
        try:
            return cls[name.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown encoding {name!r}: want l16, l16be, pcmu or pcma") from None


class PacketError(ValueError):
    """A datagram that is not a valid packet."""


class ShortPacket(PacketError):
    pass


class TooLarge(PacketError):
    pass


class LengthMismatch(PacketError):
    pass


class ZeroStreamID(PacketError):
    pass


class WrongSize(PacketError):
    pass


class InvalidDirection(PacketError):
    pass


class InvalidFormat(PacketError):
    """A format packet with a zero encoding, sample_rate, channels or frame_ms:
    it cannot describe any audio (the Go codec refuses it the same way)."""


def _enum(cls, v: int):
    """v as a member of cls when it is one, else the plain int (forward compatible)."""
    try:
        return cls(v)
    except ValueError:
        return v


def truncate_utf8(s: str, limit: int) -> bytes:
    """s as UTF-8, cut to at most limit bytes without splitting a character."""
    b = s.encode("utf-8")
    if len(b) <= limit:
        return b
    n = limit
    while n > 0 and b[n] & 0xC0 == 0x80:  # back off over continuation bytes
        n -= 1
    return b[:n]


def _get_string(field: bytes) -> str:
    # Up to the first NUL (or the whole field); bytes that are not UTF-8 (a
    # sender that cut a character in two) become U+FFFD rather than an error.
    return field.split(b"\0", 1)[0].decode("utf-8", "replace")


def _u(value: int, bits: int, name: str) -> int:
    if not isinstance(value, int) or not 0 <= value < 1 << bits:
        raise ValueError(f"{name} {value!r} does not fit in u{bits}")
    return value


def _check_ids(stream_id: int, direction: int) -> None:
    if _u(stream_id, 32, "stream_id") == 0:
        raise ValueError("stream_id must not be zero")
    if direction not in (1, 2, 3):
        raise ValueError(f"direction {direction!r} is not RX (1), TX (2) or MIXED (3)")


@dataclass(frozen=True)
class Header:
    type: int  # a PacketType, or the int of a type this library does not know
    length: int
    stream_id: int
    direction: int  # a Direction, or an int for an unknown packet type


@dataclass(frozen=True)
class Signaling:
    stream_id: int
    direction: Direction
    channel_id: str = ""  # at most 63 bytes on the wire
    exten: str = ""  # at most 31
    caller_id: str = ""  # at most 31
    called_id: str = ""  # at most 31
    timestamp: int = 0  # Unix seconds when the fork started

    type = PacketType.SIGNALING

    def to_bytes(self) -> bytes:
        _check_ids(self.stream_id, self.direction)
        return _SIGNALING.pack(
            PacketType.SIGNALING, SIGNALING_SIZE, self.stream_id, self.direction,
            truncate_utf8(self.channel_id, 63), truncate_utf8(self.exten, 31),
            truncate_utf8(self.caller_id, 31), truncate_utf8(self.called_id, 31),
            _u(self.timestamp, 32, "timestamp"))


@dataclass(frozen=True)
class Audio:
    stream_id: int
    direction: Direction
    sequence: int  # from 1, per direction
    payload: bytes

    type = PacketType.AUDIO

    def to_bytes(self) -> bytes:
        _check_ids(self.stream_id, self.direction)
        if len(self.payload) > MAX_AUDIO_PAYLOAD:
            raise ValueError(f"audio payload of {len(self.payload)} bytes: a packet holds at most {MAX_AUDIO_PAYLOAD}")
        return _AUDIO.pack(PacketType.AUDIO, AUDIO_HEADER_SIZE + len(self.payload), self.stream_id,
                           self.direction, _u(self.sequence, 32, "sequence")) + bytes(self.payload)


@dataclass(frozen=True)
class End:
    stream_id: int
    direction: Direction
    last_sequence: int  # 0 when no audio was sent
    reason: EndReason  # or an int for a reason this library does not know

    type = PacketType.END

    def to_bytes(self) -> bytes:
        _check_ids(self.stream_id, self.direction)
        return _END.pack(PacketType.END, END_SIZE, self.stream_id, self.direction,
                         _u(self.last_sequence, 32, "last_sequence"), _u(self.reason, 8, "reason"))


@dataclass(frozen=True)
class Format:
    stream_id: int
    direction: Direction
    encoding: Encoding  # or an int for an encoding this library does not know
    sample_rate: int  # Hz
    channels: int = 1
    frame_ms: int = 20

    type = PacketType.FORMAT

    def to_bytes(self) -> bytes:
        _check_ids(self.stream_id, self.direction)
        return _FORMAT.pack(PacketType.FORMAT, FORMAT_SIZE, self.stream_id, self.direction,
                            _u(self.encoding, 8, "encoding"), _u(self.sample_rate, 32, "sample_rate"),
                            _u(self.channels, 8, "channels"), _u(self.frame_ms, 16, "frame_ms"))

    @property
    def frame_bytes(self) -> int:
        """Payload bytes of one full frame, or 0 when the encoding is unknown."""
        if not isinstance(self.encoding, Encoding):
            return 0
        return self.sample_rate * self.frame_ms // 1000 * self.channels * self.encoding.bytes_per_sample


class GapReason(enum.IntEnum):
    MEDIA_LOST = 1  # the media connection was lost and made again
    RESTARTED = 2  # mediafork restarted or failed over
    PAUSED = 3  # the fork was paused
    DROPPED = 4  # dropped by mediafork: a queue was full


@dataclass(frozen=True)
class Gap:
    """Audio is missing before the direction's next packet (mediafork extension
    0x06): next_sequence is that packet's, missing_frames how many packets
    before it are not coming, reason why (a GapReason, or an int this library
    does not know)."""

    stream_id: int
    direction: Direction
    next_sequence: int
    missing_frames: int
    reason: GapReason

    type = PacketType.GAP

    def to_bytes(self) -> bytes:
        _check_ids(self.stream_id, self.direction)
        return _GAP.pack(PacketType.GAP, GAP_SIZE, self.stream_id, self.direction, _u(self.next_sequence, 32, "next_sequence"),
                         _u(self.missing_frames, 32, "missing_frames"), _u(self.reason, 8, "reason"))


@dataclass(frozen=True)
class Unknown:
    """A packet of a type this library does not know: receivers skip it."""

    type: int
    stream_id: int
    direction: int
    data: bytes  # the whole datagram

    def to_bytes(self) -> bytes:
        return bytes(self.data)


Packet = Union[Signaling, Audio, End, Format, Gap, Unknown]

_SIZES = {PacketType.SIGNALING: (SIGNALING_SIZE, SIGNALING_SIZE), PacketType.AUDIO: (AUDIO_HEADER_SIZE, MAX_PACKET_SIZE),
          PacketType.END: (END_SIZE, END_SIZE), PacketType.FORMAT: (FORMAT_SIZE, FORMAT_SIZE)}


def parse_header(data: bytes) -> Header:
    """The header of datagram data, checked as every packet must be: at least 8
    bytes, at most 65535, packet_length equal to the datagram's size, a non-zero
    stream_id. The type is not checked, so that unknown types can be skipped."""
    if len(data) < HEADER_SIZE:
        raise ShortPacket(f"packet of {len(data)} bytes is shorter than the {HEADER_SIZE}-byte header")
    if len(data) > MAX_PACKET_SIZE:
        raise TooLarge(f"packet of {len(data)} bytes is larger than {MAX_PACKET_SIZE}")
    t, length, stream_id, direction = _HEADER.unpack_from(data)
    if length != len(data):
        raise LengthMismatch(f"packet_length {length} but the datagram has {len(data)} bytes")
    if stream_id == 0:
        raise ZeroStreamID("stream_id is zero")
    return Header(_enum(PacketType, t), length, stream_id, direction)


def parse(data: bytes) -> Packet:
    """One datagram as a Signaling, Audio, End, Format or Unknown packet.

    Raises a PacketError subclass (a ValueError) naming what is wrong."""
    data = bytes(data)
    h = parse_header(data)
    if not isinstance(h.type, PacketType):
        return Unknown(h.type, h.stream_id, h.direction, data)
    if h.type == PacketType.GAP:
        # An extension a receiver may skip: one that does not parse is skipped
        # as of an unknown type (as tlvdump does).
        if len(data) != GAP_SIZE or h.direction not in (1, 2, 3):
            return Unknown(h.type, h.stream_id, h.direction, data)
        f = _GAP.unpack(data)
        if f[4] == 0 or f[5] == 0:
            return Unknown(h.type, h.stream_id, h.direction, data)
        return Gap(h.stream_id, Direction(h.direction), f[4], f[5], _enum(GapReason, f[6]))

    lo, hi = _SIZES[h.type]
    if not lo <= len(data) <= hi:
        want = str(lo) if lo == hi else f"at least {lo}"
        raise WrongSize(f"{h.type.name.lower()} packet of {len(data)} bytes, want {want}")
    if h.direction not in (1, 2, 3):
        raise InvalidDirection(f"direction 0x{h.direction:02x} is not RX, TX or MIXED")
    d = Direction(h.direction)
    if h.type == PacketType.AUDIO:
        return Audio(h.stream_id, d, _AUDIO.unpack_from(data)[4], data[AUDIO_HEADER_SIZE:])
    if h.type == PacketType.SIGNALING:
        f = _SIGNALING.unpack(data)
        return Signaling(h.stream_id, d, *(_get_string(s) for s in f[4:8]), timestamp=f[8])
    if h.type == PacketType.END:
        f = _END.unpack(data)
        return End(h.stream_id, d, f[4], _enum(EndReason, f[5]))
    f = _FORMAT.unpack(data)
    if 0 in f[4:8]:
        raise InvalidFormat(f"format packet with a zero field: encoding {f[4]}, sample_rate {f[5]}, channels {f[6]}, "
                            f"frame_ms {f[7]}")
    return Format(h.stream_id, d, _enum(Encoding, f[4]), f[5], f[6], f[7])
