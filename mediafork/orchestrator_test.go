package mediafork

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Rules on answer: a matching call is forked once, with what the policy
// decided signed into its URL; others are left alone.
func TestRulesOnAnswer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		dest  string
		start string // the start command, "" for none
		addrs []netip.AddrPort
		meta  Metadata
	}{
		{"2000", "start u1 mono 16000 mediafork", ap("127.0.0.1:9100"), Metadata{ChannelID: "Support-2000", Exten: "2000", CallerID: "1000", CalledID: "2000"}},
		{"3000", "start u1 stereo 8000 mediafork", ap("10.1.1.1:9"), Metadata{ChannelID: "loopback/3000-a", Exten: "3000", CallerID: "1000", CalledID: "3000"}},
		{"4000", "", nil, Metadata{}},
	}
	for _, tc := range cases {
		t.Run(tc.dest, func(t *testing.T) {
			r, sw := newRigUp(t, nil)
			d := sw.answer("u1", tc.dest)
			r.event(sw, CallAnswered{Data: d})
			r.event(sw, CallAnswered{Data: d}) // a duplicate event forks nothing more
			if tc.start == "" {
				r.settle()
				sw.expectNothing(t)
				assert.Empty(t, r.o.Forks())
				return
			}
			sw.expect(t, tc.start)
			f := sw.lastStart(t, "u1")
			assert.True(t, strings.HasPrefix(f.URL, "ws://127.0.0.1:8090/fork/u1?cred="), f.URL)
			assert.Equal(t, tc.meta, f.Metadata)
			spec := r.credential(t, f)
			assert.Equal(t, tc.addrs, spec.Addrs(), "the resolved addresses are signed")
			assert.Equal(t, "fs1", spec.Server)
			forks := r.o.Forks()
			require.Len(t, forks, 1)
			assert.Equal(t, StateStarting, forks[0].State)
			r.settle()
			sw.expectNothing(t)
		})
	}
}

// Resync on (re)connect: answered calls a rule matches and that have no live
// fork are forked; calls that ended while the connection was down end.
func TestResyncOnConnect(t *testing.T) {
	t.Parallel()
	r, sw := newRigUp(t, nil)
	r.event(sw, CallAnswered{Data: sw.answer("gone", "2000")})
	sw.expect(t, "start gone")
	gone := r.connect(t, sw, "gone")
	r.event(sw, CallAnswered{Data: sw.answer("live", "2000")})
	sw.expect(t, "start live")
	live := r.connect(t, sw, "live")

	r.o.SwitchDown("fs1")
	sw.hangup("gone")
	sw.answer("new", "2000")   // answered while down, matches
	sw.answer("other", "4000") // matches no rule
	r.up(sw)
	sw.expect(t, "start new")
	select {
	case <-gone.Done(): // its hangup was missed: ended at resync
	case <-time.After(5 * time.Second):
		t.Fatal("the call that hung up while disconnected still has its fork")
	}
	assert.Equal(t, EndHangup, gone.StopRequested())
	assert.Zero(t, live.StopRequested(), "the live fork is untouched")
	r.settle()
	sw.expectNothing(t)

	// A switch that cannot list its channels: nothing happens.
	r2 := newRig(t, nil)
	sw2 := newFakeSwitch("fs2")
	sw2.listErr = ErrSwitchUnavailable
	sw2.answer("x", "2000")
	r2.up(sw2)
	r2.settle()
	sw2.expectNothing(t)
}

