package main

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/tlvdump"
)

// stack is mediafork in-process between simulated FreeSWITCHes and a TLV
// receiver, wired exactly as `mediafork serve` wires it.
type stack struct {
	t        *testing.T
	switches []*fssim.Switch
	sink     *tlvdump.Receiver
	d        *daemon
	opts     options // the daemon's (start); prepareStack's shorten the ESL backoff
	cfg      *conf.Config
	ingest   string
	outbound string
	api      string
	ports    *boundPorts     // the listeners the daemon is handed (opts.listen)
	logs     *syncbuf.Buffer // everything mediafork logged, at debug level
}

func newStack(t *testing.T, nSwitches int, mutate func(*conf.Config)) *stack {
	t.Helper()
	return newStackWith(t, nSwitches, nil, mutate)
}

// newStackWith is newStack with the daemon's options changed by tune (when
// not nil).
func newStackWith(t *testing.T, nSwitches int, tune func(*options), mutate func(*conf.Config)) *stack {
	t.Helper()
	s, c := prepareStack(t, nSwitches)
	if tune != nil {
		tune(&s.opts)
	}
	if mutate != nil {
		mutate(c)
	}
	for i, sw := range s.switches { // the switch takes the password the config has
		sw.Password = c.FreeSWITCH[i].Password
	}
	s.start(c, "")
	for i, cl := range s.d.bridge.Clients() {
		if i < nSwitches {
			require.Eventually(t, func() bool { return s.d.switchesUp()[cl.Name()] }, 5*time.Second, 10*time.Millisecond)
		}
	}
	return s
}

// prepareStack makes the switches, the receiver and a config for them.
func prepareStack(t *testing.T, nSwitches int) (*stack, *conf.Config) {
	t.Helper()
	s := &stack{t: t}
	s.opts.esl.BackoffMin = 50 * time.Millisecond
	var err error
	s.sink, err = tlvdump.Listen("127.0.0.1:0", tlvdump.Options{Keep: true})
	require.NoError(t, err)
	sinkCtx, stopSink := context.WithCancel(context.Background())
	sinkDone := make(chan struct{})
	go func() { defer close(sinkDone); s.sink.Run(sinkCtx) }()

	c := conf.Defaults()
	c.FreeSWITCH = nil
	for i := 0; i < nSwitches; i++ {
		sw := fssim.NewSwitch("ClueCon", nil)
		require.NoError(t, sw.Listen("127.0.0.1:0"))
		s.switches = append(s.switches, sw)
		c.FreeSWITCH = append(c.FreeSWITCH, conf.FreeSWITCH{Name: fmt.Sprintf("fs%d", i+1), Address: sw.Addr(), Password: "ClueCon"})
	}
	s.ports = newBoundPorts(t)
	s.opts.listen = s.ports.listen
	s.ingest, s.outbound, s.api = s.ports.bind(), s.ports.bind(), s.ports.bind()
	c.Ingest.Listen, c.Ingest.URL = s.ingest, "ws://"+s.ingest
	c.Outbound.Listen, c.API.Listen = s.outbound, s.api
	c.Fork.Retry.Backoff = conf.Duration(100 * time.Millisecond)
	c.Profiles = map[string]conf.Profile{"analytics": {Endpoints: []string{s.sink.Addr().String()}}}
	c.Rules = []conf.Rule{{Name: "support", Match: map[string]string{"Caller-Destination-Number": "^2000$"}, Profile: "analytics",
		Metadata: map[string]string{"channel_id": "support-${Caller-Destination-Number}-${variable_sip_h_X-Campaign}"}}}
	t.Cleanup(func() {
		stopSink()
		<-sinkDone
	})
	return s, c
}

// start runs mediafork with c (loaded from path when not "").
func (s *stack) start(c *conf.Config, path string) {
	t := s.t
	require.NoError(t, c.Validate())
	s.cfg = c
	s.logs = &syncbuf.Buffer{}
	level := new(slog.LevelVar)
	level.Set(slog.LevelDebug)
	var err error
	s.d, err = newDaemon(c, s.opts, slog.New(slog.NewTextHandler(s.logs, &slog.HandlerOptions{Level: level})), level)
	require.NoError(t, err)
	s.d.path = path
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.d.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		for _, sw := range s.switches {
			sw.Close()
		}
	})
}

