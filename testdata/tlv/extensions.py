#!/usr/bin/env python3
"""Golden packets of mediafork's TLV extensions DTMF (0x05) and gap (0x06).

Computed from SPEC section 1 with Python's struct module alone, independently of
tlvcodec: header "!BHIB" (packet_type, packet_length, stream_id, direction), then
DTMF "!cHI" (digit, duration_ms, media_time_ms) = 15 bytes, gap "!IIB"
(next_sequence, missing_frames, reason) = 17 bytes. Network byte order.

Run `python3 extensions.py > extensions.json` in this folder; the output is
deterministic and the file in the repository is exactly it (CI checks:
scripts/ci/testdata.sh).
"""
import json
import struct

HEADER = "!BHIB"
DTMF, GAP = 0x05, 0x06
RX, TX, MIXED = 1, 2, 3


def dtmf(stream_id, direction, digit, duration_ms, media_time_ms):
    body = struct.pack("!cHI", digit.encode("ascii"), duration_ms, media_time_ms)
    return struct.pack(HEADER, DTMF, struct.calcsize(HEADER) + len(body), stream_id, direction) + body


def gap(stream_id, direction, next_sequence, missing_frames, reason):
    body = struct.pack("!IIB", next_sequence, missing_frames, reason)
    return struct.pack(HEADER, GAP, struct.calcsize(HEADER) + len(body), stream_id, direction) + body


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
]
print(json.dumps({"description": __doc__.strip().split("\n\n")[0].replace("\n", " "),
                  "valid": valid, "invalid": invalid}, indent=1))
