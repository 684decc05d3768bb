package fssim

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/wstest"
)

const tbWait = 10 * time.Second

func tbTone(hz float64, n int) []byte {
	b := make([]byte, 2*n)
	for i := range n {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(int16(8000*math.Sin(2*math.Pi*hz*float64(i)/8000))))
	}
	return b
}

// monitor forks leg mono (what it hears) to a server of its own.
func tbMonitor(t *testing.T, s *Switch, leg string) *wstest.Server {
	m := wstest.New(t, wstest.Options{Subprotocols: []string{"audio.drachtio.org"}})
	require.Contains(t, s.FsCli("uuid_audio_fork "+leg+" start "+m.URL+" mono 8k mon"), "+OK")
	return m
}

// heardAfter waits until the monitor has a second of audio received after
// from and returns hz's share of it, frame by frame (a busy machine makes
// the simulator skip frames: the tone's phase jumps between them).
func heardAfter(t *testing.T, m *wstest.Server, from time.Time, hz float64) float64 {
	var frames [][]int16
	m.Wait(t, "a second of audio", tbWait, func(cs []wstest.Snapshot) bool {
		frames = frames[:0]
		for _, c := range cs {
			for _, msg := range c.Messages {
				if !msg.Text && msg.At.After(from) {
					frames = append(frames, wstest.Channels(msg.Data, 1)[0])
				}
			}
		}
		return len(frames) >= 50
	})
	share := 0.0
	for _, f := range frames[:50] {
		share += wstest.ToneShare(f, 8000, hz)
	}
	return share / 50
}

// drachtio's module writes a playAudio into a file and names it; displace
// with mux mixes it into what the leg sends: its far end (the caller) hears
// it over the call's own audio, the callee does not.
func TestTalkbackPlayAudioDisplace(t *testing.T) {
	t.Parallel()
	s := NewSwitch("ClueCon", nil)
	defer s.Close()
	b, _, caller, callee := s.AnswerBridged(CallOptions{Dest: "9400"}, 1000, 440)
	srv := wstest.New(t, wstest.Options{Subprotocols: []string{"audio.drachtio.org"}})
	require.Contains(t, s.FsCli("uuid_audio_fork "+b.UUID+" start "+srv.URL+" mono 8k"), "+OK")
	cs := srv.Wait(t, "the fork", tbWait, func(cs []wstest.Snapshot) bool { return len(cs) == 1 })
	monCaller, monCallee := tbMonitor(t, s, caller.UUID), tbMonitor(t, s, callee.UUID)
	assert.Greater(t, heardAfter(t, monCaller, time.Now(), 440), 0.9, "the caller hears the callee")

	body, _ := json.Marshal(map[string]any{"type": "playAudio", "data": map[string]any{"audioContentType": "raw", "sampleRate": 8000,
		"audioContent": base64.StdEncoding.EncodeToString(tbTone(700, 24000))}})
	require.NoError(t, cs[0].Send(true, body))
	file := fmt.Sprintf("%s/%s_0.tmp.r8", TempDir, b.UUID)
	require.True(t, s.WaitFile(file, tbWait), "the module's file")
	assert.Equal(t, "-ERR Cannot displace session!\n", s.FsCli("uuid_displace "+b.UUID+" start /nope 0 mux"))
	from := time.Now()
	require.Equal(t, "+OK Success\n", s.FsCli("uuid_displace "+b.UUID+" start "+file+" 0 mux"))
	assert.Greater(t, heardAfter(t, monCaller, from.Add(100*time.Millisecond), 700), 0.3, "the caller hears it")
	assert.Greater(t, heardAfter(t, monCaller, from.Add(100*time.Millisecond), 440), 0.3, "over the callee")
	assert.Less(t, heardAfter(t, monCallee, from.Add(100*time.Millisecond), 700), 0.05, "the callee does not")
	require.Equal(t, "+OK Success\n", s.FsCli("uuid_displace "+b.UUID+" stop "+file))
	assert.Less(t, heardAfter(t, monCaller, time.Now().Add(60*time.Millisecond), 700), 0.05, "stopped")
	assert.Equal(t, "-ERR Cannot stop displace session!\n", s.FsCli("uuid_displace "+b.UUID+" stop "+file))
	require.Contains(t, s.FsCli("uuid_audio_fork "+b.UUID+" stop"), "+OK")
	assert.Zero(t, s.Files(), "the module deletes its files at stop")
}

// jambonz's module, started with `true true <rate>`, mixes the frames its
// server sends into the leg's TX, echoes marks when their audio has played,
// and empties its buffer on killAudio (the pending marks cleared).
func TestTalkbackJambonzStream(t *testing.T) {
	t.Parallel()
	s := NewSwitch("ClueCon", nil)
	defer s.Close()
	s.Jambonz.Store(true)
	assert.Contains(t, s.FsCli("uuid_audio_fork"), "bidirectionalAudio_stream_enabled")
	b, _, caller, _ := s.AnswerBridged(CallOptions{Dest: "9400"}, 1000, 440)
	srv := wstest.New(t, wstest.Options{Subprotocols: []string{"audio.drachtio.org"}})
	require.Contains(t, s.FsCli("uuid_audio_fork "+b.UUID+" start "+srv.URL+" mono 8k audio_fork {} true true 8000"), "+OK")
	cs := srv.Wait(t, "the fork", tbWait, func(cs []wstest.Snapshot) bool { return len(cs) == 1 })
	monCaller := tbMonitor(t, s, caller.UUID)
	from := time.Now()
	tone := tbTone(700, 16000)
	for i := 0; i < len(tone); i += 320 {
		require.NoError(t, cs[0].Send(false, tone[i:i+320]))
	}
	require.NoError(t, cs[0].Send(true, []byte(`{"type":"mark","data":{"name":"m1"}}`)))
	assert.Greater(t, heardAfter(t, monCaller, from.Add(200*time.Millisecond), 700), 0.3, "the caller hears it")
	echo := func(name string) string {
		var ev string
		srv.Wait(t, "the echo of "+name, tbWait, func(cs []wstest.Snapshot) bool {
			for _, m := range cs[0].Messages {
				if m.Text && strings.Contains(string(m.Data), `"name":"`+name+`"`) {
					ev = string(m.Data)
					return true
				}
			}
			return false
		})
		return ev
	}
	assert.Equal(t, `{"type": "mark", "data": {"name":"m1", "event": "playout"}}`, echo("m1"))
	assert.False(t, time.Since(from) < 2*time.Second-100*time.Millisecond, "played out after its 2 s")
	for i := 0; i < len(tone); i += 320 {
		require.NoError(t, cs[0].Send(false, tone[i:i+320]))
	}
	require.NoError(t, cs[0].Send(true, []byte(`{"type":"mark","data":{"name":"m2"}}`)))
	require.NoError(t, cs[0].Send(true, []byte(`{"type":"killAudio"}`)))
	assert.Equal(t, `{"type": "mark", "data": {"name":"m2", "event": "cleared"}}`, echo("m2"))
	assert.Less(t, heardAfter(t, monCaller, time.Now().Add(60*time.Millisecond), 700), 0.05, "emptied")
}
