package mediafork

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// A fork mediafork starts carries its credential in two parts:
//
//   - the token, in the URL (cred=): the start it was issued for (issuer and
//     nonce), an expiry, the bug name and source the ingest needs before the
//     upgrade, and the SHA-256 of the description, signed with HMAC-SHA256
//     over all that and the call's uuid. About 200 bytes whatever the fork.
//   - the description, in the metadata the module sends as its first text
//     frame (under DescriptionKey): the fork's Spec as JSON, base64url-encoded
//     so that no FreeSWITCH argument splitter can alter it.
//
// The description used to travel in the URL; it grows with the fork's
// endpoints, and mod_audio_fork crashes FreeSWITCH 1.10.12 on a URL of about
// 710 bytes (MaxAudioForkURL), while both modules deliver metadata of up to
// MaxMetadataFrame bytes intact.
//
// The description is self-contained (any instance holding the key serves the
// fork) and signed, not secret: it shows in FreeSWITCH's debug log as the URL
// does, so a Target's options never hold a secret.

// ErrBadCredential is returned for a fork credential that is malformed, forged,
// expired or for another call.
var ErrBadCredential = errors.New("bad fork credential")

// ErrBadDescription is returned for a credentialed connection whose first
// text frame does not carry the description its credential signed: missing,
// altered, too long, or another fork's.
var ErrBadDescription = errors.New("bad fork description")

// DescriptionKey is the key of the metadata JSON that carries the fork's
// description, beside the signaling fields (channel_id, exten, ...).
const DescriptionKey = "mediafork"

// MaxMetadataFrame is the longest metadata both modules deliver: mod_audio_fork
// (drachtio 88e1465) and mod_audio_stream (amigniter ec2a781) send at most
// 8192 bytes of it as their first text frame and silently cut the rest
// (measured on FreeSWITCH 1.10.12 with 8192 and 8193 bytes).
const MaxMetadataFrame = 8192

// Signer makes and checks the per-fork credentials of forks mediafork starts:
// their Spec (its destinations already resolved and checked), the start it was
// made for and an expiry, signed with HMAC-SHA256. Any mediafork holding the
// same key can serve such a fork with no shared state; the instance that
// issued it also checks that the start is still the one it wants
// (Orchestrator.Admit).
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

// NewStart names a new start of a fork by this signer's process.
func (s *Signer) NewStart() Start { return Start{Issuer: s.id, Nonce: randomID()} }

// Issued reports whether this signer's process issued st.
func (s *Signer) Issued(st Start) bool { return st.Issuer == s.id }

var b64 = base64.RawURLEncoding

// Credential is what a fork start carries: Token in its URL, Description in
// its metadata under DescriptionKey. Both hold only URL-safe characters.
type Credential struct {
	Token       string
	Description string
}

// token is the signed part of the URL's credential.
type token struct {
	Issuer string `json:"iss"`
	Nonce  string `json:"n"`
	Exp    int64  `json:"exp"`
	Bug    string `json:"bug,omitempty"`
	Source string `json:"src,omitempty"`
	Sum    string `json:"d"` // base64url SHA-256 of the description
}

// maxToken bounds what Verify reads: a token is about 200 bytes.
const maxToken = 1024

// Sign returns the credential of spec's start (spec.Start), valid until exp:
// the token base64url(JSON) "." base64url(HMAC), and the description.
func (s *Signer) Sign(spec Spec, exp time.Time) Credential {
	body, _ := json.Marshal(spec)
	desc := b64.EncodeToString(body)
	sum := sha256.Sum256([]byte(desc))
	tb, _ := json.Marshal(token{Issuer: spec.Start.Issuer, Nonce: spec.Start.Nonce, Exp: exp.Unix(),
		Bug: spec.Bug, Source: spec.Source, Sum: b64.EncodeToString(sum[:])})
	payload := b64.EncodeToString(tb)
	return Credential{Token: payload + "." + b64.EncodeToString(s.mac(spec.UUID, payload)), Description: desc}
}

// Pass is a URL credential verified for a call: what the ingest needs before
// the upgrade, and the description it then awaits (Open).
type Pass struct {
	UUID   CallID
	Start  Start
	Bug    string
	Source string
	sum    []byte
}

// Verify checks the token of a credential for the fork of uuid at time now.
func (s *Signer) Verify(cred string, uuid CallID, now time.Time) (Pass, error) {
	if len(cred) > maxToken {
		return Pass{}, fmt.Errorf("%w: malformed", ErrBadCredential)
	}
	payload, sig, ok := strings.Cut(cred, ".")
	if !ok {
		return Pass{}, fmt.Errorf("%w: malformed", ErrBadCredential)
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.mac(uuid, payload)) {
		return Pass{}, fmt.Errorf("%w: signature does not match", ErrBadCredential)
	}
	body, err := b64.DecodeString(payload)
	if err != nil {
		return Pass{}, fmt.Errorf("%w: malformed", ErrBadCredential)
	}
	var t token
	if json.Unmarshal(body, &t) != nil {
		return Pass{}, fmt.Errorf("%w: malformed", ErrBadCredential)
	}
	sum, err := b64.DecodeString(t.Sum)
	if err != nil || len(sum) != sha256.Size {
		return Pass{}, fmt.Errorf("%w: malformed", ErrBadCredential)
	}
	if now.Unix() > t.Exp {
		return Pass{}, fmt.Errorf("%w: expired", ErrBadCredential)
	}
	return Pass{UUID: uuid, Start: Start{Issuer: t.Issuer, Nonce: t.Nonce}, Bug: t.Bug, Source: t.Source, sum: sum}, nil
}

// Open checks that desc, the description the connection's first text frame
// carried, is the one the pass's credential signed, and returns its Spec.
func (p Pass) Open(desc string) (Spec, error) {
	switch {
	case desc == "":
		return Spec{}, fmt.Errorf("%w: none in the first text frame (metadata key %q)", ErrBadDescription, DescriptionKey)
	case len(desc) > MaxMetadataFrame:
		return Spec{}, fmt.Errorf("%w: %d bytes, over the %d a module sends", ErrBadDescription, len(desc), MaxMetadataFrame)
	}
	sum := sha256.Sum256([]byte(desc))
	if len(p.sum) != len(sum) || subtle.ConstantTimeCompare(sum[:], p.sum) != 1 {
		return Spec{}, fmt.Errorf("%w: not the one its credential signed", ErrBadDescription)
	}
	body, err := b64.DecodeString(desc)
	if err != nil {
		return Spec{}, fmt.Errorf("%w: malformed", ErrBadDescription)
	}
	var spec Spec
	if err := json.Unmarshal(body, &spec); err != nil {
		return Spec{}, fmt.Errorf("%w: malformed: %v", ErrBadDescription, err)
	}
	// Signed together, so equal unless the signer is broken: checked anyway,
	// since the ingest claimed the uuid and bug and picked the source by them.
	if spec.UUID != p.UUID || spec.Bug != p.Bug || spec.Source != p.Source {
		return Spec{}, fmt.Errorf("%w: it does not match its credential", ErrBadDescription)
	}
	spec.Start = p.Start
	return spec, nil
}

// mac signs payload for the call uuid: a credential is good on that call's
// path only.
func (s *Signer) mac(uuid CallID, payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("mediafork fork credential 2\n"))
	m.Write([]byte(uuid))
	m.Write([]byte{'\n'})
	m.Write([]byte(payload))
	return m.Sum(nil)
}
