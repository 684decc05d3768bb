package realswitch

import (
	byteorder "encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/mediafork/mediafork/ha/etcdtest"
	"github.com/mediafork/mediafork/tlvcodec"

	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/internal/testport"
	"github.com/mediafork/mediafork/internal/tone"
)

// The HA proof on the real switch: three `mediafork serve` processes meet in
// a real etcd (embedded in this test process) and share the switch; the
// switch reaches their ingests through HAProxy (any instance serves any
// fork). A fork streams the call's tones to a TLV receiver and an RTP
// receiver; the instance serving it is killed (-9), then the leader of the
// switch: each time the fork streams again within lease_ttl + 2 s, from a
// live instance, never twice at once.

// failoverKills, for scripts/failover: how many kills TestRealSwitchHAFailoverGap
// measures (0: the test is skipped).
var failoverKills = flag.Int("failover.kills", 0, "kills of the serving instance to measure (scripts/failover)")

const haTTL = 3 * time.Second

// haCluster is the cluster under test.
type haCluster struct {
	t       *testing.T
	etcd    *etcdtest.Server
	proxy   string // HAProxy's frontend: the ingest.url of every instance
	sw      *fsSwitch
	cfg     config // without the instance's own keys
	mu      sync.Mutex
	members map[string]*haMember
	backend []string // every instance's ingest, in HAProxy's backend
}

type haMember struct {
	name string
	d    *daemon
	api  string
}

func needHAProxy(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("haproxy")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and haproxy is not installed (.ci/run installs Debian's haproxy)")
		}
		t.Skip("haproxy not installed (apt-get install haproxy)")
	}
	return p
}

// newHACluster starts etcd and HAProxy in front of n ingest ports, and
// the n instances, each with profile and rule from cfg.
func newHACluster(t *testing.T, sw *fsSwitch, cfg config, n int) *haCluster {
	haproxy := needHAProxy(t)
	c := &haCluster{t: t, etcd: etcdtest.Start(t), sw: sw, cfg: cfg, members: map[string]*haMember{}}
	for i := 0; i < n; i++ {
		c.backend = append(c.backend, testport.Reserved(t))
	}
	c.proxy = testport.Reserved(t)
	c.startHAProxy(haproxy)
	for i := 0; i < n; i++ {
		c.start(fmt.Sprintf("mf%d", i+1), c.backend[i])
	}
	return c
}

// startHAProxy balances the module's WebSocket connections over the
// instances' ingests (TCP mode: the upgrade and frames pass through),
// checking each every 200 ms so that a dead one is out at once.
func (c *haCluster) startHAProxy(bin string) {
	t := c.t
	var b strings.Builder
	fmt.Fprintf(&b, "global\n  maxconn 1000\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 1h\n  timeout server 1h\n  retries 3\n  option redispatch\n")
	fmt.Fprintf(&b, "frontend ingest\n  bind %s\n  default_backend mediafork\n", c.proxy)
	fmt.Fprintf(&b, "backend mediafork\n  balance roundrobin\n")
	for i, addr := range c.backend {
		fmt.Fprintf(&b, "  server mf%d %s check inter 200ms fall 1 rise 2\n", i+1, addr)
	}
	path := filepath.Join(t.TempDir(), "haproxy.cfg")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o600))
	cmd := exec.Command(bin, "-db", "-f", path)
	out := &syncbuf.Buffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("haproxy:\n%s", out.String())
		}
	})
	require.Eventually(t, func() bool {
		conn, err := net.Dial("tcp", c.proxy)
		if err == nil {
			conn.Close()
		}
		return err == nil
	}, 10*time.Second, 20*time.Millisecond, "haproxy listening on %s", c.proxy)
}

// start runs one instance named name with its ingest on ingest, its API on
// a port of its own.
func (c *haCluster) start(name, ingest string) *haMember {
	t := c.t
	cfg := config{}
	for k, v := range c.cfg {
		cfg[k] = v
	}
	api := testport.Reserved(t)
	cfg["ingest"] = map[string]any{"listen": ingest, "url": "ws://" + c.proxy, "key": "rs-shared-ingest-key-" + c.sw.tag}
	cfg["api"] = map[string]any{"listen": api, "token": "rs-token"}
	cfg["ha"] = map[string]any{"etcd_endpoints": []string{c.etcd.Endpoint}, "lease_ttl": haTTL.String(),
		"prefix": "/rs-" + c.sw.tag + "/", "instance": name}
	b, err := yaml.Marshal(cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "mediafork.yaml")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	cmd := exec.Command(binary, "serve", "--config", path)
	cmd.Env = daemonEnv()
	d := spawn(t, cmd, ingest)
	ready := func(l logLine) bool {
		return l.Str("msg") == "resync done" || strings.HasPrefix(l.Str("msg"), "standby for this switch")
	}
	if _, ok := d.Log.waitOrExit(d.exited, ready); !ok {
		t.Fatalf("%s exited before it was up (%v):\n%s", name, d.err, d.Log.text())
	}
	m := &haMember{name: name, d: d, api: api}
	c.mu.Lock()
	c.members[name] = m
	c.mu.Unlock()
	return m
}

