package realswitch

import (
	"errors"
	"fmt"
	"math"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"

	"github.com/mediafork/mediafork/internal/tone"
)

// receiver is a UDP endpoint: it parses every datagram with tlvcodec and
// keeps, per stream and direction, what arrived and in which order.
type receiver struct {
	t    *testing.T
	conn *net.UDPConn
	done chan struct{}

	mu      sync.Mutex
	streams []*stream // in order of first packet
	invalid []string
	changed chan struct{} // closed and replaced on every datagram
}

// stream is what one stream id and direction delivered.
type stream struct {
	ID        uint32
	Dir       tlvcodec.Direction
	Sig       *tlvcodec.Signaling
	Format    *tlvcodec.Format
	End       *tlvcodec.End
	DTMF      []tlvcodec.DTMF // DTMF packets, in order
	Audio     int             // audio packets
	FirstSeq  uint32          // of the first audio packet
	LastSeq   uint32          // of the last
	Payload   []byte          // audio payloads in order, up to maxKeep
	Sizes     []int           // distinct payload sizes, in order of first appearance
	Problems  []string
	lastSize  int
	afterEnd  int
	sizeWrong int // payloads of a size other than frame_ms, before the last
}

// maxKeep bounds the audio a stream keeps (seconds of 16 kHz l16).
const maxKeep = 10 * 32000

// listenUDP opens a receiver on addr (127.0.0.1:0 for any port).
func listenUDP(t *testing.T, addr string) *receiver {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	require.NoError(t, err)
	conn, err := net.ListenUDP("udp", ua)
	require.NoError(t, err, "a receiver on %s", addr)
	conn.SetReadBuffer(4 << 20)
	r := &receiver{t: t, conn: conn, done: make(chan struct{}), changed: make(chan struct{})}
	go r.run()
	t.Cleanup(func() {
		conn.Close()
		<-r.done
		r.mu.Lock()
		defer r.mu.Unlock()
		assert.Empty(t, r.invalid, "invalid datagrams at %s", r.Addr())
	})
	return r
}

// Addr is where packets go, host:port.
func (r *receiver) Addr() string { return r.conn.LocalAddr().String() }

func (r *receiver) run() {
	defer close(r.done)
	buf := make([]byte, 65536)
	for {
		n, err := r.conn.Read(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			continue // ICMP errors and the like: nothing to keep
		}
		r.handle(buf[:n])
	}
}

func (r *receiver) handle(b []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer func() {
		close(r.changed)
		r.changed = make(chan struct{})
	}()
	var h tlvcodec.Header
	if err := h.Unmarshal(b); err != nil {
		r.invalid = append(r.invalid, fmt.Sprintf("%d bytes: %v", len(b), err))
		return
	}
	s := r.stream(h.StreamID, h.Direction)
	if s.End != nil {
		s.afterEnd++
		s.Problems = append(s.Problems, fmt.Sprintf("%s packet after the end packet", h.Type))
	}
	var err error
	switch h.Type {
	case tlvcodec.TypeSignaling:
		var sig tlvcodec.Signaling
		if err = sig.Unmarshal(b); err == nil {
			if s.Sig != nil || s.Format != nil || s.Audio > 0 {
				s.Problems = append(s.Problems, "signaling packet not first")
			}
			s.Sig = &sig
		}
	case tlvcodec.TypeFormat:
		var f tlvcodec.Format
		if err = f.Unmarshal(b); err == nil {
			if s.Sig == nil || s.Format != nil || s.Audio > 0 {
				s.Problems = append(s.Problems, "format packet not right after the signaling packet")
			}
			s.Format = &f
		}
	case tlvcodec.TypeAudio:
		var a tlvcodec.Audio
		if err = a.Unmarshal(b); err == nil {
			r.audio(s, &a)
		}
	case tlvcodec.TypeEnd:
		var e tlvcodec.End
		if err = e.Unmarshal(b); err == nil {
			if e.LastSequence != s.LastSeq {
				s.Problems = append(s.Problems, fmt.Sprintf("end packet's last sequence %d, last audio packet %d", e.LastSequence, s.LastSeq))
			}
			s.End = &e
		}
	case tlvcodec.TypeDTMF:
		var d tlvcodec.DTMF
		if err = d.Unmarshal(b); err == nil {
			if s.Sig == nil {
				s.Problems = append(s.Problems, "DTMF packet before the signaling packet")
			}
			s.DTMF = append(s.DTMF, d)
		}
	default:
		s.Problems = append(s.Problems, fmt.Sprintf("unexpected packet type %s", h.Type))
	}
	if err != nil {
		r.invalid = append(r.invalid, fmt.Sprintf("%s, %d bytes: %v", h.Type, len(b), err))
	}
}

