package mediafork

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Finding 10: an API read of a fork (Info) while its first message starts it
// (Begin) raced on the endpoints. Run with -race.
func TestInfoDuringBeginDoesNotRace(t *testing.T) {
	t.Parallel()
	sink := newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	for i := 0; i < 20; i++ {
		f, err := reg.Claim(CallID("race-"+string(rune('a'+i))), "mediafork")
		require.NoError(t, err)
		var wg sync.WaitGroup
		begun := make(chan struct{})
		wg.Add(1)
		go func() { // reads until Begin has returned, so the two overlap
			defer wg.Done()
			for {
				_ = f.Info().Endpoints
				select {
				case <-begun:
					return
				default:
				}
			}
		}()
		spec := stereoSpec()
		require.NoError(t, f.Begin(spec, TLVTargets(sink.addr())))
		close(begun)
		wg.Wait()
		assert.Equal(t, []string{sink.addr().String()}, f.Info().Endpoints)
		f.Finish(EndHangup)
		sink.read(t, 4) // signaling and end, RX and TX
	}
}

func TestParseCallID(t *testing.T) {
	t.Parallel()
	good := []string{"18621868-c3fe-47c1-a9a0-e6eabc8413ae", "a", strings.Repeat("A", MaxCallIDLen), "call-1"}
	for _, s := range good {
		id, err := ParseCallID(s)
		require.NoError(t, err, s)
		assert.Equal(t, s, id.String())
	}
	bad := []string{"", strings.Repeat("a", MaxCallIDLen+1), "call-1\n\napi system id", "a b", "a%0Ab", "a_b", "a/b",
		"a.b", "é", "a\x00", "a\r", "../x", "${x}"}
	for _, s := range bad {
		_, err := ParseCallID(s)
		assert.ErrorIs(t, err, ErrBadCallID, "%q", s)
	}
	var req StartRequest
	err := json.Unmarshal([]byte(`{"uuid":"call-1\n\napi system id"}`), &req)
	assert.ErrorIs(t, err, ErrBadCallID, "JSON decoding checks the uuid")
}

// Finding 4: a destination given by name is resolved once, when the fork is
// asked for; what is signed and later used is that address, whatever the
// name resolves to afterwards.
func TestCredentialPinsResolvedAddresses(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	addr := "127.0.0.1"
	d := &Destinations{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")},
		LookupHost: func(_ context.Context, host string) ([]netip.Addr, error) {
			mu.Lock()
			defer mu.Unlock()
			return []netip.Addr{netip.MustParseAddr(addr)}, nil
		}}
	addrs, err := d.Resolve(context.Background(), "", []string{"sink.example:9"}, true)
	require.NoError(t, err)
	s := NewSigner([]byte("k"))
	spec := Spec{UUID: "u1", To: []string{"sink.example:9"}, Targets: TLVTargets(addrs...), Start: s.NewStart()}
	cred := s.Sign(spec, time.Now().Add(time.Minute))
	mu.Lock()
	addr = "127.0.0.2" // the name moves
	mu.Unlock()
	got := opened(t, s, cred, "u1")
	assert.Equal(t, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:9")}, got.Addrs())
	assert.Equal(t, spec.Start, got.Start)
	assert.True(t, s.Issued(got.Start))
	assert.False(t, NewSigner([]byte("k")).Issued(got.Start), "another process with the same key did not issue it")
	_, err = d.Resolve(context.Background(), "", []string{"sink.example:9"}, true)
	assert.ErrorIs(t, err, ErrNotAllowed, "resolving again would be refused")
}

// A packet that no UDP datagram can carry is refused when configured, not
// dropped on every send.
func TestParamsRefuseUnsendablePackets(t *testing.T) {
	t.Parallel()
	p := Params{Mix: Mono, Rate: 8000, Encoding: L16, FrameMs: 4094} // 65,504 bytes of audio
	assert.ErrorContains(t, p.Validate(), "more than one UDP datagram")
	p.FrameMs = 4090 // 65,440 + 12 fits
	assert.NoError(t, p.Validate())
}
