package realswitch

import (
	le "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/g711"
	"github.com/mediafork/mediafork/internal/rtptest"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/third_party/eslgo"
	"github.com/mediafork/mediafork/tlvcodec"

	"github.com/mediafork/mediafork/internal/testport"
	"github.com/mediafork/mediafork/internal/tone"
)

// Issue 23's proof: a call's streams go on, with the same identity, across
// a cut media connection, a mediafork killed and started again, a transfer
// and a pause; each gap is announced (TLV gap packet, RTP marker), its
// missing frames are the frames the receiver measures missing, and the tones
// go on right after it.

// capture keeps every datagram a UDP socket receives, with when and from
// where.
type capture struct {
	t    *testing.T
	conn *net.UDPConn
	done chan struct{}

	mu      sync.Mutex
	pkts    []captured
	changed chan struct{}
}

type captured struct {
	at   time.Time
	from string
	b    []byte
}

// maxCaptured bounds what a capture keeps (a minute of two directions).
const maxCaptured = 20000

func listenCapture(t *testing.T) *capture {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	conn.SetReadBuffer(4 << 20)
	return captureOn(t, conn)
}

func captureOn(t *testing.T, conn *net.UDPConn) *capture {
	c := &capture{t: t, conn: conn, done: make(chan struct{}), changed: make(chan struct{})}
	go c.run()
	t.Cleanup(func() { conn.Close(); <-c.done })
	return c
}

func (c *capture) Addr() string { return c.conn.LocalAddr().String() }

func (c *capture) run() {
	defer close(c.done)
	buf := make([]byte, 65536)
	for {
		n, from, err := c.conn.ReadFromUDP(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue
		}
		c.mu.Lock()
		if len(c.pkts) < maxCaptured {
			c.pkts = append(c.pkts, captured{time.Now(), from.String(), append([]byte(nil), buf[:n]...)})
		}
		close(c.changed)
		c.changed = make(chan struct{})
		c.mu.Unlock()
	}
}

func (c *capture) all() []captured {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]captured(nil), c.pkts...)
}

// wait waits until cond holds for what arrived.
func (c *capture) wait(what string, cond func([]captured) bool) []captured {
	c.t.Helper()
	timeout := time.After(waitFor)
	for {
		c.mu.Lock()
		changed := c.changed
		c.mu.Unlock()
		if ps := c.all(); cond(ps) {
			return ps
		}
		select {
		case <-changed:
		case <-timeout:
			c.t.Fatalf("%s: %s did not happen in %s (%d datagrams)", c.Addr(), what, waitFor, len(c.all()))
		}
	}
}

// tlvPkt is one TLV datagram decoded.
type tlvPkt struct {
	at   time.Time
	from string
	typ  tlvcodec.Type
	id   uint32
	dir  tlvcodec.Direction
	seq  uint32 // audio
	pcm  []int16
	gap  tlvcodec.Gap
	end  *tlvcodec.End
}

func decodeTLVs(t *testing.T, ps []captured) []tlvPkt {
	t.Helper()
	out := make([]tlvPkt, 0, len(ps))
	for _, p := range ps {
		var h tlvcodec.Header
		require.NoError(t, h.Unmarshal(p.b), "a valid packet")
		x := tlvPkt{at: p.at, from: p.from, typ: h.Type, id: h.StreamID, dir: h.Direction}
		switch h.Type {
		case tlvcodec.TypeAudio:
			var a tlvcodec.Audio
			require.NoError(t, a.Unmarshal(p.b))
			x.seq = a.Sequence
			for i := 0; i+1 < len(a.Payload); i += 2 { // l16, little-endian (the forks here are)
				x.pcm = append(x.pcm, int16(le.LittleEndian.Uint16(a.Payload[i:])))
			}
		case tlvcodec.TypeGap:
			require.NoError(t, x.gap.Unmarshal(p.b))
		case tlvcodec.TypeEnd:
			var e tlvcodec.End
			require.NoError(t, e.Unmarshal(p.b))
			x.end = &e
		}
		out = append(out, x)
	}
	return out
}