// Retries: a connect failure or a WebSocket lost mid-call starts the fork
// again (stopping our bug first) while attempts remain; then it is failed. A
// fork that ended normally is not retried.
func TestRetries(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil) // 2 attempts, no backoff
	sw := newFakeSwitch("fs1")
	r.up(sw)
	r.event(sw, CallAnswered{Data: sw.answer("u1", "2000")})
	sw.expect(t, "start u1")
	first := r.credential(t, sw.lastStart(t, "u1")).Start

	r.event(sw, MediaConnectFailed{UUID: "u1", Reason: "Unable to connect"})
	sw.expect(t, "stop u1 mediafork")
	sw.expect(t, "start u1")
	assert.ErrorIs(t, r.o.Admit("u1", "mediafork", first), ErrStaleCredential, "a start's credential dies with it")
	assert.Contains(t, r.o.Forks()[0].LastError, "retrying (attempt 1)")

	// Connected, then lost: the ingest's end of the fork retries, continuing
	// its streams; attempts start again once a fork streamed.
	f := r.connect(t, sw, "u1")
	f.Finish(EndMediaLost)
	sw.expect(t, "stop u1 mediafork")
	sw.expect(t, "start u1")
	again := r.credential(t, sw.lastStart(t, "u1"))
	require.NotNil(t, again.Resume, "the retry resumes the streams")
	assert.Equal(t, f.Identity.StreamID, again.Resume.Identity.StreamID)
	assert.Equal(t, GapMediaLost, again.Resume.Reason)

	r.event(sw, MediaConnectFailed{UUID: "u1"}) // attempt 2
	sw.expect(t, "stop u1 mediafork")
	sw.expect(t, "start u1")
	r.event(sw, MediaConnectFailed{UUID: "u1", Reason: "Unable to connect"}) // given up
	sw.expect(t, "setvar u1 mediafork_resume")                               // its streams ended: nobody resumes them
	forks := r.o.Fork("u1")
	require.Len(t, forks, 1)
	assert.Equal(t, StateFailed, forks[0].State)
	assert.Contains(t, forks[0].LastError, "gave up after 2 retries")
	r.event(sw, MediaConnectFailed{UUID: "u1"}) // nothing more
	r.event(sw, MediaDisconnected{UUID: "u1"})
	st := r.o.RetryStats()
	assert.Equal(t, map[string]uint64{RetryConnectFailed: 2, RetryDisconnected: 0, RetryStartFailed: 0, RetryMediaLost: 1}, st.Retries)
	assert.Equal(t, map[string]uint64{RetryConnectFailed: 1, RetryDisconnected: 0, RetryStartFailed: 0, RetryMediaLost: 0}, st.GivenUp)

	// A fork that ended normally is no longer wanted: no retry.
	r.event(sw, CallAnswered{Data: sw.answer("u2", "2000")})
	sw.expect(t, "start u2")
	f2 := r.connect(t, sw, "u2")
	f2.Finish(EndHangup)
	r.reg.WaitHooks() // the ingest's end is known before the module's event
	r.event(sw, MediaDisconnected{UUID: "u2"})
	r.settle()
	sw.expectNothing(t)
	assert.Equal(t, StateEnded, r.o.Fork("u2")[0].State)
}

// A start that fails outright is retried on the next event only; the
// disconnect of a fork served elsewhere (nothing in this registry) retries.
func TestDisconnectWithoutLocalFork(t *testing.T) {
	t.Parallel()
	r, sw := newRigUp(t, nil)
	r.event(sw, CallAnswered{Data: sw.answer("u1", "2000")})
	sw.expect(t, "start u1")
	f := r.connect(t, sw, "u1")
	r.event(sw, MediaDisconnected{UUID: "u1"}) // the ingest has it: its end decides
	f.Finish(EndMediaLost)
	sw.expect(t, "stop u1 mediafork")
	sw.expect(t, "start u1")
	r.event(sw, MediaDisconnected{UUID: "u1", Reason: "closed 1000 server closing"}) // none here: served by another instance
	sw.expect(t, "stop u1 mediafork")
	sw.expect(t, "start u1")
	assert.NotNil(t, r.credential(t, sw.lastStart(t, "u1")).Resume, "its streams go on")
	r.settle()
	sw.expect(t, "setvar u1 mediafork_resume") // shut down while suspended: its streams end, for good
	sw.expectNothing(t)
}

