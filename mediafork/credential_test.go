package mediafork

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bigSpec is a fork of n endpoints, half of them RTP with formats and
// options of their own, and metadata with every character a command line or
// a URL would mind.
func bigSpec(uuid CallID, n int) Spec {
	spec := stereoSpec()
	spec.UUID, spec.Bug, spec.Profile, spec.Trigger, spec.Rule = uuid, "mediafork", "recorders", TriggerRule, "all calls"
	spec.Metadata = Metadata{ChannelID: `sofia/internal/O'Brien "Bob" \x y`, Exten: "2000", CallerID: "Zoë <1000> & co", CalledID: "名前"}
	for i := range n {
		t := Target{Addr: netip.MustParseAddrPort(fmt.Sprintf("10.0.%d.%d:%d", i/200, i%200+1, 9000+2*i))}
		if i%2 == 1 {
			t.Protocol = ProtocolRTP
			t.Format = EndpointFormat{Directions: DirSetOf(DirRX), Encoding: L16, Rate: 16000, FrameMs: 20}
			t.Options = RTPOptions{Tx: netip.MustParseAddrPort(fmt.Sprintf("10.1.0.%d:6000", i+1)), PayloadType: 97}
		}
		spec.Targets = append(spec.Targets, t)
	}
	return spec
}

var urlSafe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func TestCredentialRoundTrip(t *testing.T) {
	t.Parallel()
	s := NewSigner([]byte("k1"))
	now := time.Unix(1700000000, 0)
	small, big := bigSpec("abc-123", 1), bigSpec("abc-123", DefaultMaxDestinations)
	small.Start, big.Start = s.NewStart(), s.NewStart()
	cs, cb := s.Sign(small, now.Add(time.Hour)), s.Sign(big, now.Add(time.Hour))
	for _, c := range []Credential{cs, cb} {
		assert.Regexp(t, urlSafe, c.Token)
		assert.Regexp(t, urlSafe, c.Description)
		assert.Less(t, len(c.Token), 250, "the URL's part")
	}
	// The token does not grow with the fork: the description does.
	assert.Equal(t, len(cs.Token), len(cb.Token))
	assert.Greater(t, len(cb.Description), 2*len(cs.Description))

	for _, tc := range []struct {
		spec Spec
		cred Credential
	}{{small, cs}, {big, cb}} {
		pass, err := s.Verify(tc.cred.Token, "abc-123", now)
		require.NoError(t, err)
		assert.Equal(t, Pass{UUID: "abc-123", Start: tc.spec.Start, Bug: "mediafork", Source: tc.spec.Source, sum: pass.sum}, pass)
		got, err := pass.Open(tc.cred.Description)
		require.NoError(t, err)
		assert.Equal(t, tc.spec, got, "the description is the spec, with its start")
	}

	other := NewSigner([]byte("k1"))
	pass, err := other.Verify(cb.Token, "abc-123", now)
	require.NoError(t, err, "any instance with the same key accepts it")
	_, err = pass.Open(cb.Description)
	assert.NoError(t, err)
	assert.False(t, other.Issued(pass.Start), "it did not issue it")
}

// A URL token altered, of another key, for another call or expired is refused.
func TestCredentialTokenTampering(t *testing.T) {
	t.Parallel()
	s := NewSigner([]byte("k1"))
	now := time.Unix(1700000000, 0)
	spec := bigSpec("abc-123", 2)
	spec.Start = s.NewStart()
	c := s.Sign(spec, now.Add(time.Hour))
	payload, sig, _ := strings.Cut(c.Token, ".")
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for name, tc := range map[string]struct {
		s     *Signer
		token string
		uuid  CallID
		now   time.Time
	}{
		"other key":         {NewSigner([]byte("k2")), c.Token, "abc-123", now},
		"other call":        {s, c.Token, "abc-124", now},
		"expired":           {s, c.Token, "abc-123", now.Add(2 * time.Hour)},
		"payload altered":   {s, flip(payload, 10) + "." + sig, "abc-123", now},
		"signature altered": {s, payload + "." + flip(sig, 5), "abc-123", now},
		"prefixed":          {s, "x" + c.Token, "abc-123", now},
		"no signature":      {s, payload, "abc-123", now},
		"empty":             {s, "", "abc-123", now},
		"huge":              {s, strings.Repeat("A", 4096) + "." + sig, "abc-123", now},
		"not base64":        {s, "!!." + sig, "abc-123", now},
	} {
		_, err := tc.s.Verify(tc.token, tc.uuid, tc.now)
		assert.ErrorIs(t, err, ErrBadCredential, name)
	}
	// A payload that is not a token, correctly signed (a key leaked: still no
	// panic, a clear error).
	for _, body := range []string{`[]`, `{"d":"short"}`, `{"iss":"a","n":"b","exp":1}`} {
		p := b64.EncodeToString([]byte(body))
		_, err := s.Verify(p+"."+b64.EncodeToString(s.mac("abc-123", p)), "abc-123", now)
		assert.ErrorIs(t, err, ErrBadCredential, body)
	}
}

