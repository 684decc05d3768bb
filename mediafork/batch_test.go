package mediafork

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// streamsOf groups packets by stream (stream id and direction), in order.
func streamsOf(pkts [][]byte) map[string][][]byte {
	m := map[string][][]byte{}
	for _, p := range pkts {
		k := fmt.Sprintf("%x/%d", p[3:7], p[7])
		m[k] = append(m[k], p)
	}
	return m
}

// A round's audio packets wait in the batch until the round ends, leave in
// sends of at most BatchSize packets and MaxBatchBytes, per destination, and
// each stream keeps its order: signaling first, end last, sequences rising.
func TestBatchGathersTheRound(t *testing.T) {
	t.Parallel()
	tr := newFake(4)
	reg := NewRegistry(tr, 10, true, quiet)
	reg.SetFormatPackets(false) // ForkStream's packets: the counts below
	a, b := netip.MustParseAddrPort("127.0.0.1:9001"), netip.MustParseAddrPort("127.0.0.1:9002")
	batch := reg.NewBatch()
	var forks []*Fork
	for i := 0; i < 3; i++ {
		f, err := reg.Claim(CallID(fmt.Sprintf("u%d", i)), "b")
		require.NoError(t, err)
		addrs := []netip.AddrPort{a}
		if i == 2 {
			addrs = append(addrs, b)
		}
		require.NoError(t, f.Begin(stereoSpec(), TLVTargets(addrs...)))
		forks = append(forks, f)
	}
	epA, epB := tr.ep(a), tr.ep(b)
	require.Len(t, epA.wire, 6, "signaling goes at once")
	frame, _, _ := pcmStereo(160)

	// Round 1: forks 0 and 1 (destination a only).
	forks[0].Write(batch, frame)
	forks[1].Write(batch, frame)
	assert.Len(t, epA.wire, 6+4, "a full batch (4 packets) leaves at once")
	forks[0].Write(batch, frame)
	assert.Len(t, epA.wire, 6+4, "the rest waits for the round's end")
	calls := len(epB.calls)
	batch.Flush()
	assert.Len(t, epA.wire, 6+6)
	assert.Equal(t, calls, len(epB.calls), "a destination the round did not touch is not sent to")

	// Round 2: fork 2 (both destinations), then its end.
	forks[2].Write(batch, frame)
	assert.Len(t, epB.wire, 2, "signaling only: the audio waits")
	forks[2].Finish(EndHangup) // flushes its batch's packets before the end packets
	assert.Len(t, epB.wire, 2+2+2)
	batch.Flush()
	for _, f := range forks[:2] {
		f.Finish(EndHangup)
	}
	assert.Equal(t, 0, reg.OpenEndpoints())
	assert.Empty(t, batch.queues, "the batch lets go of destinations with no fork")
	assert.True(t, epA.closed && epB.closed)

	for _, ep := range []*fakeEndpoint{epA, epB} {
		for _, c := range ep.calls {
			n := 0
			for _, p := range c {
				n += len(p)
			}
			assert.LessOrEqual(t, len(c), 4)
			assert.LessOrEqual(t, n, MaxBatchBytes)
		}
		for k, st := range streamsOf(ep.wire) {
			require.GreaterOrEqual(t, len(st), 2, k)
			assert.Equal(t, byte(tlvcodec.TypeSignaling), st[0][0], k)
			assert.Equal(t, byte(tlvcodec.TypeEnd), st[len(st)-1][0], k)
			for i, p := range st[1 : len(st)-1] {
				var au tlvcodec.Audio
				require.NoError(t, au.Unmarshal(p), k)
				assert.Equal(t, uint32(i+1), au.Sequence, k)
			}
		}
	}
	for i, f := range forks {
		assert.Zero(t, f.Drops.Load(), i)
		frames := uint64(1)
		if i == 0 {
			frames = 2
		}
		endpoints := uint64(1)
		if i == 2 {
			endpoints = 2
		}
		assert.Equal(t, endpoints*(2+frames), f.PacketsOut[0].Load(), "fork %d RX packets", i)
		assert.Equal(t, endpoints*(tlvcodec.SignalingSize+tlvcodec.EndSize+frames*(tlvcodec.AudioHeaderSize+160*2)), f.BytesOut[1].Load(), "fork %d TX bytes", i)
	}
}

// A large packet starts a new send rather than push one over MaxBatchBytes.
func TestBatchCapsBytes(t *testing.T) {
	t.Parallel()
	tr := newFake(64)
	reg := NewRegistry(tr, 10, true, quiet)
	reg.SetFormatPackets(false) // ForkStream's packets: the counts below
	a := netip.MustParseAddrPort("127.0.0.1:9001")
	f, _ := reg.Claim("u", "b")
	spec := stereoSpec()
	spec.Params = Params{Mix: Mono, Rate: 48000, Encoding: L16, FrameMs: 133} // 12,780-byte packets
	require.NoError(t, f.Begin(spec, TLVTargets(a)))
	batch := reg.NewBatch()
	frame := make([]byte, 12768)
	for i := 0; i < 12; i++ {
		f.Write(batch, frame)
	}
	batch.Flush()
	f.Finish(EndHangup)
	ep := tr.ep(a)
	sizes := []int{}
	for _, c := range ep.calls {
		n := 0
		for _, p := range c {
			n += len(p)
		}
		assert.LessOrEqual(t, n, MaxBatchBytes)
		sizes = append(sizes, len(c))
	}
	assert.Equal(t, []int{1, 5, 5, 2, 1}, sizes, "signaling, 12 audio packets 5 by 5, end")
}

// A refused packet is a drop counted for its own fork; the rest of the send
// goes on, except after a full buffer, which drops the rest of the batch.
func TestBatchCountsRefusals(t *testing.T) {
	t.Parallel()
	tr := newFake(64)
	reg := NewRegistry(tr, 10, true, quiet)
	reg.SetFormatPackets(false) // ForkStream's packets: the counts below
	a := netip.MustParseAddrPort("127.0.0.1:9001")
	var forks []*Fork
	for i := 0; i < 2; i++ {
		f, _ := reg.Claim(CallID(fmt.Sprintf("u%d", i)), "b")
		spec := stereoSpec()
		spec.Mix = Mono
		require.NoError(t, f.Begin(spec, TLVTargets(a)))
		forks = append(forks, f)
	}
	ep := tr.ep(a)
	batch := reg.NewBatch()
	frame := make([]byte, 320)
	// Packets of the round: f0, f1, f0, f1, f0, f1. The second is refused, the
	// fourth finds the buffer full: the fourth to the sixth are dropped.
	ep.refuse = []error{nil, errRefused, nil, ErrBufferFull}
	for i := 0; i < 3; i++ {
		forks[0].Write(batch, frame)
		forks[1].Write(batch, frame)
	}
	batch.Flush()
	assert.Len(t, ep.calls, 2+2, "2 signaling, the batch, its rest after the refusal")
	assert.Equal(t, uint64(1+2), forks[0].PacketsOut[0].Load(), "f0: signaling, 2 sent, 1 dropped")
	assert.Equal(t, uint64(1), forks[0].Drops.Load())
	assert.Zero(t, forks[0].SendErrors.Load(), "a full buffer is a drop, not an error")
	assert.Equal(t, uint64(1), forks[1].PacketsOut[0].Load(), "f1: signaling only")
	assert.Equal(t, uint64(3), forks[1].Drops.Load())
	assert.Equal(t, uint64(1), forks[1].SendErrors.Load())
	assert.Contains(t, forks[1].Info().LastError, "127.0.0.1:9001: ")
	for _, f := range forks {
		f.Finish(EndHangup)
	}
}