// Restart recovery: the module refuses a start while our bug from before is
// attached (-ERR Operation Failed): stop that bug, by our name, and start
// again. A second refusal is an error; other bugs are never touched.
func TestRestartRecovery(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		startErr []error
		stopErr  error
		cmds     []string
		err      error
	}{
		{"clean start", nil, nil, []string{"start u1"}, nil},
		{"our bug still attached", []error{ErrSwitchRefused}, nil, []string{"start u1", "stop u1 mediafork", "start u1"}, nil},
		{"refused twice", []error{ErrSwitchRefused, ErrSwitchRefused}, nil, []string{"start u1", "stop u1 mediafork", "start u1"}, ErrSwitchRefused},
		{"stop refused too", []error{ErrSwitchRefused}, ErrSwitchRefused, []string{"start u1", "stop u1 mediafork"}, ErrSwitchRefused},
		{"switch gone", []error{ErrSwitchUnavailable}, nil, []string{"start u1"}, ErrSwitchUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, sw := newRigUp(t, nil)
			sw.answer("u1", "2000")
			sw.startErr, sw.stopErr = tc.startErr, tc.stopErr
			_, err := r.o.StartCall(context.Background(), StartRequest{UUID: "u1", Profile: "analytics"})
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
				assert.Empty(t, r.o.Forks(), "a failed start is not left pending")
			} else {
				require.NoError(t, err)
			}
			r.settle()
			assert.Equal(t, tc.cmds, commandHeads(sw))
		})
	}
}

// commandHeads are the commands sw got, a start cut to its call
// ("start u1").
func commandHeads(sw *fakeSwitch) []string {
	var got []string
	for _, c := range sw.commands() {
		if strings.HasPrefix(c, "start ") {
			c = strings.Join(strings.Fields(c)[:2], " ")
		}
		got = append(got, c)
	}
	return got
}

// mod_audio_stream has one unnamed stream per channel: a refused start stops
// the attached stream only when a mediafork fork has streamed on the channel
// (ours, left attached); another application's stream is left alone.
func TestRestartRecoveryAudioStream(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		ours  bool
		cmds  []string
		fails bool
	}{
		{"our stream still attached", true, []string{"start u1", "stop u1 mediafork", "start u1"}, false},
		{"another application's stream", false, []string{"start u1"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			sw := newFakeSwitch("fs1")
			sw.module = ModuleAudioStream
			r.up(sw)
			if tc.ours {
				sw.answer("u1", "2000", StreamIDVar, "1234")
			} else {
				sw.answer("u1", "2000")
			}
			sw.startErr = []error{ErrSwitchRefused}
			_, err := r.o.StartCall(context.Background(), StartRequest{UUID: "u1", Profile: "analytics"})
			if tc.fails {
				assert.ErrorIs(t, err, ErrSwitchRefused)
			} else {
				require.NoError(t, err)
			}
			r.settle()
			assert.Equal(t, tc.cmds, commandHeads(sw))
		})
	}
}

