"""WAV files, one per stream and direction (and per segment): 16-bit mono PCM.

Bounded like the receiver: at most max_open_files files open at once (the
least recently written is closed, and opened again when written to), silence
for a gap explained by the stream's own clock, at most 16 files a stream, and
no file ever overwritten or written through a symlink."""

from __future__ import annotations

import errno
import os
import struct
from collections import OrderedDict
from typing import Callable, Dict, List, Optional, Tuple

from .limits import MAX_GAP_FILL_SECONDS, MAX_REPORTED_GAP_SECONDS, MAX_SEGMENTS, MAX_WAV_DATA, default_max_open_files
from .packets import Direction
from .receiver import Frame, Stream

__all__ = ["WavRecorder", "WavFile"]

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
# Opened again: without following a symlink put in its place, without waiting on a FIFO.
_REOPEN = os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


class WavFile:
    """One WAV file: data goes at its place (44 + n) with pwrite and the header's
    sizes are rewritten after every write, so the file is whole at any moment
    (even if the process is killed) and can be closed and opened again."""

    def __init__(self, path: str, rate: int, segment: int):
        self.path, self.rate, self.segment = path, rate, segment
        self.n = 0  # data bytes
        self.real = 0  # samples received, written
        self.silence = 0  # samples of gap fill written
        self.last_frame = 0  # samples of the last packet written
        self.fd: Optional[int] = os.open(path, _CREATE, 0o644)
        try:
            st = os.fstat(self.fd)
            self._id = (st.st_dev, st.st_ino)
            os.pwrite(self.fd, self._header(), 0)
        except BaseException:
            os.close(self.fd)
            os.unlink(path)
            raise

    def _header(self) -> bytes:
        return struct.pack("<4sI8sIHHIIHH4sI", b"RIFF", 36 + self.n, b"WAVEfmt ", 16, 1, 1, self.rate, self.rate * 2, 2,
                           16, b"data", self.n)

    def reopen(self) -> None:
        fd = os.open(self.path, _REOPEN)
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != self._id:
            os.close(fd)
            raise OSError(errno.ESTALE, f"{self.path}: no longer the file written")
        self.fd = fd

    def write(self, silence: int, pcm: bytes) -> None:
        data = bytes(2 * silence) + pcm if silence else pcm
        os.pwrite(self.fd, data, 44 + self.n)
        self.n += len(data)
        os.pwrite(self.fd, struct.pack("<I", 36 + self.n), 4)
        os.pwrite(self.fd, struct.pack("<I", self.n), 40)

    def close(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class WavRecorder:
    """Writes <dir>/stream-<id>-<DIR>.wav for each stream and direction, and
    stream-<id>-<DIR>-<n>.wav for each further segment (a format change after
    audio, a return from idle): a file per format.

    Hook it to a Receiver: Receiver(on_frame=rec.on_frame, on_end=rec.on_end,
    on_close=rec.on_close); close() at the end. A gap in the sequence numbers is
    filled with silence, so the file keeps the call's timing: the missing
    packets times the stream's last packet, at most 3 s, never more than the
    audio already in the file; a gap a gap packet reported (mediafork resumed
    the stream, or it was paused), up to an hour, never more than the time it
    took on the receiver's clock. A late packet (its place already filled), a
    duplicate and packets after the end packet are left out. warn(stream,
    message), if given, hears of files not written."""

    def __init__(self, directory: str, max_open_files: int = 0, warn: Optional[Callable[[Stream, str], None]] = None):
        self.directory = directory
        os.makedirs(directory, exist_ok=True)
        self.max_open_files = max_open_files or default_max_open_files()
        self.warn = warn
        self._current: Dict[Tuple[int, Direction], WavFile] = {}
        self._open: "OrderedDict[int, WavFile]" = OrderedDict()  # by id(), the most recently written last
        self._suffix: Dict[Tuple[int, Direction], int] = {}
        self.paths: Dict[Tuple[int, Direction], str] = {}  # the first file of each stream and direction
        self.all_paths: Dict[Tuple[int, Direction], List[str]] = {}  # every file, in order
        self._warned: set = set()

    def path_for(self, stream_id: int, direction: Direction, n: int = 1) -> str:
        suffix = f"-{n}" if n > 1 else ""
        return os.path.join(self.directory, f"stream-{stream_id}-{Direction(direction).name}{suffix}.wav")

    def _warn(self, stream: Stream, kind: str, msg: str) -> None:
        if (stream.key, kind) not in self._warned:
            self._warned.add((stream.key, kind))
            if self.warn:
                self.warn(stream, msg)

    def _open_file(self, make: Callable[[], None]) -> None:
        """make() opens a file within the bound: the least recently written file is
        closed first when at it, or when the process is out of descriptors."""
        if len(self._open) >= self.max_open_files:
            self._close_oldest()
        try:
            make()
        except OSError as e:
            if e.errno not in (errno.EMFILE, errno.ENFILE) or not self._open:
                raise
            self._close_oldest()
            make()

    def _close_oldest(self) -> None:
        _, w = self._open.popitem(last=False)
        w.close()

    def _new_file(self, frame: Frame, stream: Stream) -> Optional[WavFile]:
        key = (frame.stream_id, frame.direction)
        files = self.all_paths.setdefault(key, [])
        if len(files) >= MAX_SEGMENTS:
            self._warn(stream, "segments", f"{MAX_SEGMENTS} WAV files already: the rest of the stream is not written")
            return None
        box: List[WavFile] = []
        err: Optional[OSError] = None
        for _ in range(100):
            n = self._suffix.get(key, 1)
            self._suffix[key] = n + 1
            path = self.path_for(frame.stream_id, frame.direction, n)
            try:
                self._open_file(lambda: box.append(WavFile(path, frame.sample_rate, frame.segment)))
                break
            except FileExistsError as e:  # an old recording: never overwritten
                err = e
            except OSError as e:
                err = e
                break
        if not box:
            self._warn(stream, "file", f"no WAV file: {err}")
            return None
        w = box[0]
        self._open[id(w)] = w
        files.append(w.path)
        self.paths.setdefault(key, w.path)
        self._current[key] = w
        return w

    def on_frame(self, frame: Frame, stream: Stream) -> None:
        key = (frame.stream_id, frame.direction)
        if frame.late or stream.end is not None:
            return
        w = self._current.get(key)
        fill_max = MAX_REPORTED_GAP_SECONDS if frame.reported_gap else MAX_GAP_FILL_SECONDS
        if w is not None and (w.segment != frame.segment or
                              w.n + len(frame.pcm) + 2 * fill_max * w.rate > MAX_WAV_DATA):
            self._finish(key)
            w = None
        if w is None:
            w = self._new_file(frame, stream)
            if w is None:
                return
        fill = 0
        if frame.missing_before and frame.reported_gap:
            # A gap a gap packet reported: as long as it says, up to an hour, never
            # longer than it took on the receiver's clock.
            fill = max(0, min(frame.missing_before * w.last_frame, MAX_REPORTED_GAP_SECONDS * w.rate,
                              int(frame.reported_gap * w.rate)))
        elif frame.missing_before:
            fill = max(0, min(frame.missing_before * w.last_frame, MAX_GAP_FILL_SECONDS * w.rate, w.real - w.silence))

        if w.fd is None:
            try:
                self._open_file(w.reopen)
            except OSError as e:
                self._warn(stream, "reopen", f"{e}: a new WAV file")
                self._finish(key)
                w = self._new_file(frame, stream)
                if w is None:
                    return
                fill = 0
            self._open[id(w)] = w
        self._open.move_to_end(id(w))
        try:
            w.write(fill, frame.pcm)
        except OSError as e:
            self._warn(stream, "write", f"{w.path}: {e}")
        w.silence += fill
        w.real += len(frame.pcm) // 2
        if frame.pcm:
            w.last_frame = len(frame.pcm) // 2

    def _finish(self, key) -> None:
        w = self._current.pop(key, None)
        if w is not None:
            self._open.pop(id(w), None)
            w.close()

    def on_end(self, stream: Stream) -> None:
        self._finish(stream.key)

    def on_close(self, stream: Stream, reason: str) -> None:
        """The receiver closed the stream (idle, evicted): its file is finalised; an
        evicted stream's bookkeeping is dropped too (memory stays bounded)."""
        self._finish(stream.key)
        if reason == "evicted":
            self.forget(stream.key)

    def forget(self, key) -> None:
        self._finish(key)
        self.paths.pop(key, None)
        self.all_paths.pop(key, None)
        self._suffix.pop(key, None)
        self._warned = {w for w in self._warned if w[0] != key}

    def close(self) -> None:
        """Close every file (each is whole already)."""
        for key in list(self._current):
            self._finish(key)
        for w in self._open.values():
            w.close()
        self._open.clear()
