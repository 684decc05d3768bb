#!/usr/bin/env python3
"""Golden packets of mediafork's TLV extensions DTMF (0x05), gap (0x06) and talk-back (0x07-0x09).

Computed from SPEC sections 1 and 9 with Python's struct module alone, independently of
tlvcodec: header "!BHIB" (packet_type, packet_length, stream_id, direction), then
DTMF "!cHI" (digit, duration_ms, media_time_ms) = 15 bytes, gap "!IIB"
(next_sequence, missing_frames, reason) = 17 bytes; talk-back audio "!I" (sequence) and
the audio = 12+N bytes, clear: the header alone = 8 bytes, mark "!I" (mark_id) = 12 bytes
and mediafork's answer "!IB" (mark_id, status 1 played / 2 cleared) = 13 bytes. The
talk-back direction names who hears it: 0x02 the far end, 0x01 the bridged party, 0x03
both. Network byte order.

Run `python3 extensions.py > extensions.json` in this folder; the output is
deterministic and the file in the repository is exactly it (CI checks:
scripts/ci/testdata.sh).
"""
import json
import struct

HEADER = "!BHIB"
DTMF, GAP = 0x05, 0x06
TB_AUDIO, TB_CLEAR, TB_MARK = 0x07, 0x08, 0x09
FAR, OTHER, BOTH = 2, 1, 3
RX, TX, MIXED = 1, 2, 3


def dtmf(stream_id, direction, digit, duration_ms, media_time_ms):
    body = struct.pack("!cHI", digit.encode("ascii"), duration_ms, media_time_ms)
    return struct.pack(HEADER, DTMF, struct.calcsize(HEADER) + len(body), stream_id, direction) + body


def gap(stream_id, direction, next_sequence, missing_frames, reason):
    body = struct.pack("!IIB", next_sequence, missing_frames, reason)
    return struct.pack(HEADER, GAP, struct.calcsize(HEADER) + len(body), stream_id, direction) + body


def tb_audio(stream_id, direction, sequence, audio):
    body = struct.pack("!I", sequence) + audio
    return struct.pack(HEADER, TB_AUDIO, struct.calcsize(HEADER) + len(body), stream_id, direction) + body


def tb_clear(stream_id, direction):
    return struct.pack(HEADER, TB_CLEAR, struct.calcsize(HEADER), stream_id, direction)


def tb_mark(stream_id, direction, mark_id, status=None):
    body = struct.pack("!I", mark_id) if status is None else struct.pack("!IB", mark_id, status)
    return struct.pack(HEADER, TB_MARK, struct.calcsize(HEADER) + len(body), stream_id, direction) + body


SEG_END = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF]


def ulaw(v):
    """One sample as G.711 mu-law, by the classic reference algorithm (14-bit, bias 33)."""
    v >>= 2
    mask = 0xFF
    if v < 0:
        v, mask = -v, 0x7F
    v = min(v, 8159) + 0x21
    seg = next((i for i, e in enumerate(SEG_END) if v <= e), 8)
    if seg >= 8:
        return 0x7F ^ mask
    return ((seg << 4) | ((v >> (seg + 1)) & 0x0F)) ^ mask


def pcmu_700hz(n):
    """n samples of a 700 Hz sine at 8 kHz, amplitude 8000, in mu-law."""
    import math
    return bytes(ulaw(int(8000 * math.sin(2 * math.pi * 700 * i / 8000))) for i in range(n))


valid = []
for name, desc, sid, d, digit, dur, at in [
    ("dtmf_1", "digit 1, 250 ms (2000 samples at 8 kHz), 3.5 s into the stream", 1234567890, RX, "1", 250, 3500),
    ("dtmf_hash", "#, 40 ms, at the stream's first audio", 7, RX, "#", 40, 0),
    ("dtmf_star", "*, the longest duration and media time", 0xFFFFFFFF, RX, "*", 0xFFFF, 0xFFFFFFFF),
    ("dtmf_D", "D, 100 ms, 1 ms in, on a mixed stream", 0x01020304, MIXED, "D", 100, 1),
]:
    b = dtmf(sid, d, digit, dur, at)
    valid.append({"name": name, "description": desc, "hex": b.hex(), "length": len(b),
                  "fields": {"type": DTMF, "stream_id": sid, "direction": d, "digit": digit,
                             "duration_ms": dur, "media_time_ms": at}})
for name, desc, sid, d, nxt, missing, reason in [
    ("gap_media_lost", "RX: 3 frames missed after sequence 41 (media connection lost)", 1234567890, RX, 45, 3, 1),
    ("gap_restarted", "TX: a 2 s failover at 20 ms frames after sequence 1000", 1234567890, TX, 1101, 100, 2),
    ("gap_paused", "MIXED: paused for one frame", 9, MIXED, 2, 1, 3),
    ("gap_dropped_max", "the largest values, reason 4 (dropped by mediafork)", 0xFFFFFFFF, RX, 0xFFFFFFFF, 0xFFFFFFFF, 4),
]:
    b = gap(sid, d, nxt, missing, reason)
    valid.append({"name": name, "description": desc, "hex": b.hex(), "length": len(b),
                  "fields": {"type": GAP, "stream_id": sid, "direction": d, "next_sequence": nxt,
                             "missing_frames": missing, "reason": reason}})

