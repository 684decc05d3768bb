package mediafork

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLevelsPerDirectionAndOneWayAudio(t *testing.T) {
	t.Parallel()
	sink := newUDPSink(t)
	sink.conn.SetReadBuffer(4 << 20)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, err := reg.Claim("uuid-level", "mediafork")
	require.NoError(t, err)
	assert.Nil(t, f.Levels(), "no levels before the fork streams")
	require.NoError(t, f.Begin(stereoSpec(), TLVTargets(sink.addr())))
	defer f.Finish(EndHangup)

	f.meter.start(time.Now().Add(-2 * SilentAfter)) // as if the call began a while ago
	f.Write(nil, stereoTone(16384, 0))              // RX at -6 dBFS, TX dead
	l := f.Levels()
	require.Len(t, l, 2)
	assert.Equal(t, DirRX, l[0].Direction)
	assert.InDelta(t, -6.0, l[0].DBFS, 0.1)
	assert.False(t, l[0].Silent)
	assert.Zero(t, l[0].QuietFor)
	assert.Equal(t, DirTX, l[1].Direction)
	assert.Equal(t, MinDBFS, l[1].DBFS)
	assert.True(t, l[1].Silent, "one-way audio: TX silent since the start")
	assert.GreaterOrEqual(t, l[1].QuietFor, 2*SilentAfter)

	// Only one frame in meterEvery is measured: the next four leave the
	// levels as they are, the fifth measures again.
	for i := 0; i < meterEvery-1; i++ {
		f.Write(nil, stereoTone(0, 0))
	}
	assert.InDelta(t, -6.0, f.Levels()[0].DBFS, 0.1)
	f.Write(nil, stereoTone(0, 1000)) // TX back at -30 dBFS
	l = f.Levels()
	assert.Equal(t, MinDBFS, l[0].DBFS)
	assert.False(t, l[0].Silent, "RX quiet for a moment only")
	assert.InDelta(t, -30.3, l[1].DBFS, 0.1)
	assert.False(t, l[1].Silent)

	js, err := json.Marshal(f.Info().Levels)
	require.NoError(t, err)
	assert.Contains(t, string(js), `{"direction":"TX","dbfs":-30.3,"silent":false,"quiet_ms":0}`)
}

func TestLevelsOfMonoAndHostileFrames(t *testing.T) {
	t.Parallel()
	sink := newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, err := reg.Claim("uuid-mono", "mediafork")
	require.NoError(t, err)
	spec := stereoSpec()
	spec.Mix = Mono
	require.NoError(t, f.Begin(spec, TLVTargets(sink.addr())))
	defer f.Finish(EndHangup)
	for _, frame := range [][]byte{nil, {0x80}, {0x00, 0x80, 0x01}} { // empty, odd, full-scale negative
		f.Write(nil, frame)
		for i := 0; i < meterEvery-1; i++ {
			f.Write(nil, nil)
		}
	}
	l := f.Levels()
	require.Len(t, l, 1)
	assert.Equal(t, DirRX, l[0].Direction)
	assert.Equal(t, 0.0, l[0].DBFS, "-32768 is full scale")
}

// BenchmarkMeter is the per-frame cost the level meter adds to a stereo
// 20 ms frame at 8 kHz, averaged over the frames it skips.
func BenchmarkMeter(b *testing.B) {
	var m meter
	m.start(time.Now())
	frame := stereoTone(8000, 4000)
	b.ReportAllocs()
	for b.Loop() {
		m.observe(frame, 2)
	}
}

// stereoTone is one 20 ms frame at 8 kHz: 440 Hz of amplitude l on the left
// (RX) and r on the right (TX).
func stereoTone(l, r float64) []byte {
	return interleave(sine(440, 8000, 160, l), sine(440, 8000, 160, r))
}

func TestLevelJSONRoundTrip(t *testing.T) {
	t.Parallel()
	in := []Level{{DirRX, -6.02, false, 0}, {DirTX, MinDBFS, true, 4200 * time.Millisecond}, {DirMixed, -30.25, false, 10 * time.Millisecond}}
	js, err := json.Marshal(in)
	require.NoError(t, err)
	assert.JSONEq(t, `[{"direction":"RX","dbfs":-6,"silent":false,"quiet_ms":0},{"direction":"TX","dbfs":-96,"silent":true,"quiet_ms":4200},
		{"direction":"MIXED","dbfs":-30.3,"silent":false,"quiet_ms":10}]`, string(js))
	var out []Level
	require.NoError(t, json.Unmarshal(js, &out))
	assert.Equal(t, []Level{{DirRX, -6, false, 0}, {DirTX, MinDBFS, true, 4200 * time.Millisecond}, {DirMixed, -30.3, false, 10 * time.Millisecond}}, out)
	assert.Error(t, json.Unmarshal([]byte(`{"direction":"UP"}`), &out[0]))
}
