package mediafork

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A fork counts per destination what it sent and what it dropped: one
// endpoint taking everything, one refusing some packets, each counted on its
// own, with its last error; the label's counters count the drops too. Sent
// at once and through a batch alike.
func TestDestinationsCountPerEndpoint(t *testing.T) {
	t.Parallel()
	for _, batched := range []bool{false, true} {
		tr := newFake(4)
		reg := NewRegistry(tr, 10, true, quiet)
		f, err := reg.Claim("u", "b")
		require.NoError(t, err)
		good, bad := netip.MustParseAddrPort("127.0.0.1:9000"), netip.MustParseAddrPort("127.0.0.1:9001")
		require.NoError(t, f.Begin(stereoSpec(), TLVTargets(good, bad)))
		// Signaling and format, RX and TX: 4 packets each went out at Begin.
		tr.ep(bad).refuse = []error{nil, errRefused, nil, errRefused, errRefused}
		frame := stereoTone(8000, 8000)
		b := reg.NewBatch()       // a fork's writes go through one batch for its life
		for i := 0; i < 10; i++ { // 10 frames of 20 ms: 20 audio packets per endpoint
			if batched {
				f.Write(b, frame)
				b.Flush()
			} else {
				f.Write(nil, frame)
			}
		}
		st := f.Destinations()
		require.Len(t, st, 2)
		assert.Equal(t, DestinationStat{Target: Target{Addr: good}, Addr: good.String(), Packets: 4 + 20}, st[0])
		assert.Equal(t, bad.String(), st[1].Addr)
		assert.Equal(t, uint64(3), st[1].Drops, "batched=%v", batched)
		assert.Equal(t, uint64(4+20-3), st[1].Packets, "batched=%v", batched)
		assert.Equal(t, errRefused.Error(), st[1].LastError)
		var label *EndpointCounters
		for _, c := range reg.Endpoints() {
			if c.Endpoint == AdhocEndpoint {
				label = c
			}
		}
		require.NotNil(t, label)
		assert.Equal(t, uint64(3), label.Drops.Load(), "the label's drops too")
		f.Finish(EndHangup)
	}
}
