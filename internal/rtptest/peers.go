package rtptest

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"testing"
)

// NeedTool returns the path of a program the test needs (ffmpeg,
// gst-launch-1.0): the test is skipped with one line when it is missing,
// and fails when CI=true (CI installs it: .ci/run).
func NeedTool(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s is missing (apt-get install %s): CI runs this test", name, pkg)
	}
	t.Skipf("%s is missing: apt-get install %s", name, pkg)
	return ""
}

// WAV is a WAV file's PCM: 16-bit samples of its first channel and its rate.
type WAV struct {
	Rate     int
	Channels int
	Samples  []int16 // the first channel
}

// ReadWAV reads a PCM WAV file of 16-bit samples.
func ReadWAV(path string) (WAV, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return WAV{}, err
	}
	if len(b) < 12 || string(b[0:4]) != "RIFF" || string(b[8:12]) != "WAVE" {
		return WAV{}, errors.New("not a RIFF WAVE file")
	}
	var w WAV
	bits := 0
	for p := 12; p+8 <= len(b); {
		id, n := string(b[p:p+4]), int(binary.LittleEndian.Uint32(b[p+4:p+8]))
		body := b[p+8:]
		if n > len(body) || n == 0xFFFFFFFF || (id == "data" && n == 0) {
			n = len(body) // a header written before the length was known (streamed)
		}
		switch id {
		case "fmt ":
			if n < 16 {
				return w, errors.New("short fmt chunk")
			}
			w.Channels = int(binary.LittleEndian.Uint16(body[2:4]))
			w.Rate = int(binary.LittleEndian.Uint32(body[4:8]))
			bits = int(binary.LittleEndian.Uint16(body[14:16]))
		case "data":
			if bits != 16 || w.Channels < 1 {
				return w, errors.New("not 16-bit PCM")
			}
			step := 2 * w.Channels
			for i := 0; i+step <= n; i += step {
				w.Samples = append(w.Samples, int16(binary.LittleEndian.Uint16(body[i:])))
			}
			return w, nil
		}
		p += 8 + n + n%2
	}
	return w, errors.New("no data chunk")
}
