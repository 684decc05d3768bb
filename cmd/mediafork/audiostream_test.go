package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/tlvdump"
)

// mod_audio_stream end to end through the daemon's wiring: the switch has the
// modules given loaded, mediafork is configured with module (audio_fork,
// audio_stream or auto).

// newModuleStack is newStack with one switch that has modules loaded and is
// configured as module.
func newModuleStack(t *testing.T, module string, modules []string, mutate func(*conf.Config)) *stack {
	t.Helper()
	s, c := prepareStack(t, 1)
	s.switches[0].SetModules(modules...)
	c.FreeSWITCH[0].Module = module
	if mutate != nil {
		mutate(c)
	}
	s.start(c, "")
	// Up and set up (alias, module chosen, resync under way), as newStack
	// waits: a fork asked before is refused with "not connected".
	require.Eventually(t, func() bool { return s.d.switchesUp()["fs1"] }, 5*time.Second, 10*time.Millisecond)
	return s
}

// streamOnly is a switch with only mod_audio_stream loaded.
var streamOnly = []string{fssim.ModAudioStream}

// checkStreams waits until channelID has dirs live streams (not ended) of 10
// packets or more each and checks them: signaling, format, audio in order, and
// each direction's tone (fssim's caller leg hears 440 Hz, sends 1000 Hz).
func checkStreams(t *testing.T, s *stack, channelID string, dirs int) {
	t.Helper()
	var live []*tlvdump.Stream
	require.Eventually(t, func() bool {
		live = live[:0]
		for _, st := range s.streamsOf(channelID) {
			if st.End == nil {
				if st.Packets < 10 {
					return false
				}
				live = append(live, st)
			}
		}
		return len(live) == dirs
	}, 10*time.Second, 10*time.Millisecond, "channel %q: %d live directions of 10 packets", channelID, dirs)
	for _, st := range live {
		assert.False(t, st.AudioBeforeSig)
		require.NotNil(t, st.Format, "a format packet per direction")
		assert.False(t, st.FormatBeforeSig)
		assert.False(t, st.AudioBeforeFormat)
		assert.InDelta(t, map[tlvcodec.Direction]float64{tlvcodec.RX: 440, tlvcodec.TX: 1000}[st.Direction], st.DominantHz(8000), 10,
			"direction %v", st.Direction)
	}
}

func TestAudioStreamRuleForks(t *testing.T) {
	for _, module := range []string{conf.ModuleAuto, conf.ModuleAudioStream} {
		t.Run(module, func(t *testing.T) {
			s := newModuleStack(t, module, streamOnly, nil)
			sw := s.switches[0]
			require.Eventually(t, func() bool { return s.d.bridge.Module("fs1") == mediafork.ModuleAudioStream }, 5*time.Second, 10*time.Millisecond)
			call := sw.Answer(fssim.CallOptions{Dest: "2000", CallerID: "+15551234", Vars: map[string]string{"sip_h_X-Campaign": "spring"}})
			checkStreams(t, s, "support-2000-spring", 2)
			streams := s.streamsOf("support-2000-spring")
			for _, st := range streams {
				assert.Equal(t, "2000", st.Signaling.Exten)
				assert.Equal(t, "+15551234", st.Signaling.CallerID)
				assert.Equal(t, "2000", st.Signaling.CalledID)
			}
			id := fmt.Sprint(streams[0].StreamID)
			require.Eventually(t, func() bool { return call.Var("mediafork_stream_id") == id }, 5*time.Second, 10*time.Millisecond)
			assert.True(t, call.Streaming())
			assert.Empty(t, call.Bugs(), "no mod_audio_fork bug")

			cmds := sw.APICommands()
			assert.Zero(t, countPrefix(cmds, "uuid_audio_fork "), "%q", cmds)
			prefix := "uuid_audio_stream " + call.UUID + " start ws://" + s.ingest + "/fork/" + call.UUID + "?cred="
			require.Equal(t, 1, countPrefix(cmds, prefix), "%q", cmds)
			for _, cmd := range cmds {
				if strings.HasPrefix(cmd, prefix) {
					f := strings.SplitN(cmd, " ", 7)
					require.Len(t, f, 7, cmd)
					assert.Equal(t, []string{"stereo", "8000"}, f[4:6])
					var md map[string]string
					require.NoError(t, json.Unmarshal([]byte(f[6]), &md), "the metadata is the rest of the line: %s", f[6])
					assert.Equal(t, "support-2000-spring", md["channel_id"])
				}
			}

			sw.Hangup(call.UUID, "NORMAL_CLEARING")
			for _, st := range s.waitEnded("support-2000-spring", 2) {
				assert.Equal(t, tlvcodec.ReasonHangup, st.End.Reason)
				assert.Equal(t, st.LastSeq, st.End.LastSequence)
				assert.Zero(t, st.Missing)
			}
		})
	}
}