// audioCount is how many audio packets of every direction arrived.
func audioCount(ps []captured) map[byte]int {
	n := map[byte]int{}
	for _, p := range ps {
		if len(p.b) > 8 && p.b[0] == byte(tlvcodec.TypeAudio) {
			n[p.b[7]]++
		}
	}
	return n
}

// gapSeen is one gap a direction announced, as the receiver saw it.
type gapSeen struct {
	dir            tlvcodec.Direction
	gap            tlvcodec.Gap
	prev           uint32    // the last audio before it
	before, after  time.Time // arrival of that audio and of the next
	pcmBefore      []int16   // the audio of the last packet before it
	pcmAfter       []int16   // 100 ms of audio after it
	fromB, fromA   string
	skipped        int // the sequence numbers the receiver did not get: next - prev - 1
	arrivalMissing int // the frames the arrival times say are missing
}

// checkTLVStream checks one direction of one output's TLV stream: one stream
// id from the first packet to the last; signaling and format once, first;
// audio sequences rising by one, but where a gap packet right before an
// audio packet announces it (its next sequence that packet's, its missing
// frames the numbers skipped, within tol: after a kill -9 the sender does
// not know whether its last frame left); no end packet unless ended. It
// returns the gaps.
func checkTLVStream(t *testing.T, ps []tlvPkt, dir tlvcodec.Direction, tol slack) []gapSeen {
	t.Helper()
	var (
		id     uint32
		last   *tlvPkt
		gaps   []gapSeen
		onGap  *tlvcodec.Gap
		sigs   int
		audios int
	)
	for i := range ps {
		p := &ps[i]
		if p.dir != dir {
			continue
		}
		if id == 0 {
			id = p.id
		}
		require.Equal(t, id, p.id, "%s: one stream id for the call's life", dir)
		switch p.typ {
		case tlvcodec.TypeSignaling:
			sigs++
			assert.Zero(t, audios, "%s: signaling before any audio, never again", dir)
		case tlvcodec.TypeGap:
			g := p.gap
			onGap = &g
		case tlvcodec.TypeAudio:
			audios++
			if last != nil && p.seq != last.seq+1 {
				require.NotNil(t, onGap, "%s: sequence %d after %d with no gap packet", dir, p.seq, last.seq)
				assert.Equal(t, p.seq, onGap.NextSequence, "%s: the gap packet's next sequence", dir)
				skipped := int(p.seq - last.seq - 1)
				assert.GreaterOrEqual(t, int(onGap.MissingFrames), skipped-tol.under, "%s: the gap packet's missing frames are the numbers skipped", dir)
				assert.LessOrEqual(t, int(onGap.MissingFrames), skipped+tol.over, "%s: the gap packet's missing frames are the numbers skipped", dir)
				gaps = append(gaps, gapSeen{dir: dir, gap: *onGap, prev: last.seq, before: last.at, after: p.at, pcmBefore: last.pcm,
					fromB: last.from, fromA: p.from, skipped: skipped,
					arrivalMissing: int(math.Round(float64(p.at.Sub(last.at))/float64(20*time.Millisecond))) - 1})
			} else if last != nil {
				assert.Nil(t, onGap, "%s: a gap packet before sequence %d, which follows %d", dir, p.seq, last.seq)
			}
			if n := len(gaps); n > 0 && gaps[n-1].gap.NextSequence <= p.seq && len(gaps[n-1].pcmAfter) < 800 {
				gaps[n-1].pcmAfter = append(gaps[n-1].pcmAfter, p.pcm...)
			}
			onGap, last = nil, p
		case tlvcodec.TypeEnd:
			assert.Equal(t, last.seq, p.end.LastSequence, "%s: the end after the last audio", dir)
		}
	}
	assert.Equal(t, 1, sigs, "%s: one signaling packet", dir)
	return gaps
}

