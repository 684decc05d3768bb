package ha

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/mediafork/mediafork/mediafork"
)

// A fork's credential is good once across the cluster. The leader of the
// call's switch records each start it issues (starts/<uuid>/<bug> = the
// start, on its lease, fenced by its leadership); the instance a connection
// with that credential reaches claims the fork in one transaction: the start
// must be the one recorded and the fork unclaimed; the start is consumed and
// the claim (claims/<uuid>/<bug>) put on the serving instance's lease. A
// replay finds no start; a dead instance's claims vanish with its lease, so
// that whoever leads the switch then knows the fork is served by no one.

// Errors of claims.
var (
	ErrClaimed  = errors.New("fork already served by a live instance")
	ErrNotIssue = errors.New("fork credential not issued for this start, or already used")
	ErrNoLease  = errors.New("not in the cluster (no etcd session)")
)

// opTimeout bounds one claim operation: the ingest waits on it before the
// upgrade.
const opTimeout = 3 * time.Second

func startValue(st mediafork.Start) string { return st.Issuer + "." + st.Nonce }

// Issue records st as the one start of the fork of uuid and bug that may
// connect, if this instance leads server (ErrNotLeader otherwise).
func (n *Node) Issue(ctx context.Context, server string, uuid mediafork.CallID, bug string, st mediafork.Start) error {
	n.mu.Lock()
	r := n.races[server]
	n.mu.Unlock()
	if r == nil || !r.leading {
		return ErrNotLeader
	}
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := n.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(r.el.Key()), "=", r.el.Rev())).
		Then(clientv3.OpPut(n.key("starts", string(uuid), bug), startValue(st), clientv3.WithLease(r.sess.Lease()))).
		Commit()
	if err != nil {
		return fmt.Errorf("ha: recording the start: %w", err)
	}
	if !resp.Succeeded {
		return ErrNotLeader
	}
	return nil
}

// Claim makes this instance the one serving the fork of uuid and bug whose
// connection presents the credential of start st: once, while st is the
// start its leader recorded and no live instance serves the fork.
func (n *Node) Claim(uuid mediafork.CallID, bug string, st mediafork.Start) error {
	n.mu.Lock()
	sess := n.sess
	n.mu.Unlock()
	if sess == nil {
		return ErrNoLease
	}
	ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
	defer cancel()
	sk, ck, hk := n.key("starts", string(uuid), bug), n.key("claims", string(uuid), bug), n.key("held", string(uuid), bug)
	resp, err := n.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value(sk), "=", startValue(st)), clientv3.Compare(clientv3.CreateRevision(ck), "=", 0)).
		Then(clientv3.OpDelete(sk), clientv3.OpDelete(hk), clientv3.OpPut(ck, n.me.Name+" "+st.Nonce, clientv3.WithLease(sess.Lease()))).
		Else(clientv3.OpGet(ck), clientv3.OpGet(sk)).
		Commit()
	if err != nil {
		return fmt.Errorf("ha: claiming the fork: %w", err)
	}
	if !resp.Succeeded {
		claim, start := resp.Responses[0].GetResponseRange().Kvs, resp.Responses[1].GetResponseRange().Kvs
		if len(start) == 0 || string(start[0].Value) != startValue(st) {
			return ErrNotIssue
		}
		by, _, _ := strings.Cut(string(claim[0].Value), " ")
		return fmt.Errorf("%w (%s)", ErrClaimed, by)
	}
	n.mu.Lock()
	n.claimRev[claimKey{uuid, bug}] = resp.Header.Revision
	n.mu.Unlock()
	return nil
}

// Release gives up this instance's claim on the fork of uuid and bug (its
// connection ended). held, when not "", is where its streams stand, for the
// start that continues them (held/<uuid>/<bug>, on this instance's lease).
func (n *Node) Release(uuid mediafork.CallID, bug, held string) {
	k := claimKey{uuid, bug}
	n.mu.Lock()
	rev, ok := n.claimRev[k]
	delete(n.claimRev, k)
	sess := n.sess
	n.mu.Unlock()
	if !ok || sess == nil {
		return
	}
	ctx, cancel := context.WithTimeout(n.ctx, opTimeout)
	defer cancel()
	ck := n.key("claims", string(uuid), bug)
	ops := []clientv3.Op{clientv3.OpDelete(ck)}
	if held != "" {
		ops = append(ops, clientv3.OpPut(n.key("held", string(uuid), bug), held, clientv3.WithLease(sess.Lease())))
	}
	if _, err := n.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(ck), "=", rev)).Then(ops...).Commit(); err != nil {
		n.log.Warn("cannot release a fork's claim; it goes with the lease", "uuid", uuid, "error", err)
	}
}

// ForkState is what the cluster knows of one fork.
type ForkState struct {
	ServedBy string // the live instance serving it; "" for none
	Pending  bool   // a start was issued and has not connected yet
	Held     string // where its streams stood when its connection ended ("" for unknown)
}

// State reads what the cluster knows of the fork of uuid and bug.
func (n *Node) State(ctx context.Context, uuid mediafork.CallID, bug string) (ForkState, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := n.cli.Txn(ctx).Then(
		clientv3.OpGet(n.key("claims", string(uuid), bug)),
		clientv3.OpGet(n.key("starts", string(uuid), bug)),
		clientv3.OpGet(n.key("held", string(uuid), bug)),
	).Commit()
	if err != nil {
		return ForkState{}, fmt.Errorf("ha: reading the fork's state: %w", err)
	}
	var s ForkState
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		s.ServedBy, _, _ = strings.Cut(string(kvs[0].Value), " ")
	}
	s.Pending = len(resp.Responses[1].GetResponseRange().Kvs) > 0
	if kvs := resp.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
		s.Held = string(kvs[0].Value)
	}
	return s, nil
}

// WaitUnserved waits until no live instance serves the fork of uuid and
// bug (its claim released, or gone with its instance's lease), or ctx ends,
// and returns the fork's state then.
func (n *Node) WaitUnserved(ctx context.Context, uuid mediafork.CallID, bug string) (ForkState, error) {
	ck := n.key("claims", string(uuid), bug)
	for {
		resp, err := n.cli.Get(ctx, ck)
		if err != nil {
			return ForkState{}, err
		}
		if len(resp.Kvs) == 0 {
			return n.State(ctx, uuid, bug)
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		gone := false
		for w := range n.cli.Watch(wctx, ck, clientv3.WithRev(resp.Header.Revision+1)) {
			for _, e := range w.Events {
				if e.Type == clientv3.EventTypeDelete {
					gone = true
				}
			}
			if gone || w.Err() != nil {
				break
			}
		}
		cancel()
		if err := ctx.Err(); err != nil {
			return ForkState{}, err
		}
		if gone {
			return n.State(ctx, uuid, bug)
		}
	}
}
