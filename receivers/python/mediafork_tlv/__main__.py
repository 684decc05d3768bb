"""python -m mediafork_tlv --listen ADDR [--wav DIR] [--encoding E --rate R]

A TLV receiver like `mediafork tlvdump`: one line per packet (or per N audio
packets), gaps, reordering and duplicates reported, a WAV file per stream and
direction, and a summary with each direction's dominant frequency on exit
(SIGINT, SIGTERM or --duration). Every datagram is hostile: streams are pinned
to their first source, impossible formats, sizes and jumps are refused, and
streams, open files and memory are bounded."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from datetime import datetime, timezone
from typing import Dict, List, Optional, Tuple

from .audio import dominant_hz, samples
from .limits import DEFAULT_IDLE_TIMEOUT, DEFAULT_MAX_STREAMS, MAX_ANALYSED_SAMPLES, MAX_ANALYSED_TOTAL
from .packets import Audio, Encoding, End, Format, Gap, GapReason, Signaling, Unknown
from .receiver import Frame, Receiver, Stream, address_string, listen, parse_address
from .wav import WavRecorder


def q(s: str) -> str:
    return json.dumps(s, ensure_ascii=False)


class Dump:
    def __init__(self, args, out=sys.stdout):
        self.args, self.out = args, out
        self.explicit = args.encoding is not None or args.rate is not None
        self.encoding = Encoding.from_name(args.encoding or "l16")
        self.rate = args.rate or 8000
        self.wav = WavRecorder(args.wav, max_open_files=args.max_open_files, warn=self.on_warning) if args.wav else None
        self.pcm: Dict[Tuple, List[bytes]] = {}  # the first audio of each direction, for the tone analysis
        self.pcm_len: Dict[Tuple, int] = {}
        self.kept = 0  # bytes in self.pcm, all directions
        self.started = time.monotonic()

    def line(self, kind: str, text: str, always: bool = False) -> None:
        if always or not self.args.quiet:
            print(f"{kind:<10} {text}", file=self.out, flush=True)

    def receiver_options(self) -> dict:
        return dict(encoding=self.encoding, rate=self.rate, frame_ms=self.args.frame_ms, on_packet=self.on_packet,
                    on_frame=self.on_frame, on_sequence=self.on_sequence, on_end=self.on_end,
                    on_invalid=self.on_invalid, on_warning=self.on_warning, on_refused=self.on_refused,
                    on_close=self.on_close, on_error=self.on_error, max_streams=self.args.max_streams,
                    idle_timeout=self.args.idle_timeout)

    def on_packet(self, p, s: Optional[Stream], addr) -> None:
        if isinstance(p, Audio):
            n = self.args.every
            if n and (s.packets - 1) % n == 0:
                self.line("AUDIO", f"stream={p.stream_id} dir={p.direction} seq={p.sequence} len={len(p.payload) + 12} "
                                   f"payload={len(p.payload)}")
        elif isinstance(p, Signaling):
            ts = datetime.fromtimestamp(p.timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            self.line("SIGNALING", f"stream={p.stream_id} dir={p.direction} len=172 channel={q(p.channel_id)} "
                                   f"exten={q(p.exten)} caller={q(p.caller_id)} called={q(p.called_id)} ts={ts}")
        elif isinstance(p, Format):
            self.line("FORMAT", f"stream={p.stream_id} dir={p.direction} encoding={p.encoding} rate={p.sample_rate} "
                                f"channels={p.channels} frame_ms={p.frame_ms}")
            if self.explicit and s.format is p and (p.encoding != self.encoding or p.sample_rate != self.rate):
                self.line("WARN", f"stream={p.stream_id} dir={p.direction}: the format packet says {p.encoding} at "
                                  f"{p.sample_rate} Hz, --encoding/--rate say {self.encoding} at {self.rate} Hz: "
                                  "using the format packet", always=True)
        elif isinstance(p, End):
            self.line("END", f"stream={p.stream_id} dir={p.direction} last_seq={p.last_sequence} reason={p.reason}")
        elif isinstance(p, Gap):
            reason = p.reason.name.lower().replace("_", "-") if isinstance(p.reason, GapReason) else f"reason({p.reason})"
            self.line("GAP-PACKET", f"stream={p.stream_id} dir={p.direction} next={p.next_sequence} "
                                    f"missing={p.missing_frames} reason={reason} from={address_string(addr)}"
                                    f"{'' if s is not None else ' (no such stream: ignored)'}")
        elif isinstance(p, Unknown):
            self.line("UNKNOWN", f"type=0x{p.type:02x} stream={p.stream_id} len={len(p.data)} (ignored)")

    def on_frame(self, f: Frame, s: Stream) -> None:
        if self.wav:
            self.wav.on_frame(f, s)
        if f.late or s.end is not None:
            return
        have = self.pcm_len.get(s.key, 0)
        room = min(2 * MAX_ANALYSED_SAMPLES - have, 2 * MAX_ANALYSED_TOTAL - self.kept, len(f.pcm)) & ~1
        if room > 0:
            self.pcm.setdefault(s.key, []).append(f.pcm[:room])
            self.pcm_len[s.key] = have + room
            self.kept += room

    def on_sequence(self, s: Stream, kind: str, seq: int, ref: int) -> None:
        if kind == "gap":
            self.line("GAP", f"stream={s.stream_id} dir={s.direction} expected={ref} got={seq} missing={seq - ref}")
        elif kind == "reorder":
            self.line("REORDER", f"stream={s.stream_id} dir={s.direction} seq={seq} after={ref}")
        else:
            self.line("DUPLICATE", f"stream={s.stream_id} dir={s.direction} seq={seq}")

    def on_end(self, s: Stream) -> None:
        if self.wav:
            self.wav.on_end(s)

    def on_close(self, s: Stream, reason: str) -> None:
        if self.wav:
            self.wav.on_close(s, reason)
        if reason == "idle":
            self.line("IDLE", f"stream={s.stream_id} dir={s.direction}: nothing for {self.args.idle_timeout:g}s, closed")
        else:
            self.line("EVICTED", f"stream={s.stream_id} dir={s.direction}: more than {self.args.max_streams} streams "
                                 "(the least recently active goes)")
            self.kept -= self.pcm_len.pop(s.key, 0)
            self.pcm.pop(s.key, None)

    def on_invalid(self, data: bytes, addr, err: Exception) -> None:
        self.line("INVALID", f"from={address_string(addr)} len={len(data)}: {err}")

    def on_refused(self, s: Stream, kind: str, msg: str, addr) -> None:
        if kind == "foreign":
            self.line("FOREIGN", f"stream={s.stream_id} dir={s.direction} from={address_string(addr)} "
                                 f"pinned={s.source} (dropped)")
        else:
            self.line("REFUSED", f"stream={s.stream_id} dir={s.direction} from={address_string(addr)}: {msg}")

    def on_warning(self, s: Stream, msg: str) -> None:
        self.line("WARN", f"stream={s.stream_id} dir={s.direction}: {msg}", always=True)

    def on_error(self, data: bytes, addr, err: Exception) -> None:
        self.line("ERROR", f"from={address_string(addr)} len={len(data)}: {type(err).__name__}: {err} (recovered)",
                  always=True)

    def summary(self, r: Receiver) -> None:
        streams = sorted(r.streams_by_key.values(), key=lambda s: s.key)
        p = lambda text: print(text, file=self.out, flush=True)  # noqa: E731
        p(f"SUMMARY {len({s.stream_id for s in streams})} stream(s), {len(streams)} direction(s), "
          f"{time.monotonic() - self.started:.3f}s")
        for s in streams:
            try:
                hz = dominant_hz(samples(b"".join(self.pcm.get(s.key, []))), s.sample_rate, 10.0)
            except Exception:  # the summary is always printed
                hz = 0.0
            sig = s.signaling
            fmt = "refused" if not s.decodable else "packet" if s.format else "assumed"
            line = (f"  stream={s.stream_id} dir={s.direction.name:<5} channel={q(sig.channel_id if sig else '-')} "
                    f"caller={q(sig.caller_id if sig else '-')} called={q(sig.called_id if sig else '-')} "
                    f"from={s.source} format={s.encoding}/{s.sample_rate}Hz({fmt}) "
                    f"packets={s.packets} bytes={s.bytes} seq={s.first_seq}..{s.last_seq} missing={s.missing} "
                    f"reordered={s.reordered} duplicates={s.duplicates} refused={s.refused} foreign={s.foreign} ")
            if s.gaps or s.moved:
                line += f"gaps={s.gaps} gap_frames={s.gap_frames} moved={s.moved} "
            files = self.wav.all_paths.get(s.key, []) if self.wav else []
            if len(files) > 1:
                line += f"files={len(files)} "

            line += f"end={s.end.reason if s.end else 'none'} dominant={hz:.0f}Hz"
            if files:
                line += f" wav={files[0]}"
            p(line)
            for w in s.warnings:
                p(f"    warning: {w}")
        if r.evicted:
            p(f"  and {r.evicted} stream(s) no longer tracked (evicted at --max-streams {r.max_streams}): counted in "
              "the total")
        tot = lambda attr: sum(getattr(s, attr) for s in streams) + r.gone[attr]  # noqa: E731
        p(f"TOTAL packets={tot('packets')} bytes={tot('bytes')} missing={tot('missing')} reordered={tot('reordered')} "
          f"duplicates={tot('duplicates')} invalid={r.invalid} refused={r.refused} foreign={r.foreign} "
          f"unknown={r.unknown} evicted={r.evicted}")


async def run(args) -> int:
    dump = Dump(args)
    host, port = parse_address(args.listen)
    r = await listen(host, port, **dump.receiver_options())
    addr = r.address
    dump.line("LISTEN", f"udp={'[%s]' % addr[0] if ':' in addr[0] else addr[0]}:{addr[1]}", always=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if args.duration:
            try:
                await asyncio.wait_for(stop.wait(), args.duration)
            except asyncio.TimeoutError:
                pass
        else:
            await stop.wait()
    finally:
        r.close()
        try:
            if dump.wav:
                dump.wav.close()  # every WAV closed, whatever the summary meets
        finally:
            dump.summary(r)
    return 0


def positive_int(s: str) -> int:
    n = int(s)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{s}: must be at least 1")
    return n


def positive_float(s: str) -> float:
    x = float(s)
    if not x > 0:
        raise argparse.ArgumentTypeError(f"{s}: must be more than 0")
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m mediafork_tlv", description=__doc__.split("\n\n")[1])
    ap.add_argument("--listen", default="127.0.0.1:9000", help="UDP address to receive on (port 0: any free port)")
    ap.add_argument("--wav", metavar="DIR", help="write a WAV file per stream and direction into DIR")
    ap.add_argument("--encoding", choices=[str(e) for e in Encoding],
                    help="payload encoding when a stream sends no format packet (default l16)")
    ap.add_argument("--rate", type=int, help="sample rate when a stream sends no format packet (default 8000; a "
                                             "multiple of 8000 up to 48000)")
    ap.add_argument("--frame-ms", type=int, default=20, help="frame length when no format packet says it")
    ap.add_argument("--every", type=int, default=1, metavar="N", help="print one AUDIO line per N packets (0: none)")
    ap.add_argument("--quiet", action="store_true", help="no line per packet: only warnings and the summary")
    ap.add_argument("--duration", type=float, default=0, help="stop after this many seconds (default: at SIGINT/SIGTERM)")
    ap.add_argument("--max-streams", type=positive_int, default=DEFAULT_MAX_STREAMS, metavar="N",
                    help="streams (id and direction) tracked at once; a new one beyond evicts the least recently "
                         f"active (default {DEFAULT_MAX_STREAMS})")
    ap.add_argument("--idle-timeout", type=positive_float, default=DEFAULT_IDLE_TIMEOUT, metavar="SECONDS",
                    help="close a stream that sent nothing for this long: its WAV is finalised, a later packet "
                         f"starts a new file (default {DEFAULT_IDLE_TIMEOUT:g})")
    ap.add_argument("--max-open-files", type=positive_int, default=0, metavar="N",
                    help="WAV files open at once (default: half the descriptor limit, at most 1024); the least "
                         "recently written is closed and opened again when written to")
    args = ap.parse_args(argv)
    try:
        return asyncio.run(run(args))
    except (OSError, ValueError) as e:
        print(f"mediafork_tlv: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
