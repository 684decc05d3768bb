package ha

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/mediafork/mediafork/ha/etcdtest"
)

// Why a node starts no campaign for a switch while a withdrawn one is still
// ending (Node.winding): every campaign of one session writes the same key
// (the election's prefix and the lease). A second campaign started while the
// first is queued takes that key as its own; the first, withdrawn, deletes
// it on its way out (its create revision is the same); the second still wins
// when the leader before it resigns, on a key that is gone, while the next
// instance in line leads by its own key: two leaders.
// TestSpreadOfManySwitches saw it (10 switches, 4 instances).
func TestCampaignsOfOneSessionShareTheirKey(t *testing.T) {
	etcd := etcdtest.Start(t)
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{etcd.Endpoint}, DialTimeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	session := func() *concurrency.Session {
		s, serr := concurrency.NewSession(cli, concurrency.WithTTL(5))
		require.NoError(t, serr)
		t.Cleanup(func() { s.Close() })
		return s
	}
	const prefix = "/test/election/fs1"
	leader, me, next := session(), session(), session()
	first := concurrency.NewElection(leader, prefix)
	require.NoError(t, first.Campaign(ctx, "leader"))

	myKey := fmt.Sprintf("%s/%x", prefix, me.Lease())
	valueIs := func(want string) func() bool {
		return func() bool {
			resp, gerr := cli.Get(ctx, myKey)
			return gerr == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == want
		}
	}
	withdrawnCtx, withdraw := context.WithCancel(ctx)
	withdrawn := make(chan error, 1)
	go func() { withdrawn <- concurrency.NewElection(me, prefix).Campaign(withdrawnCtx, "me") }()
	require.Eventually(t, valueIs("me"), 5*time.Second, 5*time.Millisecond, "queued behind the leader")
	// The second campaign finds the key and takes it as its own (it writes
	// its value there: the event that it has).
	again := make(chan error, 1)
	go func() { again <- concurrency.NewElection(me, prefix).Campaign(ctx, "me, again") }()
	require.Eventually(t, valueIs("me, again"), 5*time.Second, 5*time.Millisecond)
	third := make(chan error, 1)
	go func() { third <- concurrency.NewElection(next, prefix).Campaign(ctx, "next") }()
	require.Eventually(t, func() bool {
		resp, gerr := cli.Get(ctx, prefix+"/", clientv3.WithPrefix())
		return gerr == nil && len(resp.Kvs) == 3
	}, 5*time.Second, 5*time.Millisecond, "the next instance queued")
	withdraw()
	assert.ErrorIs(t, <-withdrawn, context.Canceled)
	resp, err := cli.Get(ctx, myKey)
	require.NoError(t, err)
	assert.Empty(t, resp.Kvs, "the withdrawn campaign deleted the session's key")

	require.NoError(t, first.Resign(ctx))
	require.NoError(t, <-third, "the next instance leads by its key")
	require.NoError(t, <-again, "and the second campaign of the session won too, on the key that is gone")
}
