package mediafork

import "context"

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
	LookupCall(ctx context.Context, uuid string) (CallInfo, error)
}