// Hangup races: during a retry's backoff, and before the fork streams.
func TestHangupRaces(t *testing.T) {
	t.Parallel()
	t.Run("during the backoff", func(t *testing.T) {
		r, sw := newRigUp(t, func(p *Policy) { p.RetryBackoff = time.Hour })
		r.event(sw, CallAnswered{Data: sw.answer("u1", "2000")})
		sw.expect(t, "start u1")
		r.event(sw, MediaConnectFailed{UUID: "u1"}) // a retry in an hour
		r.event(sw, CallHungUp{UUID: "u1"})
		assert.Empty(t, r.o.Forks(), "nothing pending")
		r.settle() // returns at once: the timer was stopped
		sw.expectNothing(t)
	})
	t.Run("before the fork streams", func(t *testing.T) {
		r, sw := newRigUp(t, nil)
		r.event(sw, CallAnswered{Data: sw.answer("u1", "2000")})
		sw.expect(t, "start u1")
		spec := r.credential(t, sw.lastStart(t, "u1"))
		// The module's connection is in the ingest, not begun yet.
		require.NoError(t, r.o.Admit("u1", "mediafork", spec.Start))
		f, err := r.reg.Claim("u1", spec.Bug)
		require.NoError(t, err)
		r.event(sw, CallHungUp{UUID: "u1"})
		select {
		case <-f.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("the fork outlived its call")
		}
		assert.Equal(t, EndHangup, f.StopRequested())
		r.settle()
		sw.expectNothing(t)
		assert.Empty(t, r.o.Forks()[0].Endpoints)
		assert.Equal(t, StateEnded, r.o.Forks()[0].State)
	})
	t.Run("the credential of a call that hung up", func(t *testing.T) {
		r, sw := newRigUp(t, nil)
		r.event(sw, CallAnswered{Data: sw.answer("u1", "2000")})
		sw.expect(t, "start u1")
		spec := r.credential(t, sw.lastStart(t, "u1"))
		r.event(sw, CallHungUp{UUID: "u1"})
		assert.ErrorIs(t, r.o.Admit("u1", "mediafork", spec.Start), ErrStaleCredential)
	})
}

// A credential is honoured once, for the start it was issued for, while the
// fork is wanted; one issued by another mediafork is that one's to judge.
func TestAdmitSingleUse(t *testing.T) {
	t.Parallel()
	r, sw := newRigUp(t, nil)
	r.event(sw, CallAnswered{Data: sw.answer("u1", "2000")})
	sw.expect(t, "start u1")
	st := r.credential(t, sw.lastStart(t, "u1")).Start
	other := NewSigner([]byte("test key")).NewStart()
	forged := r.signer.NewStart() // ours, but not this fork's start

	require.NoError(t, r.o.Admit("u1", "mediafork", st))
	assert.ErrorIs(t, r.o.Admit("u1", "mediafork", st), ErrStaleCredential, "used once")
	assert.ErrorIs(t, r.o.Admit("u1", "mediafork", forged), ErrStaleCredential)
	assert.ErrorIs(t, r.o.Admit("u9", "mediafork", r.signer.NewStart()), ErrStaleCredential, "no such call")
	assert.NoError(t, r.o.Admit("u1", "mediafork", other), "another instance's")

	require.NoError(t, r.o.Stop(context.Background(), "u1"))
	sw.expect(t, "stop u1 mediafork")
	assert.ErrorIs(t, r.o.Admit("u1", "mediafork", st), ErrStaleCredential, "stopped")
}

// A fork on the same uuid that is not the wanted one (typed by hand, another
// bug, an old start) changes nothing when it ends.
func TestForeignForkChangesNothing(t *testing.T) {
	t.Parallel()
	for _, reason := range []EndReason{EndMediaLost, EndHangup, EndStopped} {
		t.Run(reason.String(), func(t *testing.T) {
			r, sw := newRigUp(t, nil)
			r.event(sw, CallAnswered{Data: sw.answer("u1", "2000")})
			sw.expect(t, "start u1")
			old := r.credential(t, sw.lastStart(t, "u1"))

			hand, err := r.reg.Claim("u1", "other")
			require.NoError(t, err)
			require.NoError(t, hand.Begin(Spec{UUID: "u1", Server: "fs1", Params: stereo8k}, nil))
			sw.expect(t, "setvar u1")
			sw.expect(t, "log NOTICE")
			stale, err := r.reg.Claim("u1", "stale")
			require.NoError(t, err)
			old.Start = r.signer.NewStart() // an earlier start of ours
			require.NoError(t, stale.Begin(old, nil))
			sw.expect(t, "setvar u1 mediafork_stream_id")
			sw.expect(t, "setvar u1 mediafork_resume") // it streams: what the call carries is its
			sw.expect(t, "log NOTICE")

			hand.Finish(reason)
			stale.Finish(reason)
			r.reg.WaitHooks()
			forks := r.o.Fork("u1")
			require.NotEmpty(t, forks)
			wanted := false
			for _, in := range forks {
				wanted = wanted || in.State == StateStarting
			}
			assert.True(t, wanted, "the wanted fork is still starting: %+v", forks)
			r.settle()
			sw.expectNothing(t)
		})
	}
}

