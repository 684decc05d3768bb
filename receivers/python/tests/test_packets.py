"""Packets against the golden vectors shared with the Go codec, and hand-computed format vectors."""

from __future__ import annotations

import json
import unittest

import pytest

from conftest import VECTORS
from mediafork_tlv import (Audio, Direction, Encoding, End, EndReason, Format, InvalidDirection, LengthMismatch,
                           PacketError, ShortPacket, Signaling, TooLarge, Unknown, WrongSize, ZeroStreamID, parse,
                           parse_header, truncate_utf8)


def load_vectors():
    assert VECTORS.is_file(), f"{VECTORS} is missing: the golden vectors live in testdata/tlv/ of the repository"
    v = json.loads(VECTORS.read_text(encoding="utf-8"))
    assert v["valid"] and v["invalid"]
    return v


VECTORS_JSON = load_vectors()


@pytest.mark.parametrize("vec", VECTORS_JSON["valid"], ids=lambda v: v["name"])
def test_valid_vector_parses(vec):
    data = bytes.fromhex(vec["hex"])
    assert len(data) == vec["length"]
    f = vec["fields"]
    h = parse_header(data)
    assert (h.type, h.length, h.stream_id, h.direction) == (f["type"], len(data), f["stream_id"], f["direction"])
    p = parse(data)
    assert p.type == f["type"] and p.stream_id == f["stream_id"] and p.direction == f["direction"]
    if isinstance(p, Audio):
        assert p.sequence == f["sequence"]
        assert len(p.payload) == f["payload_len"]
    elif isinstance(p, End):
        assert (p.last_sequence, p.reason) == (f["last_sequence"], f["reason"])
    elif isinstance(p, Signaling):
        assert p.timestamp == f["timestamp"]
        for k in ("channel_id", "exten", "caller_id", "called_id"):
            if k in f:
                assert getattr(p, k) == f[k], k
    elif isinstance(p, Format):  # should the shared file gain format vectors (SPEC names for the fields)
        assert p == format_from_fields(f)
    else:
        pytest.fail(f"vector of unexpected type {p!r}")
    assert p.to_bytes() == data, "parse then build gives the same bytes"


def test_valid_vectors_build_from_fields():
    """Every valid vector is built from its fields alone; signaling_tx lists only what
    changed from the vector before it (as the Go test reads it)."""
    sig = {}
    for vec in VECTORS_JSON["valid"]:
        f, want = vec["fields"], bytes.fromhex(vec["hex"])
        if f["type"] == 1:
            sig.update({k: f[k] for k in ("stream_id", "direction", "timestamp", "channel_id", "exten", "caller_id",
                                          "called_id") if k in f})
            got = Signaling(**sig).to_bytes()
        elif f["type"] == 2:
            got = Audio(f["stream_id"], f["direction"], f["sequence"], want[12:]).to_bytes()
            assert len(want) - 12 == f["payload_len"]
        elif f["type"] == 3:
            got = End(f["stream_id"], f["direction"], f["last_sequence"], f["reason"]).to_bytes()
        elif f["type"] == 4:
            got = format_from_fields(f).to_bytes()
        else:
            pytest.fail(f"unknown type in {vec['name']}")
        assert got.hex() == vec["hex"], vec["name"]


def format_from_fields(f) -> Format:
    enc = f["encoding"]
    enc = Encoding.from_name(enc) if isinstance(enc, str) else Encoding(enc)
    return Format(f["stream_id"], Direction(f["direction"]), enc, f["sample_rate"], f.get("channels", 1),
                  f.get("frame_ms", 20))


# What each invalid vector must raise: a clear, specific exception.
INVALID_ERRORS = {
    "short_header": ShortPacket,
    "length_mismatch": LengthMismatch,
    "signaling_wrong_size": WrongSize,
    "audio_no_sequence": WrongSize,
    "zero_stream_id": ZeroStreamID,
}


@pytest.mark.parametrize("vec", VECTORS_JSON["invalid"], ids=lambda v: v["name"])
def test_invalid_vector_rejected(vec):
    with pytest.raises(INVALID_ERRORS.get(vec["name"], PacketError)) as e:
        parse(bytes.fromhex(vec["hex"]))
    assert str(e.value), "the exception says what is wrong"
    assert isinstance(e.value, ValueError)


