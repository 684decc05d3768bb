"""WAV output and the CLI (`python -m mediafork_tlv`) over a real socket."""

from __future__ import annotations

import re
import socket
import wave
from array import array

from conftest import CLI, dominant_goertzel
from mediafork_tlv import Audio, Direction, Encoding, End, Format, Receiver, Signaling, WavRecorder
from test_receiver import tone_l16, tone_pcmu

RX, TX = Direction.RX, Direction.TX


def read_wav(path):
    with wave.open(str(path), "rb") as w:
        params = (w.getnchannels(), w.getsampwidth(), w.getframerate())
        x = array("h", w.readframes(w.getnframes()))
    return params, x


def test_wav_per_stream_and_direction_with_gap_filled(tmp_path):
    rec = WavRecorder(str(tmp_path))
    r = Receiver(on_frame=rec.on_frame, on_end=rec.on_end)
    r.handle(Signaling(9, RX).to_bytes())
    r.handle(Format(9, RX, Encoding.PCMU, 8000).to_bytes())
    r.handle(Signaling(9, TX).to_bytes())
    r.handle(Format(9, TX, Encoding.L16, 16000, 1, 20).to_bytes())
    for seq in range(1, 51):
        if seq not in (10, 11):  # lost: filled with 40 ms of silence
            r.handle(Audio(9, RX, seq, tone_pcmu(600, 160, (seq - 1) * 160)).to_bytes())
        r.handle(Audio(9, TX, seq, tone_l16(1500, 320, (seq - 1) * 320, 16000)).to_bytes())
    r.handle(Audio(9, RX, 10, tone_pcmu(600, 160)).to_bytes())  # late: its place is already silence
    for d in (RX, TX):
        r.handle(End(9, d, 50, 1).to_bytes())
    r.handle(Audio(9, TX, 51, bytes(640)).to_bytes())  # after the end: not written
    rec.close()

    (ch, width, rate), x = read_wav(tmp_path / "stream-9-RX.wav")
    assert (ch, width, rate) == (1, 2, 8000)
    assert len(x) == 50 * 160, "one second: the gap kept its length"
    assert not any(x[9 * 160:11 * 160]) and any(x[11 * 160:12 * 160])
    assert abs(dominant_goertzel(x[11 * 160:], 8000) - 600) <= 10

    (ch, width, rate), x = read_wav(tmp_path / "stream-9-TX.wav")
    assert (ch, width, rate) == (1, 2, 16000)
    assert len(x) == 50 * 320
    assert abs(dominant_goertzel(x, 16000) - 1500) <= 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stream-9-RX.wav", "stream-9-TX.wav"]


def send_all(addr, packets):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for p in packets:
            s.sendto(p, addr)
    finally:
        s.close()


def test_cli_lines_warnings_summary_and_wavs(tmp_path):
    cli = CLI("--listen", "127.0.0.1:0", "--wav", str(tmp_path), "--encoding", "l16", "--rate", "8000")
    try:
        packets = []
        # stream 1: pcmu with a format packet that disagrees with --encoding l16
        packets += [Signaling(1, RX, "chan-1", "2000", "+1555", "2000", 1705322096).to_bytes(),
                    Format(1, RX, Encoding.PCMU, 8000).to_bytes()]
        for seq in (1, 2, 3, 5, 4, 4, 6):
            packets.append(Audio(1, RX, seq, tone_pcmu(440, 160, (seq - 1) * 160)).to_bytes())
        packets.append(End(1, RX, 6, 1).to_bytes())
        # stream 2: pcmu-sized payloads and no format packet
        packets.append(Signaling(2, TX, "chan-2").to_bytes())
        packets += [Audio(2, TX, seq, b"\xff" * 160).to_bytes() for seq in (1, 2)]
        packets.append(End(2, TX, 2, 4).to_bytes())
        packets += [bytes.fromhex("0102"), bytes.fromhex("7f000c0000000509deadbeef")]
        send_all(cli.addr, packets)
        cli.count(lambda l: l.startswith("END"), 2)
        cli.wait_for(lambda l: l.startswith("UNKNOWN"))
    finally:
        rc = cli.stop()
    out = "\n".join(cli.lines)
    assert rc == 0, out
    assert re.search(r'^SIGNALING  stream=1 dir=RX len=172 channel="chan-1" exten="2000" caller="\+1555" called="2000" '
                     r'ts=2024-01-15T12:34:56Z$', out, re.M), out
    assert "FORMAT     stream=1 dir=RX encoding=pcmu rate=8000 channels=1 frame_ms=20" in out
    assert re.search(r"^WARN .*stream=1 dir=RX: the format packet says pcmu .* using the format packet$", out, re.M)
    assert "AUDIO      stream=1 dir=RX seq=1 len=172 payload=160" in out
    assert "GAP        stream=1 dir=RX expected=4 got=5 missing=1" in out
    assert "REORDER    stream=1 dir=RX seq=4 after=5" in out
    assert "DUPLICATE  stream=1 dir=RX seq=4" in out
    assert "END        stream=1 dir=RX last_seq=6 reason=hangup" in out
    assert "END        stream=2 dir=TX last_seq=2 reason=shutdown" in out
    assert re.search(r"^WARN .*stream=2 dir=TX: payload 160 bytes.*pcmu.*--encoding", out, re.M), out
    assert out.count("WARN") == 2, "one warning per stream"
    assert re.search(r"^INVALID    from=127\.0\.0\.1:\d+ len=2: ", out, re.M)
    assert "UNKNOWN    type=0x7f stream=5 len=12 (ignored)" in out
    assert "SUMMARY 2 stream(s), 2 direction(s)" in out
    s1 = next(l for l in cli.lines if l.startswith("  stream=1 "))
    assert "format=pcmu/8000Hz(packet)" in s1 and "packets=7" in s1 and "missing=0" in s1 and "reordered=1" in s1
    assert "duplicates=1" in s1 and "end=hangup" in s1 and "seq=1..6" in s1
    assert abs(int(re.search(r"dominant=(\d+)Hz", s1).group(1)) - 440) <= 10, s1
    assert f"wav={tmp_path / 'stream-1-RX.wav'}" in s1
    assert "format=l16/8000Hz(assumed)" in next(l for l in cli.lines if l.startswith("  stream=2 "))
    assert "TOTAL packets=9 bytes=1440 missing=0 reordered=1 duplicates=1 invalid=1" in out
    _, x = read_wav(tmp_path / "stream-1-RX.wav")
    assert len(x) == 6 * 160


def test_cli_every_and_bad_listen():
    cli = CLI("--listen", "127.0.0.1:0", "--every", "10")
    try:
        send_all(cli.addr, [Audio(3, RX, seq, bytes(320)).to_bytes() for seq in range(1, 26)]
                 + [End(3, RX, 25, 1).to_bytes()])
        cli.wait_for(lambda l: l.startswith("END"))
    finally:
        assert cli.stop() == 0
    assert [l.split()[3] for l in cli.lines if l.startswith("AUDIO")] == ["seq=1", "seq=11", "seq=21"]

    import subprocess
    import sys
    from conftest import PYTHON_DIR
    p = subprocess.run([sys.executable, "-m", "mediafork_tlv", "--listen", "nonsense"], cwd=str(PYTHON_DIR),
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "want host:port" in p.stderr
