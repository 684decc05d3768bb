package esl

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

// runner records the command lines it is given and answers with reply/err.
type runner struct {
	lines []string
	reply string
	err   error
}

func (r *runner) API(_ context.Context, cmd string) (string, error) {
	r.lines = append(r.lines, cmd)
	return r.reply, r.err
}

func forkStart(url, bug string) mediafork.ForkStart {
	return mediafork.ForkStart{UUID: "u1", URL: url, Mix: mediafork.Stereo, Rate: 8000, Bug: bug}
}

// Every argument is checked in one place: nothing that would end the command
// line or shift its arguments reaches the switch.
func TestCommandArgumentsAreChecked(t *testing.T) {
	t.Parallel()
	r := &runner{reply: "+OK"}
	c := NewCommands("fs1", r)
	af, as := AudioFork{c}, AudioStream{c}
	ctx := context.Background()
	bad := []string{"", "a b", "a\nb", "a\r\nb", "a\tb", "a\x00b", "a\x7fb"}
	for _, v := range bad {
		assert.ErrorIs(t, af.StartFork(ctx, forkStart(v, "mediafork")), ErrBadArgument, "url %q", v)
		assert.ErrorIs(t, as.StartFork(ctx, forkStart(v, "")), ErrBadArgument, "url %q", v)
		assert.ErrorIs(t, af.StartFork(ctx, forkStart("ws://x/fork/u1", v)), ErrBadArgument, "bug %q", v)
		assert.ErrorIs(t, af.StopFork(ctx, "u1", v), ErrBadArgument)
		if v != "" {
			assert.ErrorIs(t, as.StopFork(ctx, mediafork.CallID("u1"+v), ""), ErrBadArgument)
		}
		if v != "" { // an empty value unsets the variable
			assert.ErrorIs(t, c.SetVar(ctx, "u1", "mediafork_stream_id", v), ErrBadArgument)
		}
		assert.ErrorIs(t, c.SetVar(ctx, "u1", v, "1"), ErrBadArgument)
	}
	// The rest-of-line argument may hold spaces, never a line end, a control
	// character, ' or \ but in \u (FreeSWITCH's splitter rewrites those).
	for _, v := range []string{"a\nb", "a\r\nb", "a\x00b", "a\tb", `a'b`, `a\b`, `a\"`, `a\`, `a\\u`, " a", "a "} {
		_, err := c.apiRest(ctx, "uuid_audio_stream", []string{"u1", "start", "ws://x", "mono", "8000"}, v)
		assert.ErrorIs(t, err, ErrBadArgument, "rest %q", v)
	}
	_, err := c.Dump(ctx, mediafork.CallID("a\nb"))
	assert.ErrorIs(t, err, ErrBadArgument, "even an unchecked CallID conversion is caught")
	assert.Empty(t, r.lines, "nothing was sent")
	require.NoError(t, c.SetVar(ctx, "u1", "mediafork_resume", ""))
	assert.Equal(t, []string{"uuid_setvar u1 mediafork_resume"}, r.lines, "no value: unset")
	r.lines = nil

	require.NoError(t, c.Log(ctx, "NOTICE", "line one\nline two\r\x00"))
	f := forkStart("ws://x/fork/u1?cred=a.b", "mediafork")
	f.Rate, f.Metadata = 16000, mediafork.Metadata{ChannelID: "b c"}
	require.NoError(t, af.StartFork(ctx, f))
	f.Metadata = mediafork.Metadata{ChannelID: `sofia/x 'y' "z" \w`, CallerID: "Bob <1000> & co\n"}
	require.NoError(t, as.StartFork(ctx, f))
	require.NoError(t, as.StopFork(ctx, "u1", "ignored"))
	f.Metadata = mediafork.Metadata{}
	require.NoError(t, as.StartFork(ctx, f))
	assert.Equal(t, []string{
		"log NOTICE line one line two  ",
		`uuid_audio_fork u1 start ws://x/fork/u1?cred=a.b stereo 16000 mediafork {"channel_id":"b\u0020c"}`,
		`uuid_audio_stream u1 start ws://x/fork/u1?cred=a.b stereo 16000 {"channel_id":"sofia/x\u0020\u0027y\u0027\u0020\u0022z\u0022\u0020\u005cw","caller_id":"Bob\u0020<1000>\u0020&\u0020co\u000a"}`,
		`uuid_audio_stream u1 stop`,
		`uuid_audio_stream u1 start ws://x/fork/u1?cred=a.b stereo 16000`,
	}, r.lines)
	for _, l := range r.lines {
		assert.False(t, strings.ContainsAny(l, "\r\n"))
	}
}

