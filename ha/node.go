// Package ha makes mediafork instances that share an etcd cluster
// (ha.etcd_endpoints) work as one: per switch one leader, elected through
// etcd leases (the client's concurrency package), drives it (rules, fs_cli,
// resync, retries); leaderships spread over the instances; any instance
// serves any fork's media, each fork's credential claimed once in etcd,
// bound to the serving instance's lease so that a dead instance's claims
// vanish with it (SPEC §10, README "Running two or more instances").
//
// Keys, under ha.prefix (default /mediafork/):
//
//	instances/<name>          this instance: its API URL and switches (lease)
//	election/<switch>/<lease> the switch's election (concurrency.Election)
//	starts/<uuid>/<bug>       the start of a fork its leader issued, not connected yet (leader's lease)
//	claims/<uuid>/<bug>       the fork's serving instance (that instance's lease)
//	held/<uuid>/<bug>         where a fork whose media connection ended stands, for the next start (lease of the instance that held it)
package ha

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/mediafork/mediafork/mediafork"
)

// Settings are a node's.
type Settings struct {
	Endpoints []string      // etcd client URLs
	TTL       time.Duration // the lease's TTL (whole seconds, at least 1 s)
	Prefix    string        // key prefix, starting and ending with /
	Instance  string        // this instance's name
	APIURL    string        // how other instances reach this one's API
	Switches  []string      // the switches this instance is connected to
	// DialTimeout bounds connecting to etcd; default 5 s.
	DialTimeout time.Duration
	// Cooldown is the least time between two leaderships given up to
	// spread them; default 1 s.
	Cooldown time.Duration
}

// Member is one live instance of the cluster.
type Member struct {
	Name     string    `json:"name"`
	API      string    `json:"api,omitempty"`
	Switches []string  `json:"switches"`
	Started  time.Time `json:"started"`
	// Leaving: the instance gave its leaderships up and campaigns no more
	// (SIGTERM); it serves its forks until it goes. Others neither count it
	// in the fair share nor give leaderships to it.
	Leaving bool `json:"leaving,omitempty"`
}

// Observer is told when this instance starts and stops leading a switch
// (the orchestrator: resync on Lead). Calls come one at a time, in order,
// on a goroutine of the node's.
type Observer interface {
	Lead(server string)
	Unlead(server string)
}

// ErrNotLeader: this instance does not lead the switch (any more).
var ErrNotLeader = errors.New("this instance does not lead the switch")

// Node is this instance in the cluster.
type Node struct {
	set   Settings
	cli   *clientv3.Client
	log   *slog.Logger
	me    Member
	obs   Observer
	wake  chan struct{}
	told  chan struct{} // events waiting for the observer
	ctx   context.Context
	stop  context.CancelFunc
	wg    sync.WaitGroup
	ready chan struct{} // closed once the first session is up

	mu    sync.Mutex
	sess  *concurrency.Session // nil between sessions
	races map[string]*race     // by switch: campaigning or leading
	// winding: campaigns withdrawn whose goroutine has not ended yet, by
	// switch. A campaign's key is the session's lease under the switch's
	// election, the same for every campaign of the session: one started
	// meanwhile would take the withdrawn one's key as its own, which the
	// withdrawn one's cleanup then deletes (it won on a key gone: two
	// leaders, TestSpreadOfManySwitches). None starts until it has ended.
	winding   map[string]*race
	members   map[string]Member
	leaders   map[string]string // switch -> instance leading it
	resigning bool              // handing over: no more campaigns
	lastGive  time.Time
	events    []leadEvent        // for the observer, in order
	claimRev  map[claimKey]int64 // claims this instance holds: their create revision

	// Transitions counts leaderships taken and given up, by switch.
	transitions sync.Map // string -> *Transitions
}

// Transitions counts one switch's leadership changes on this instance.
type Transitions struct {
	Gained, Lost atomic.Uint64
}

type race struct {
	el      *concurrency.Election
	cancel  context.CancelFunc
	leading bool
	sess    *concurrency.Session
}

type leadEvent struct {
	server string
	lead   bool
}

type claimKey struct {
	uuid mediafork.CallID
	bug  string
}

