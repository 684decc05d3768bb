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

// ErrStaleCredential is Admit's answer for a credential of a fork that has
// ended, was stopped or started again, for a call that is gone, or that was
// already used.
var ErrStaleCredential = errors.New("fork credential no longer valid")
