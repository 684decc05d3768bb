"""G.711 tables against the reference algorithm, written here from the standard
(sign, 3-bit segment, 4-bit step; µ-law bias 33, A-law even bits inverted)."""

from __future__ import annotations

from mediafork_tlv import Encoding, alaw_to_pcm, decode, samples, ulaw_to_pcm
from mediafork_tlv.g711 import ALAW, ULAW


def ref_ulaw(code: int) -> int:
    """G.711 µ-law decoding, ITU-T G.711 table 2a, scaled to 16 bits as in Sun's g711.c:
    magnitude = ((2*step + 33) << segment) - 33, in 14-bit units, times 4."""
    code = ~code & 0xFF  # transmitted inverted
    sign = code & 0x80
    segment = (code >> 4) & 0x07
    step = code & 0x0F
    magnitude = (((2 * step + 33) << segment) - 33) * 4
    return -magnitude if sign else magnitude


def ref_alaw(code: int) -> int:
    """G.711 A-law decoding, table 1a, scaled to 16 bits: even bits inverted, sign bit
    set = positive; segment 0 is linear, the others double the range each."""
    code ^= 0x55
    positive = code & 0x80
    segment = (code >> 4) & 0x07
    step = code & 0x0F
    if segment == 0:
        magnitude = (2 * step + 1) * 8
    else:
        magnitude = (2 * step + 33) * 8 << (segment - 1)
    return magnitude if positive else -magnitude


SEG_END = (0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF, 0x3FFF, 0x7FFF)


def sun_linear2ulaw(pcm: int) -> int:
    """Sun's g711.c encoder (14-bit version, as in common use), for the round trip."""
    pcm >>= 2
    if pcm < 0:
        pcm, mask = -pcm, 0x7F
    else:
        mask = 0xFF
    pcm = min(pcm, 8159) + 33
    seg = next((i for i, e in enumerate((0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)) if pcm <= e), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((pcm >> (seg + 1)) & 0xF)) ^ mask


def sun_linear2alaw(pcm: int) -> int:
    pcm >>= 3
    if pcm >= 0:
        mask = 0xD5
    else:
        mask, pcm = 0x55, -pcm - 1
    seg = next((i for i, e in enumerate((0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)) if pcm <= e), 8)
    if seg >= 8:
        return 0x7F ^ mask
    aval = seg << 4
    aval |= (pcm >> 1) & 0xF if seg < 2 else (pcm >> seg) & 0xF
    return aval ^ mask


def test_every_code_matches_the_reference():
    assert len(ULAW) == len(ALAW) == 256
    for c in range(256):
        assert ULAW[c] == ref_ulaw(c), f"µ-law 0x{c:02x}"
        assert ALAW[c] == ref_alaw(c), f"A-law 0x{c:02x}"


def test_known_values():
    assert (ULAW[0x00], ULAW[0x80], ULAW[0xFF], ULAW[0x7F]) == (-32124, 32124, 0, 0)
    assert (ALAW[0xD5], ALAW[0x55], ALAW[0xAA], ALAW[0x2A]) == (8, -8, 32256, -32256)


def test_round_trip_through_the_reference_encoder():
    for c in range(256):
        assert sun_linear2ulaw(ULAW[c]) == (0xFF if c == 0x7F else c), f"µ-law 0x{c:02x}"  # -0 comes back as +0
        assert sun_linear2alaw(ALAW[c]) == c, f"A-law 0x{c:02x}"


def test_payload_decoding():
    codes = bytes(range(256))
    assert list(samples(ulaw_to_pcm(codes))) == list(ULAW)
    assert list(samples(alaw_to_pcm(codes))) == list(ALAW)
    assert decode(codes, Encoding.PCMU) == ulaw_to_pcm(codes)
    assert decode(codes, Encoding.PCMA) == alaw_to_pcm(codes)
    assert ulaw_to_pcm(b"\x00\xff")[:2] == (-32124).to_bytes(2, "little", signed=True), "little-endian out"


def test_linear_decoding():
    assert list(samples(decode(bytes.fromhex("0100ff7f0080"), Encoding.L16))) == [1, 32767, -32768]
    assert list(samples(decode(bytes.fromhex("00017fff8000"), Encoding.L16BE))) == [1, 32767, -32768]
    assert decode(b"\x01\x00\x02", Encoding.L16) == b"\x01\x00", "half a sample is dropped"
