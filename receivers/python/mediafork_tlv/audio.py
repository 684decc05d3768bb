"""Payload decoding to 16-bit PCM and a dominant-frequency estimate."""

from __future__ import annotations

import cmath
import math
import sys
from array import array
from typing import Sequence

from .g711 import alaw_to_pcm, ulaw_to_pcm
from .limits import MAX_ANALYSED_SAMPLES, MAX_RATE
from .packets import Encoding

__all__ = ["decode", "samples", "dominant_hz"]

_LITTLE = sys.byteorder == "little"


def decode(payload: bytes, encoding: Encoding) -> bytes:
    """An audio payload as signed 16-bit little-endian mono PCM.

    A trailing odd byte of l16 (half a sample) is dropped."""
    if encoding == Encoding.L16:
        return bytes(payload[: len(payload) & ~1])
    if encoding == Encoding.L16BE:
        b = bytearray(payload[: len(payload) & ~1])
        b[0::2], b[1::2] = b[1::2], b[0::2]  # swap the bytes of each sample
        return bytes(b)
    if encoding == Encoding.PCMU:
        return ulaw_to_pcm(payload)
    if encoding == Encoding.PCMA:
        return alaw_to_pcm(payload)
    raise ValueError(f"cannot decode encoding {encoding!r}")


def samples(pcm: bytes) -> array:
    """Little-endian 16-bit PCM bytes as an array of ints (native order)."""
    a = array("h", pcm)
    if not _LITTLE:
        a.byteswap()
    return a


def _fft(x: list) -> list:
    """In-place iterative radix-2 FFT of a list of complex numbers (len a power of 2)."""
    n = len(x)
    j = 0
    for i in range(1, n):  # bit-reversal permutation
        bit = n >> 1
        while j & bit:
            j ^= bit
            bit >>= 1
        j |= bit
        if i < j:
            x[i], x[j] = x[j], x[i]
    size = 2
    while size <= n:
        half = size // 2
        w = [cmath.exp(-2j * math.pi * k / size) for k in range(half)]
        for start in range(0, n, size):
            for k in range(half):
                a, b = x[start + k], x[start + k + half] * w[k]
                x[start + k], x[start + k + half] = a + b, a - b
        size *= 2
    return x


def dominant_hz(pcm: Sequence[int], rate: int, max_seconds: float = 1.0) -> float:
    """The strongest frequency (Hz, above 50 Hz) in up to max_seconds of samples, and
    at most MAX_ANALYSED_SAMPLES whatever the rate claims: an FFT peak refined by
    parabolic interpolation; 0 when there is too little audio."""
    if not 0 < rate <= MAX_RATE:
        return 0.0
    n = 1
    limit = min(len(pcm), int(rate * max_seconds), MAX_ANALYSED_SAMPLES)
    while n * 2 <= limit:
        n *= 2
    if n < 256:
        return 0.0
    spec = _fft([complex(v) for v in pcm[:n]])
    mags = [abs(c) for c in spec[: n // 2]]
    lo = max(1, int(50 * n / rate))
    k = max(range(lo, n // 2 - 1), key=mags.__getitem__)
    if mags[k] == 0:
        return 0.0  # silence has no dominant frequency
    a, b, c = mags[k - 1], mags[k], mags[k + 1]
    den = a - 2 * b + c
    shift = 0.5 * (a - c) / den if den else 0.0
    return (k + shift) * rate / n