// slack is how far a gap packet's missing frames may be from the sequence
// numbers skipped: over (more said missing: a frame the sender may have sent
// before it died) or under (fewer: a frame taken for sent that was not).
type slack struct{ under, over int }

// phaseAt is the phase of a tone of hz in x (A cos(w n + phase)) at sample
// ref of x's frame (0: x's first sample).
func phaseAt(x []int16, hz float64, rate int, ref float64) float64 {
	w := 2 * math.Pi * hz / float64(rate)
	var c, s float64
	for n, v := range x {
		c += float64(v) * math.Cos(w*float64(n))
		s += float64(v) * math.Sin(w*float64(n))
	}
	return math.Atan2(-s, c) + w*ref
}

func wrap(a float64) float64 { return math.Remainder(a, 2*math.Pi) }

// measuredMissing is the frames of 160 samples missing between the packet
// before a gap and the one after, measured on the tone itself: the switch's
// tone generators run on without a break, so the audio after the gap is in
// phase with the audio before once the samples missing are counted. Near
// the arrival times' count (±2 frames: 440 Hz repeats only every 5 frames),
// the count whose phase error is least; false when none is within 0.5 rad.
func measuredMissing(g gapSeen, hz float64) (int, float64, bool) {
	if len(g.pcmBefore) < 160 || len(g.pcmAfter) < 160 {
		return 0, 0, false
	}
	if cycles := hz * 160 / 8000; cycles == math.Trunc(cycles) {
		// A whole number of cycles a frame (1000 Hz: 20): every count is in
		// phase; the arrivals are all there is.
		return g.arrivalMissing, 0, true
	}
	before := phaseAt(g.pcmBefore[len(g.pcmBefore)-160:], hz, 8000, 0)
	after := phaseAt(g.pcmAfter[:160], hz, 8000, 0)
	w := 2 * math.Pi * hz / 8000
	best, bestErr := 0, math.Inf(1)
	for k := max(0, g.arrivalMissing-2); k <= g.arrivalMissing+2; k++ {
		e := math.Abs(wrap(after - (before + w*float64(160+160*k))))
		if e < bestErr {
			best, bestErr = k, e
		}
	}
	return best, bestErr, bestErr < 0.5
}

// assertGaps checks the gap both directions of a stream saw (the same
// gap): its reason, the frames skipped as the 440 Hz tone of TX measures
// them (and, roughly, the arrival times), at most maxGap long, and the tones
// right after it. placed is how many frames the audio after the gap may be
// off its place on the media clock (0: exact).
func assertGaps(t *testing.T, rx, tx gapSeen, reason tlvcodec.GapReason, maxGap time.Duration, placed int) {
	t.Helper()
	assert.Equal(t, rx.gap.MissingFrames, tx.gap.MissingFrames, "one gap, in both directions")
	assert.Equal(t, rx.gap.NextSequence, tx.gap.NextSequence, "one gap, in both directions")
	k, phaseErr, ok := measuredMissing(tx, toneB)
	for _, g := range []gapSeen{rx, tx} {
		t.Logf("%s gap: reason %s, %d frames missing said (next %d), %d skipped after %d; arrivals say %d (%s apart); the 440 Hz tone of TX says %d (phase error %.2f rad); from %s, then %s",
			g.dir, g.gap.Reason, g.gap.MissingFrames, g.gap.NextSequence, g.skipped, g.prev, g.arrivalMissing, g.after.Sub(g.before).Round(time.Millisecond), k, phaseErr, g.fromB, g.fromA)
		assert.Equal(t, reason, g.gap.Reason, "%s: the gap's reason", g.dir)
		// The arrivals measure it roughly: the first audio after a resume is
		// held until the frames come at their pace (20 ms), and comes late
		// then, never early.
		assert.GreaterOrEqual(t, g.arrivalMissing, g.skipped-1, "%s: the frames skipped against the arrival times", g.dir)
		assert.LessOrEqual(t, g.arrivalMissing, g.skipped+2, "%s: the frames skipped against the arrival times", g.dir)
		assert.LessOrEqual(t, time.Duration(g.gap.MissingFrames)*20*time.Millisecond, maxGap, "%s: the gap", g.dir)
		require.GreaterOrEqual(t, len(g.pcmAfter), 800, "%s: 100 ms of audio after the gap", g.dir)
		hz := map[tlvcodec.Direction]float64{tlvcodec.RX: toneA, tlvcodec.TX: toneB}[g.dir]
		assert.Greater(t, tone.Share(g.pcmAfter[:800], 8000, hz), 0.8, "%s: %.0f Hz right after the gap", g.dir, hz)
	}
	if assert.True(t, ok, "the tone after the gap is in phase for no count near the arrivals'") {
		assert.InDelta(t, k, tx.skipped, float64(placed), "the frames skipped are the frames the tone says are missing: the audio after the gap is in its place")
	}
}