// The domain gets typed errors: the switch said no, or did not answer.
func TestCommandErrorsAreTyped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := NewCommands("fs1", &runner{reply: "-ERR No such channel!", err: errors.New("uuid_dump: -ERR No such channel!")})
	_, err := c.Dump(ctx, "u1")
	assert.ErrorIs(t, err, mediafork.ErrSwitchRefused)
	assert.NotErrorIs(t, err, mediafork.ErrSwitchUnavailable)
	c = NewCommands("fs1", &runner{err: ErrClosed})
	_, err = c.Dump(ctx, "u1")
	assert.ErrorIs(t, err, mediafork.ErrSwitchUnavailable)
	c = NewCommands("fs1", &runner{reply: ReplyOperationFailed, err: errors.New(ReplyOperationFailed)})
	assert.ErrorIs(t, AudioFork{c}.StartFork(ctx, forkStart("ws://x", "mediafork")), mediafork.ErrSwitchRefused)
	assert.ErrorIs(t, AudioStream{c}.StartFork(ctx, forkStart("ws://x", "")), mediafork.ErrSwitchRefused)
	assert.ErrorIs(t, AudioStream{c}.StopFork(ctx, "u1", ""), mediafork.ErrSwitchRefused)
}

// moduleRunner answers module_exists from a set of loaded modules.
type moduleRunner struct {
	loaded map[string]bool
	lines  []string
	err    error
}

func (r *moduleRunner) API(_ context.Context, cmd string) (string, error) {
	r.lines = append(r.lines, cmd)
	if r.err != nil {
		return "", r.err
	}
	if name, ok := strings.CutPrefix(cmd, "module_exists "); ok {
		if r.loaded[name] {
			return ReplyTrue, nil
		}
		return ReplyFalse, nil
	}
	if cmd == "uuid_audio_fork" { // the usage, as each module answers it (recorded)
		if r.loaded["jambonz"] {
			return "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown | stop_play ] [wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] [bugname] [metadata] [bidirectionalAudio_enabled] [bidirectionalAudio_stream_enabled] [bidirectionalAudio_stream_samplerate]\n", nil
		}
		return "-USAGE: <uuid> [start | stop | send_text | pause | resume | graceful-shutdown ] [wss-url | path] [mono | mixed | stereo] [8000 | 16000 | 24000 | 32000 | 64000] [bugname] [metadata]\n", nil
	}
	return "+OK", nil
}

// auto asks module_exists, preferring mod_audio_fork, and the usage of
// uuid_audio_fork, which names jambonz's bidirectional arguments; a
// configured module is used without asking.
func TestDetectModule(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	cases := []struct {
		configured string
		loaded     []string
		err        error
		want       string
		asked      int
	}{
		{ModuleAuto, []string{"mod_audio_fork", "mod_audio_stream"}, nil, mediafork.ModuleAudioFork, 2},
		{ModuleAuto, []string{"mod_audio_fork"}, nil, mediafork.ModuleAudioFork, 2},
		{ModuleAuto, []string{"mod_audio_fork", "jambonz"}, nil, mediafork.ModuleAudioForkJambonz, 2},
		{mediafork.ModuleAudioForkJambonz, nil, nil, mediafork.ModuleAudioForkJambonz, 0},
		{ModuleAuto, []string{"mod_audio_stream"}, nil, mediafork.ModuleAudioStream, 2},
		{"", []string{"mod_audio_stream"}, nil, mediafork.ModuleAudioStream, 2},
		{ModuleAuto, nil, nil, mediafork.ModuleAudioFork, 2},
		{ModuleAuto, nil, ErrClosed, mediafork.ModuleAudioFork, 2},
		{mediafork.ModuleAudioStream, []string{"mod_audio_fork"}, nil, mediafork.ModuleAudioStream, 0},
		{mediafork.ModuleAudioFork, []string{"mod_audio_stream"}, nil, mediafork.ModuleAudioFork, 0},
	}
	for _, tc := range cases {
		r := &moduleRunner{loaded: map[string]bool{}, err: tc.err}
		for _, m := range tc.loaded {
			r.loaded[m] = true
		}
		got := DetectModule(ctx, tc.configured, NewCommands("fs1", r))
		assert.Equal(t, tc.want, got, "%+v", tc)
		assert.Len(t, r.lines, tc.asked, "%+v", tc)
		assert.Equal(t, tc.want, NewSwitch(got, NewCommands("fs1", r)).Module())
	}
}