def test_truncated_vector_from_the_long_value():
    """signaling_truncated_utf8 says: channel_id of 107 bytes cut to at most 63 on a UTF-8 boundary."""
    vec = next(v for v in VECTORS_JSON["valid"] if v["name"] == "signaling_truncated_utf8")
    long_channel = "sofia/internal/" + "é" * 46
    assert len(long_channel.encode()) == 107
    f = vec["fields"]
    got = Signaling(f["stream_id"], f["direction"], long_channel, f["exten"], f["caller_id"] + " much too long",
                    f["called_id"], f["timestamp"]).to_bytes()
    assert got.hex() == vec["hex"]


# Format packets (0x04), computed by hand from SPEC section 1:
#   type u8 | packet_length u16 | stream_id u32 | direction u8 | encoding u8 | sample_rate u32 | channels u8 | frame_ms u16
FORMAT_VECTORS = [
    # 04 | 0010 | 499602d2 (1234567890) | 01 RX | 03 pcmu | 00001f40 (8000) | 01 | 0014 (20)
    ("04" "0010" "499602d2" "01" "03" "00001f40" "01" "0014",
     Format(1234567890, Direction.RX, Encoding.PCMU, 8000, 1, 20)),
    # 04 | 0010 | 00000007 | 02 TX | 01 l16 | 00003e80 (16000) | 01 | 000a (10)
    ("04" "0010" "00000007" "02" "01" "00003e80" "01" "000a",
     Format(7, Direction.TX, Encoding.L16, 16000, 1, 10)),
    # 04 | 0010 | ffffffff | 03 MIXED | 02 l16be | 0000bb80 (48000) | 01 | 0014
    ("04" "0010" "ffffffff" "03" "02" "0000bb80" "01" "0014",
     Format(0xFFFFFFFF, Direction.MIXED, Encoding.L16BE, 48000, 1, 20)),
    # 04 | 0010 | 00000063 (99) | 01 RX | 04 pcma | 00001f40 (8000) | 01 | 0028 (40)
    ("04" "0010" "00000063" "01" "04" "00001f40" "01" "0028",
     Format(99, Direction.RX, Encoding.PCMA, 8000, 1, 40)),
]


@pytest.mark.parametrize("hexstr,packet", FORMAT_VECTORS, ids=lambda x: x if isinstance(x, str) else "")
def test_format_vectors(hexstr, packet):
    data = bytes.fromhex(hexstr)
    assert len(data) == 16
    assert parse(data) == packet
    assert packet.to_bytes() == data


def test_format_frame_bytes():
    assert FORMAT_VECTORS[0][1].frame_bytes == 160  # pcmu, 8 kHz, 20 ms
    assert FORMAT_VECTORS[1][1].frame_bytes == 320  # l16, 16 kHz, 10 ms


FORMAT_INVALID = [
    # packet_length 15 and 15 bytes: a format packet is 16
    ("04" "000f" "00000001" "01" "03" "00001f40" "01" "00", WrongSize),
    # 17 bytes
    ("04" "0011" "00000001" "01" "03" "00001f40" "01" "0014" "00", WrongSize),
    # packet_length 16 but 15 bytes sent
    ("04" "0010" "00000001" "01" "03" "00001f40" "01" "00", LengthMismatch),
    # direction 0
    ("04" "0010" "00000001" "00" "03" "00001f40" "01" "0014", InvalidDirection),
    # stream_id 0
    ("04" "0010" "00000000" "01" "03" "00001f40" "01" "0014", ZeroStreamID),
]


@pytest.mark.parametrize("hexstr,error", FORMAT_INVALID)
def test_format_invalid(hexstr, error):
    with pytest.raises(error):
        parse(bytes.fromhex(hexstr))


def test_format_unknown_encoding_is_kept():
    """An encoding this library does not know parses (the receiver then declines to decode it)."""
    p = parse(bytes.fromhex("04" "0010" "00000001" "01" "09" "00001f40" "01" "0014"))
    assert p.encoding == 9 and not isinstance(p.encoding, Encoding)
    assert p.frame_bytes == 0