// checkRTPStream checks one RTP stream: one SSRC; sequence numbers rising by
// one but at the gaps, where they jump to the TLV stream's next packet (the
// same media clock: the TLV stream's gaps, in the same order) and the
// timestamp with them, the marker set; and the tone after each gap.
func checkRTPStream(t *testing.T, c *capture, name string, tlvGaps []gapSeen) {
	t.Helper()
	var pkts []rtp.Packet
	for _, p := range c.all() {
		var r rtp.Packet
		require.NoError(t, r.Unmarshal(p.b))
		if r.PayloadType == 0 {
			pkts = append(pkts, r)
		}
	}
	require.NotEmpty(t, pkts, name)
	gi := 0
	for i := 1; i < len(pkts); i++ {
		p, q := pkts[i-1], pkts[i]
		require.Equal(t, pkts[0].SSRC, q.SSRC, "%s: one SSRC for the call's life", name)
		if q.SequenceNumber == p.SequenceNumber+1 {
			assert.Equal(t, p.Timestamp+160, q.Timestamp, "%s %d", name, q.SequenceNumber)
			assert.False(t, q.Marker, "%s %d: the marker only after a gap", name, q.SequenceNumber)
			continue
		}
		require.Less(t, gi, len(tlvGaps), "%s: a jump from %d to %d the TLV streams did not have", name, p.SequenceNumber, q.SequenceNumber)
		// The first packet after the gap is where the TLV stream's is on the
		// media clock (the packets before it may end earlier than the TLV
		// stream's: a process killed between its sends).
		next := tlvGaps[gi].gap.NextSequence
		assert.Equal(t, pkts[0].SequenceNumber+uint16(next-1), q.SequenceNumber, "%s: the sequence jumps to the TLV stream's next", name)
		assert.Equal(t, pkts[0].Timestamp+160*(next-1), q.Timestamp, "%s: the timestamp jumps with it", name)
		assert.True(t, q.Marker, "%s: the marker after the gap", name)
		if i+5 < len(pkts) {
			var x []int16
			for _, r := range pkts[i : i+5] {
				for _, b := range r.Payload {
					x = append(x, g711.ULawToLinear(b))
				}
			}
			hz := map[string]float64{"rx": toneA, "tx": toneB}[name]
			assert.Greater(t, tone.Share(x, 8000, hz), 0.8, "%s: %.0f Hz right after the gap", name, hz)
		}
		gi++
	}
	assert.Equal(t, len(tlvGaps), gi, "%s: every gap", name)
}

// continuityProfile is one TLV endpoint and, with rtp, one RTP endpoint in
// µ-law: a fork of the B leg of extension 9000, stereo l16 8 kHz.
func continuityProfile(t *testing.T, rtpToo bool) (map[string]any, *capture, *capture, *capture) {
	tlv := listenCapture(t)
	eps := []any{tlv.Addr()}
	var rx, tx *capture
	if rtpToo {
		base, socks := rtptest.Listen(t, 2)
		rx, tx = captureOn(t, socks[0]), captureOn(t, socks[2])
		eps = append(eps, map[string]any{"address": base.String(), "protocol": "rtp", "encoding": "pcmu"})
	}
	return map[string]any{"endpoints": eps}, tlv, rx, tx
}