// streamsOf returns the directions received for a channel_id.
func (s *stack) streamsOf(channelID string) []*tlvdump.Stream {
	var out []*tlvdump.Stream
	for _, st := range s.sink.Streams() {
		if st.Signaling != nil && st.Signaling.ChannelID == channelID {
			out = append(out, st)
		}
	}
	return out
}

// waitPackets waits until every direction of channelID has at least n packets.
func (s *stack) waitPackets(channelID string, dirs, n int) []*tlvdump.Stream {
	s.t.Helper()
	var got []*tlvdump.Stream
	require.Eventually(s.t, func() bool {
		got = s.streamsOf(channelID)
		if len(got) != dirs {
			return false
		}
		for _, st := range got {
			if st.Packets < n {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "channel %q: not every direction has %d packets", channelID, n)
	return got
}

func (s *stack) waitEnded(channelID string, dirs int) []*tlvdump.Stream {
	s.t.Helper()
	var got []*tlvdump.Stream
	require.Eventually(s.t, func() bool {
		got = s.streamsOf(channelID)
		ended := 0
		for _, st := range got {
			if st.End != nil {
				ended++
			}
		}
		return ended == dirs
	}, 10*time.Second, 10*time.Millisecond)
	return got
}

func countPrefix(list []string, prefix string) int {
	n := 0
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			n++
		}
	}
	return n
}

func TestRuleForksMatchingCallsOnly(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000", CallerID: "+15551234", Vars: map[string]string{"sip_h_X-Campaign": "spring"}})
	other := sw.Answer(fssim.CallOptions{Dest: "3000"})
	streams := s.waitPackets("support-2000-spring", 2, 10)
	for _, st := range streams {
		sig := st.Signaling
		assert.Equal(t, "2000", sig.Exten)
		assert.Equal(t, "+15551234", sig.CallerID)
		assert.Equal(t, "2000", sig.CalledID)
		assert.False(t, st.AudioBeforeSig)
		require.NotNil(t, st.Format, "a format packet per direction")
		assert.False(t, st.FormatBeforeSig, "the format packet follows the signaling")
		assert.False(t, st.AudioBeforeFormat, "and comes before the audio")
		assert.InDelta(t, map[tlvcodec.Direction]float64{tlvcodec.RX: 440, tlvcodec.TX: 1000}[st.Direction], st.DominantHz(8000), 10)
	}
	id := fmt.Sprint(streams[0].StreamID)
	require.Eventually(t, func() bool { return call.Var("mediafork_stream_id") == id }, 5*time.Second, 10*time.Millisecond,
		"mediafork_stream_id is set on the channel")
	require.Eventually(t, func() bool {
		return countPrefix(sw.Logs(), "[NOTICE] mediafork: fork "+call.UUID+" started, stream "+id+", 1 endpoint(s)") == 1
	}, 5*time.Second, 10*time.Millisecond)

	starts := sw.APICommands()
	require.Equal(t, 1, countPrefix(starts, "uuid_audio_fork "+call.UUID+" start ws://"+s.ingest+"/fork/"+call.UUID+"?cred="))
	assert.Zero(t, countPrefix(starts, "uuid_audio_fork "+other.UUID), "no rule for 3000")
	for _, cmd := range starts {
		if strings.HasPrefix(cmd, "uuid_audio_fork "+call.UUID+" start") {
			f := strings.Split(cmd, " ")
			require.Len(t, f, 8, "uuid, start, url, mix, rate, bug, metadata: %s", cmd)
			assert.Equal(t, []string{"stereo", "8000", "mediafork"}, f[4:7])
			assert.True(t, strings.HasPrefix(f[7], `{"channel_id":"support-2000-spring"`), f[7])
		}
	}
	assert.Equal(t, "+OK\n", sw.FsCli("alias del nothing"), "fs_cli works")

	sw.Hangup(call.UUID, "NORMAL_CLEARING")
	for _, st := range s.waitEnded("support-2000-spring", 2) {
		assert.Equal(t, tlvcodec.ReasonHangup, st.End.Reason)
		assert.Equal(t, st.LastSeq, st.End.LastSequence)
		assert.Zero(t, st.Missing)
	}
}

// Media does not depend on ESL: the connection drops mid-call, forks keep
// streaming, control comes back, resync forks what was answered meanwhile and
// forgets what hung up.
func TestESLDropMidCall(t *testing.T) {
	s := newStack(t, 1, func(c *conf.Config) {
		c.Rules[0].Match = map[string]string{"Caller-Destination-Number": "^20[0-9][0-9]$"}
		c.Rules[0].Metadata = map[string]string{"channel_id": "${Caller-Destination-Number}"}
	})
	sw := s.switches[0]
	a := sw.Answer(fssim.CallOptions{Dest: "2001"})
	c := sw.Answer(fssim.CallOptions{Dest: "2003"})
	s.waitPackets("2001", 2, 5)
	s.waitPackets("2003", 2, 5)
	client := s.d.bridge.Clients()[0]

	sw.DropConnections()
	b := sw.Answer(fssim.CallOptions{Dest: "2002"}) // nobody hears this CHANNEL_ANSWER
	sw.Hangup(c.UUID, "NORMAL_CLEARING")            // nor this hangup
	before := s.streamsOf("2001")[0].Packets
	s.waitPackets("2001", 2, before+10) // media carries on

	require.Eventually(t, func() bool { return client.Reconnects.Load() == 1 && client.Connected() }, 5*time.Second, 10*time.Millisecond)
	s.waitPackets("2002", 2, 5) // forked at resync
	for _, st := range s.waitEnded("2003", 2) {
		assert.Equal(t, tlvcodec.ReasonHangup, st.End.Reason)
	}
	assert.Equal(t, 1, countPrefix(sw.APICommands(), "uuid_audio_fork "+a.UUID+" start"), "a live fork is not started twice")
	assert.Equal(t, 1, countPrefix(sw.APICommands(), "uuid_audio_fork "+b.UUID+" start"))
	assert.Equal(t, 2, countPrefix(sw.APICommands(), "alias add mediafork echo [mediafork]"), "the alias on every connect")
}

func TestOutboundSocket(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "4000", Vars: map[string]string{
		"mediafork": s.sink.Addr().String() + ",Support-Line,2000,+15551234567,+15559876543"}})
	res, err := sw.DialOutbound(context.Background(), s.outbound, call)
	require.NoError(t, err)
	require.Len(t, res.Commands, 4)
	assert.Equal(t, "connect", res.Commands[0])
	assert.Equal(t, "resume", res.Commands[1])
	assert.True(t, strings.HasPrefix(res.Commands[2], "api uuid_audio_fork "+call.UUID+" start ws://"), res.Commands[2])
	assert.Equal(t, "exit", res.Commands[3])
	assert.True(t, res.Resumed, "the dialplan goes on after the socket")

	streams := s.waitPackets("Support-Line", 2, 5)
	for _, st := range streams {
		assert.Equal(t, "2000", st.Signaling.Exten)
		assert.Equal(t, "+15551234567", st.Signaling.CallerID)
		assert.Equal(t, "+15559876543", st.Signaling.CalledID)
	}
	s.waitPackets("Support-Line", 2, streams[0].Packets+10) // still streaming with the socket gone

	// No variable and no rule: resume, exit, nothing forked.
	plain := sw.Answer(fssim.CallOptions{Dest: "5555"})
	res, err = sw.DialOutbound(context.Background(), s.outbound, plain)
	require.NoError(t, err)
	assert.Equal(t, []string{"connect", "resume", "exit"}, res.Commands)
	assert.Zero(t, countPrefix(sw.APICommands(), "uuid_audio_fork "+plain.UUID))
}

