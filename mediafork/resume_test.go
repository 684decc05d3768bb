package mediafork

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// clockedRig is a rig whose registry's media clock the test moves.
func clockedRig(t *testing.T, key string, clk *fakeClock) *rig {
	r := newRig(t, nil)
	if key != "" {
		r.signer = NewSigner([]byte(key))
		r.o.signer = r.signer
	}
	r.reg.clock = clk.now
	if clk.ns.Load() == 0 {
		clk.ns.Store(int64(time.Hour))
	}
	return r
}

// answeredCall is a clocked rig (signing with key, when not empty) up on
// switch fs1, on which call u1 to 2000 is answered, and the TLV receiver
// its forks go to.
func answeredCall(t *testing.T, key string) (*rig, *fakeSwitch, *udpSink, *fakeClock) {
	t.Helper()
	sink := newUDPSink(t)
	clk := new(fakeClock)
	r := clockedRig(t, key, clk)
	sw := newFakeSwitch("fs1")
	r.up(sw)
	sw.answer("u1", "2000")
	return r, sw, sink, clk
}

// startCall has the orchestrator fork the answered call u1 of sw to sink
// (stereo, 8 kHz) and waits for the start it sends the switch.
func (r *rig) startCall(t *testing.T, sw *fakeSwitch, sink *udpSink) {
	t.Helper()
	_, err := r.o.StartCall(context.Background(), StartRequest{UUID: "u1", To: []string{sink.addr().String()}, Mix: "stereo", Rate: 8000})
	require.NoError(t, err)
	sw.expect(t, "start u1")
}

// loseMedia ends f as a lost media connection does, and waits for the
// orchestrator's retry: the bug stopped and started again.
func loseMedia(t *testing.T, sw *fakeSwitch, f *Fork) {
	t.Helper()
	f.Finish(EndMediaLost)
	sw.expect(t, "stop u1 mediafork")
	sw.expect(t, "start u1")
}

func (r *rig) writeFrames(f *Fork, clk *fakeClock, from, n int) {
	for i := from; i < from+n; i++ {
		clk.advance(20 * time.Millisecond)
		f.Write(nil, frame20(i))
	}
}

// A fork whose media connection is lost is started again continuing its
// streams: the same stream id, sequences on the media clock, a gap packet of
// reason 1 for the frames missed; the call carries its resume record. A
// hangup while it is suspended ends its streams with end packets.
func TestMediaLostResumesTheStreams(t *testing.T) {
	t.Parallel()
	r, sw, sink, clk := answeredCall(t, "")
	r.o.SetInstance("mf-a")
	r.startCall(t, sw, sink)
	f := r.connect(t, sw, "u1")
	rec, err := r.signer.OpenRecord(sw.vars["u1"][ResumeVar], "u1")
	require.NoError(t, err, "the call carries its resume record")
	assert.Equal(t, f.Identity.StreamID, rec.Identity.StreamID)
	assert.Equal(t, "mf-a", sw.vars["u1"][InstanceVar])
	r.writeFrames(f, clk, 0, 5)
	loseMedia(t, sw, f)

	clk.advance(700 * time.Millisecond)
	g := r.connect(t, sw, "u1")
	assert.Equal(t, f.StreamID, g.StreamID)
	r.writeFrames(g, clk, 40, 3)
	loseMedia(t, sw, g)
	r.event(sw, CallHungUp{UUID: "u1"})

	pkts, from := sink.readFrom(t, 4+10+2+6+2)
	ps := decodeTLV(t, pkts)
	sink.none(t)
	require.Equal(t, "sfsf"+"aaaaaaaaaa"+"gg"+"aaaaaa"+"ee", kinds(ps))
	for _, a := range from {
		assert.Equal(t, from[0], a, "every packet from the same socket: the suspended fork's stayed open for its resume")
	}
	assert.Zero(t, r.reg.OpenEndpoints(), "given back once the streams ended")
	for _, p := range ps {
		assert.Equal(t, f.StreamID, p.ID)
	}
	// 700 ms + 20 ms from the last frame to the next one's arrival, less its
	// 20 ms: 35 frames.
	assert.Equal(t, tlvcodec.Gap{StreamID: f.StreamID, Direction: tlvcodec.RX, NextSequence: 41, MissingFrames: 35, Reason: tlvcodec.GapMediaLost}, ps[14].Gap)
	assert.Equal(t, uint32(41), ps[16].Seq)
	assert.Equal(t, tlvcodec.ReasonHangup, ps[22].End)
	assert.Equal(t, uint32(43), ps[22].Seq, "the end after the last audio sent")
}