// streamsBefore waits for a second of both directions.
func streamsBefore(t *testing.T, tlv *capture) {
	t.Helper()
	tlv.wait("a second of audio", func(ps []captured) bool {
		n := audioCount(ps)
		return n[1] >= 50 && n[2] >= 50
	})
}

// streamsAfter waits until both directions have a gap and 50 more packets
// after it, and checks the streams; it returns each direction's gaps.
func streamsAfter(t *testing.T, tlv *capture, gaps int, tol slack) map[tlvcodec.Direction][]gapSeen {
	t.Helper()
	tlv.wait(fmt.Sprintf("%d gap(s) and audio after", gaps), func(ps []captured) bool {
		seen := map[byte]int{}
		after := map[byte]int{}
		for _, p := range ps {
			if len(p.b) < 8 {
				continue
			}
			switch p.b[0] {
			case byte(tlvcodec.TypeGap):
				seen[p.b[7]]++
				after[p.b[7]] = 0
			case byte(tlvcodec.TypeAudio):
				after[p.b[7]]++
			}
		}
		return seen[1] >= gaps && seen[2] >= gaps && after[1] >= 50 && after[2] >= 50
	})
	ps := decodeTLVs(t, tlv.all())
	out := map[tlvcodec.Direction][]gapSeen{}
	for _, dir := range []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX} {
		out[dir] = checkTLVStream(t, ps, dir, tol)
		require.Len(t, out[dir], gaps, "%s: gaps", dir)
	}
	return out
}

// oneBug checks that the call's channel has one mediafork bug: never two
// forks at once.
func oneBug(t *testing.T, sw *fsSwitch, uuid, module string) {
	t.Helper()
	if module != "audio_fork" {
		return // mod_audio_stream's bug is not named: a second start would be refused anyway
	}
	out := sw.API("uuid_buglist " + uuid)
	assert.Equal(t, 1, strings.Count(out, "<function>mediafork</function>"), "one bug: %s", out)
}

// TestRealSwitchContinuityIngestCut cuts the fork's media connection (a
// reset at a proxy between the switch and the ingest): mediafork starts the
// fork again, which continues its streams. On mod_audio_stream the fork has
// a TLV and an RTP endpoint; on mod_audio_fork (whose URL has no room for
// both) a TLV one.
func TestRealSwitchContinuityIngestCut(t *testing.T) {
	for _, module := range []string{"audio_stream", "audio_fork"} {
		t.Run(module, func(t *testing.T) {
			sw := useSwitch(t)
			prof, tlv, rx, tx := continuityProfile(t, module == "audio_stream")
			cfg := baseConfig(module)
			cfg["profiles"] = map[string]any{"rs-cont": prof}
			cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-cont"})}
			var proxy *tcpProxy
			d := startDaemonAt(t, cfg, testport.Reserved(t), func(ingest string) string { proxy = startProxy(t, ingest); return proxy.Addr() })
			c := sw.Originate("9000")
			streamsBefore(t, tlv)

			mark := d.Log.Mark()
			proxy.Drop()
			d.WaitLogSince(mark, "the fork suspended", msg("fork suspended", "uuid", c.B, "reason", "media-lost"))
			d.WaitLogSince(mark, "the fork resumed", msg("fork resumed", "uuid", c.B))
			gaps := streamsAfter(t, tlv, 1, slack{})
			assertGaps(t, gaps[tlvcodec.RX][0], gaps[tlvcodec.TX][0], tlvcodec.GapMediaLost, 2*time.Second, 0)
			if rx != nil {
				checkRTPStream(t, rx, "rx", gaps[tlvcodec.RX])
				checkRTPStream(t, tx, "tx", gaps[tlvcodec.TX])
			}
			oneBug(t, sw, c.B, module)
			sw.Kill(c)
			ends := decodeTLVs(t, tlv.wait("the end packets", func(ps []captured) bool {
				n := 0
				for _, p := range ps {
					if p.b[0] == byte(tlvcodec.TypeEnd) {
						n++
					}
				}
				return n == 2
			}))
			for _, p := range ends {
				if p.end != nil {
					assert.Equal(t, tlvcodec.ReasonHangup, p.end.Reason)
				}
			}
		})
	}
}

