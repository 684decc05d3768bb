package mediafork

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Drops and send errors are counted per (profile, endpoint): a config
// endpoint by its address (a name by what it resolved to), anything ad hoc
// as "adhoc", whichever way the packet went (at once or through a batch).
// A fork that began is counted by its trigger.
func TestEndpointLabelsAndStarts(t *testing.T) {
	t.Parallel()
	known := NewKnownEndpoints()
	d := &Destinations{
		Profiles: map[string]Profile{"rec": {Endpoints: []string{"127.0.0.1:4000", "rec.example:4001"}}},
		Allow:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Known:    known,
		LookupHost: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.2")}, nil
		},
	}
	addrs, err := d.Resolve(context.Background(), "rec", []string{"127.0.0.1:5000"}, true)
	require.NoError(t, err)
	require.Len(t, addrs, 3)

	// A full buffer drops the rest of its batch: 1 refused, then 1 or 3.
	for batch, drops := range map[int]uint64{1: 2, 4: 4} {
		tr := newFake(batch)
		reg := NewRegistry(tr, 10, true, quiet)
		reg.SetKnownEndpoints(known)
		f, err := reg.Claim("u", "b")
		require.NoError(t, err)
		spec := stereoSpec()
		spec.Mix, spec.Profile, spec.Trigger = Mono, "rec", TriggerAPI
		require.NoError(t, f.Begin(spec, TLVTargets(addrs...)))
		for _, a := range addrs {
			tr.ep(a).refuse = []error{errRefused, ErrBufferFull}
		}
		var b *Batch
		if batch > 1 {
			b = reg.NewBatch()
		}
		for i := 0; i < 8; i++ {
			f.Write(b, make([]byte, 320))
		}
		if b != nil {
			b.Flush()
		}
		f.Finish(EndHangup)

		got := map[[2]string][2]uint64{}
		for _, c := range reg.Endpoints() {
			got[[2]string{c.Profile, c.Endpoint}] = [2]uint64{c.Drops.Load(), c.SendErrors.Load()}
		}
		assert.Equal(t, map[[2]string][2]uint64{
			{"rec", "127.0.0.1:4000"}: {drops, 1},
			{"rec", "127.0.0.2:4001"}: {drops, 1},
			{"rec", AdhocEndpoint}:    {drops, 1},
		}, got, "batch %d", batch)
		assert.Equal(t, 3*drops, reg.Totals().Drops, "the labelled counts add up to the total")
		started := reg.Started()
		assert.Equal(t, uint64(1), started[TriggerAPI])
		assert.Equal(t, uint64(0), started[TriggerRule])
		assert.Len(t, started, len(Triggers)+1)
	}
}

// The label set is bounded by the config, whatever a fork asks: an unknown
// profile is "", an unknown address "adhoc", an unknown trigger "other".
func TestLabelsAreBounded(t *testing.T) {
	t.Parallel()
	known := NewKnownEndpoints()
	known.AddConfig(&Policy{
		Destinations: &Destinations{Profiles: map[string]Profile{"p": {Endpoints: []string{"10.0.0.1:9", "name:9"}}}},
		Rules:        []Rule{{To: []string{"10.0.0.2:9"}}},
	})
	for _, tc := range []struct {
		profile, addr, wantProfile, wantEndpoint string
	}{
		{"p", "10.0.0.1:9", "p", "10.0.0.1:9"},
		{"", "10.0.0.2:9", "", "10.0.0.2:9"},
		{"p", "10.0.0.3:9", "p", AdhocEndpoint},
		{"nope", "10.0.0.1:9", "", "10.0.0.1:9"},
	} {
		p, e := known.Label(tc.profile, netip.MustParseAddrPort(tc.addr))
		assert.Equal(t, [2]string{tc.wantProfile, tc.wantEndpoint}, [2]string{p, e}, "%s %s", tc.profile, tc.addr)
	}
	p, e := (*KnownEndpoints)(nil).Label("p", netip.MustParseAddrPort("10.0.0.1:9"))
	assert.Equal(t, [2]string{"", AdhocEndpoint}, [2]string{p, e})

	reg := NewRegistry(newFake(1), 10, true, quiet)
	reg.countStarted("forged")
	reg.countStarted("")
	assert.Equal(t, uint64(2), reg.Started()[TriggerOther])
	assert.Len(t, reg.Started(), len(Triggers)+1)
}

// Every resolved fork carries the trigger that asked for it, through the
// credential of forks mediafork starts.
func TestSpecCarriesTrigger(t *testing.T) {
	t.Parallel()
	p := &Policy{Destinations: &Destinations{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}},
		Defaults: Params{Mix: Mono, Rate: 8000, Encoding: L16, FrameMs: 20}}
	spec, err := p.Resolve(context.Background(), Request{Trigger: TriggerCLI, UUID: "u1", Ask: Ask{To: []string{"127.0.0.1:9"}}})
	require.NoError(t, err)
	assert.Equal(t, TriggerCLI, spec.Trigger)
	s := NewSigner(nil)
	c := s.Sign(spec, time.Now().Add(time.Hour))
	pass, err := s.Verify(c.Token, "u1", time.Now())
	require.NoError(t, err)
	got, err := pass.Open(c.Description)
	require.NoError(t, err)
	assert.Equal(t, TriggerCLI, got.Trigger)
}