class OtherRules(unittest.TestCase):
    def test_unknown_type_is_skippable(self):
        data = bytes.fromhex("7f" "000c" "00000005" "09" "deadbeef")
        p = parse(data)
        self.assertIsInstance(p, Unknown)
        self.assertEqual((p.type, p.stream_id, p.direction, p.data), (0x7F, 5, 9, data))

    def test_invalid_direction_in_known_types(self):
        for hexstr in ("02000d00000001" "04" "0000000100", "03000d00000001" "00" "0000000101"):
            with self.assertRaises(InvalidDirection):
                parse(bytes.fromhex(hexstr))

    def test_too_large(self):
        with self.assertRaises(TooLarge):
            parse(b"\x02\xff\xff" + b"\0" * 65536)

    def test_end_reason_unknown_kept(self):
        p = parse(bytes.fromhex("03000d" "00000001" "01" "00000005" "09"))
        self.assertEqual(p.reason, 9)
        self.assertEqual(parse(bytes.fromhex("03000d" "00000001" "01" "00000005" "03")).reason, EndReason.MEDIA_LOST)

    def test_audio_largest(self):
        a = Audio(1, Direction.RX, 1, bytes(65535 - 12))
        data = a.to_bytes()
        self.assertEqual(len(data), 65535)
        self.assertEqual(parse(data), a)
        with self.assertRaises(ValueError):
            Audio(1, Direction.RX, 1, bytes(65535 - 11)).to_bytes()

    def test_build_refuses_bad_fields(self):
        for bad in (lambda: Audio(0, Direction.RX, 1, b"").to_bytes(),
                    lambda: Audio(1, 4, 1, b"").to_bytes(),
                    lambda: Audio(1, Direction.RX, 1 << 32, b"").to_bytes(),
                    lambda: End(1, Direction.TX, -1, 1).to_bytes(),
                    lambda: Format(1, Direction.TX, Encoding.PCMU, 1 << 32).to_bytes(),
                    lambda: Format(1, Direction.TX, Encoding.PCMU, 8000, frame_ms=70000).to_bytes()):
            with self.assertRaises(ValueError):
                bad()

    def test_strings_truncate_on_utf8_boundaries(self):
        self.assertEqual(truncate_utf8("a" * 70, 63), b"a" * 63)
        self.assertEqual(truncate_utf8("a" * 62 + "é", 63), ("a" * 62).encode())  # é would need bytes 63-64
        self.assertEqual(truncate_utf8("a" * 61 + "é", 63), ("a" * 61 + "é").encode())
        self.assertEqual(truncate_utf8("ab" + "😀" * 10, 31), ("ab" + "😀" * 7).encode())  # 2 + 28 bytes
        self.assertEqual(truncate_utf8("x" * 29 + "😀", 31), b"x" * 29)
        s = Signaling(3, Direction.RX, "é" * 40, "€" * 20, "😀" * 9, "z" * 40, 1)
        p = parse(s.to_bytes())
        self.assertEqual(p.channel_id, "é" * 31)
        self.assertEqual(p.exten, "€" * 10)
        self.assertEqual(p.caller_id, "😀" * 7)
        self.assertEqual(p.called_id, "z" * 31)
        data = s.to_bytes()
        self.assertEqual(data[8 + 63], 0, "the NUL always fits")

    def test_field_without_nul_and_bad_utf8(self):
        data = bytearray(Signaling(3, Direction.RX).to_bytes())
        data[8:8 + 64] = b"A" * 64  # no terminating NUL: the whole field, as the Go codec reads it
        data[8 + 64:8 + 66] = b"\xc3\x00"  # half a character
        p = parse(bytes(data))
        self.assertEqual(p.channel_id, "A" * 64)
        self.assertEqual(p.exten, "\ufffd")


# The golden gap packets (0x06) of testdata/tlv/extensions.json, computed from
# SPEC §1 with struct alone: each valid one parses to its fields and builds back
# byte for byte; none of the invalid ones is taken for a gap (an error, or a
# packet a receiver skips as of an unknown type).
EXTENSIONS = json.loads((VECTORS.parent / "extensions.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", [c for c in EXTENSIONS["valid"] if c["fields"]["type"] == 6], ids=lambda c: c["name"])
def test_gap_vectors_valid(case):
    from mediafork_tlv import Gap, GapReason, parse
    f = case["fields"]
    p = parse(bytes.fromhex(case["hex"]))
    assert p == Gap(f["stream_id"], Direction(f["direction"]), f["next_sequence"], f["missing_frames"], GapReason(f["reason"]))
    assert p.to_bytes().hex() == case["hex"]


@pytest.mark.parametrize("case", [c for c in EXTENSIONS["invalid"] if c["name"].startswith("gap")], ids=lambda c: c["name"])
def test_gap_vectors_invalid(case):
    from mediafork_tlv import Gap, PacketError, parse
    try:
        p = parse(bytes.fromhex(case["hex"]))
    except PacketError:
        return
    assert not isinstance(p, Gap)