// Open connects to etcd and joins the cluster: the instance's key, its
// campaigns. It returns once the first session is up or ctx ends. The
// observer, when not nil, hears of leaderships taken and lost.
func Open(ctx context.Context, s Settings, obs Observer, log *slog.Logger) (*Node, error) {
	if len(s.Endpoints) == 0 {
		return nil, errors.New("ha: no etcd endpoints")
	}
	if s.TTL < time.Second {
		return nil, fmt.Errorf("ha: lease TTL %s under 1s", s.TTL)
	}
	if s.DialTimeout <= 0 {
		s.DialTimeout = 5 * time.Second
	}
	if s.Cooldown <= 0 {
		s.Cooldown = time.Second
	}
	if !strings.HasSuffix(s.Prefix, "/") {
		s.Prefix += "/"
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: s.Endpoints, DialTimeout: s.DialTimeout,
		DialKeepAliveTime: s.TTL / 2, DialKeepAliveTimeout: s.TTL / 2, Logger: zap.NewNop()})
	if err != nil {
		return nil, fmt.Errorf("ha: etcd: %w", err)
	}
	n := &Node{set: s, cli: cli, log: log.With("component", "ha", "instance", s.Instance), obs: obs,
		wake: make(chan struct{}, 1), told: make(chan struct{}, 1), ready: make(chan struct{}),
		races: map[string]*race{}, winding: map[string]*race{}, members: map[string]Member{}, leaders: map[string]string{},
		claimRev: map[claimKey]int64{}}
	n.me = Member{Name: s.Instance, API: s.APIURL, Switches: slices.Sorted(slices.Values(s.Switches)), Started: time.Now().UTC()}
	n.ctx, n.stop = context.WithCancel(context.Background())
	n.wg.Add(4)
	go n.sessions()
	go n.follow(s.Prefix+"instances/", n.setMembers)
	go n.follow(s.Prefix+"election/", n.setLeaders)
	go n.tell()
	select {
	case <-n.ready:
		return n, nil
	case <-ctx.Done():
		n.Close()
		return nil, fmt.Errorf("ha: etcd %s: no session: %w", strings.Join(s.Endpoints, ","), ctx.Err())
	}
}

// Name is this instance's name.
func (n *Node) Name() string { return n.set.Instance }

// TTL is the lease's.
func (n *Node) TTL() time.Duration { return n.set.TTL }

func (n *Node) key(parts ...string) string {
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return n.set.Prefix + strings.Join(parts, "/")
}