// fs_cli: what an operator types, and what mediafork answers in the log.
func TestCLICommands(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args  string
		start string // the start command sent, "" for none
		says  string
	}{
		{"start u1 analytics", "start u1 stereo 8000 mediafork", "mediafork: fork u1 requested"},
		{"start u1 speech 127.0.0.1:7", "start u1 mono 16000 mediafork", "mediafork: fork u1 requested"},
		{"start u1", "start u1 mono 16000 mediafork", "mediafork: fork u1 requested"}, // the rule for 2000
		{"start u1 8.8.8.8:9000", "", "start u1 failed: destination not allowed"},
		{"start u1 nonsense", "", `"nonsense" is neither a profile nor host:port`},
		{"start u4", "", "no rule matches; give a profile or host:port"},
		{"start nosuch analytics", "", "start nosuch failed"},
		{"start a_b analytics", "", "start a_b failed: not a call uuid"},
		{"start", "", "usage: mediafork start"},
		{"stop a_b", "", "stop a_b failed: not a call uuid"},
		{"stop", "", "usage: mediafork stop"},
		{"status", "", "mediafork: 0 fork(s) live"},
		{"status u1", "", "no fork on u1"},
		{"logger sideways", "", "usage: mediafork logger on|off"},
		{"frobnicate", "", `unknown command "frobnicate"`},
		{"", "", "usage: mediafork start"},
	}
	for _, tc := range cases {
		t.Run(tc.args, func(t *testing.T) {
			r, sw := newRigUp(t, nil)
			sw.answer("u1", "2000")
			sw.answer("u4", "4000")
			r.event(sw, CLICommand{Args: strings.Fields(tc.args)})
			if tc.start != "" {
				sw.expect(t, tc.start)
			}
			got := sw.expect(t, "log NOTICE")
			assert.Contains(t, got, tc.says)
			r.settle()
			sw.expectNothing(t)
		})
	}
}

// fs_cli stop, status and logger on a live fork.
func TestCLIStopStatusLogger(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	sw := newFakeSwitch("fs1")
	var logger []bool
	r.o.OnLogger = func(on bool) { logger = append(logger, on) }
	r.up(sw)
	sw.answer("u1", "2000")
	r.event(sw, CLICommand{Args: []string{"start", "u1", "analytics"}})
	sw.expect(t, "start u1")
	sw.expect(t, "log NOTICE mediafork: fork u1 requested")
	f := r.connect(t, sw, "u1")

	r.event(sw, CLICommand{Args: []string{"status", "u1"}})
	sw.expect(t, "log NOTICE mediafork: 1 fork(s) live")
	assert.Contains(t, sw.expect(t, "log NOTICE"), "u1 stream ")
	r.event(sw, CLICommand{Args: []string{"logger", "on"}})
	sw.expect(t, "log NOTICE mediafork: fork summaries every 1s: on")
	assert.True(t, r.o.summaries.On())
	r.event(sw, CLICommand{Args: []string{"logger", "off"}})
	sw.expect(t, "log NOTICE mediafork: fork summaries every 1s: off")
	assert.False(t, r.o.summaries.On())
	assert.Equal(t, []bool{true, false}, logger)

	r.event(sw, CLICommand{Args: []string{"stop", "u1"}})
	sw.expect(t, "stop u1 mediafork")
	sw.expect(t, "setvar u1 mediafork_resume") // stopped for good: nobody resumes it
	sw.expect(t, "log NOTICE mediafork: fork u1 stopped")

	<-f.Done() // nothing connected to close: Stop finished it
	assert.Equal(t, EndStopped, f.StopRequested())
	r.settle()
	sw.expectNothing(t)
}

