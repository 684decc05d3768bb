package mediafork

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Calls lists every answered call on every switch, forked or not: those
// answered before mediafork connected (the resync's list), those answered
// since (CHANNEL_ANSWER), those found streaming at a resync; a hangup, or a
// resync that no longer finds a call, removes it. Its version changes with
// the list.
func TestCallsListsEveryLiveCall(t *testing.T) {
	t.Parallel()
	r := newRig(t, nil)
	sw := newFakeSwitch("fs1")
	sw2 := newFakeSwitch("fs2")
	sw.answer("before", "4000") // answered before mediafork connected; no rule
	sw.channels["before"]["Caller-Channel-Answered-Time"] = "1795341976131739"
	v0 := r.o.CallsVersion()
	r.up(sw)
	r.up(sw2)
	byUUID := func() map[CallID]LiveCall {
		m := map[CallID]LiveCall{}
		for _, c := range r.o.Calls() {
			m[c.UUID] = c
		}
		return m
	}
	calls := byUUID()
	require.Contains(t, calls, CallID("before"))
	assert.Equal(t, LiveCall{UUID: "before", Server: "fs1", Channel: "loopback/4000-a", Caller: "1000", Callee: "4000",
		Answered: time.UnixMicro(1795341976131739)}, calls["before"], "its data from uuid_dump, answered when the switch says")
	v1 := r.o.CallsVersion()
	assert.NotEqual(t, v0, v1)

	r.event(sw2, CallAnswered{Data: sw2.answer("other", "4000")}) // no rule: listed, not wanted
	r.event(sw, CallAnswered{Data: sw.answer("ruled", "2000")})   // a rule forks it
	sw.expect(t, "start ruled")
	calls = byUUID()
	require.Len(t, calls, 3)
	assert.Equal(t, "fs2", calls["other"].Server)
	assert.False(t, calls["other"].Wanted)
	assert.True(t, calls["ruled"].Wanted, "a fork is asked for")
	assert.WithinDuration(t, time.Now(), calls["other"].Answered, time.Minute, "no answered time: when mediafork learnt of it")
	list := r.o.Calls()
	assert.Equal(t, CallID("before"), list[0].UUID, "oldest answered first")

	v2 := r.o.CallsVersion()
	r.event(sw2, CallAnswered{Data: sw2.answer("other", "4000")})
	assert.Equal(t, v2, r.o.CallsVersion(), "a duplicate answer changes nothing")
	r.event(sw2, CallHungUp{UUID: "other"})
	assert.NotContains(t, byUUID(), CallID("other"))
	assert.NotEqual(t, v2, r.o.CallsVersion())

	// A call hung up while the switch was away goes at the resync.
	r.o.SwitchDown("fs1")
	sw.hangup("before")
	r.up(sw)
	assert.NotContains(t, byUUID(), CallID("before"))
	assert.Contains(t, byUUID(), CallID("ruled"))

	// A new mediafork finds a call streaming since before (its fork live in
	// the registry): listed, on its switch, without channel data.
	r2 := newRig(t, nil)
	sw3 := newFakeSwitch("fs3")
	sw3.answer("streaming", "2000")
	f, err := r2.reg.Claim("streaming", r2.p.BugName)
	require.NoError(t, err)
	require.NoError(t, f.Begin(Spec{Params: Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20}}, nil))
	r2.up(sw3)
	calls2 := r2.o.Calls()
	require.Len(t, calls2, 1)
	assert.Equal(t, LiveCall{UUID: "streaming", Server: "fs3", Answered: calls2[0].Answered}, calls2[0])
	r2.settle()
	sw3.expectNothing(t)
}

// A caller id of any length is listed cut to maxCallField bytes, on a rune.
func TestCallsClipsLongFields(t *testing.T) {
	t.Parallel()
	r, sw := newRigUp(t, nil)
	d := sw.answer("long", "4000")
	d["caller-caller-id-number"] = "é" + strings.Repeat("ü", 5000)
	r.event(sw, CallAnswered{Data: d})
	calls := r.o.Calls()
	require.Len(t, calls, 1)
	assert.LessOrEqual(t, len(calls[0].Caller), maxCallField)
	assert.True(t, utf8.ValidString(calls[0].Caller))
	assert.True(t, strings.HasPrefix(calls[0].Caller, "éü"))
}