func (r *receiver) audio(s *stream, a *tlvcodec.Audio) {
	if s.Sig == nil || s.Format == nil {
		s.Problems = append(s.Problems, "audio before the signaling and format packets")
	}
	switch {
	case s.Audio == 0 && a.Sequence != 1:
		s.Problems = append(s.Problems, fmt.Sprintf("first sequence %d, not 1", a.Sequence))
	case s.Audio > 0 && a.Sequence != s.LastSeq+1:
		s.Problems = append(s.Problems, fmt.Sprintf("sequence %d after %d", a.Sequence, s.LastSeq))
	}
	if s.Audio == 0 {
		s.FirstSeq = a.Sequence
	}
	s.LastSeq = a.Sequence
	// Every payload is frame_ms long; only the stream's last may be shorter.
	if s.Audio > 0 && s.lastSize != s.frameBytes() {
		s.sizeWrong++
	}
	s.lastSize = len(a.Payload)
	if !slices.Contains(s.Sizes, len(a.Payload)) {
		s.Sizes = append(s.Sizes, len(a.Payload))
	}
	s.Audio++
	if len(s.Payload) < maxKeep {
		s.Payload = append(s.Payload, a.Payload...)
	}
}

func (r *receiver) stream(id uint32, dir tlvcodec.Direction) *stream {
	for _, s := range r.streams {
		if s.ID == id && s.Dir == dir {
			return s
		}
	}
	s := &stream{ID: id, Dir: dir}
	r.streams = append(r.streams, s)
	return s
}

// codec is the stream's encoding, from its format packet.
func (s *stream) codec() mediafork.Codec {
	if s.Format == nil {
		return nil
	}
	c, _ := mediafork.CodecByCode(s.Format.Encoding)
	return c
}

// frameBytes is the payload of one frame_ms, from the format packet.
func (s *stream) frameBytes() int {
	c := s.codec()
	if c == nil {
		return -1
	}
	return int(s.Format.SampleRate) * int(s.Format.FrameMs) / 1000 * c.BytesPerSample()
}

// Streams is a copy of what arrived so far.
func (r *receiver) Streams() []stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]stream, len(r.streams))
	for i, s := range r.streams {
		out[i] = *s
		out[i].Payload = slices.Clone(s.Payload)
		out[i].Problems = slices.Clone(s.Problems)
		out[i].Sizes = slices.Clone(s.Sizes)
		out[i].DTMF = slices.Clone(s.DTMF)
	}
	return out
}

// Wait waits until cond holds for what arrived, and returns it.
func (r *receiver) Wait(what string, cond func([]stream) bool) []stream {
	r.t.Helper()
	timeout := time.After(waitFor)
	for {
		r.mu.Lock()
		changed := r.changed
		r.mu.Unlock()
		ss := r.Streams()
		if cond(ss) {
			return ss
		}
		select {
		case <-changed:
		case <-timeout:
			r.t.Fatalf("receiver %s: %s did not happen in %s; got %s", r.Addr(), what, waitFor, describe(ss))
		}
	}
}

// WaitAudio waits until n directions have delivered at least packets audio
// packets each, and returns the streams.
func (r *receiver) WaitAudio(n, packets int) []stream {
	r.t.Helper()
	return r.Wait(fmt.Sprintf("%d direction(s) with %d audio packets", n, packets), func(ss []stream) bool {
		k := 0
		for _, s := range ss {
			if s.Audio >= packets {
				k++
			}
		}
		return k >= n
	})
}