// Both modules loaded: auto prefers mod_audio_fork.
func TestAutoPrefersAudioFork(t *testing.T) {
	s := newModuleStack(t, conf.ModuleAuto, []string{fssim.ModAudioStream, fssim.ModAudioFork}, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	checkStreams(t, s, "support-2000-", 2)
	assert.Equal(t, mediafork.ModuleAudioFork, s.d.bridge.Module("fs1"))
	assert.Equal(t, 1, countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID+" start"))
	assert.Zero(t, countPrefix(sw.APICommands(), "uuid_audio_stream "))
	assert.False(t, call.Streaming())
}

func TestAudioStreamFsCli(t *testing.T) {
	s := newModuleStack(t, conf.ModuleAuto, streamOnly, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5555", CallerID: "777"})
	sw.FsCli("mediafork start " + call.UUID + " analytics")
	checkStreams(t, s, "loopback/5555-a", 2)
	assert.Equal(t, "777", s.streamsOf("loopback/5555-a")[0].Signaling.CallerID)
	assert.Equal(t, 1, countPrefix(sw.APICommands(), "uuid_audio_stream "+call.UUID+" start ws://"))

	sw.FsCli("mediafork stop " + call.UUID)
	for _, st := range s.waitEnded("loopback/5555-a", 2) {
		assert.Equal(t, tlvcodec.ReasonStopped, st.End.Reason)
	}
	require.Eventually(t, func() bool { return !call.Streaming() }, 5*time.Second, 10*time.Millisecond, "the stream is stopped on the switch")
	assert.Equal(t, 1, countPrefix(sw.APICommands(), "uuid_audio_stream "+call.UUID+" stop"))

	// And again on the same channel: the stream was freed.
	sw.FsCli("mediafork start " + call.UUID + " analytics")
	require.Eventually(t, func() bool { return len(s.streamsOf("loopback/5555-a")) == 4 }, 10*time.Second, 10*time.Millisecond)
	s.waitPackets("loopback/5555-a", 4, 5)
}

func TestAudioStreamAPI(t *testing.T) {
	s := newModuleStack(t, conf.ModuleAudioStream, streamOnly, func(c *conf.Config) { c.API.Token = apiToken })
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5000", CallerID: "+100"})
	req := fmt.Sprintf(`{"uuid":%q,"freeswitch":"fs1","profile":"analytics","mix":"mono","metadata":{"exten":"777 8"}}`, call.UUID)
	status, body := s.call("POST", "/v1/forks", apiToken, req)
	require.Equal(t, 201, status, body)
	var in mediafork.Info
	require.NoError(t, json.Unmarshal([]byte(body), &in))
	assert.Equal(t, mediafork.StateStreaming, in.State)
	assert.Equal(t, mediafork.Mono, in.Mix)
	st := s.waitPackets("loopback/5000-a", 1, 5)[0]
	assert.Equal(t, "777 8", st.Signaling.Exten, "spaces in the metadata survive mod_audio_stream's command line")
	assert.Equal(t, "+100", st.Signaling.CallerID)
	assert.Equal(t, tlvcodec.RX, st.Direction)
	assert.InDelta(t, 440, st.DominantHz(8000), 10, "mono is the read side")
	status, body = s.call("POST", "/v1/forks", apiToken, req)
	assert.Equal(t, 409, status, body)

	status, _ = s.call("DELETE", "/v1/forks/"+call.UUID, apiToken, "")
	assert.Equal(t, 204, status)
	for _, st := range s.waitEnded("loopback/5000-a", 1) {
		assert.Equal(t, tlvcodec.ReasonStopped, st.End.Reason)
	}
	require.Eventually(t, func() bool { return !call.Streaming() }, 5*time.Second, 10*time.Millisecond)

	status, body = s.call("POST", "/v1/forks", apiToken, req)
	require.Equal(t, 201, status, "started again on the freed channel: %s", body)
	require.Eventually(t, func() bool { return len(s.streamsOf("loopback/5000-a")) == 2 }, 10*time.Second, 10*time.Millisecond)
}

// A TCP drop: mod_audio_stream::error code 1, the bug is gone; the ingest
// ends the streams with media lost and the fork is started again.
func TestAudioStreamTCPDropIsRetried(t *testing.T) {
	s := newModuleStack(t, conf.ModuleAuto, streamOnly, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	first := s.waitPackets("support-2000-", 2, 5)
	require.True(t, call.DropStream())
	waitResumed(t, s, "support-2000-", first)
	checkStreams(t, s, "support-2000-", 2)

	cmds := sw.APICommands()
	assert.Equal(t, 2, countPrefix(cmds, "uuid_audio_stream "+call.UUID+" start"), "%q", cmds)
}

// The ingest loses a fork mid-call with the module still attached (it closed
// the WebSocket, the module sent ::disconnect and keeps its bug): mediafork
// stops the stream before starting it again, else the start would be refused.
func TestAudioStreamMediaLostIsRetried(t *testing.T) {
	s := newModuleStack(t, conf.ModuleAudioStream, streamOnly, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	s.waitPackets("support-2000-", 2, 3)
	for _, f := range s.d.registry.Get(mediafork.CallID(call.UUID)) {
		f.Stop(mediafork.EndMediaLost)
	}
	require.Eventually(t, func() bool { return len(s.streamsOf("support-2000-")) == 4 }, 10*time.Second, 10*time.Millisecond)
	checkStreams(t, s, "support-2000-", 2)
	cmds := sw.APICommands()
	assert.Equal(t, 2, countPrefix(cmds, "uuid_audio_stream "+call.UUID+" start"), "%q", cmds)
	assert.Equal(t, []string{"start", "stop", "start"}, streamVerbs(cmds, call.UUID), "the channel is freed before the new start")
}

// streamVerbs lists the uuid_audio_stream sub-commands sent for uuid, in order.
func streamVerbs(cmds []string, uuid string) []string {
	var out []string
	for _, c := range cmds {
		if rest, ok := strings.CutPrefix(c, "uuid_audio_stream "+uuid+" "); ok {
			verb, _, _ := strings.Cut(rest, " ")
			out = append(out, verb)
		}
	}
	return out
}

func TestAudioStreamRetryAfterConnectFailed(t *testing.T) {
	s := newModuleStack(t, conf.ModuleAuto, streamOnly, nil)
	sw := s.switches[0]
	sw.FailConnects.Store(2)
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	checkStreams(t, s, "support-2000-", 2)
	assert.Equal(t, 3, countPrefix(sw.APICommands(), "uuid_audio_stream "+call.UUID+" start"), "two failures, then it connects")
}

func TestAudioStreamOutboundSocket(t *testing.T) {
	s := newModuleStack(t, conf.ModuleAuto, streamOnly, nil)
	sw := s.switches[0]
	require.Eventually(t, func() bool { return s.d.bridge.Module("fs1") == mediafork.ModuleAudioStream }, 5*time.Second, 10*time.Millisecond)
	call := sw.Answer(fssim.CallOptions{Dest: "4000", Vars: map[string]string{
		"mediafork": s.sink.Addr().String() + ",Support-Line,2000,+15551234567,+15559876543"}})
	res, err := sw.DialOutbound(context.Background(), s.outbound, call)
	require.NoError(t, err)
	require.Len(t, res.Commands, 4, "%q", res.Commands)
	assert.True(t, strings.HasPrefix(res.Commands[2], "api uuid_audio_stream "+call.UUID+" start ws://"), res.Commands[2])
	assert.True(t, res.Resumed)
	checkStreams(t, s, "Support-Line", 2)
	for _, st := range s.streamsOf("Support-Line") {
		assert.Equal(t, "2000", st.Signaling.Exten)
		assert.Equal(t, "+15551234567", st.Signaling.CallerID)
		assert.Equal(t, "+15559876543", st.Signaling.CalledID)
	}
}

// mediafork restarts mid-call on a mod_audio_stream switch. The old one's
// shutdown closed the WebSocket (1001), so the module keeps its stream
// attached, silent; the new one's start is refused, and since a mediafork
// fork streamed on that channel it stops the stream and starts again.
// Another application's stream (typed by hand on a second call the rule also
// matches) is never stopped: that start just fails.
func TestAudioStreamRestartReforks(t *testing.T) {
	s, c := prepareStack(t, 1)
	sw := s.switches[0]
	sw.SetModules(streamOnly...)
	run := func() (stop func()) {
		d, err := newDaemon(c, s.opts, slog.New(slog.NewTextHandler(io.Discard, nil)), new(slog.LevelVar))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.run(ctx) }()
		require.Eventually(t, d.bridge.Clients()[0].Connected, 5*time.Second, 10*time.Millisecond)
		return func() { cancel(); require.NoError(t, <-done) }
	}
	t.Cleanup(func() { sw.Close() })
	other := newWSCounter(t)
	foreign := sw.Answer(fssim.CallOptions{Dest: "3000"})
	require.Equal(t, "+OK Success\n", sw.FsCli("uuid_audio_stream "+foreign.UUID+" start "+other.url+" mono 8k"))
	require.Eventually(t, func() bool { return other.frames() > 5 }, 5*time.Second, 10*time.Millisecond)
	c.Rules[0].Match = map[string]string{"Caller-Destination-Number": "^(2000|3000)$"}
	c.Rules[0].Metadata = map[string]string{"channel_id": "${Caller-Destination-Number}"}

	stopA := run()
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	first := s.waitPackets("2000", 2, 5)
	stopA()
	for _, st := range s.waitEnded("2000", 2) { // sent before stopA returned; the receiver reads them
		assert.Equal(t, tlvcodec.ReasonShutdown, st.End.Reason)
	}
	require.True(t, call.Streaming(), "the module keeps its stream after the server's close")

	stopB := run()
	defer stopB()
	require.Eventually(t, func() bool { return len(s.streamsOf("2000")) == 4 }, 10*time.Second, 10*time.Millisecond)
	checkStreams(t, s, "2000", 2)
	for _, st := range s.streamsOf("2000") {
		if st.StreamID != first[0].StreamID {
			assert.NotNil(t, st.Signaling)
		}
	}
	cmds := sw.APICommands()
	assert.Equal(t, []string{"start", "start", "stop", "start"}, streamVerbs(cmds, call.UUID), "%q", cmds)
	assert.Equal(t, []string{"start", "start", "start"}, streamVerbs(cmds, foreign.UUID),
		"its own start, then each mediafork's resync start is refused; the other application's stream is never stopped: %q", cmds)
	assert.True(t, foreign.Streaming())
	n := other.frames()
	require.Eventually(t, func() bool { return other.frames() > n+5 }, 5*time.Second, 10*time.Millisecond, "it still streams")
}