// fs_cli stop answers on the switch's event lane without waiting for the
// fork's end (a media connection slow to close held the switch's other
// fs_cli commands up to StopWait): "stopped" is said once it has ended.
func TestCLIStopDoesNotWaitOnTheLane(t *testing.T) {
	t.Parallel()
	r, sw := newRigUp(t, nil)
	sw.answer("u1", "2000")
	r.event(sw, CLICommand{Args: []string{"start", "u1", "analytics"}})
	sw.expect(t, "start u1")
	sw.expect(t, "log NOTICE mediafork: fork u1 requested")
	f := r.connect(t, sw, "u1")
	asked := make(chan EndReason, 1)
	f.OnStop(func(reason EndReason) { asked <- reason }) // its connection does not close yet

	r.event(sw, CLICommand{Args: []string{"stop", "u1"}}) // returns: the lane is free
	assert.Equal(t, EndStopped, <-asked)
	sw.expect(t, "stop u1 mediafork")
	select {
	case <-f.Done():
		t.Fatal("the fork ended before its connection closed")
	default:
	}
	r.event(sw, CLICommand{Args: []string{"status", "u1"}}) // the next command is answered meanwhile
	sw.expect(t, "log NOTICE mediafork: 1 fork(s) live")
	sw.expect(t, "log NOTICE")

	f.Finish(EndHangup) // the connection closes: the reason asked for wins
	sw.expect(t, "setvar u1 mediafork_resume")
	sw.expect(t, "log NOTICE mediafork: fork u1 stopped")
	r.settle()
	sw.expectNothing(t)
}

// fakeOutbound is a call on the dialplan socket.
type fakeOutbound struct {
	*fakeSwitch
	data ChannelData
}

func (c *fakeOutbound) Data() ChannelData { return c.data }
func (c *fakeOutbound) Resume(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.record("resume")
	return nil
}

// The dialplan socket: the channel variables decide, else the rules; the
// dialplan always resumes, before the fork starts.
func TestOutboundDecisions(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		dest  string
		vars  []string
		start string
		addrs []netip.AddrPort
		meta  Metadata
		warns string
	}{
		{name: "ForkStream syntax", dest: "4000", vars: []string{"mediafork", "127.0.0.1:8080,Support-Line,2000,777,888"},
			start: "start u1 stereo 8000 mediafork", addrs: ap("127.0.0.1:8080"), meta: Metadata{ChannelID: "Support-Line", Exten: "2000", CallerID: "777", CalledID: "888"}},
		{name: "profile and params", dest: "4000", vars: []string{"mediafork_profile", "speech", "mediafork_mix", "mixed", "mediafork_rate", "8k", "mediafork_encoding", "pcma"},
			start: "start u1 mixed 8000 mediafork", addrs: ap("127.0.0.1:9100"), meta: Metadata{ChannelID: "loopback/4000-a", Exten: "4000", CallerID: "1000", CalledID: "4000"}},
		{name: "to list", dest: "4000", vars: []string{"mediafork_to", "127.0.0.1:1;127.0.0.1:2"},
			start: "start u1 stereo 8000 mediafork", addrs: append(ap("127.0.0.1:1"), ap("127.0.0.1:2")...), meta: Metadata{ChannelID: "loopback/4000-a", Exten: "4000", CallerID: "1000", CalledID: "4000"}},
		{name: "no variables: the rule", dest: "2000",
			start: "start u1 mono 16000 mediafork", addrs: ap("127.0.0.1:9100"), meta: Metadata{ChannelID: "Support-2000", Exten: "2000", CallerID: "1000", CalledID: "2000"}},
		{name: "no variables, no rule", dest: "4000"},
		{name: "unknown profile", dest: "2000", vars: []string{"mediafork_profile", "nope"}, warns: `unknown profile "nope"`},
		{name: "bad rate", dest: "2000", vars: []string{"mediafork", "127.0.0.1:1", "mediafork_rate", "fast"}, warns: "mediafork_rate"},
		{name: "not allowed", dest: "2000", vars: []string{"mediafork", "8.8.8.8:9"}, warns: "destination not allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, nil)
			sw := newFakeSwitch("fs1")
			oc := &fakeOutbound{fakeSwitch: sw, data: sw.answer("u1", tc.dest, tc.vars...)}
			r.o.HandleOutbound(context.Background(), oc)
			sw.expect(t, "resume")
			switch {
			case tc.start != "":
				sw.expect(t, tc.start)
				f := sw.lastStart(t, "u1")
				assert.Equal(t, tc.meta, f.Metadata)
				assert.Equal(t, tc.addrs, r.credential(t, f).Addrs())
			case tc.warns != "":
				assert.Contains(t, sw.expect(t, "log WARNING mediafork: u1 not forked"), tc.warns)
			}
			r.settle()
			sw.expectNothing(t)
		})
	}
}

