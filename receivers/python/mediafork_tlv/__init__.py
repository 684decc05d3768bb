"""mediafork_tlv: receive mediafork's (and ForkStream's) RX/TX TLV packets over UDP.

Dependency-free: packets (parse and build), an asyncio receiver with per
stream and direction state that treats every datagram as hostile (limits.py),
G.711 decoding, WAV files, and a CLI (`python -m mediafork_tlv`)."""

from .audio import decode, dominant_hz, samples
from .g711 import alaw_to_pcm, ulaw_to_pcm
from .limits import (DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_STREAMS, MAX_RATE, MAX_SEQ_JUMP, format_problem,
                     valid_rate)
from .packets import (FORMAT_SIZE, GAP_SIZE, SIGNALING_SIZE, END_SIZE, HEADER_SIZE, AUDIO_HEADER_SIZE, MAX_PACKET_SIZE,
                      Audio, Direction, Encoding, End, EndReason, Format, Gap, GapReason, Header, InvalidDirection, InvalidFormat,
                      LengthMismatch, Packet, PacketError, PacketType, ShortPacket, Signaling, TooLarge, Unknown,
                      WrongSize, ZeroStreamID, parse, parse_header, truncate_utf8)
from .receiver import Frame, Receiver, Stream, address_string, listen, parse_address
from .wav import WavFile, WavRecorder

__version__ = "0.1.0"

__all__ = [
    "decode", "dominant_hz", "samples", "alaw_to_pcm", "ulaw_to_pcm",
    "FORMAT_SIZE", "GAP_SIZE", "SIGNALING_SIZE", "END_SIZE", "HEADER_SIZE", "AUDIO_HEADER_SIZE", "MAX_PACKET_SIZE",
    "Audio", "Direction", "Encoding", "End", "EndReason", "Format", "Gap", "GapReason", "Header", "Packet", "PacketType",
    "Signaling", "Unknown", "PacketError", "InvalidDirection", "LengthMismatch", "ShortPacket", "TooLarge",
    "WrongSize", "ZeroStreamID", "InvalidFormat", "parse", "parse_header", "truncate_utf8",
    "Frame", "Receiver", "Stream", "listen", "parse_address", "address_string", "WavRecorder", "WavFile",
    "DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_STREAMS", "MAX_RATE", "MAX_SEQ_JUMP", "format_problem", "valid_rate",
]
