package mediafork

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// The channel variables mediafork sets on a forked call, so that any
// instance holding the same ingest.key can pick the call's streams up
// (SPEC §10): few, and compact.
const (
	// StreamIDVar (mediafork_stream_id) names the fork's first stream, for
	// CDRs (set when it first streams).
	// ResumeVar is the fork's ResumeRecord, signed: what it is (its Spec)
	// and what its streams are named (its Identity), and the media clock's
	// origin. Set when it first streams; unset when its streams end for good
	// while the call goes on (stopped, given up, mediafork shut down).
	ResumeVar = "mediafork_resume"
	// InstanceVar names the mediafork instance that serves the fork now:
	// another instance leaves the call alone (HA decides when it may not).
	InstanceVar = "mediafork_instance"
	// PausedVar is "true" while the fork is paused: an instance that resumes
	// it resumes it paused.
	PausedVar = "mediafork_paused"
)

// ResumeRecord is what a call carries of its fork (ResumeVar): enough for
// any instance to start it again with the same streams.
type ResumeRecord struct {
	Spec     Spec      // as the fork was asked for, resolved (Start and Resume unset)
	Identity Identity  // its outputs' identity
	Origin   time.Time // the media clock's zero: when the fork began
}

type resumeRecordJSON struct {
	Spec     Spec     `json:"spec"`
	Identity Identity `json:"id"`
	Origin   int64    `json:"o"` // unix ms
}

// resumeDomain separates the MACs of resume records from those of fork
// credentials made with the same key: one is never taken for the other.
const resumeDomain = "mediafork resume record v1\x00"

// maxResumeRecord bounds a record read from a channel variable.
const maxResumeRecord = 16 << 10

// ErrBadRecord is a resume record that is malformed, forged, or of another
// call.
var ErrBadRecord = errors.New("bad resume record")

// SealRecord signs r for a channel variable: base64url(JSON) "."
// base64url(HMAC-SHA256) under the ingest key, no spaces.
func (s *Signer) SealRecord(r ResumeRecord) string {
	r.Spec.Start, r.Spec.Resume = Start{}, nil
	body, _ := json.Marshal(resumeRecordJSON{Spec: r.Spec, Identity: r.Identity, Origin: r.Origin.UnixMilli()})
	payload := b64.EncodeToString(body)
	return payload + "." + b64.EncodeToString(s.recordMAC(payload))
}

// OpenRecord checks a record read from call uuid's ResumeVar and returns it.
func (s *Signer) OpenRecord(v string, uuid CallID) (ResumeRecord, error) {
	if len(v) > maxResumeRecord {
		return ResumeRecord{}, fmt.Errorf("%w: %d bytes", ErrBadRecord, len(v))
	}
	payload, sig, ok := strings.Cut(v, ".")
	if !ok {
		return ResumeRecord{}, fmt.Errorf("%w: malformed", ErrBadRecord)
	}
	got, err := b64.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.recordMAC(payload)) {
		return ResumeRecord{}, fmt.Errorf("%w: signature does not match (another ingest.key?)", ErrBadRecord)
	}
	body, err := b64.DecodeString(payload)
	if err != nil {
		return ResumeRecord{}, fmt.Errorf("%w: malformed", ErrBadRecord)
	}
	var j resumeRecordJSON
	if err := json.Unmarshal(body, &j); err != nil {
		return ResumeRecord{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	if j.Spec.UUID != uuid {
		return ResumeRecord{}, fmt.Errorf("%w: made for another call", ErrBadRecord)
	}
	if j.Identity.StreamID == 0 || len(j.Identity.IDs) > maxIdentityIDs {
		return ResumeRecord{}, fmt.Errorf("%w: no stream id", ErrBadRecord)
	}
	if err := CheckPinned(j.Spec.Targets); err != nil {
		return ResumeRecord{}, fmt.Errorf("%w: %v", ErrBadRecord, err)
	}
	j.Spec.Start, j.Spec.Resume = Start{}, nil
	return ResumeRecord{Spec: j.Spec, Identity: j.Identity, Origin: time.UnixMilli(j.Origin)}, nil
}

func (s *Signer) recordMAC(payload string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(resumeDomain))
	m.Write([]byte(payload))
	return m.Sum(nil)
}