// FreeSWITCH lists a channel in show channels some tens of ms after its
// CHANNEL_ANSWER: a call answered just before mediafork subscribed is neither
// heard nor in the resync's listing. The second listing forks it, once.
func TestResyncForksACallListedLate(t *testing.T) {
	s, c := prepareStack(t, 1)
	c.Rules[0].Metadata = map[string]string{"channel_id": "${Caller-Destination-Number}"}
	sw := s.switches[0]
	late := sw.Answer(fssim.CallOptions{Dest: "2000", ListedLate: true}) // before mediafork connects: unheard
	listed := sw.Answer(fssim.CallOptions{Dest: "2000", CallerID: "1001"})
	s.start(c, "")
	s.waitPackets("2000", 4, 5) // both calls, two directions each
	cmds := sw.APICommands()
	assert.Equal(t, 1, countPrefix(cmds, "uuid_audio_fork "+late.UUID+" start"), "%q", cmds)
	assert.Equal(t, 1, countPrefix(cmds, "uuid_audio_fork "+listed.UUID+" start"), "the second listing does not fork again what the first did")
	assert.Equal(t, 2, countPrefix(cmds, "show channels as json"))
	assert.Contains(t, s.logs.String(), `msg="resync: forked calls the first listing missed" component=orchestrator freeswitch=fs1 forked=1`)
}