// A restarted instance finds the calls it served by their channel variables
// and resumes their forks, placed on the media clock by its checkpoint (the
// position there, plus the time until it was last alive); a call another
// instance serves is left alone (neither resumed nor forked by a rule); a
// record another key signed is not honoured.
func TestRestartResumesFromTheCallsVariables(t *testing.T) {
	t.Parallel()
	r1, sw, sink, clk := answeredCall(t, "shared key")
	r1.o.SetInstance("mf-a")
	r1.startCall(t, sw, sink)
	f := r1.connect(t, sw, "u1")
	r1.writeFrames(f, clk, 0, 50) // 1 s
	positions := r1.reg.Positions()
	require.Len(t, positions, 1)
	pos := positions[0]
	assert.Equal(t, int64(48*160), pos.Sent, "published every 8 frames")
	// kill -9 after the 50th frame: nothing more is sent; the checkpoint's
	// heartbeat says when it was last alive.
	saved := Saved{Alive: pos.At.Add(40 * time.Millisecond), Forks: positions}
	vars := sw.vars["u1"]
	first := decodeTLV(t, sink.read(t, 4+100))

	// The new instance, with the same key, on the same switch, with a rule
	// that would fork the calls anew (testPolicy's "support").
	r2 := clockedRig(t, "shared key", clk)
	r2.o.SetInstance("mf-a")
	r2.o.SetSaved(saved)
	sw2 := newFakeSwitch("fs1")
	sw2.answer("u1", "2000", ResumeVar, vars[ResumeVar], InstanceVar, vars[InstanceVar])
	other := NewSigner([]byte("shared key")).SealRecord(ResumeRecord{Spec: Spec{UUID: "u2", Params: stereo8k, Targets: TLVTargets(sink.addr())}, Identity: Identity{StreamID: 6}})
	sw2.answer("u2", "2000", ResumeVar, other, InstanceVar, "mf-b") // another instance's
	sw2.answer("u3", "2000", ResumeVar, NewSigner([]byte("other key")).SealRecord(ResumeRecord{Spec: Spec{UUID: "u3"}, Identity: Identity{StreamID: 5}}))
	r2.up(sw2)
	// In the order the switch lists the calls: u1 resumed, u2 left alone,
	// u3 (whose record another key signed) forked by the rule as a new call.
	starts := []string{sw2.expect(t, "start "), sw2.expect(t, "start ")}
	assert.ElementsMatch(t, []string{"start u1 stereo 8000 mediafork", "start u3 mono 16000 mediafork"}, starts)
	spec := r2.credential(t, sw2.lastStart(t, "u1"))
	require.NotNil(t, spec.Resume)
	assert.Equal(t, f.Identity.StreamID, spec.Resume.Identity.StreamID)
	assert.Equal(t, GapRestarted, spec.Resume.Reason)
	assert.Equal(t, int64(8000), spec.Resume.Sent, "what the checkpoint says, plus the 40 ms to its death")
	clk.advance(400 * time.Millisecond)
	g := r2.connect(t, sw2, "u1")
	assert.Equal(t, f.StreamID, g.StreamID)
	r2.writeFrames(g, clk, 100, 2)
	g.Finish(EndHangup)
	ps := decodeTLV(t, sink.read(t, 2+4+2))
	sink.none(t)
	require.Equal(t, "gg"+"aaaa"+"ee", kinds(ps))
	// From 1 s (its death) to 1.42 s less 20 ms: 20 frames after the 50 the
	// old instance sent.
	assert.Equal(t, tlvcodec.Gap{StreamID: f.StreamID, Direction: tlvcodec.RX, NextSequence: 71, MissingFrames: 20, Reason: tlvcodec.GapRestarted}, ps[0].Gap)
	assert.Equal(t, uint32(50), first[len(first)-1].Seq)
	r2.settle()
}

