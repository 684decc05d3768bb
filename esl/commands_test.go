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

// Every argument is checked in one place: nothing that would end the command
// line or shift its arguments reaches the switch.
func TestCommandArgumentsAreChecked(t *testing.T) {
	r := &runner{reply: "+OK"}
	c := NewCommands("fs1", r)
	ctx := context.Background()
	bad := []string{"", "a b", "a\nb", "a\r\nb", "a\tb", "a\x00b", "a\x7fb"}
	for _, v := range bad {
		assert.ErrorIs(t, c.StartFork(ctx, "u1", v, "stereo", 8000, "mediafork", ""), ErrBadArgument, "url %q", v)
		assert.ErrorIs(t, c.StartFork(ctx, "u1", "ws://x/fork/u1", "stereo", 8000, v, ""), ErrBadArgument, "bug %q", v)
		assert.ErrorIs(t, c.StopFork(ctx, "u1", v), ErrBadArgument)
		assert.ErrorIs(t, c.SetVar(ctx, "u1", "mediafork_stream_id", v), ErrBadArgument)
		assert.ErrorIs(t, c.SetVar(ctx, "u1", v, "1"), ErrBadArgument)
		if v != "" {
			assert.ErrorIs(t, c.StartFork(ctx, "u1", "ws://x/fork/u1", "stereo", 8000, "mediafork", v), ErrBadArgument, "metadata %q", v)
		}
	}
	_, err := c.Dump(ctx, mediafork.CallID("a\nb"))
	assert.ErrorIs(t, err, ErrBadArgument, "even an unchecked CallID conversion is caught")
	assert.Empty(t, r.lines, "nothing was sent")

	require.NoError(t, c.Log(ctx, "NOTICE", "line one\nline two\r\x00"))
	require.NoError(t, c.StartFork(ctx, "u1", "ws://x/fork/u1?cred=a.b", "stereo", 16000, "mediafork", `{"a":"b\u0020c"}`))
	assert.Equal(t, []string{"log NOTICE line one line two  ", `uuid_audio_fork u1 start ws://x/fork/u1?cred=a.b stereo 16000 mediafork {"a":"b\u0020c"}`}, r.lines)
	for _, l := range r.lines {
		assert.False(t, strings.ContainsAny(l, "\r\n"))
	}
}

// The domain gets typed errors: the switch said no, or did not answer.
func TestCommandErrorsAreTyped(t *testing.T) {
	ctx := context.Background()
	c := NewCommands("fs1", &runner{reply: "-ERR No such channel!", err: errors.New("uuid_dump: -ERR No such channel!")})
	_, err := c.Dump(ctx, "u1")
	assert.ErrorIs(t, err, mediafork.ErrSwitchRefused)
	assert.NotErrorIs(t, err, mediafork.ErrSwitchUnavailable)
	c = NewCommands("fs1", &runner{err: ErrClosed})
	_, err = c.Dump(ctx, "u1")
	assert.ErrorIs(t, err, mediafork.ErrSwitchUnavailable)
	c = NewCommands("fs1", &runner{reply: "-ERR Operation Failed", err: errors.New("-ERR Operation Failed")})
	assert.ErrorIs(t, c.StartFork(ctx, "u1", "ws://x", "mono", 8000, "mediafork", ""), mediafork.ErrSwitchRefused)
}
