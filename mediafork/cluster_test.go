package mediafork

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeCluster is a cluster of which this instance leads every switch, or
// none (standby); which forks are served, and what their instances left
// held, the test says.
type fakeCluster struct {
	mu      sync.Mutex
	standby bool
	served  bool
	held    string
}

func (c *fakeCluster) Leads(string) bool { return !c.standby }
func (c *fakeCluster) Issue(context.Context, string, CallID, string, Start) error {
	return nil
}
func (c *fakeCluster) Served(context.Context, CallID, string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.served, nil
}
func (c *fakeCluster) WaitUnserved(context.Context, CallID, string) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held, nil
}
func (c *fakeCluster) TTL() time.Duration { return time.Second }

func (c *fakeCluster) set(served bool, held string) {
	c.mu.Lock()
	c.served, c.held = served, held
	c.mu.Unlock()
}

// In a cluster, the leader retries a fork another instance served, whose
// connection was lost there: the retry continues the streams from where that
// instance said they stood as it released the fork (held), and whichever
// instance the module reaches takes the same identity.
func TestClusterRetryContinuesHeldStreams(t *testing.T) {
	t.Parallel()
	var clk fakeClock
	leader, server := clockedRig(t, "shared key", &clk), clockedRig(t, "shared key", &clk)
	cl := &fakeCluster{}
	leader.o.SetCluster(cl)
	server.o.SetCluster(&fakeCluster{standby: true, served: true})
	sw := newFakeSwitch("fs1")
	leader.up(sw)
	server.up(sw)
	sw.answer("u1", "2000")
	_, err := leader.o.StartCall(context.Background(), StartRequest{UUID: "u1", To: []string{newUDPSink(t).addr().String()}, Mix: "stereo", Rate: 8000})
	require.NoError(t, err)
	sw.expect(t, "start u1")
	f := server.connect(t, sw, "u1") // the module reached the other instance
	_, err = leader.signer.OpenRecord(sw.vars["u1"][ResumeVar], "u1")
	require.NoError(t, err, "the instance serving the fork set the call's record")
	server.writeFrames(f, &clk, 0, 7)
	f.Finish(EndMediaLost)
	server.reg.WaitHooks()
	cont, ok := f.Continuation()
	require.True(t, ok, "a fork mediafork started suspends its streams on any instance")
	assert.Equal(t, int64(7*160), cont.Sent)
	cl.set(false, cont.String()) // released, with where its streams stand

	leader.event(sw, MediaDisconnected{UUID: "u1", At: time.Now()})
	sw.expect(t, "stop u1 mediafork")
	sw.expect(t, "start u1")
	spec := leader.credential(t, sw.lastStart(t, "u1"))
	require.NotNil(t, spec.Resume, "the retry continues the streams")
	assert.Equal(t, cont.Sent, spec.Resume.Sent)
	assert.Equal(t, cont.Clock, spec.Resume.Clock)
	assert.Equal(t, GapMediaLost, spec.Resume.Reason)
	assert.Equal(t, f.Identity.StreamID, spec.Resume.Identity.StreamID)
	g := server.connect(t, sw, "u1")
	assert.Equal(t, f.StreamID, g.StreamID, "the same stream")
	g.Finish(EndHangup)
	leader.settle()
	server.settle()
}

// In a cluster, the instance that serves a fork dies (kill -9): the leader
// heard the switch say when the fork's connection ended, and once no live
// instance serves it, resumes the streams placed there on the media clock
// (from their origin, in the call's record, to the disconnect: whole
// frames), a gap of reason 2.
func TestClusterTakeoverResumesFromTheDisconnect(t *testing.T) {
	t.Parallel()
	var clk fakeClock
	dead, leader := clockedRig(t, "shared key", &clk), clockedRig(t, "shared key", &clk)
	dead.o.SetCluster(&fakeCluster{})
	dead.o.SetInstance("mf-a")
	sw := newFakeSwitch("fs1")
	dead.up(sw)
	sw.answer("u1", "2000")
	_, err := dead.o.StartCall(context.Background(), StartRequest{UUID: "u1", To: []string{newUDPSink(t).addr().String()}, Mix: "stereo", Rate: 8000})
	require.NoError(t, err)
	sw.expect(t, "start u1")
	f := dead.connect(t, sw, "u1")
	dead.writeFrames(f, &clk, 0, 5)
	rec, err := dead.signer.OpenRecord(sw.vars["u1"][ResumeVar], "u1")
	require.NoError(t, err)
	vars := sw.vars["u1"]

	// The leader, on the same switch, while the dead instance's claim lives.
	cl := &fakeCluster{served: true}
	leader.o.SetCluster(cl)
	leader.o.SetInstance("mf-b")
	sw2 := newFakeSwitch("fs1")
	sw2.answer("u1", "2000", ResumeVar, vars[ResumeVar], InstanceVar, vars[InstanceVar])
	leader.up(sw2)
	cl.set(false, "") // its lease lapsed: nothing held
	leader.event(sw2, MediaDisconnected{UUID: "u1", At: rec.Origin.Add(1010 * time.Millisecond)})
	sw2.expect(t, "start u1")
	spec := leader.credential(t, sw2.lastStart(t, "u1"))
	require.NotNil(t, spec.Resume, "resumed, not forked anew by the rule")
	assert.Equal(t, f.Identity.StreamID, spec.Resume.Identity.StreamID)
	assert.Equal(t, GapRestarted, spec.Resume.Reason)
	assert.Equal(t, int64(51*160), spec.Resume.Clock, "1.01 s from the origin: 51 frames began (the first at the origin)")
	assert.Equal(t, spec.Resume.Clock, spec.Resume.Sent)
	f.Finish(EndHangup)
	dead.settle()
	leader.settle()
}
