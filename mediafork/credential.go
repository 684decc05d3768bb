package mediafork

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// ErrBadCredential is returned for a fork credential that is malformed, forged,
// expired or for another call.
var ErrBadCredential = errors.New("bad fork credential")

// Signer makes and checks the per-fork credentials carried in the URLs of forks
// mediafork starts: the fork's Spec (its destinations already resolved and
// checked), the start it was made for and an expiry, signed with HMAC-SHA256.
// Any mediafork holding the same key can serve such a fork with no shared
// state; the instance that issued it also checks that the start is still the
// one it wants (Orchestrator.Admit).
type Signer struct {
	key []byte
	id  string // this process, as the issuer of its credentials
}

// NewSigner signs with key; an empty key gets a random one.
func NewSigner(key []byte) *Signer {
	if len(key) == 0 {
		key = make([]byte, 32)
		rand.Read(key)
	}
	return &Signer{key: key, id: randomID()}
}

// Start names one start of a fork by an orchestrator: the credential of that
// start carries it, and once the fork has ended, been stopped or been started
// again, the issuer refuses it.
type Start struct {
	Issuer string // the Signer that issued it
	Nonce  string // random per start
}

func randomID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return b64.EncodeToString(b)
}

type credential struct {
	Spec
	Issuer string `json:"iss"`
	Nonce  string `json:"n"`
	Exp    int64  `json:"exp"`
}

// NewStart names a new start of a fork by this signer's process.
func (s *Signer) NewStart() Start { return Start{Issuer: s.id, Nonce: randomID()} }

// Issued reports whether this signer's process issued st.
func (s *Signer) Issued(st Start) bool { return st.Issuer == s.id }

var b64 = base64.RawURLEncoding

// Sign returns the credential for spec, valid until exp: base64url(JSON) "."
// base64url(HMAC). It holds only URL-safe characters and no spaces, as
// uuid_audio_fork needs.
func (s *Signer) Sign(spec Spec, exp time.Time) string {
	body, _ := json.Marshal(credential{Spec: spec, Issuer: spec.Start.Issuer, Nonce: spec.Start.Nonce, Exp: exp.Unix()})
	payload := b64.EncodeToString(body)
	return payload + "." + b64.EncodeToString(s.mac(payload))
}

// Verify checks a credential for the fork of uuid at time now and returns its Spec.
func (s *Signer) Verify(cred string, uuid CallID, now time.Time) (Spec, error) {
	payload, sig, ok := strings.Cut(cred, ".")
	if !ok {
		return Spec{}, fmt.Errorf("%w: malformed", ErrBadCredential)
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(payload)) {
		return Spec{}, fmt.Errorf("%w: signature does not match", ErrBadCredential)
	}
	body, err := b64.DecodeString(payload)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: malformed", ErrBadCredential)
	}
	var c credential
	if err := json.Unmarshal(body, &c); err != nil {
		return Spec{}, fmt.Errorf("%w: malformed", ErrBadCredential)
	}
	if c.UUID != uuid {
		return Spec{}, fmt.Errorf("%w: issued for another call", ErrBadCredential)
	}
	if now.Unix() > c.Exp {
		return Spec{}, fmt.Errorf("%w: expired", ErrBadCredential)
	}
	c.Spec.Start = Start{Issuer: c.Issuer, Nonce: c.Nonce}
	return c.Spec, nil
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}