// Pause and resume through the orchestrator: the fork's audio stops at its
// next frame, the call records it (a resumed fork resumes paused), an audit
// line says who; the resume is a gap of reason 3.
func TestPauseForkThroughTheOrchestrator(t *testing.T) {
	t.Parallel()
	r, sw, sink, clk := answeredCall(t, "")
	ctx := context.Background()
	_, err := r.o.PauseFork(ctx, "u1", true, "api")
	require.ErrorIs(t, err, ErrNotLive)
	r.startCall(t, sw, sink)
	f := r.connect(t, sw, "u1")
	r.writeFrames(f, clk, 0, 3)
	changed, err := r.o.PauseFork(ctx, "u1", true, "api")
	require.NoError(t, err)
	assert.True(t, changed)
	sw.expect(t, "setvar u1 mediafork_paused")
	sw.expect(t, "log NOTICE mediafork: fork u1 paused by api")
	assert.Equal(t, "true", sw.vars["u1"][PausedVar])
	assert.True(t, r.o.Fork("u1")[0].Paused)
	r.writeFrames(f, clk, 3, 2)
	// Lost while paused: the retry resumes it paused.
	loseMedia(t, sw, f)
	spec := r.credential(t, sw.lastStart(t, "u1"))
	require.NotNil(t, spec.Resume)
	assert.True(t, spec.Resume.Paused)
	assert.Equal(t, GapPaused, spec.Resume.Reason, "the gap began with the pause")
	clk.advance(200 * time.Millisecond)
	g := r.connect(t, sw, "u1")
	assert.True(t, g.Paused())
	r.writeFrames(g, clk, 20, 2) // dropped
	changed, err = r.o.PauseFork(ctx, "u1", false, "fs_cli")
	require.NoError(t, err)
	assert.True(t, changed)
	sw.expect(t, "setvar u1 mediafork_paused")
	sw.expect(t, "log NOTICE mediafork: fork u1 resumed by fs_cli")
	r.writeFrames(g, clk, 22, 1)
	g.Finish(EndHangup)
	ps := decodeTLV(t, sink.read(t, 4+6+2+2+2))
	require.Equal(t, "sfsf"+"aaaaaa"+"gg"+"aa"+"ee", kinds(ps))
	// Paused after 3 frames; 2 dropped, then 200+20-20 ms (10 frames) of
	// break, then 2 dropped: 14 frames.
	assert.Equal(t, tlvcodec.Gap{StreamID: f.StreamID, Direction: tlvcodec.RX, NextSequence: 18, MissingFrames: 14, Reason: tlvcodec.GapPaused}, ps[10].Gap)
	r.settle()
}

// A resumed fork whose metadata frame has no room for its continuation
// carries the mark only; the ingest gets the continuation from the
// orchestrator that issued it. A resume that is given up ends the streams:
// end packets of reason 3 after the last audio.
func TestResumeMarkAndGiveUp(t *testing.T) {
	t.Parallel()
	r, sw, sink, clk := answeredCall(t, "")
	r.startCall(t, sw, sink)
	sw.mu.Lock()
	sw.maxDesc = len(sw.starts[len(sw.starts)-1].Description) + 40 // room for the mark, not the continuation
	sw.mu.Unlock()
	f := r.connect(t, sw, "u1")
	r.writeFrames(f, clk, 0, 4)
	loseMedia(t, sw, f)
	st := sw.lastStart(t, "u1")
	spec := r.credential(t, st)
	assert.Nil(t, spec.Resume, "no room for it")
	assert.True(t, spec.Resumed)
	cont, err := r.o.ContinuationOf(context.Background(), "u1", spec.Start)
	require.NoError(t, err)
	assert.Equal(t, f.StreamID, cont.Identity.StreamID)
	assert.Equal(t, int64(4*160), cont.Sent)
	other, err := r.o.ContinuationOf(context.Background(), "u1", Start{Issuer: "x", Nonce: "y"})
	require.NoError(t, err, "another start's: from the call's variables")
	assert.Equal(t, f.StreamID, other.Identity.StreamID)
	assert.Equal(t, GapRestarted, other.Reason, "placed from the origin")

	// The module cannot connect: retried (2 attempts in all), then given up.
	r.event(sw, MediaConnectFailed{UUID: "u1"})
	sw.expect(t, "stop u1 mediafork")
	sw.expect(t, "start u1")
	assert.True(t, r.credential(t, sw.lastStart(t, "u1")).Resumed, "each attempt resumes")
	r.event(sw, MediaConnectFailed{UUID: "u1"})
	sw.expect(t, "setvar u1 mediafork_resume")
	ps := decodeTLV(t, sink.read(t, 4+8+2))
	require.Equal(t, "sfsf"+"aaaaaaaa"+"ee", kinds(ps))
	for _, p := range ps[12:] {
		assert.Equal(t, tlvcodec.ReasonMediaLost, p.End)
		assert.Equal(t, uint32(4), p.Seq, "after the last audio")
		assert.Equal(t, f.StreamID, p.ID)
	}
	r.settle()
}
