package mediafork

import (
	"context"
	"errors"
)

// CallInfo is what the control plane knows about a call: its metadata and any
// destinations set on the channel (mediafork_profile, mediafork_to).
type CallInfo struct {
	Server   string
	Metadata Metadata
	Profile  string
	To       []string
}

// CallLookup finds a call by uuid on the switches (uuid_dump over ESL). The
// ingest asks it about forks that mediafork did not start itself.
type CallLookup interface {
	LookupCall(ctx context.Context, uuid CallID) (CallInfo, error)
	// Admit is asked, before the upgrade, about a connection carrying a
	// verified credential for the fork of uuid called bug: nil when st is
	// the start of that fork that the orchestrator still wants and that has
	// not connected yet (in a cluster: its one claim, ha).
	Admit(uuid CallID, bug string, st Start) error
}

// Describer is a CallLookup that also knows the descriptions it signed
// (the Orchestrator): the ingest's fallback when a module's metadata never
// came. mod_audio_stream sends its metadata from the connect callback only
// when its bug is already on the channel: a connect faster than the bug's
// attach drops it, silently (seen on a loaded machine).
type Describer interface {
	SignedDescription(uuid CallID, st Start) string
}

// ErrStaleCredential is Admit's answer for a credential of a fork that has
// ended, was stopped or started again, for a call that is gone, or that was
// already used.
var ErrStaleCredential = errors.New("fork credential no longer valid")