// sessions keeps a session (a lease kept alive) and what hangs on it: the
// instance's key and its campaigns. A session lost (etcd out of reach for
// the TTL) loses every leadership and claim with it; a new one is made.
func (n *Node) sessions() {
	defer n.wg.Done()
	backoff := 100 * time.Millisecond
	for n.ctx.Err() == nil {
		ttl := int((n.set.TTL + time.Second - 1) / time.Second)
		sess, err := concurrency.NewSession(n.cli, concurrency.WithTTL(ttl), concurrency.WithContext(n.ctx))
		if err == nil {
			n.mu.Lock()
			me, _ := json.Marshal(n.me)
			n.mu.Unlock()
			ctx, cancel := context.WithTimeout(n.ctx, n.set.DialTimeout)
			_, err = n.cli.Put(ctx, n.key("instances", n.me.Name), string(me), clientv3.WithLease(sess.Lease()))
			cancel()
			if err != nil {
				sess.Close()
			}
		}
		if err != nil {
			if n.ctx.Err() == nil {
				n.log.Warn("etcd: no session; trying again", "error", err, "in", backoff)
			}
			select {
			case <-n.ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 100 * time.Millisecond
		n.log.Info("joined the cluster", "lease", fmt.Sprintf("%x", sess.Lease()), "ttl", n.set.TTL)
		n.mu.Lock()
		n.sess = sess
		n.mu.Unlock()
		select {
		case <-n.ready:
		default:
			close(n.ready)
		}
		n.poke()
		n.reconcileUntil(sess)
		// The session ended: every leadership and claim on it is gone.
		n.mu.Lock()
		n.sess = nil
		for sw, r := range n.races {
			r.cancel()
			if r.leading {
				n.lost(sw)
			}
			delete(n.races, sw)
		}
		clear(n.claimRev)
		n.mu.Unlock()
		if n.ctx.Err() == nil {
			n.log.Warn("etcd session lost: leaderships and claims are gone; joining again")
		}
	}
}

// reconcileUntil spreads the leaderships while sess lives.
func (n *Node) reconcileUntil(sess *concurrency.Session) {
	t := time.NewTicker(n.set.Cooldown)
	defer t.Stop()
	for {
		n.reconcile(sess)
		select {
		case <-n.ctx.Done():
			return
		case <-sess.Done():
			return
		case <-n.wake:
		case <-t.C:
		}
	}
}

func (n *Node) poke() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// FairShare is how many switches an instance leads at most while
// leaderships are spread: ⌈S/N⌉ for S switches among N instances.
func FairShare(switches, instances int) int {
	if instances < 1 {
		instances = 1
	}
	return (switches + instances - 1) / instances
}

// reconcile campaigns for the switches this instance should lead and gives
// up a surplus one. An instance campaigns while it leads fewer than its
// fair share ⌈S/N⌉, and for any switch without a leader (so every switch
// has one); one that leads more than its share, or two more than another
// instance, gives one up (at most one per Cooldown) when that other
// instance has the switch and leads fewer than its share: only such
// instances are campaigning, so it goes to one of them.
func (n *Node) reconcile(sess *concurrency.Session) {
	for _, sw := range n.orphans() {
		n.dropOrphan(sess, sw)
	}
	if give := n.plan(sess); give != nil {
		n.giveUp(give)
	}
}

// orphans are the switches etcd says this instance leads while it has no
// campaign for them: a campaign withdrawn while its key was being written
// (the write applied, its answer lost to the cancel) leaves the key behind,
// owned by the session's lease. Its oldest key makes this instance the
// switch's leader for the session's life while nothing here acts on it.
func (n *Node) orphans() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for sw, who := range n.leaders {
		if who == n.me.Name && n.races[sw] == nil {
			out = append(out, sw)
		}
	}
	return out
}

// dropOrphan deletes this session's key in sw's election (the key
// concurrency.Election writes: the prefix and the lease in hex), so the
// next in line leads.
func (n *Node) dropOrphan(sess *concurrency.Session, sw string) {
	ctx, cancel := context.WithTimeout(n.ctx, n.set.DialTimeout)
	defer cancel()
	k := fmt.Sprintf("%s/%x", n.key("election", sw), sess.Lease())
	if _, err := n.cli.Delete(ctx, k); err != nil {
		n.log.Warn("cannot delete a leftover election key", "freeswitch", sw, "error", err)
		return
	}
	n.log.Info("deleted a leftover election key: no campaign here", "freeswitch", sw)
}

// plan starts and withdraws campaigns, and returns a leadership to give
// up, if any (already taken out of races).
func (n *Node) plan(sess *concurrency.Session) *race {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.resigning {
		return nil
	}
	all := map[string]bool{}
	instances := 1 // this one
	for _, m := range n.members {
		for _, sw := range m.Switches {
			all[sw] = true
		}
		if m.Name != n.me.Name && !m.Leaving {
			instances++
		}
	}
	for _, sw := range n.me.Switches {
		all[sw] = true
	}
	fair := FairShare(len(all), instances)
	led := n.ledLocked()
	for _, sw := range n.me.Switches {
		r := n.races[sw]
		if r != nil && r.leading {
			continue
		}
		want := led < fair || n.leaders[sw] == ""
		switch {
		case want && r == nil && n.winding[sw] == nil:
			n.campaign(sess, sw)
		case !want && r != nil:
			r.cancel() // Campaign resigns its queued key
			delete(n.races, sw)
			n.winding[sw] = r
		}
	}
	if time.Since(n.lastGive) < n.set.Cooldown {
		return nil
	}
	count := map[string]int{}
	for _, who := range n.leaders {
		count[who]++
	}
	var mine []string
	for sw, r := range n.races {
		if r.leading {
			mine = append(mine, sw)
		}
	}
	sort.Strings(mine)
	for i := len(mine) - 1; i >= 0; i-- {
		sw := mine[i]
		for _, m := range n.members {
			// Only instances under their share campaign: the switch goes to
			// one of them. Given when over the share, or when another leads
			// two fewer (3, 3, 1 becomes 3, 2, 2).
			if m.Name == n.me.Name || m.Leaving || count[m.Name] >= fair || !slices.Contains(m.Switches, sw) || (led <= fair && count[m.Name] > led-2) {
				continue
			}
			n.log.Info("giving up a leadership to spread them", "freeswitch", sw, "leading", led, "fair_share", fair, "to_one_of", m.Name)
			n.lastGive = time.Now()
			return n.dropLocked(sw)
		}
	}
	return nil
}

func (n *Node) ledLocked() int {
	k := 0
	for _, r := range n.races {
		if r.leading {
			k++
		}
	}
	return k
}

// campaign runs sw's campaign on its own goroutine until it wins, is
// withdrawn or the session ends.
func (n *Node) campaign(sess *concurrency.Session, sw string) {
	ctx, cancel := context.WithCancel(n.ctx)
	r := &race{el: concurrency.NewElection(sess, n.key("election", sw)), cancel: cancel, sess: sess}
	n.races[sw] = r
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		err := r.el.Campaign(ctx, n.me.Name)
		n.mu.Lock()
		current := n.races[sw] == r
		switch {
		case current && err == nil:
			r.leading = true
			n.counter(sw).Gained.Add(1)
			n.log.Info("leading the switch", "freeswitch", sw)
			n.queueLocked(leadEvent{sw, true})
		case current:
			delete(n.races, sw)
			if ctx.Err() == nil {
				n.log.Warn("campaign failed", "freeswitch", sw, "error", err)
			}
		}
		n.mu.Unlock()
		if !current && err == nil { // won as it was withdrawn: give it back
			n.giveUp(r)
		}
		n.mu.Lock()
		if n.winding[sw] == r {
			delete(n.winding, sw) // its key is gone, or an orphan (dropOrphan)
		}
		n.mu.Unlock()
		n.poke()
	}()
}