// TestRealSwitchContinuityRestart stops the mediafork serving a fork and
// starts one again, which finds the call by its channel variables as its
// own (ha.instance) and resumes the fork from its checkpoint: the same
// streams, after a gap of reason 2. kill -9: nothing of the old one runs
// after (its last heartbeat, 20 ms old at most, says how far its streams
// went: a frame it sent after it may be counted missing too); SIGUSR2: it
// hands the streams over (no end packets, a last checkpoint: exact).
func TestRealSwitchContinuityRestart(t *testing.T) {
	for _, how := range []string{"kill", "handover"} {
		t.Run(how, func(t *testing.T) { continuityRestart(t, how) })
	}
}

func continuityRestart(t *testing.T, how string) {
	sw := useSwitch(t)
	prof, tlv, rx, tx := continuityProfile(t, true)
	cfg := baseConfig("audio_stream")
	cfg["profiles"] = map[string]any{"rs-cont": prof}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-cont"})}
	cfg["ingest"] = map[string]any{"key": "rs-continuity-" + sw.tag}
	cfg["ha"] = map[string]any{"instance": "rs-" + sw.tag}
	fork := cfg["fork"].(map[string]any)
	fork["checkpoint"] = t.TempDir() + "/checkpoint"
	d := startDaemon(t, cfg)
	c := sw.Originate("9000")
	streamsBefore(t, tlv)
	assert.Equal(t, "rs-"+sw.tag, strings.TrimSpace(sw.API("uuid_getvar "+c.B+" mediafork_instance")))
	assert.NotEqual(t, "_undef_", strings.TrimSpace(sw.API("uuid_getvar "+c.B+" mediafork_resume")))
	// The checkpoint has it (written when the fork began, then each second).
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(fork["checkpoint"].(string))
		return strings.Contains(string(b), c.B)
	}, waitFor, 10*time.Millisecond)
	tlv.wait("another half second", func(ps []captured) bool { return audioCount(ps)[1] >= 75 })

	tol := slack{over: 1}
	if how == "kill" {
		d.Kill()
	} else {
		d.Signal(syscall.SIGUSR2)
		require.NoError(t, d.Wait(), "exit status")
		d.WaitLog("the handover", msg("shutting down: handing forks over", "forks", "1"))
		d.WaitLog("the fork handed over", msg("fork suspended", "uuid", c.B, "reason", "shutdown"))
		tol = slack{}
	}
	d2 := startDaemon(t, cfg)
	d2.WaitLog("the checkpoint", msg("checkpoint read", "forks", "1"))
	d2.WaitLog("the resume", msg("resync: resuming the call's fork", "uuid", c.B, "from", "checkpoint"))
	resync := d2.WaitLog("the resync", msg("resync done"))
	assert.Equal(t, "1", resync.Str("resumed"))
	assert.Equal(t, "0", resync.Str("forked"), "not forked again by the rule")
	gaps := streamsAfter(t, tlv, 1, tol)
	for _, dir := range []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX} {
		g := gaps[dir][0]
		assert.NotEqual(t, g.fromB, g.fromA, "another process: another socket (the receiver takes the move on the gap packet)")
	}
	assertGaps(t, gaps[tlvcodec.RX][0], gaps[tlvcodec.TX][0], tlvcodec.GapRestarted, 30*time.Second, 0)
	checkRTPStream(t, rx, "rx", gaps[tlvcodec.RX])
	checkRTPStream(t, tx, "tx", gaps[tlvcodec.TX])
	sw.Kill(c)
}