// The API: the same policy, and what is asked is checked before anything
// reaches the switch.
func TestStartCall(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	sw := newFakeSwitch("fs1")
	ctx := context.Background()
	_, err := r.o.StartCall(ctx, StartRequest{UUID: "u1", Profile: "analytics"})
	assert.ErrorIs(t, err, ErrNoSwitch)
	assert.EqualError(t, err, "freeswitch not connected: no switch is connected (GET /readyz shows each one's state)",
		"no switch named: the message does not quote an empty name")
	_, err = r.o.StartCall(ctx, StartRequest{UUID: "u1", Profile: "analytics", FreeSWITCH: "fs9"})
	assert.EqualError(t, err, `freeswitch not connected: "fs9" (not configured, or not connected now)`)
	r.up(sw)
	sw.answer("u1", "2000")
	for _, bad := range []StartRequest{
		{UUID: "u1"}, {UUID: "u1", Profile: "nope"}, {UUID: "u1", To: []string{"8.8.8.8:9"}}, {UUID: "u1", Profile: "analytics", Rate: 11025},
	} {
		_, berr := r.o.StartCall(ctx, bad)
		assert.Error(t, berr, "%+v", bad)
	}
	_, err = r.o.StartCall(ctx, StartRequest{UUID: "nosuch", Profile: "analytics"})
	assert.ErrorIs(t, err, ErrNoSuchCall)
	sw.expectNothing(t)

	spec, err := r.o.StartCall(ctx, StartRequest{UUID: "u1", Profile: "speech", Encoding: "pcmu", Metadata: map[string]string{"caller_id": "555"}})
	require.NoError(t, err)
	sw.expect(t, "start u1 mono 16000 mediafork")
	assert.Equal(t, Params{Mix: Mono, Rate: 16000, Encoding: PCMU, FrameMs: 20}, spec.Params)
	assert.Equal(t, Metadata{ChannelID: "loopback/2000-a", Exten: "2000", CallerID: "555", CalledID: "2000"}, spec.Metadata)
	_, err = r.o.StartCall(ctx, StartRequest{UUID: "u1", Profile: "analytics"})
	assert.ErrorIs(t, err, ErrDuplicate)

	sw.dumpHook = func(CallID) (map[string]string, error) { return nil, fmt.Errorf("%w: timeout", ErrSwitchUnavailable) }
	sw.answer("u2", "2000")
	_, err = r.o.StartCall(ctx, StartRequest{UUID: "u2", Profile: "analytics"})
	assert.ErrorIs(t, err, ErrSwitchUnavailable)
	var br *BadRequest
	assert.False(t, errors.As(err, &br))
	r.settle()
	sw.expectNothing(t)
}