// dropLocked takes sw's race out (n.mu held): from now on this instance
// does not lead it; giveUp then deletes its key. nil when it led nothing.
func (n *Node) dropLocked(sw string) *race {
	r := n.races[sw]
	if r == nil {
		return nil
	}
	delete(n.races, sw)
	r.cancel()
	if !r.leading {
		n.winding[sw] = r // its campaign is still under way
		return nil
	}
	n.lost(sw)
	return r
}

// giveUp deletes a dropped leadership's key, so the next in line leads.
func (n *Node) giveUp(r *race) {
	ctx, cancel := context.WithTimeout(context.Background(), n.set.DialTimeout)
	defer cancel()
	if err := r.el.Resign(ctx); err != nil {
		n.log.Warn("resign failed; the lease's end will free the switch", "error", err)
	}
}

// lost records that sw is no longer led here (n.mu held).
func (n *Node) lost(sw string) {
	n.counter(sw).Lost.Add(1)
	n.log.Info("no longer leading the switch", "freeswitch", sw)
	n.queueLocked(leadEvent{sw, false})
}

// queueLocked queues e for the observer (n.mu held).
func (n *Node) queueLocked(e leadEvent) {
	n.events = append(n.events, e)
	select {
	case n.told <- struct{}{}:
	default:
	}
}

func (n *Node) counter(sw string) *Transitions {
	v, _ := n.transitions.LoadOrStore(sw, &Transitions{})
	return v.(*Transitions)
}

// tell hands leadership changes to the observer, in order.
func (n *Node) tell() {
	defer n.wg.Done()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-n.told:
		}
		n.mu.Lock()
		events := n.events
		n.events = nil
		n.mu.Unlock()
		for _, e := range events {
			switch {
			case n.obs == nil:
			case e.lead:
				n.obs.Lead(e.server)
			default:
				n.obs.Unlead(e.server)
			}
		}
	}
}

// Leads reports whether this instance leads the switch called server now.
func (n *Node) Leads(server string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.races[server]
	if r == nil || !r.leading {
		return false
	}
	select {
	case <-r.sess.Done():
		return false
	default:
		return true
	}
}

// Leading lists the switches this instance leads, sorted.
func (n *Node) Leading() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []string
	for sw, r := range n.races {
		if r.leading {
			out = append(out, sw)
		}
	}
	sort.Strings(out)
	return out
}

// Switches are the switches this instance is connected to.
func (n *Node) Switches() []string { return n.me.Switches }

// TransitionCounts are the leadership changes on this instance, by switch.
func (n *Node) TransitionCounts() map[string][2]uint64 {
	out := map[string][2]uint64{}
	n.transitions.Range(func(k, v any) bool {
		t := v.(*Transitions)
		out[k.(string)] = [2]uint64{t.Gained.Load(), t.Lost.Load()}
		return true
	})
	return out
}

// Leader is the live member leading server, as last seen.
func (n *Node) Leader(server string) (Member, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m, ok := n.members[n.leaders[server]]
	return m, ok
}

// View is the cluster as this instance sees it.
type View struct {
	Instance string            `json:"instance"`
	Members  []Member          `json:"instances"`
	Leaders  map[string]string `json:"leaders"` // switch -> instance
}