// WaitEnds waits until n directions have sent their end packet.
func (r *receiver) WaitEnds(n int) []stream {
	r.t.Helper()
	return r.Wait(fmt.Sprintf("%d end packet(s)", n), func(ss []stream) bool {
		k := 0
		for _, s := range ss {
			if s.End != nil {
				k++
			}
		}
		return k >= n
	})
}

func describe(ss []stream) string {
	if len(ss) == 0 {
		return "nothing"
	}
	out := ""
	for _, s := range ss {
		end := "-"
		if s.End != nil {
			end = s.End.Reason.String()
		}
		out += fmt.Sprintf("\n  stream %d %s: signaling=%v format=%v audio=%d end=%s problems=%v", s.ID, s.Dir, s.Sig != nil, s.Format != nil, s.Audio, end, s.Problems)
	}
	return out
}

// Samples decodes the audio kept.
func (s *stream) Samples() []int16 {
	c := s.codec()
	if c == nil {
		return nil
	}
	out := make([]int16, len(s.Payload)/c.BytesPerSample())
	return out[:c.Decode(out, s.Payload)]
}

// The dist dialplan's tones (tone_stream, continuous).
const (
	toneA = 1000.0 // sent by extension 9001: the B leg's RX
	toneB = 440.0  // sent by 9000, 9102 (after the socket) and 9401: the B leg's TX
)

// dBFS is the RMS level of x.
func dBFS(x []int16) float64 {
	var sum float64
	for _, v := range x {
		sum += float64(v) * float64(v)
	}
	if len(x) == 0 || sum == 0 {
		return math.Inf(-1)
	}
	return 10 * math.Log10(sum/float64(len(x))/(32768*32768))
}

// AssertTones checks that a direction carries the tones want (both for a
// mixed one) and nothing else: 400 ms of its audio after the first 100 ms.
func AssertTones(t *testing.T, s stream, want ...float64) {
	t.Helper()
	require.NotNil(t, s.Format, "stream %d %s: no format packet", s.ID, s.Dir)
	rate := int(s.Format.SampleRate)
	x := s.Samples()
	from, n := rate/10, rate*4/10
	require.GreaterOrEqual(t, len(x), from+n, "stream %d %s: %d samples", s.ID, s.Dir, len(x))
	x = x[from : from+n]
	level := dBFS(x)
	assert.Greater(t, level, -40.0, "stream %d %s is silent: %.1f dBFS", s.ID, s.Dir, level)
	t.Logf("stream %d %s: %.1f dBFS, 1000 Hz %.3f, 440 Hz %.3f", s.ID, s.Dir, level, tone.Share(x, rate, toneA), tone.Share(x, rate, toneB))
	var total float64
	for _, hz := range []float64{toneA, toneB} {
		share := tone.Share(x, rate, hz)
		if slices.Contains(want, hz) {
			total += share
			assert.Greater(t, share, 0.7/float64(len(want)), "stream %d %s: %.0f Hz is %.0f%% of the energy", s.ID, s.Dir, hz, 100*share)
		} else {
			assert.Less(t, share, 0.02, "stream %d %s: %.0f Hz, which it must not carry, is %.0f%% of the energy", s.ID, s.Dir, hz, 100*share)
		}
	}
	assert.Greater(t, total, 0.9, "stream %d %s: the tones %v are %.0f%% of the energy", s.ID, s.Dir, want, 100*total)
}

// AssertClean checks a direction's packets: signaling, then format, then
// audio of frame_ms each from sequence 1 without a gap, then at most the end
// packet.
func AssertClean(t *testing.T, s stream) {
	t.Helper()
	assert.Empty(t, s.Problems, "stream %d %s", s.ID, s.Dir)
	assert.Zero(t, s.sizeWrong, "stream %d %s: payloads of other sizes than %d bytes: %v", s.ID, s.Dir, s.frameBytes(), s.Sizes)
}

// byDir finds the direction of a stream (the only stream, or the stream id given).
func byDir(t *testing.T, ss []stream, dir tlvcodec.Direction) stream {
	t.Helper()
	for _, s := range ss {
		if s.Dir == dir {
			return s
		}
	}
	t.Fatalf("no %s direction in %s", dir, describe(ss))
	return stream{}
}