// TestRealSwitchContinuityTransfer transfers the forked leg (uuid_transfer
// to extension 9001: it now sends 1000 Hz), then bridges it to another call's
// leg (uuid_bridge): the media bug stays on the channel through both (as
// recorded in testdata/transfer), so the streams go on without a gap, and
// carry what the channel does after: TX 1000 Hz after the transfer.
func TestRealSwitchContinuityTransfer(t *testing.T) {
	sw := useSwitch(t)
	prof, tlv, _, _ := continuityProfile(t, false)
	cfg := baseConfig("audio_fork")
	cfg["profiles"] = map[string]any{"rs-cont": prof}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-cont"})}
	d := startDaemon(t, cfg)
	c := sw.Originate("9000")
	streamsBefore(t, tlv)

	assert.Equal(t, "+OK", strings.TrimSpace(sw.API("uuid_transfer "+c.B+" 9001 XML default")))
	sw.WaitEvent("the transfer's playback", func(e *eslgo.Event) bool {
		return e.GetName() == "CHANNEL_EXECUTE" && e.GetHeader("Unique-ID") == c.B && strings.Contains(e.GetHeader("Application-Data"), "1000,0,1000")
	})
	n := len(tlv.all())
	tlv.wait("a second after the transfer", func(ps []captured) bool { return len(ps) > n+100 })
	// Bridged to the B leg of another call (9200, which no rule forks:
	// sending 440 Hz): the forked leg now hears that leg.
	other := sw.Originate("9200")
	assert.Contains(t, sw.API("uuid_bridge "+c.B+" "+other.B), "+OK")
	n = len(tlv.all())
	tlv.wait("a second after the bridge", func(ps []captured) bool { return len(ps) > n+100 })

	ps := decodeTLVs(t, tlv.all())
	for _, dir := range []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX} {
		assert.Empty(t, checkTLVStream(t, ps, dir, slack{}), "%s: no gap", dir)
	}
	// The TX of the last 400 ms before the bridge is the transfer's 1000 Hz.
	var txAfter []int16
	for _, p := range ps[:n] {
		if p.typ == tlvcodec.TypeAudio && p.dir == tlvcodec.TX {
			txAfter = append(txAfter, p.pcm...)
		}
	}
	require.Greater(t, len(txAfter), 3200)
	assert.Greater(t, tone.Share(txAfter[len(txAfter)-3200:], 8000, toneA), 0.8, "TX is 9001's 1000 Hz after the transfer")
	assert.Len(t, d.Lines(msg("fork streaming", "uuid", c.B)), 1, "one fork, never started again")
	oneBug(t, sw, c.B, "audio_fork")
	sw.Kill(other)
	sw.Kill(c)
}

// TestRealSwitchContinuityPause pauses the fork over the API and resumes it
// a second later: no audio arrives meanwhile; the resume is a gap of reason
// 3 whose missing frames are every frame the fork dropped, and those the
// tone says are missing.
func TestRealSwitchContinuityPause(t *testing.T) {
	sw := useSwitch(t)
	prof, tlv, rx, tx := continuityProfile(t, true)
	cfg := baseConfig("audio_stream")
	api := withAPI(t, cfg)
	cfg["profiles"] = map[string]any{"rs-cont": prof}
	cfg["rules"] = []any{ruleFor(sw, "9000", map[string]any{"profile": "rs-cont"})}
	d := startDaemon(t, cfg)
	c := sw.Originate("9000")
	streamsBefore(t, tlv)

	status, body := httpPost(t, "http://"+api+"/v1/forks/"+c.B+"/pause", `{"reason":"rs"}`)
	require.Equal(t, 200, status, body)
	d.WaitLog("the audit line", msg("audit: fork paused", "uuid", c.B))
	assert.Equal(t, "true", strings.TrimSpace(sw.API("uuid_getvar "+c.B+" mediafork_paused")))
	// Counted once frames are being dropped (a frame in flight at the pause
	// has landed by then) and again a half second of dropped frames later:
	// nothing arrived in between.
	waitFork(t, api, c.B, "frames dropped", func(in mediafork.Info) bool { return in.Paused && in.Dropped >= 25 })
	pausedCount := audioCount(tlv.all())
	waitFork(t, api, c.B, "a second of frames dropped", func(in mediafork.Info) bool { return in.Paused && in.Dropped >= 50 })
	assert.Equal(t, pausedCount, audioCount(tlv.all()), "audio arrived while paused")
	status, body = httpPost(t, "http://"+api+"/v1/forks/"+c.B+"/resume", `{}`)
	require.Equal(t, 200, status, body)
	gaps := streamsAfter(t, tlv, 1, slack{})
	info := waitFork(t, api, c.B, "the fork resumed", func(in mediafork.Info) bool { return !in.Paused })
	for _, dir := range []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX} {
		assert.Equal(t, info.Dropped, uint64(gaps[dir][0].gap.MissingFrames), "%s: every frame dropped, reported", dir)
	}
	assertGaps(t, gaps[tlvcodec.RX][0], gaps[tlvcodec.TX][0], tlvcodec.GapPaused, 5*time.Second, 0)
	checkRTPStream(t, rx, "rx", gaps[tlvcodec.RX])
	checkRTPStream(t, tx, "tx", gaps[tlvcodec.TX])
	sw.Kill(c)
}