l16_20ms = struct.pack("<160h", *([1000, -1000] * 80))  # 20 ms of L16 little-endian at 8 kHz
for name, desc, sid, d, seq, audio in [
    ("tb_audio_far_l16", "20 ms of L16 at 8 kHz for the far end, sequence 1", 1234567890, FAR, 1, l16_20ms),
    ("tb_audio_other_pcmu", "20 ms of a 700 Hz tone in mu-law for the bridged party", 7, OTHER, 2, pcmu_700hz(160)),
    ("tb_audio_both_one_byte", "one mu-law sample for both parties, the largest sequence", 0xFFFFFFFF, BOTH, 0xFFFFFFFF, b"\xff"),
]:
    b = tb_audio(sid, d, seq, audio)
    valid.append({"name": name, "description": desc, "hex": b.hex(), "length": len(b),
                  "fields": {"type": TB_AUDIO, "stream_id": sid, "direction": d, "sequence": seq, "audio": audio.hex()}})
for name, desc, sid, d in [
    ("tb_clear_far", "clear the far end's talk-back", 1234567890, FAR),
    ("tb_clear_both", "clear both parties'", 0xFFFFFFFF, BOTH),
]:
    b = tb_clear(sid, d)
    valid.append({"name": name, "description": desc, "hex": b.hex(), "length": len(b),
                  "fields": {"type": TB_CLEAR, "stream_id": sid, "direction": d}})
for name, desc, sid, d, mid, status in [
    ("tb_mark", "a receiver's mark 42 after its audio to the far end", 1234567890, FAR, 42, None),
    ("tb_mark_played", "mediafork's answer: mark 42 played", 1234567890, FAR, 42, 1),
    ("tb_mark_cleared", "mediafork's answer: mark 0xFFFFFFFF cleared, both parties", 9, BOTH, 0xFFFFFFFF, 2),
]:
    b = tb_mark(sid, d, mid, status)
    valid.append({"name": name, "description": desc, "hex": b.hex(), "length": len(b),
                  "fields": {"type": TB_MARK, "stream_id": sid, "direction": d, "mark_id": mid,
                             "status": 0 if status is None else status}})

good_dtmf = dtmf(5, RX, "5", 100, 2000)
good_gap = gap(5, RX, 10, 2, 1)
invalid = [
    {"name": "dtmf_lowercase_digit", "hex": dtmf(5, RX, "a", 100, 0).hex()},
    {"name": "dtmf_digit_E", "hex": dtmf(5, RX, "E", 100, 0).hex()},
    {"name": "dtmf_nul_digit", "hex": dtmf(5, RX, "\0", 100, 0).hex()},
    {"name": "dtmf_zero_stream", "hex": dtmf(0, RX, "5", 100, 0).hex()},
    {"name": "dtmf_bad_direction", "hex": dtmf(5, 4, "5", 100, 0).hex()},
    {"name": "dtmf_one_byte_short", "hex": (struct.pack(HEADER, DTMF, 14, 5, RX) + good_dtmf[8:14]).hex()},
    {"name": "dtmf_one_byte_long", "hex": (struct.pack(HEADER, DTMF, 16, 5, RX) + good_dtmf[8:] + b"\0").hex()},
    {"name": "dtmf_length_lies", "hex": (struct.pack(HEADER, DTMF, 15, 5, RX) + good_dtmf[8:14]).hex()},
    {"name": "gap_zero_next_sequence", "hex": gap(5, RX, 0, 2, 1).hex()},
    {"name": "gap_zero_missing_frames", "hex": gap(5, RX, 10, 0, 1).hex()},
    {"name": "gap_zero_stream", "hex": gap(0, RX, 10, 2, 1).hex()},
    {"name": "gap_bad_direction", "hex": gap(5, 0, 10, 2, 1).hex()},
    {"name": "gap_one_byte_short", "hex": (struct.pack(HEADER, GAP, 16, 5, RX) + good_gap[8:16]).hex()},
    {"name": "gap_length_lies", "hex": (struct.pack(HEADER, GAP, 17, 5, RX) + good_gap[8:16]).hex()},
    {"name": "tb_audio_no_audio", "hex": tb_audio(5, FAR, 1, b"").hex()},
    {"name": "tb_audio_zero_stream", "hex": tb_audio(0, FAR, 1, b"\0\0").hex()},
    {"name": "tb_audio_bad_direction", "hex": tb_audio(5, 4, 1, b"\0\0").hex()},
    {"name": "tb_audio_length_lies", "hex": (struct.pack(HEADER, TB_AUDIO, 20, 5, FAR) + struct.pack("!I", 1) + b"\0\0").hex()},
    {"name": "tb_clear_with_body", "hex": (struct.pack(HEADER, TB_CLEAR, 9, 5, FAR) + b"\0").hex()},
    {"name": "tb_clear_zero_direction", "hex": tb_clear(5, 0).hex()},
    {"name": "tb_mark_short", "hex": (struct.pack(HEADER, TB_MARK, 11, 5, FAR) + b"\0\0\0").hex()},
    {"name": "tb_mark_long", "hex": (struct.pack(HEADER, TB_MARK, 14, 5, FAR) + struct.pack("!IBB", 1, 1, 0)).hex()},
    {"name": "tb_mark_status_zero", "hex": tb_mark(5, FAR, 1, 0).hex()},
    {"name": "tb_mark_status_three", "hex": tb_mark(5, FAR, 1, 3).hex()},
    {"name": "tb_mark_zero_stream", "hex": tb_mark(0, FAR, 1).hex()},
]
print(json.dumps({"description": __doc__.strip().split("\n\n")[0].replace("\n", " "),
                  "valid": valid, "invalid": invalid}, indent=1))
