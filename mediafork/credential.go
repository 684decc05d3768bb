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
// mediafork starts: the fork's Spec and an expiry, signed with HMAC-SHA256. Any
// mediafork holding the same key can serve such a fork with no shared state.
type Signer struct{ key []byte }

// NewSigner signs with key; an empty key gets a random one.
func NewSigner(key []byte) *Signer {
	if len(key) == 0 {
		key = make([]byte, 32)
		rand.Read(key)
	}
	return &Signer{key: key}
}

type credential struct {
	Spec
	Exp int64 `json:"exp"`
}

var b64 = base64.RawURLEncoding

// Sign returns the credential for spec, valid until exp: base64url(JSON) "."
// base64url(HMAC). It holds only URL-safe characters and no spaces, as
// uuid_audio_fork needs.
func (s *Signer) Sign(spec Spec, exp time.Time) string {
	body, _ := json.Marshal(credential{Spec: spec, Exp: exp.Unix()})
	payload := b64.EncodeToString(body)
	return payload + "." + b64.EncodeToString(s.mac(payload))
}

// Verify checks a credential for the fork of uuid at time now and returns its Spec.
func (s *Signer) Verify(cred, uuid string, now time.Time) (Spec, error) {
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
	return c.Spec, nil
}

func (s *Signer) mac(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(payload))
	return m.Sum(nil)
}