// httpPost posts a JSON body.
func httpPost(t *testing.T, url, body string) (int, string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitFork polls the API's view of the call's fork until cond holds.
func waitFork(t *testing.T, api, uuid, what string, cond func(mediafork.Info) bool) mediafork.Info {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		status, body := httpGet(t, "http://"+api+"/v1/forks/"+uuid)
		var in mediafork.Info
		if status == 200 && json.Unmarshal([]byte(body), &in) == nil && cond(in) {
			return in
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not in %s: %d %s", what, waitFor, status, body)
		}
		time.Sleep(20 * time.Millisecond) // polling the API: it has no events
	}
}

// TestRealSwitchContinuityFailover: two instances share the switch (etcd,
// HAProxy in front of their ingests); the one serving the fork is killed
// (-9). The other, once the dead one's lease has lapsed, resumes the same
// streams: its standby heard the switch say when the fork's connection ended
// (the module's disconnect event), and places them there on the media clock
// from their origin in the call's record — a gap of reason 2, within a frame
// of the truth the tone measures.
func TestRealSwitchContinuityFailover(t *testing.T) {
	sw := useSwitch(t)
	prof, tlv, rx, tx := continuityProfile(t, true)
	cfg := haConfig(sw, tlv.Addr(), "127.0.0.1:9")
	cfg["profiles"] = map[string]any{"rs-ha": prof}
	c := newHACluster(t, sw, cfg, 2)
	call := sw.Originate("9000")
	serving := c.server(call.B, map[string]int{})
	streamsBefore(t, tlv)
	marks := c.marks()
	killed := c.kill9(serving)
	t.Logf("killed %s, which served the fork", serving.name)
	delete(marks, serving.name)
	next := c.server(call.B, marks)
	next.d.WaitLog("the resume", msg("fork resumed", "uuid", call.B, "reason", "restarted"))
	t.Logf("%s resumed the fork %s after the kill", next.name, time.Since(killed).Round(time.Millisecond))
	gaps := streamsAfter(t, tlv, 1, slack{under: 1, over: 1})
	for _, dir := range []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX} {
		g := gaps[dir][0]
		assert.NotEqual(t, g.fromB, g.fromA, "another instance: another socket (the receiver takes the move on the gap packet)")
	}
	assertGaps(t, gaps[tlvcodec.RX][0], gaps[tlvcodec.TX][0], tlvcodec.GapRestarted, haTTL+2*time.Second, 1)
	checkRTPStream(t, rx, "rx", gaps[tlvcodec.RX])
	checkRTPStream(t, tx, "tx", gaps[tlvcodec.TX])
	oneBug(t, sw, call.B, "audio_fork")
}
