"""WAV files, one per stream and direction: 16-bit mono PCM (stdlib `wave`)."""

from __future__ import annotations

import os
import wave
from typing import Dict, Tuple

from .packets import Direction
from .receiver import Frame, Stream

__all__ = ["WavRecorder"]

MAX_GAP_FILL_SECONDS = 10  # a larger sequence jump is not filled with silence


class WavRecorder:
    """Writes <dir>/stream-<id>-<DIR>.wav for each stream and direction.

    Hook it to a Receiver: Receiver(on_frame=rec.on_frame, on_end=rec.on_end);
    close() at the end. A gap in the sequence numbers is filled with silence, so
    the file keeps the call's timing; a late packet (its place already filled)
    and packets after the end packet are left out. The header is rewritten on
    every write, so a file is valid even if the process is killed."""

    def __init__(self, directory: str):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self._open: Dict[Tuple[int, Direction], wave.Wave_write] = {}
        self.paths: Dict[Tuple[int, Direction], str] = {}

    def path_for(self, stream_id: int, direction: Direction) -> str:
        return os.path.join(self.directory, f"stream-{stream_id}-{Direction(direction).name}.wav")

    def on_frame(self, frame: Frame, stream: Stream) -> None:
        key = (frame.stream_id, frame.direction)
        if frame.late or stream.end is not None:
            return
        w = self._open.get(key)
        if w is None:
            if key in self.paths:  # closed already: the end came
                return
            path = self.path_for(*key)
            w = wave.open(path, "wb")
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(frame.sample_rate)
            self._open[key], self.paths[key] = w, path
        if frame.missing_before:
            per_frame = stream.frame_bytes // stream.encoding.bytes_per_sample * 2 or len(frame.pcm)
            fill = min(frame.missing_before * per_frame, MAX_GAP_FILL_SECONDS * frame.sample_rate * 2)
            w.writeframes(bytes(fill))
        w.writeframes(frame.pcm)

    def on_end(self, stream: Stream) -> None:
        w = self._open.pop(stream.key, None)
        if w is not None:
            w.close()

    def close(self) -> None:
        for w in self._open.values():
            w.close()
        self._open.clear()