// A description altered, cut, missing, too long or another fork's is refused
// by the pass of a genuine token; and a genuine description with another
// call's token.
func TestCredentialDescriptionTampering(t *testing.T) {
	t.Parallel()
	s := NewSigner([]byte("k1"))
	now := time.Unix(1700000000, 0)
	spec := bigSpec("abc-123", 6)
	spec.Start = s.NewStart()
	c := s.Sign(spec, now.Add(time.Hour))
	pass, err := s.Verify(c.Token, "abc-123", now)
	require.NoError(t, err)

	// Another start of the same call, to other endpoints; another call.
	again := bigSpec("abc-123", 1)
	again.Start = s.NewStart()
	c2 := s.Sign(again, now.Add(time.Hour))
	otherCall := bigSpec("abc-124", 6)
	otherCall.Start = spec.Start
	c3 := s.Sign(otherCall, now.Add(time.Hour))

	// The description re-encoded with one target moved: what an attacker
	// who holds a URL would send.
	moved := spec
	moved.Targets = append([]Target{{Addr: netip.MustParseAddrPort("203.0.113.9:9000")}}, spec.Targets[1:]...)
	forged := s.Sign(moved, now.Add(time.Hour)).Description

	d := c.Description
	for name, desc := range map[string]string{
		"missing":                       "",
		"one character changed":         d[:20] + string(d[20]^1) + d[21:],
		"appended":                      d + "AAAA",
		"cut":                           d[:len(d)-4],
		"forged targets":                forged,
		"another start's":               c2.Description,
		"another call's":                c3.Description,
		"longer than a module sends":    strings.Repeat("A", MaxMetadataFrame+1),
		"not base64 (same length)":      strings.Repeat("!", len(d)),
		"padded base64 of the same sum": d + "==",
	} {
		_, openErr := pass.Open(desc)
		assert.ErrorIs(t, openErr, ErrBadDescription, name)
	}
	var zero Pass
	_, err = zero.Open(d)
	assert.ErrorIs(t, err, ErrBadDescription, "a pass not from Verify")

	// Replay across calls: the token of abc-123 on abc-124's path is refused;
	// so is abc-123's description under abc-124's token.
	_, err = s.Verify(c.Token, "abc-124", now)
	assert.ErrorIs(t, err, ErrBadCredential)
	pass3, err := s.Verify(c3.Token, "abc-124", now)
	require.NoError(t, err)
	_, err = pass3.Open(c.Description)
	assert.ErrorIs(t, err, ErrBadDescription)
	got, err := pass3.Open(c3.Description)
	require.NoError(t, err)
	assert.Equal(t, CallID("abc-124"), got.UUID)
}

// A description that does not match the token's bug, source or call is
// refused even when its hash is the signed one (a broken signer).
func TestCredentialDescriptionMatchesToken(t *testing.T) {
	t.Parallel()
	s := NewSigner([]byte("k1"))
	now := time.Unix(1700000000, 0)
	spec := bigSpec("abc-123", 1)
	c := s.Sign(spec, now.Add(time.Hour))
	pass, err := s.Verify(c.Token, "abc-123", now)
	require.NoError(t, err)
	for name, p := range map[string]Pass{
		"bug":    {UUID: pass.UUID, Bug: "other", Source: pass.Source, sum: pass.sum},
		"source": {UUID: pass.UUID, Bug: pass.Bug, Source: SourceAudioStream, sum: pass.sum},
		"call":   {UUID: "abc-999", Bug: pass.Bug, Source: pass.Source, sum: pass.sum},
	} {
		_, err := p.Open(c.Description)
		assert.ErrorIs(t, err, ErrBadDescription, name)
	}
}

// opened is spec through its credential as the ingest reads it: the token
// verified for spec's call, the description opened.
func opened(t *testing.T, s *Signer, c Credential, uuid CallID) Spec {
	t.Helper()
	pass, err := s.Verify(c.Token, uuid, time.Now())
	require.NoError(t, err)
	spec, err := pass.Open(c.Description)
	require.NoError(t, err)
	return spec
}
