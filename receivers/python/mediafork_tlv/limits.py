"""A receiver's bounds: every datagram is hostile.

ForkStream's format has no authentication: anyone who reaches the port can
send any packet. These are the same bounds as `mediafork tlvdump`'s (Go,
tlvdump/limits.go), held to the same vectors (testdata/tlv/hostile.json)."""

from __future__ import annotations

from typing import Optional

from .packets import MAX_AUDIO_PAYLOAD, Encoding, Format

__all__ = [
    "MAX_RATE", "DEFAULT_MAX_STREAMS", "DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_QUEUED_BYTES", "MAX_SEQ_JUMP", "SEQ_WINDOW", "MAX_GAP_FILL_SECONDS",
    "MAX_REPORTED_GAP_SECONDS", "MOVE_QUIET", "MOVE_SLACK",
    "MAX_SEGMENTS", "MAX_WAV_DATA", "MAX_ANALYSED_SAMPLES", "MAX_ANALYSED_TOTAL", "MAX_WARNINGS",
    "valid_rate", "rate_problem", "format_problem", "default_max_open_files",
]

MAX_RATE = 48000  # what mediafork sends at most: the highest rate a FreeSWITCH channel runs at
DEFAULT_MAX_STREAMS = 4096  # streams (id and direction) tracked at once; beyond, the least recently active goes
DEFAULT_IDLE_TIMEOUT = 10.0  # seconds without a packet: the stream is closed, its WAV finalised
DEFAULT_MAX_QUEUED_BYTES = 64 << 20  # frames queued for slow `async for` consumers, all streams together
MAX_SEQ_JUMP = 3000  # a larger sequence jump (either way) is refused unless the next packet continues from it
SEQ_WINDOW = 4096  # sequence numbers remembered below the highest, to tell a duplicate from a late packet
MAX_GAP_FILL_SECONDS = 3  # silence for one gap, at most (and never more than the audio in the file)
MAX_REPORTED_GAP_SECONDS = 3600  # silence for one gap a gap packet reported (and never more than the time it took)
MOVE_QUIET = 0.1  # a gap packet from a new source moves a stream silent this long (seconds)...
MOVE_SLACK = 1.0  # ...when the frames it says are missing fit in the time since, plus this
MAX_SEGMENTS = 16  # WAV files per stream: one per format change and return from idle
MAX_WAV_DATA = 1 << 31  # a WAV's sizes stay inside its 32-bit header: a longer stream goes on in a new file
MAX_ANALYSED_SAMPLES = 8192  # audio per stream kept for the summary's tone analysis
MAX_ANALYSED_TOTAL = 1 << 20  # and for all streams together
MAX_WARNINGS = 32  # warnings a stream keeps
_MAX_OPEN_FILES_CAP = 1024


def valid_rate(hz) -> bool:
    """A sample rate a receiver believes: a positive multiple of 8000 up to 48000."""
    return isinstance(hz, int) and 0 < hz <= MAX_RATE and hz % 8000 == 0


def rate_problem(hz: int) -> str:
    return f"rate {hz} Hz is not a positive multiple of 8000 up to {MAX_RATE}"


def format_problem(f: Format) -> Optional[str]:
    """Why a format packet is refused, or None: an encoding outside the table,
    more than one channel, an impossible rate, a frame no packet can carry."""
    if not isinstance(f.encoding, Encoding):
        return f"encoding code {int(f.encoding)} is not one of l16|l16be|pcmu|pcma"
    if f.channels != 1:
        return f"{f.channels} channels: only mono is sent"
    if not valid_rate(f.sample_rate):
        return rate_problem(f.sample_rate)
    if f.frame_ms <= 0 or f.frame_bytes > MAX_AUDIO_PAYLOAD:
        return f"frame_ms {f.frame_ms}: a frame of it does not fit one packet"
    return None


def default_max_open_files() -> int:
    """Half the process's descriptor limit, at most 1024 (at least 4)."""
    try:
        import resource
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (ImportError, OSError, ValueError):
        return 256
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return _MAX_OPEN_FILES_CAP
    return min(_MAX_OPEN_FILES_CAP, max(4, soft // 2))
