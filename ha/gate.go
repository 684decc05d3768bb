package ha

import (
	"context"
	"fmt"
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// Gate is the node as the orchestrator's mediafork.Cluster.
type Gate struct{ N *Node }

var _ mediafork.Cluster = Gate{}

// Leads implements mediafork.Cluster.
func (g Gate) Leads(server string) bool { return g.N.Leads(server) }

// Issue implements mediafork.Cluster.
func (g Gate) Issue(ctx context.Context, server string, uuid mediafork.CallID, bug string, st mediafork.Start) error {
	return g.N.Issue(ctx, server, uuid, bug, st)
}

// Served implements mediafork.Cluster: claimed by a live instance, or a
// start pending.
func (g Gate) Served(ctx context.Context, uuid mediafork.CallID, bug string) (bool, error) {
	s, err := g.N.State(ctx, uuid, bug)
	return s.ServedBy != "" || s.Pending, err
}

// WaitUnserved implements mediafork.Cluster: with where the streams stood
// as the instance that served the fork released it (Release's held).
func (g Gate) WaitUnserved(ctx context.Context, uuid mediafork.CallID, bug string) (string, error) {
	s, err := g.N.WaitUnserved(ctx, uuid, bug)
	return s.Held, err
}

// TTL implements mediafork.Cluster.
func (g Gate) TTL() time.Duration { return g.N.TTL() }

// Lookup is the ingest's CallLookup in a cluster: a fork's credential is
// admitted by its one claim in etcd (whichever instance issued it), instead
// of by the issuing process alone.
type Lookup struct {
	mediafork.CallLookup
	N *Node
}

// Admit implements mediafork.CallLookup.
func (l Lookup) Admit(uuid mediafork.CallID, bug string, st mediafork.Start) error {
	if err := l.N.Claim(uuid, bug, st); err != nil {
		return fmt.Errorf("%w: %v", mediafork.ErrStaleCredential, err)
	}
	return nil
}

// Unadmit gives back a claim whose connection never became a fork (the
// ingest refused it after Admit: a duplicate, max_forks).
func (l Lookup) Unadmit(uuid mediafork.CallID, bug string) { l.N.Release(uuid, bug, "") }

// ForkEnded releases the claim of a fork this instance served (a
// Registry end observer); one whose streams were suspended leaves where
// they stand (its Continuation), for the instance that resumes them.
func (n *Node) ForkEnded(f *mediafork.Fork, _ mediafork.EndReason) {
	held := ""
	if c, ok := f.Continuation(); ok {
		held = c.String()
	}
	n.Release(f.UUID, f.Bug, held)
}

// SignedDescription implements mediafork.Describer: the description this
// instance signed, when it issued the start (the wrapped lookup knows).
func (l Lookup) SignedDescription(uuid mediafork.CallID, st mediafork.Start) string {
	if d, ok := l.CallLookup.(mediafork.Describer); ok {
		return d.SignedDescription(uuid, st)
	}
	return ""
}
