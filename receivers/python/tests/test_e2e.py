"""End to end: the real mediafork daemon and the project's FreeSWITCH simulator
(`mediafork demo --receiver`) send their forks to this package's CLI, and the
WAVs it writes carry each call's own tone per direction."""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from array import array

import pytest

from conftest import CLI, REPO, dominant_goertzel

GO = shutil.which("go")
pytestmark = pytest.mark.skipif(GO is None, reason="`go` is not on PATH: the end-to-end test builds and runs "
                                                   "`mediafork demo` (install Go, or put /usr/local/go/bin on PATH)")

BUILD_TIMEOUT = 1200  # a cold module and build cache on a loaded 2-core machine
RUN_TIMEOUT = 300


@pytest.fixture(scope="module")
def mediafork(tmp_path_factory):
    binary = tmp_path_factory.mktemp("bin") / "mediafork"
    p = subprocess.run([GO, "build", "-o", str(binary), "./cmd/mediafork"], cwd=str(REPO), capture_output=True,
                       text=True, timeout=BUILD_TIMEOUT)
    assert p.returncode == 0, f"go build failed:\n{p.stdout}{p.stderr}"
    return binary


SUMMARY = re.compile(r'^  stream=(\d+) dir=(\w+)\s+channel="[^"]*" caller="([^"]*)" .*?packets=(\d+) .*?'
                     r'missing=(\d+) .*?end=(\S+) dominant=(\d+)Hz wav=(\S+)$')
CALL = re.compile(r"^(\+\d+)\s+(\d+)\s+(\d+) Hz\s+(\d+) Hz\s+(true|false)$")


def test_demo_forks_arrive_as_wavs_with_their_tones(mediafork, tmp_path):
    wav_dir = tmp_path / "wav"
    cli = CLI("--listen", "127.0.0.1:0", "--wav", str(wav_dir), "--every", "0")
    try:
        host, port = cli.addr
        demo = subprocess.run([str(mediafork), "demo", "--receiver", f"{host}:{port}", "--seconds", "2"],
                              cwd=str(tmp_path), capture_output=True, text=True, timeout=RUN_TIMEOUT)
        assert demo.returncode == 0, f"demo failed:\n{demo.stdout}{demo.stderr}"
        # The demo's own table: caller, dest, RX tone, TX tone, forked.
        calls = {m[1]: (int(m[3]), int(m[4])) for m in map(CALL.match, demo.stdout.splitlines())
                 if m and m[5] == "true"}
        assert len(calls) >= 2, demo.stdout
        # The demo exits once every fork has ended and mediafork has stopped: every end packet
        # is on its way; wait for them to be read.
        cli.count(lambda l: l.startswith("END"), 2 * len(calls), timeout=RUN_TIMEOUT)
    finally:
        rc = cli.stop()
    out = "\n".join(cli.lines)
    assert rc == 0, out
    assert not any(l.startswith(("INVALID", "WARN", "GAP")) for l in cli.lines), out

    seen = {}
    for m in filter(None, map(SUMMARY.match, cli.lines)):
        _, direction, caller, packets, missing, end, _, path = m.groups()
        seen[(caller, direction)] = (int(packets), int(missing), end, path)
    assert set(seen) == {(c, d) for c in calls for d in ("RX", "TX")}, out

    for (caller, direction), (packets, missing, end, path) in sorted(seen.items()):
        want = calls[caller][0 if direction == "RX" else 1]
        assert end == "hangup" and missing == 0 and packets >= 25, (caller, direction, out)
        with wave.open(path, "rb") as w:
            assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
            rate = w.getframerate()
            x = array("h", w.readframes(w.getnframes()))
        assert len(x) >= rate // 2, f"{path}: only {len(x)} samples"
        got = dominant_goertzel(x[rate // 10:], rate)  # past the first 100 ms
        assert abs(got - want) <= 10, f"{caller} {direction}: {got} Hz in {path}, want {want} Hz"
