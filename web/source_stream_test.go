package web

import (
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

const streamCaptures = captures + "audio_stream/"

// recordedFrames cuts a recorded audio.raw into the module's frames.
func recordedFrames(t *testing.T, dir string, frameBytes int) [][]byte {
	raw, err := os.ReadFile(streamCaptures + dir + "/ws/conn01/audio.raw")
	require.NoError(t, err)
	var out [][]byte
	for len(raw) >= frameBytes {
		out = append(out, raw[:frameBytes])
		raw = raw[frameBytes:]
	}
	return out
}

const (
	begin    = mediafork.StepBegin
	flush    = mediafork.StepFlush
	audio    = mediafork.StepAudio
	graceful = mediafork.StepGraceful
	closeNow = mediafork.StepClose
)

// mod_audio_fork: today's behaviour, step by step.
func TestAudioForkSourceSteps(t *testing.T) {
	t.Parallel()
	src := audioForkSource{}
	assert.Equal(t, "audio_fork", src.Name())
	assert.Equal(t, "audio.drachtio.org", src.Subprotocol())
	now := time.Now()
	s := src.NewStream(false)
	assert.Equal(t, begin, s.Message(now, false, []byte(`{"a":1}`)), "metadata first")
	assert.Equal(t, audio, s.Message(now, true, make([]byte, 640)))
	assert.Equal(t, mediafork.Step(0), s.Message(now, false, []byte("later text")))
	assert.Equal(t, graceful|closeNow, s.Message(now, true, nil), "zero-length frame: graceful shutdown, and no close from the module (t13)")

	s = src.NewStream(false)
	assert.Equal(t, begin|audio, s.Message(now, true, make([]byte, 640)), "no metadata: audio first")
	s = src.NewStream(true)
	assert.Equal(t, begin|graceful|closeNow, s.Message(now, true, nil))
	assert.Equal(t, mediafork.EndHangup, s.PeerClosed(1000))
}

// mod_audio_stream, fed the recorded frames with the recorded timing.
func TestAudioStreamSourceSteps(t *testing.T) {
	t.Parallel()
	src := audioStreamSource{}
	assert.Equal(t, "audio_stream", src.Name())
	assert.Equal(t, "", src.Subprotocol())
	frames := recordedFrames(t, "s09c_slow_upgrade_500ms", 320)
	require.Len(t, frames, 10)
	t0 := time.Now()

	// s09c: a burst 0.0–0.1 ms apart, then the metadata, then live audio.
	s := src.NewStream(false)
	for i, f := range frames[:8] {
		assert.Equal(t, mediafork.Step(0), s.Message(t0.Add(time.Duration(i)*30*time.Microsecond), true, f), "held")
	}
	assert.Equal(t, begin|flush, s.Message(t0.Add(300*time.Microsecond), false, []byte(`{"meta":"first?"}`)))
	assert.Equal(t, frames[:8], s.Held(), "the burst, in order")
	assert.Equal(t, audio, s.Message(t0.Add(10*time.Millisecond), true, frames[8]))
	assert.Equal(t, mediafork.Step(0), s.Message(t0, false, []byte("send_text")), "later text ignored")
	assert.Equal(t, mediafork.Step(0), s.Message(t0, true, nil), "an empty frame is nothing (no graceful shutdown, s07)")

	// s06: a fast upgrade: the metadata first.
	s = src.NewStream(false)
	assert.Equal(t, begin, s.Message(t0, false, []byte(`{"a":"b"}`)))
	assert.Equal(t, audio, s.Message(t0.Add(47*time.Millisecond), true, frames[0]))

	// s01: no metadata: the first frame is held until the next shows live audio.
	s = src.NewStream(false)
	assert.Equal(t, mediafork.Step(0), s.Message(t0, true, frames[0]))
	assert.Equal(t, begin|flush|audio, s.Message(t0.Add(20*time.Millisecond), true, frames[1]))
	assert.Equal(t, frames[:1], s.Held())

	// No more held than a burst can be.
	s = src.NewStream(false)
	var step mediafork.Step
	for i := 0; step == 0; i++ {
		require.Less(t, i, 1000)
		step = s.Message(t0, true, frames[0])
	}
	assert.Equal(t, begin|flush|audio, step)
	assert.Len(t, s.Held(), maxHeldFrames)

	// A fork mediafork started: its metadata will come; the audio before it
	// is held whatever the gaps (wss://: the burst, 44 ms, then the metadata),
	// up to the bound.
	s = src.NewStream(true)
	assert.Equal(t, mediafork.Step(0), s.Message(t0, true, frames[0]))
	assert.Equal(t, mediafork.Step(0), s.Message(t0.Add(100*time.Microsecond), true, frames[1]))
	assert.Equal(t, mediafork.Step(0), s.Message(t0.Add(44*time.Millisecond), true, frames[2]), "live audio before the metadata")
	assert.Equal(t, begin|flush, s.Message(t0.Add(44*time.Millisecond), false, []byte(`{"mediafork":"..."}`)))
	assert.Equal(t, frames[:3], s.Held())
	s = src.NewStream(true)
	step = 0
	for i := 0; step == 0; i++ {
		require.Less(t, i, 1000)
		step = s.Message(t0.Add(time.Duration(i)*20*time.Millisecond), true, frames[0])
	}
	assert.Equal(t, begin|flush|audio, step, "no metadata after the bound: begins without (and is refused)")
	assert.Len(t, s.Held(), maxHeldFrames)
	assert.Equal(t, mediafork.EndHangup, s.PeerClosed(1000))
}

// Which Source a connection is.
func TestSourceFor(t *testing.T) {
	t.Parallel()
	assert.Equal(t, "audio_fork", sourceFor(nil, []string{"audio.drachtio.org"}).Name())
	assert.Equal(t, "audio_stream", sourceFor(nil, nil).Name())
	assert.Equal(t, "audio_stream", sourceFor(nil, []string{"other"}).Name())
	assert.Equal(t, "audio_fork", sourceFor(&mediafork.Pass{}, nil).Name(), "mod_audio_fork's credentials name no source")
	assert.Equal(t, "audio_stream", sourceFor(&mediafork.Pass{Source: "audio_stream"}, []string{"audio.drachtio.org"}).Name(), "the credential wins")
	assert.Equal(t, "audio_fork", sourceFor(&mediafork.Pass{Source: "audio_fork"}, nil).Name())
}