func TestFsCliCommands(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5555", CallerID: "777"})
	out := sw.FsCli("mediafork start " + call.UUID + " analytics")
	assert.Contains(t, out, "Expand Alias [mediafork]->[echo [mediafork] start "+call.UUID+" analytics]")
	streams := s.waitPackets("loopback/5555-a", 2, 3)
	assert.Equal(t, "777", streams[0].Signaling.CallerID)

	sw.FsCli("mediafork status")
	sw.FsCli("mediafork logger on")
	sw.FsCli("mediafork start " + call.UUID + " 8.8.8.8:9000")
	sw.FsCli("mediafork frobnicate")
	require.Eventually(t, func() bool {
		logs := strings.Join(sw.Logs(), "\n")
		return strings.Contains(logs, "mediafork: 1 fork(s) live") &&
			strings.Contains(logs, "mediafork: "+call.UUID+" stream ") &&
			strings.Contains(logs, "mediafork: fork summaries every 1s: on") &&
			strings.Contains(logs, "destination not allowed") &&
			strings.Contains(logs, `unknown command "frobnicate"`)
	}, 5*time.Second, 10*time.Millisecond, "%s", strings.Join(sw.Logs(), "\n"))
	// logger on: a summary line per fork a second, with its level per
	// direction, and no line per frame.
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`msg="fork summary" .*uuid=` + call.UUID + ` .*RX\.packets=\d+ .*RX\.dbfs=-?\d.* TX\.packets=\d+ .*TX\.dbfs=`).MatchString(s.logs.String())
	}, 5*time.Second, 10*time.Millisecond, "a fork summary line in:\n%s", s.logs)
	assert.NotContains(t, s.logs.String(), `msg=frame `)
	sw.FsCli("mediafork logger off")

	sw.FsCli("mediafork stop " + call.UUID)
	for _, st := range s.waitEnded("loopback/5555-a", 2) {
		assert.Equal(t, tlvcodec.ReasonStopped, st.End.Reason)
	}
	assert.Empty(t, sw.Call(call.UUID).Bugs(), "the bug is stopped on the switch")
}

// A uuid_audio_fork typed by hand at the ingest gets the call's metadata from
// uuid_dump.
func TestHandTypedForkIsEnriched(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5556", CallerID: "+4930123"})
	out := sw.FsCli(fmt.Sprintf("uuid_audio_fork %s start ws://%s/fork/%s?profile=analytics stereo 8k", call.UUID, s.ingest, call.UUID))
	assert.Equal(t, "+OK Success\n", out)
	st := s.waitPackets("loopback/5556-a", 2, 3)[0]
	assert.Equal(t, "5556", st.Signaling.Exten)
	assert.Equal(t, "+4930123", st.Signaling.CallerID)
}