// live are the members still running.
func (c *haCluster) live() []*haMember {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*haMember
	for _, m := range c.members {
		select {
		case <-m.d.exited:
		default:
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// leader is the live member leading fs1, once exactly one says so.
func (c *haCluster) leader() *haMember {
	c.t.Helper()
	var who *haMember
	require.Eventually(c.t, func() bool {
		who = nil
		k := 0
		for _, m := range c.live() {
			if leads, err := m.leads("fs1"); err == nil && leads {
				who, k = m, k+1
			}
		}
		return k == 1
	}, 30*time.Second, 50*time.Millisecond, "one leader of fs1")
	return who
}

func (m *haMember) leads(sw string) (bool, error) {
	resp, err := http.Get("http://" + m.api + "/readyz")
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var body struct {
		HA struct{ Leading []string } `json:"ha"`
	}
	if err := jsonDecode(resp, &body); err != nil {
		return false, err
	}
	return slices.Contains(body.HA.Leading, sw), nil
}

// server is the live member serving the call's fork: the one that logged
// it streaming last.
func (c *haCluster) server(uuid string, after map[string]int) *haMember {
	c.t.Helper()
	var who *haMember
	require.Eventually(c.t, func() bool {
		for _, m := range c.live() {
			if _, ok := m.d.Log.waitFrom(after[m.name], closedChan, msg("fork streaming", "uuid", uuid)); ok {
				who = m
				return true
			}
		}
		return false
	}, haTTL+15*time.Second, 20*time.Millisecond, "an instance streams the fork of %s", uuid)
	return who
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// marks are where each live member's log stands now.
func (c *haCluster) marks() map[string]int {
	out := map[string]int{}
	for _, m := range c.live() {
		out[m.name] = m.d.Log.Mark()
	}
	return out
}

// arrival is one audio packet as a receiver got it.
type arrival struct {
	at  time.Time
	id  uint32 // TLV stream id, RTP SSRC
	dir tlvcodec.Direction
	seq uint32
	pcm []int16
}

// timedReceiver keeps every audio packet with its arrival time: TLV (any
// direction) or RTP (PCMU).
type timedReceiver struct {
	tx   *timedReceiver // RTP: the TX stream's, on the port + 2
	conn *net.UDPConn
	rtp  bool
	mu   sync.Mutex
	got  []arrival
	gaps []tlvcodec.Gap
	done chan struct{}
}

func listenTimed(t *testing.T, addr string, rtp bool) *timedReceiver {
	ua, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	conn, err := net.ListenUDP("udp", ua)
	require.NoError(t, err)
	conn.SetReadBuffer(4 << 20)
	r := &timedReceiver{conn: conn, rtp: rtp, done: make(chan struct{})}
	go r.run()
	t.Cleanup(func() { conn.Close(); <-r.done })
	return r
}

func (r *timedReceiver) run() {
	defer close(r.done)
	buf := make([]byte, 65536)
	for {
		n, _, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			return
		}
		now := time.Now()
		b := buf[:n]
		if r.rtp {
			if n < 12 || b[1]&0x7f != 0 { // PCMU audio only (not RTCP, not events)
				continue
			}
			a := arrival{at: now, id: byteorder.BigEndian.Uint32(b[8:12]), seq: uint32(byteorder.BigEndian.Uint16(b[2:4]))}
			for _, x := range b[12:] {
				a.pcm = append(a.pcm, ulaw(x))
			}
			r.mu.Lock()
			r.got = append(r.got, a)
			r.mu.Unlock()
			continue
		}
		var h tlvcodec.Header
		if h.Unmarshal(b) != nil {
			continue
		}
		r.mu.Lock()
		switch h.Type {
		case tlvcodec.TypeAudio:
			var p tlvcodec.Audio
			if p.Unmarshal(b) == nil {
				a := arrival{at: now, id: p.StreamID, dir: p.Direction, seq: p.Sequence}
				for i := 0; i+1 < len(p.Payload); i += 2 {
					a.pcm = append(a.pcm, int16(byteorder.LittleEndian.Uint16(p.Payload[i:])))
				}
				r.got = append(r.got, a)
			}
		case tlvcodec.TypeGap:
			var g tlvcodec.Gap
			if g.Unmarshal(b) == nil {
				r.gaps = append(r.gaps, g)
			}
		}
		r.mu.Unlock()
	}
}

func ulaw(u byte) int16 {
	u = ^u
	t := (int(u&0x0f) << 3) + 0x84
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(0x84 - t)
	}
	return int16(t - 0x84)
}

func (r *timedReceiver) arrivals() []arrival {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// count is how many audio packets arrived after from.
func (r *timedReceiver) countSince(from time.Time) int {
	k := 0
	for _, a := range r.arrivals() {
		if a.at.After(from) {
			k++
		}
	}
	return k
}

// silence is the longest time without audio around at, and the packets
// right before and after it.
func silence(as []arrival, at time.Time) (time.Duration, arrival, arrival) {
	var best time.Duration
	var before, after arrival
	for i := 1; i < len(as); i++ {
		if as[i].at.Before(at) || as[i-1].at.After(at.Add(30*time.Second)) {
			continue
		}
		if d := as[i].at.Sub(as[i-1].at); d > best {
			best, before, after = d, as[i-1], as[i]
		}
	}
	return best, before, after
}

// overlapping reports whether two streams (ids) were live at once: packets
// of one arrived between packets of the other (a call forked twice).
func overlapping(as []arrival) bool {
	first, last := map[uint32]time.Time{}, map[uint32]time.Time{}
	for _, a := range as {
		if _, ok := first[a.id]; !ok {
			first[a.id] = a.at
		}
		last[a.id] = a.at
	}
	var ids []uint32
	for id := range first {
		ids = append(ids, id)
	}
	for _, x := range ids {
		for _, y := range ids {
			// 100 ms of grace: packets of the dead stream still in flight.
			if x != y && first[y].After(first[x]) && first[y].Add(100*time.Millisecond).Before(last[x]) {
				return true
			}
		}
	}
	return false
}

// toneOf is the strongest of 1000 and 440 Hz in pcm (8 kHz), or 0.
func toneOf(pcm []int16) float64 {
	if len(pcm) < 800 {
		return 0
	}
	for _, hz := range []float64{toneA, toneB} {
		if tone.Share(pcm, 8000, hz) > 0.8 {
			return hz
		}
	}
	return 0
}

// tonesAfter checks that the audio right after at carries the call's tones:
// RX 1000 Hz and TX 440 Hz (TLV: both directions in one receiver; RTP: RX
// and TX arrivals together).
func tonesAfter(t *testing.T, what string, as []arrival, at time.Time) {
	t.Helper()
	pcm := map[string][]int16{}
	for _, a := range as {
		if a.at.After(at) {
			k := fmt.Sprintf("%d/%d", a.id, a.dir)
			if len(pcm[k]) < 8000 {
				pcm[k] = append(pcm[k], a.pcm...)
			}
		}
	}
	var tones []float64
	for _, x := range pcm {
		tones = append(tones, toneOf(x))
	}
	sort.Float64s(tones)
	assert.Equal(t, []float64{toneB, toneA}, tones, "%s: the tones after the gap", what)
}

func jsonDecode(resp *http.Response, v any) error {
	return json.NewDecoder(resp.Body).Decode(v)
}

// haConfig is the instances' shared config: the switch, a rule forking the
// B leg of calls to 9000 to a TLV and an RTP endpoint.
func haConfig(sw *fsSwitch, tlv, rtp string) config {
	cfg := baseConfig("audio_fork")
	cfg["fork"] = map[string]any{"retry": map[string]any{"attempts": 5, "backoff": "200ms"}}
	cfg["profiles"] = map[string]any{"rs-ha": map[string]any{"endpoints": []any{
		tlv, map[string]any{"address": rtp, "protocol": "rtp", "encoding": "pcmu"},
	}}}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-ha"})}
	return cfg
}

// kill9 kills m as a crash would, and returns when.
func (c *haCluster) kill9(m *haMember) time.Time {
	at := time.Now()
	require.NoError(c.t, m.d.cmd.Process.Signal(syscall.SIGKILL))
	<-m.d.exited
	return at
}

// failover kills victim (-9) while the call's fork streams, and returns the
// silence the receivers saw.
func (c *haCluster) failover(t *testing.T, uuid string, victim *haMember, tlv, rtp *timedReceiver) (time.Duration, *haMember) {
	t.Helper()
	require.Eventually(t, func() bool { return tlv.countSince(time.Now().Add(-200*time.Millisecond)) > 10 }, 10*time.Second, 20*time.Millisecond, "audio before the kill")
	marks := c.marks()
	killed := c.kill9(victim)
	t.Logf("killed %s", victim.name)
	delete(marks, victim.name)
	next := c.server(uuid, marks)
	require.Eventually(t, func() bool { return tlv.countSince(killed) > 50 && rtp.countSince(killed) > 50 }, haTTL+15*time.Second, 20*time.Millisecond, "audio after the kill")
	gap, before, after := silence(tlv.arrivals(), killed.Add(-time.Second))
	rgap, _, _ := silence(rtp.arrivals(), killed.Add(-time.Second))
	rtpBoth := append(rtp.arrivals(), rtp.tx.arrivals()...)
	t.Logf("%s killed: the fork streams again from %s after %s (TLV) / %s (RTP); TLV stream %d seq %d -> stream %d seq %d",
		victim.name, next.name, gap.Round(time.Millisecond), rgap.Round(time.Millisecond), before.id, before.seq, after.id, after.seq)
	assert.LessOrEqual(t, gap, haTTL+2*time.Second, "the gap after a kill -9 is at most lease_ttl + 2 s")
	assert.LessOrEqual(t, rgap, haTTL+2*time.Second)
	tonesAfter(t, "TLV", tlv.arrivals(), killed.Add(gap+300*time.Millisecond))
	tonesAfter(t, "RTP", rtpBoth, killed.Add(rgap+300*time.Millisecond))
	assert.Equal(t, before.id, after.id, "the same TLV stream continues (its identity is on the call)")
	assert.False(t, overlapping(tlv.arrivals()), "no call forked twice: never two TLV streams at once")
	assert.False(t, overlapping(rtp.arrivals()), "nor two RTP streams")
	assert.False(t, overlapping(rtp.tx.arrivals()))
	assert.Len(t, strings.Fields(strings.TrimSpace(c.sw.API("uuid_getvar "+uuid+" mediafork_stream_id"))), 1)
	return gap, next
}

func TestRealSwitchHAFailover(t *testing.T) {
	sw := useSwitch(t)
	tlv := listenTimed(t, "127.0.0.1:0", false)
	base := freeRTPBase(t)
	rtp := listenRTP(t, base)
	c := newHACluster(t, sw, haConfig(sw, tlv.conn.LocalAddr().String(), base), 3)
	leader := c.leader()
	t.Logf("%s leads fs1", leader.name)
	for _, m := range c.live() {
		assertConsoleRole(t, m, leader.name, m == leader)
	}

	call := sw.Originate("9000")
	marks := map[string]int{}
	serving := c.server(call.B, marks)
	t.Logf("%s serves the fork", serving.name)
	// The leader started it; whoever HAProxy picked serves it.
	leader.d.WaitLog("fork requested", msg("fork requested", "uuid", call.B))
	for _, m := range c.live() {
		if m != leader {
			assert.Empty(t, m.d.Lines(msg("fork requested", "uuid", call.B)), "%s is a standby: it started nothing", m.name)
		}
	}

	// 1. kill -9 of the instance serving the fork (not the leader when
	// HAProxy put it elsewhere): the leader starts it again once its claim
	// lapses.
	if serving == leader {
		t.Logf("the leader serves the fork: this kill is of the leader too")
	}
	_, serving = c.failover(t, call.B, serving, tlv, rtp)

	// 2. kill -9 of the switch's leader, two other instances running (one
	// started again): a new leader is elected when its lease lapses and
	// resyncs: the fork is started again if the leader served it, left
	// alone if another live instance does.
	c.start("mf4", c.backend[slices.IndexFunc(c.backend, func(a string) bool { return !c.inUse(a) })])
	require.Len(t, c.live(), 3)
	leader = c.leader()
	if leader == serving {
		c.failover(t, call.B, leader, tlv, rtp)
	} else {
		marks := c.marks()
		at := c.kill9(leader)
		newLeader := c.leader()
		t.Logf("leader %s killed; %s leads after %s; %s still serves the fork", leader.name, newLeader.name, time.Since(at).Round(time.Millisecond), serving.name)
		assert.Less(t, time.Since(at), haTTL+2*time.Second, "a new leader within lease_ttl + 2 s")
		newLeader.d.WaitLogSince(marks[newLeader.name], "the new leader's resync", msg("resync done"))
		gap, _, _ := silence(tlv.arrivals(), at)
		assert.Less(t, gap, 500*time.Millisecond, "a fork served by a live instance is not touched: no gap")
		assert.Empty(t, newLeader.d.Lines(msg("fork requested", "uuid", call.B)), "the new leader left the served fork alone")
	}
	sw.Kill(call)
}

// inUse reports whether a live member's ingest is addr.
func (c *haCluster) inUse(addr string) bool {
	for _, m := range c.live() {
		if m.d.Ingest == addr {
			return true
		}
	}
	return false
}

// listenRTP receives an RTP endpoint's RX stream at base and TX at base + 2.
func listenRTP(t *testing.T, base string) *timedReceiver {
	r := listenTimed(t, base, true)
	port := r.conn.LocalAddr().(*net.UDPAddr).Port
	r.tx = listenTimed(t, fmt.Sprintf("127.0.0.1:%d", port+2), true)
	return r
}

// freeRTPBase is an even loopback port with the next three free (RTP RX,
// RTCP, TX, RTCP).
func freeRTPBase(t *testing.T) string {
	for try := 0; try < 200; try++ {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		p := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		if p%2 == 0 && p < 65000 {
			return fmt.Sprintf("127.0.0.1:%d", p)
		}
	}
	t.Fatal("no even port")
	return ""
}

// TestRealSwitchHAFailoverGap measures the failover gap over
// -failover.kills kills of the instance serving a fork (scripts/failover).
func TestRealSwitchHAFailoverGap(t *testing.T) {
	if *failoverKills == 0 {
		t.Skip("a measurement: scripts/failover runs it (-failover.kills N)")
	}
	sw := useSwitch(t)
	tlv := listenTimed(t, "127.0.0.1:0", false)
	base := freeRTPBase(t)
	rtp := listenRTP(t, base)
	c := newHACluster(t, sw, haConfig(sw, tlv.conn.LocalAddr().String(), base), 3)
	call := sw.Originate("9000")
	serving := c.server(call.B, map[string]int{})
	var gaps []time.Duration
	for i := 0; i < *failoverKills; i++ {
		var gap time.Duration
		gap, serving = c.failover(t, call.B, serving, tlv, rtp)
		gaps = append(gaps, gap)
		// Back to three instances, on a free backend port.
		c.start(fmt.Sprintf("mf%d", 4+i), c.backend[slices.IndexFunc(c.backend, func(a string) bool { return !c.inUse(a) })])
		c.leader()
		if t.Failed() {
			break
		}
	}
	sw.Kill(call)
	slices.Sort(gaps)
	var sum time.Duration
	for _, g := range gaps {
		sum += g
	}
	med := gaps[len(gaps)/2]
	if len(gaps)%2 == 0 {
		med = (gaps[len(gaps)/2-1] + gaps[len(gaps)/2]) / 2
	}
	fmt.Printf("failover gap over %d kills -9 of the serving instance (lease_ttl %s): median %s, max %s, min %s, mean %s\n",
		len(gaps), haTTL, med.Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond), gaps[0].Round(time.Millisecond),
		(sum / time.Duration(len(gaps))).Round(time.Millisecond))
}

// assertConsoleRole checks that m's web console shows fs1's leader, and
// whether m is it (what the page's switch chip says).
func assertConsoleRole(t *testing.T, m *haMember, leader string, leads bool) {
	t.Helper()
	req, err := http.NewRequest("GET", "http://"+m.api+"/v1/console/snapshot", nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer rs-token")
	var body struct {
		Switches []struct {
			Name, Leader string
			Leads        bool
		} `json:"sw"`
	}
	require.Eventually(t, func() bool {
		resp, derr := http.DefaultClient.Do(req)
		if derr != nil {
			return false
		}
		defer resp.Body.Close()
		body.Switches = nil
		return resp.StatusCode == 200 && jsonDecode(resp, &body) == nil && len(body.Switches) == 1 && body.Switches[0].Leader == leader
	}, 10*time.Second, 50*time.Millisecond, "%s's console names the leader %s: %+v", m.name, leader, body.Switches)
	assert.Equal(t, leads, body.Switches[0].Leads, "%s's console says whether it leads fs1", m.name)
}