// View is the cluster now: live instances and who leads what.
func (n *Node) View() View {
	n.mu.Lock()
	defer n.mu.Unlock()
	v := View{Instance: n.me.Name, Leaders: map[string]string{}}
	for _, m := range n.members {
		v.Members = append(v.Members, m)
	}
	sort.Slice(v.Members, func(i, j int) bool { return v.Members[i].Name < v.Members[j].Name })
	for sw, who := range n.leaders {
		v.Leaders[sw] = who
	}
	return v
}

// ResignAll gives every leadership up at once and campaigns no more (the
// instance is leaving: SIGTERM).
func (n *Node) ResignAll() {
	n.mu.Lock()
	n.resigning = true
	n.me.Leaving = true
	sess := n.sess
	var give []*race
	for sw := range n.races {
		if r := n.dropLocked(sw); r != nil {
			give = append(give, r)
		}
	}
	n.mu.Unlock()
	if sess != nil {
		// Said before the leaderships go, so that no other instance hands
		// one back to this one while it leaves.
		me, _ := json.Marshal(n.me)
		ctx, cancel := context.WithTimeout(n.ctx, n.set.DialTimeout)
		if _, err := n.cli.Put(ctx, n.key("instances", n.me.Name), string(me), clientv3.WithLease(sess.Lease())); err != nil {
			n.log.Warn("etcd: cannot say this instance is leaving", "error", err)
		}
		cancel()
	}
	for _, r := range give {
		n.giveUp(r)
	}
}

// Others is how many other live instances there are.
func (n *Node) Others() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for name := range n.members {
		if name != n.me.Name {
			k++
		}
	}
	return k
}

// Close leaves the cluster: the session is revoked (leaderships and claims
// go at once) and every goroutine ends.
func (n *Node) Close() {
	n.mu.Lock()
	n.resigning = true
	sess := n.sess
	n.mu.Unlock()
	if sess != nil {
		sess.Close() // revokes the lease
	}
	n.stop()
	n.wg.Wait()
	n.cli.Close()
}

// follow keeps fn told of every key under prefix: a full read, then a
// watch; read again after a watch breaks.
func (n *Node) follow(prefix string, fn func([]kv)) {
	defer n.wg.Done()
	for n.ctx.Err() == nil {
		ctx, cancel := context.WithTimeout(n.ctx, n.set.DialTimeout)
		resp, err := n.cli.Get(ctx, prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			select {
			case <-n.ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		state := map[string]kv{}
		for _, x := range resp.Kvs {
			state[string(x.Key)] = kv{string(x.Key), string(x.Value), x.CreateRevision}
		}
		fn(values(state))
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(n.ctx))
		for w := range n.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(resp.Header.Revision+1)) {
			if w.Err() != nil {
				break
			}
			for _, e := range w.Events {
				if e.Type == clientv3.EventTypeDelete {
					delete(state, string(e.Kv.Key))
				} else {
					state[string(e.Kv.Key)] = kv{string(e.Kv.Key), string(e.Kv.Value), e.Kv.CreateRevision}
				}
			}
			fn(values(state))
		}
		wcancel()
	}
}

type kv struct {
	key, value string
	created    int64
}

func values(m map[string]kv) []kv {
	out := make([]kv, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func (n *Node) setMembers(kvs []kv) {
	ms := map[string]Member{}
	for _, x := range kvs {
		var m Member
		if json.Unmarshal([]byte(x.value), &m) == nil && m.Name != "" {
			ms[m.Name] = m
		}
	}
	n.mu.Lock()
	n.members = ms
	n.mu.Unlock()
	n.poke()
}

// setLeaders: the leader of a switch is the owner of the oldest key of its
// election (concurrency.Election's rule).
func (n *Node) setLeaders(kvs []kv) {
	first := map[string]kv{}
	base := n.set.Prefix + "election/"
	for _, x := range kvs {
		rest := strings.TrimPrefix(x.key, base)
		i := strings.LastIndex(rest, "/")
		if i <= 0 {
			continue
		}
		sw, err := url.PathUnescape(rest[:i])
		if err != nil {
			continue
		}
		if f, ok := first[sw]; !ok || x.created < f.created {
			first[sw] = x
		}
	}
	leaders := map[string]string{}
	for sw, x := range first {
		leaders[sw] = x.value
	}
	n.mu.Lock()
	n.leaders = leaders
	n.mu.Unlock()
	n.poke()
}