func TestRetryAfterConnectFailed(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	sw.FailConnects.Store(2)
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	s.waitPackets("support-2000-", 2, 3)
	assert.Equal(t, 3, countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID+" start"), "two failures, then it connects")
	assert.Equal(t, 2.0, scrape(t, s, `mediafork_fork_retries_total{reason="connect_failed"}`))
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_forks_given_up_total{reason="connect_failed"}`))
}

// A WebSocket lost mid-call ends the stream (reason 3) and the fork is started
// again while the call is up.
func TestRetryAfterMediaLost(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	first := s.waitPackets("support-2000-", 2, 3)
	// Kill the ingest side of the connection without a close frame.
	for _, f := range s.d.registry.Get(mediafork.CallID(call.UUID)) {
		f.Stop(mediafork.EndMediaLost)
	}
	require.Eventually(t, func() bool { return len(s.streamsOf("support-2000-")) == 4 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, 2, countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID+" start"))
	// One retry: its reason is whichever news came first, the fork's end
	// (media_lost) or the module's disconnect event over ESL (disconnected).
	assert.Equal(t, 1.0, scrape(t, s, `mediafork_fork_retries_total{reason="media_lost"}`)+
		scrape(t, s, `mediafork_fork_retries_total{reason="disconnected"}`))
	assert.Equal(t, 1.0, scrape(t, s, `mediafork_forks_ended_total{outcome="media-lost"}`))
	assert.Equal(t, 2.0, scrape(t, s, `mediafork_forks_started_total{trigger="rule"}`))
	for _, st := range s.sink.Streams() {
		if st.StreamID == first[0].StreamID {
			require.NotNil(t, st.End)
			assert.Equal(t, tlvcodec.ReasonMediaLost, st.End.Reason)
		}
	}
}

func TestSeveralSwitches(t *testing.T) {
	s := newStack(t, 2, func(c *conf.Config) {
		c.Rules[0].Metadata = map[string]string{"channel_id": "${Caller-Caller-ID-Number}"}
	})
	var calls []*fssim.Call
	for i, sw := range s.switches {
		calls = append(calls, sw.Answer(fssim.CallOptions{Dest: "2000", CallerID: fmt.Sprintf("caller%d", i)}))
	}
	var wg sync.WaitGroup
	for i := range s.switches {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s.waitPackets(fmt.Sprintf("caller%d", i), 2, 3)
			assert.Eventually(t, func() bool { return calls[i].Var("mediafork_stream_id") == fmt.Sprint(st[0].StreamID) },
				5*time.Second, 10*time.Millisecond, "the stream id is set on the switch the call is on")
		}()
	}
	wg.Wait()
}

func TestDemo(t *testing.T) {
	var out strings.Builder
	require.NoError(t, runDemo(context.Background(), &out, t.TempDir(), time.Second, false), out.String())
	assert.Contains(t, out.String(), "every forked call arrived whole")
	assert.Contains(t, out.String(), "ok (not forked: no rule)")
	// The talk-back call: the bot's greeting heard by the caller only, its
	// mark echoed after it was heard.
	assert.Regexp(t, `(?m)^  the caller heard it for .*: ok$`, out.String())
	assert.Contains(t, out.String(), "  the callee heard it for 0s: ok")
	assert.Regexp(t, `(?m)^  mark "greeting" echoed "playout" .*: ok$`, out.String())
	assert.Regexp(t, `(?m)^\+15550006\s+2003\s+(RX|TX)\s+.*ok \(mod_audio_stream\)$`, out.String(), "one call through mod_audio_stream, its tones checked")
	assert.Contains(t, out.String(), "answered on sim-stream: mod_audio_stream")
	assert.Contains(t, out.String(), "cred=<redacted>", "the dialplan socket's commands are shown")
	assert.NotRegexp(t, `cred=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`, out.String(), "no fork credential is printed (SPEC section 5)")
}
