// Package tlvdump is a TLV receiver like ForkStream's tlv_receiver.py: it prints
// one line per packet, reports sequence gaps and reordering, writes a WAV file
// per stream and direction, and sums it all up at the end. `mediafork tlvdump`,
// `mediafork demo` and the tests use it.
//
// Every datagram is hostile (ForkStream's format has no authentication): a
// stream is pinned to the address of its first packet, impossible formats,
// sizes and sequence jumps are refused and counted, and streams, open files,
// disk writes and memory are bounded (limits.go). The Python receiver in
// receivers/python follows the same rules, held to the same vectors
// (testdata/tlv/hostile.json).
package tlvdump

import (
	"bytes"
	"cmp"
	"container/list"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// Options say how to read the audio of streams that carry no format packet
// (ForkStream's, or mediafork's with fork.format_packet off), what to print,
// and the receiver's bounds. A stream's format packet always wins; Encoding or
// Rate given and disagreeing with it is reported.
type Options struct {
	Encoding mediafork.Encoding // of the payload; "" assumes l16
	Rate     int                // sample rate; 0 assumes 8000
	FrameMs  int                // audio per packet, to check payload sizes; 0 assumes 20
	WavDir   string             // "" writes no WAV files
	Out      io.Writer          // one line per packet; nil prints nothing
	Keep     bool               // keep every payload in Stream.Payload (tests: unbounded)

	MaxStreams   int           // streams tracked at once; 0: DefaultMaxStreams
	MaxOpenFiles int           // WAV files open at once; 0: half the descriptor limit, at most 1024
	IdleTimeout  time.Duration // a stream silent this long is closed; 0: DefaultIdleTimeout

	now func() time.Time // the clock (tests)
}

// Assumed when neither a format packet nor Options say.
const (
	DefaultEncoding = mediafork.L16
	DefaultRate     = 8000
	DefaultFrameMs  = 20
)

// Receiver listens for TLV packets on one UDP socket.
type Receiver struct {
	conn *net.UDPConn
	opts Options
	// what to assume without a format packet: opts, or the defaults
	codec         mediafork.Codec
	rate, frameMs int
	maxStreams    int
	maxOpen       int
	idle          time.Duration
	now           func() time.Time

	mu        sync.Mutex
	streams   map[streamKey]*Stream
	active    *list.List // of *Stream, the most recently active first
	open      *list.List // of *segment with an open file, the most recently written first
	kept      int        // samples kept for the tone analysis, all streams
	gone      totals     // of the streams evicted
	counts    Counts
	started   time.Time
	closeOnce sync.Once
}

// Counts are the receiver's own counters.
type Counts struct {
	Datagrams int // every datagram read
	Invalid   int // not a valid packet
	Unknown   int // of a type this receiver does not know (or a DTMF packet that does not parse): skipped
	DTMF      int // DTMF packets (0x05), printed: not audio, no stream made
	Refused   int // impossible formats, sizes and sequence jumps
	Foreign   int // from an address other than the one the stream is pinned to: dropped
	Evicted   int // streams forgotten at the MaxStreams bound
	Panics    int // datagrams whose handling panicked (a bug): recovered
}

type totals struct {
	packets, bytes, missing, reordered, duplicates, refused, foreign int
}

type streamKey struct {
	id  uint32
	dir tlvcodec.Direction
}

// Stream is what arrived for one stream and direction.
type Stream struct {
	StreamID    uint32
	Direction   tlvcodec.Direction
	Source      string // the address it is pinned to: its first packet's
	Signaling   *tlvcodec.Signaling
	Format      *tlvcodec.Format   // the format packet it is decoded by, if one came and was accepted
	Encoding    mediafork.Encoding // what the audio is decoded as
	Rate        int                // and at what sample rate
	Packets     int                // audio packets (refused ones aside)
	Bytes       int                // audio payload bytes
	FirstSeq    uint32             // of the first audio packet
	LastSeq     uint32             // highest seen
	Missing     int                // sequence numbers skipped
	Reordered   int                // packets older than one already seen
	Duplicates  int
	Refused     int // format packets, payloads and sequence jumps refused
	Foreign     int // packets from another address, dropped
	Undecodable int // audio packets counted, not decoded (its format packet was refused)
	// Gaps are the gap packets (0x06) the stream announced its gaps with, and
	// GapFrames the frames they said were missing; Moved is how often a gap
	// packet moved the stream to another source (mediafork resumed it from
	// another instance or socket).
	Gaps, GapFrames, Moved int
	LastGap                *tlvcodec.Gap // the last gap packet taken
	Closed                 string        // "idle" once the idle timeout closed it; "" while live
	End                    *tlvcodec.End
	AudioBeforeSig         bool
	// The format packet belongs after the signaling and before the audio.
	FormatBeforeSig   bool
	AudioBeforeFormat bool     // audio came first, then a format packet
	Warnings          []string // format trouble, refusals, size mismatches: once each
	WavPath           string   // the first WAV file
	WavPaths          []string // every WAV file: a new one per format change and return from idle
	Payload           []byte   // every audio payload in arrival order, with Options.Keep
	samples           []int16
	codec             mediafork.Codec
	undecodable       bool // a refused format packet and none accepted
	sizeChecked       bool // the payload-size warning was given or is moot
	shortSize         int  // a short payload seen, the tail unless more follows
	seq               seqState
	last              time.Time     // its last packet
	lastAudio         time.Time     // its last audio packet
	announced         *tlvcodec.Gap // a gap packet whose next sequence has not come yet
	elem              *list.Element // in Receiver.active
	seg               *segment      // the WAV file being written
	nextSuffix        int           // of the next WAV file's name
	warned            map[string]bool
}

// segment is one WAV file of a stream.
type segment struct {
	w         *wavWriter
	real      int // samples received, written
	silence   int // samples of gap fill written
	lastFrame int // samples in the last packet written
	elem      *list.Element
}

// Listen opens the UDP socket.
func Listen(addr string, opts Options) (*Receiver, error) {
	r, err := newReceiver(opts)
	if err != nil {
		return nil, err
	}
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenUDP("udp", ua)
	if err != nil {
		return nil, err
	}
	conn.SetReadBuffer(8 << 20)
	forceReadBuffer(conn, 64<<20)
	if opts.WavDir != "" {
		if err := os.MkdirAll(opts.WavDir, 0o755); err != nil {
			conn.Close()
			return nil, err
		}
	}
	r.conn = conn
	return r, nil
}

// newReceiver checks opts and makes a receiver without a socket (Handle only).
func newReceiver(opts Options) (*Receiver, error) {
	r := &Receiver{opts: opts, streams: map[streamKey]*Stream{}, active: list.New(), open: list.New(),
		codec: opts.Encoding.Codec(), rate: cmp.Or(opts.Rate, DefaultRate), frameMs: cmp.Or(opts.FrameMs, DefaultFrameMs),
		maxStreams: cmp.Or(opts.MaxStreams, DefaultMaxStreams), maxOpen: opts.MaxOpenFiles,
		idle: cmp.Or(opts.IdleTimeout, DefaultIdleTimeout), now: opts.now}
	if r.now == nil {
		r.now = time.Now
	}
	if opts.Encoding == "" {
		r.codec = DefaultEncoding.Codec()
	}
	switch {
	case r.codec == nil:
		return nil, fmt.Errorf("encoding: %q is not one of %s", opts.Encoding, mediafork.EncodingNames())
	case !ValidRate(r.rate):
		return nil, fmt.Errorf("rate: %s", rateProblem(r.rate))
	case r.frameMs < 0 || frameBytes(r.codec, r.rate, r.frameMs) > tlvcodec.MaxAudioPayload:
		return nil, fmt.Errorf("frame-ms: %d ms of %s at %d Hz does not fit one packet", r.frameMs, r.codec.Name(), r.rate)
	case opts.MaxStreams < 0 || opts.MaxOpenFiles < 0 || opts.IdleTimeout < 0:
		return nil, fmt.Errorf("max streams %d, max open files %d, idle timeout %s: must not be negative",
			opts.MaxStreams, opts.MaxOpenFiles, opts.IdleTimeout)
	}
	if r.maxOpen == 0 {
		r.maxOpen = min(maxOpenFilesCap, max(4, fileLimit()/2))
	}
	r.started = r.now()
	return r, nil
}

// Addr is the address packets go to.
func (r *Receiver) Addr() *net.UDPAddr { return r.conn.LocalAddr().(*net.UDPAddr) }

// Run receives until ctx is done, then closes the socket and the WAV files.
// Streams silent for the idle timeout are closed as it goes.
func (r *Receiver) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { r.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	defer r.close()
	every := max(10*time.Millisecond, min(r.idle/4, time.Second))
	buf := make([]byte, 65536)
	for {
		next := time.Now().Add(every)
		r.conn.SetReadDeadline(next)
		// After the deadline is set: a cancel from here on sets it in the
		// past again (AfterFunc runs after ctx.Err is set).
		if ctx.Err() != nil {
			return nil
		}
		for {
			n, from, err := r.conn.ReadFromUDP(buf)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, os.ErrDeadlineExceeded) {
					break
				}
				return err
			}
			r.handle(buf[:n], from)
			if time.Now().After(next) {
				break
			}
		}
		r.sweep()
	}
}

// handle is Handle with a bug's panic recovered: one datagram is lost, not
// the receiver, its summary and its WAV files.
func (r *Receiver) handle(b []byte, from net.Addr) {
	defer func() {
		if p := recover(); p != nil {
			r.mu.Lock()
			r.counts.Panics++
			r.printf("ERROR      from=%v len=%d: %v (recovered)", from, len(b), p)
			r.mu.Unlock()
		}
	}()
	r.Handle(b, from)
}

// close closes the socket and finalises every WAV file.
func (r *Receiver) close() {
	r.closeOnce.Do(func() {
		if r.conn != nil {
			r.conn.Close()
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, s := range r.streams {
			r.endSegment(s)
		}
	})
}

func (r *Receiver) printf(format string, args ...any) {
	if r.opts.Out != nil {
		fmt.Fprintf(r.opts.Out, format+"\n", args...)
	}
}

// Handle processes one datagram from the address from.
func (r *Receiver) Handle(b []byte, from net.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts.Datagrams++
	var h tlvcodec.Header
	if err := h.Unmarshal(b); err != nil {
		r.invalidPacket(b, from, err)
		return
	}
	var (
		sig tlvcodec.Signaling
		a   tlvcodec.Audio
		f   tlvcodec.Format
		e   tlvcodec.End
		err error
	)
	switch h.Type {
	case tlvcodec.TypeSignaling:
		err = sig.Unmarshal(b)
	case tlvcodec.TypeAudio:
		err = a.Unmarshal(b)
	case tlvcodec.TypeFormat:
		err = f.Unmarshal(b)
	case tlvcodec.TypeEnd:
		err = e.Unmarshal(b)
	case tlvcodec.TypeGap: // audio missing, and why: maybe the stream moving
		var g tlvcodec.Gap
		if g.Unmarshal(b) == nil {
			r.gap(&g, addrString(from))
			return
		}
		r.counts.Unknown++
		r.printf("UNKNOWN    type=0x%02x stream=%d len=%d (ignored)", uint8(h.Type), h.StreamID, len(b))
		return
	case tlvcodec.TypeDTMF: // a digit the caller pressed: printed, not audio
		var d tlvcodec.DTMF
		if d.Unmarshal(b) == nil {
			r.counts.DTMF++
			r.printf("DTMF       stream=%d dir=%s digit=%c duration_ms=%d media_time_ms=%d", d.StreamID, d.Direction, d.Digit, d.DurationMs, d.MediaTimeMs)
			return
		}
		r.counts.Unknown++
		r.printf("UNKNOWN    type=0x%02x stream=%d len=%d (ignored)", uint8(h.Type), h.StreamID, len(b))
		return
	default: // talk-back and whatever comes next: skipped
		r.counts.Unknown++
		r.printf("UNKNOWN    type=0x%02x stream=%d len=%d (ignored)", uint8(h.Type), h.StreamID, len(b))
		return
	}
	if err != nil {
		r.invalidPacket(b, from, err)
		return
	}
	s := r.admit(streamKey{h.StreamID, h.Direction}, addrString(from))
	if s == nil {
		return
	}
	switch h.Type {
	case tlvcodec.TypeSignaling:
		s.Signaling = &sig
		if s.Format != nil {
			s.FormatBeforeSig = true
		}
		r.printf("SIGNALING  stream=%d dir=%s len=%d channel=%q exten=%q caller=%q called=%q ts=%s",
			sig.StreamID, sig.Direction, len(b), sig.ChannelID, sig.Exten, sig.CallerID, sig.CalledID,
			time.Unix(int64(sig.Timestamp), 0).UTC().Format(time.RFC3339))
	case tlvcodec.TypeAudio:
		r.audio(s, &a)
		r.printf("AUDIO      stream=%d dir=%s seq=%d len=%d payload=%d", a.StreamID, a.Direction, a.Sequence, len(b), len(a.Payload))
	case tlvcodec.TypeFormat:
		name := fmt.Sprintf("code(%d)", f.Encoding)
		if c, ok := mediafork.CodecByCode(f.Encoding); ok {
			name = string(c.Name())
		}
		r.printf("FORMAT     stream=%d dir=%s encoding=%s rate=%d channels=%d frame_ms=%d",
			f.StreamID, f.Direction, name, f.SampleRate, f.Channels, f.FrameMs)
		r.format(s, &f)
	case tlvcodec.TypeEnd:
		s.End = &e
		r.printf("END        stream=%d dir=%s last_seq=%d reason=%s", e.StreamID, e.Direction, e.LastSequence, e.Reason)
		r.endSegment(s)
	}
}

func (r *Receiver) invalidPacket(b []byte, from net.Addr, err error) {
	r.counts.Invalid++
	r.printf("INVALID    from=%v len=%d: %v", from, len(b), err)
}

func addrString(a net.Addr) string {
	if a == nil {
		return "-"
	}
	return a.String()
}

// admit finds or makes the stream of a packet from src, or drops the packet
// when the stream id is pinned to another address. A stream is pinned to the
// address of the first packet of any of its directions; once it has gone
// idle (not ended) a packet from a new address moves it there.
func (r *Receiver) admit(k streamKey, src string) *Stream {
	now := r.now()
	s := r.streams[k]
	if s == nil {
		for _, d := range []tlvcodec.Direction{tlvcodec.RX, tlvcodec.TX, tlvcodec.Mixed} {
			if sib := r.streams[streamKey{k.id, d}]; d != k.dir && sib != nil && sib.Source != src && sib.Closed == "" && sib.End == nil {
				r.foreignPacket(sib, src)
				return nil
			}
		}
		for len(r.streams) >= r.maxStreams {
			r.evict(r.active.Back().Value.(*Stream))
		}
		s = &Stream{StreamID: k.id, Direction: k.dir, Source: src, codec: r.codec, Encoding: r.codec.Name(), Rate: r.rate, nextSuffix: 1}
		r.streams[k] = s
		s.elem = r.active.PushFront(s)
	} else if s.Source != src {
		if s.Closed == "" || s.End != nil {
			r.foreignPacket(s, src)
			return nil
		}
		r.warn(s, "moved", "source moved from %s to %s after the idle timeout", s.Source, src)
		s.Source = src
	}
	if s.Closed != "" {
		s.Closed = ""
		r.printf("REOPEN     stream=%d dir=%s from=%s", s.StreamID, s.Direction, src)
	}
	s.last = now
	r.active.MoveToFront(s.elem)
	return s
}

func (r *Receiver) foreignPacket(s *Stream, src string) {
	s.Foreign++
	r.counts.Foreign++
	r.printf("FOREIGN    stream=%d dir=%s from=%s pinned=%s (dropped)", s.StreamID, s.Direction, src, s.Source)
	r.warn(s, "foreign", "packets from %s dropped: the stream is pinned to %s", src, s.Source)
}

// refuse counts a refused packet and warns once per kind.
func (r *Receiver) refuse(s *Stream, kind, format string, args ...any) {
	s.Refused++
	r.counts.Refused++
	msg := fmt.Sprintf(format, args...)
	r.printf("REFUSED    stream=%d dir=%s from=%s: %s", s.StreamID, s.Direction, s.Source, msg)
	r.warn(s, kind, "%s", msg)
}

// evict forgets s (the least recently active) to make room: its WAV file is
// finalised and its counts go to the totals.
func (r *Receiver) evict(s *Stream) {
	r.endSegment(s)
	r.gone.add(s)
	r.kept -= len(s.samples)
	r.active.Remove(s.elem)
	delete(r.streams, streamKey{s.StreamID, s.Direction})
	r.counts.Evicted++
	r.printf("EVICTED    stream=%d dir=%s: more than %d streams (the least recently active goes)", s.StreamID, s.Direction, r.maxStreams)
}

func (t *totals) add(s *Stream) {
	t.packets += s.Packets
	t.bytes += s.Bytes
	t.missing += s.Missing
	t.reordered += s.Reordered
	t.duplicates += s.Duplicates
	t.refused += s.Refused
	t.foreign += s.Foreign
}

// sweep closes the streams silent for the idle timeout: their WAV files are
// finalised; a later packet opens them again in a new file.
func (r *Receiver) sweep() {
	r.mu.Lock()
	defer r.mu.Unlock()
	cutoff := r.now().Add(-r.idle)
	for e := r.active.Back(); e != nil; e = e.Prev() {
		s := e.Value.(*Stream)
		if s.last.After(cutoff) {
			break // the rest were active later
		}
		if s.Closed != "" || s.End != nil {
			continue
		}
		s.Closed = "idle"
		r.endSegment(s)
		r.printf("IDLE       stream=%d dir=%s: nothing for %s, closed", s.StreamID, s.Direction, r.idle)
	}
}

// warn reports a problem with a stream once per kind: in the packet lines
// and the summary.
func (r *Receiver) warn(s *Stream, kind, format string, args ...any) {
	if !s.warned[kind] {
		r.notice(s, kind, format, args...)
	}
}

// notice reports a problem every time in the packet lines, and the first of
// its kind in the summary.
func (r *Receiver) notice(s *Stream, kind, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	r.printf("WARNING    stream=%d dir=%s %s", s.StreamID, s.Direction, msg)
	if s.warned[kind] {
		return
	}
	if s.warned == nil {
		s.warned = map[string]bool{}
	}
	s.warned[kind] = true
	if len(s.Warnings) < maxWarnings {
		s.Warnings = append(s.Warnings, msg)
	}
}

// format makes s decode as its format packet says, saying so when that differs
// from what was given on the command line. An impossible format is refused:
// a stream with none accepted is then counted, not decoded. A change after
// audio starts a new WAV file, with a warning.
func (r *Receiver) format(s *Stream, f *tlvcodec.Format) {
	if s.Packets > 0 {
		s.AudioBeforeFormat = true
	}
	c, err := checkFormat(f)
	if err != nil {
		if s.Format == nil {
			s.undecodable = true
			r.refuse(s, "format", "format packet refused: %v; the audio is counted, not decoded", err)
		} else {
			r.refuse(s, "format", "format packet refused: %v; still decoding as %s at %d Hz", err, s.Encoding, s.Rate)
		}
		return
	}
	if s.Format != nil && *s.Format == *f {
		return // said again
	}
	if s.Packets > 0 && (s.undecodable || c != s.codec || int(f.SampleRate) != s.Rate) {
		r.notice(s, "format-change", "format changes from %s at %d Hz to %s at %d Hz after %d audio packets: a new WAV file",
			s.Encoding, s.Rate, c.Name(), f.SampleRate, s.Packets)
		r.endSegment(s)
	}
	given := []string{}
	if r.opts.Encoding != "" && r.opts.Encoding != c.Name() {
		given = append(given, "--encoding "+string(r.opts.Encoding))
	}
	if r.opts.Rate != 0 && r.opts.Rate != int(f.SampleRate) {
		given = append(given, fmt.Sprintf("--rate %d", r.opts.Rate))
	}
	if len(given) > 0 {
		r.warn(s, "flags", "format packet says %s at %d Hz, not %s: decoding as the format packet says",
			c.Name(), f.SampleRate, strings.Join(given, " "))
	}
	fc := *f
	s.Format = &fc
	s.codec, s.Encoding, s.Rate, s.undecodable = c, c.Name(), int(f.SampleRate), false
	s.sizeChecked = true // the stream says what it is
}

// checkSize warns once when a stream without a format packet carries payloads
// that are not frame_ms of the assumed encoding and rate: most likely it is
// decoded wrongly. A short payload may be the stream's last, so it only counts
// once more audio follows it.
func (r *Receiver) checkSize(s *Stream, n int) {
	if s.sizeChecked || s.Format != nil || s.undecodable {
		return
	}
	want := r.rate * r.frameMs / 1000 * s.codec.BytesPerSample()
	switch {
	case n == want && s.shortSize == 0:
		return
	case n < want && s.shortSize == 0:
		s.shortSize = n // the tail, unless more comes
		return
	case s.shortSize != 0:
		n = s.shortSize
	}
	s.sizeChecked = true
	r.warn(s, "size", "payload %d bytes, not %d ms of %s at %s (%d bytes): %s", n, r.frameMs, s.codec.Name(), khz(r.rate), want, guess(n, r.codec, r.rate, r.frameMs))
}

// guess names what a payload of n bytes could be: another encoding or rate at
// the assumed frame length, or the assumed encoding and rate at another.
func guess(n int, assumed mediafork.Codec, rate, frameMs int) string {
	var alts []string
	for _, hz := range []int{8000, 16000, 24000, 32000, 48000} {
		var names []string
		for _, c := range mediafork.Codecs() {
			if hz*frameMs/1000*c.BytesPerSample() == n && (c != assumed || hz != rate) {
				names = append(names, string(c.Name()))
			}
		}
		if len(names) > 0 {
			alts = append(alts, fmt.Sprintf("%s at %s/%d ms", strings.Join(names, "|"), khz(hz), frameMs))
		}
	}
	if per := rate / 1000 * assumed.BytesPerSample(); per > 0 && n%per == 0 && n/per != frameMs {
		alts = append(alts, fmt.Sprintf("%s at %s/%d ms", assumed.Name(), khz(rate), n/per))
	}
	if len(alts) == 0 {
		return "pass --encoding, --rate and --frame-ms"
	}
	return strings.Join(alts, " or ") + "? pass --encoding"
}

func khz(hz int) string {
	if hz%1000 == 0 {
		return fmt.Sprintf("%d kHz", hz/1000)
	}
	return fmt.Sprintf("%d Hz", hz)
}

func (r *Receiver) audio(s *Stream, a *tlvcodec.Audio) {
	if s.Format != nil {
		if want := frameBytes(s.codec, s.Rate, int(s.Format.FrameMs)); len(a.Payload) > want {
			r.refuse(s, "size", "payload %d bytes is more than one %d ms frame of %s at %d Hz (%d bytes)",
				len(a.Payload), s.Format.FrameMs, s.Encoding, s.Rate, want)
			return
		}
	}
	if s.Signaling == nil && s.Packets == 0 {
		s.AudioBeforeSig = true
	}
	prev := s.seq.last
	announced := s.announced != nil && a.Sequence == s.announced.NextSequence
	if announced {
		s.seq.allow = int64(a.Sequence) // a jump a gap packet announced is taken at once
	}
	kind, missingBefore := s.seq.account(a.Sequence)
	s.seq.allow = -1

	switch kind {
	case seqRefused:
		r.refuse(s, "jump", "sequence %d jumps more than %d from %d: refused (a packet continuing from it is taken)",
			a.Sequence, MaxSeqJump, prev)
		return
	case seqGap:
		r.printf("GAP        stream=%d dir=%s expected=%d got=%d missing=%d", s.StreamID, s.Direction, prev+1, a.Sequence, missingBefore)
	case seqDuplicate:
		s.Duplicates++
		r.printf("DUPLICATE  stream=%d dir=%s seq=%d", s.StreamID, s.Direction, a.Sequence)
	case seqLate:
		s.Reordered++
		r.printf("REORDER    stream=%d dir=%s seq=%d after=%d", s.StreamID, s.Direction, a.Sequence, prev)
	}
	s.FirstSeq, s.LastSeq, s.Missing = uint32(s.seq.first), uint32(s.seq.last), s.seq.missing
	r.checkSize(s, len(a.Payload))
	s.Packets++
	s.Bytes += len(a.Payload)
	if r.opts.Keep {
		s.Payload = append(s.Payload, a.Payload...)
	}
	if s.undecodable {
		s.Undecodable++
		return
	}
	if kind == seqDuplicate || kind == seqLate || s.End != nil {
		return // its place is taken (or silence); after the end nothing is written
	}
	pcm := decode(a.Payload, s.codec)
	if room := min(MaxAnalysedSamples-len(s.samples), MaxAnalysedTotal-r.kept, len(pcm)); room > 0 {
		s.samples = append(s.samples, pcm[:room]...)
		r.kept += room
	}
	now := r.now()
	var reported time.Duration // the time a reported gap may fill: since the last audio
	if announced && kind == seqGap && !s.lastAudio.IsZero() {
		reported = max(now.Sub(s.lastAudio), time.Nanosecond)
	}
	r.write(s, pcm, int(min(missingBefore, 1<<31)), reported)
	s.lastAudio = now
	if s.announced != nil && a.Sequence >= s.announced.NextSequence {
		s.announced = nil
	}
}

// gap takes a gap packet from src: the stream's next audio is announced
// (its sequence taken however far it jumps, its gap filled with silence up
// to MaxReportedGapSeconds) and counted. From another source than the one
// the stream is pinned to, it moves the stream there when it is plausible
// for a stream resumed elsewhere (MoveQuiet, MoveSlack); otherwise it is
// foreign. A gap packet of a stream not seen yet, or ended, says nothing.
func (r *Receiver) gap(g *tlvcodec.Gap, src string) {
	r.printf("GAP-PACKET stream=%d dir=%s next=%d missing=%d reason=%s from=%s", g.StreamID, g.Direction, g.NextSequence, g.MissingFrames, g.Reason, src)
	s := r.streams[streamKey{g.StreamID, g.Direction}]
	switch {
	case s == nil:
		return
	case s.End != nil:
		if s.Source != src {
			r.foreignPacket(s, src)
		}
		return
	case s.Source != src:
		if !r.mayMove(s, g) {
			r.foreignPacket(s, src)
			return
		}
		r.printf("MOVED      stream=%d dir=%s from=%s to=%s (gap packet: next=%d)", s.StreamID, s.Direction, s.Source, src, g.NextSequence)
		r.notice(s, "moved-gap", "source moved from %s to %s with a gap packet (the stream resumed elsewhere)", s.Source, src)
		s.Source = src
		s.Moved++
	}
	if s.Closed != "" {
		s.Closed = ""
		r.printf("REOPEN     stream=%d dir=%s from=%s", s.StreamID, s.Direction, src)
	}
	gc := *g
	s.announced, s.LastGap = &gc, &gc
	s.Gaps++
	s.GapFrames += int(g.MissingFrames)
	s.last = r.now()
	r.active.MoveToFront(s.elem)
}

// mayMove says whether a gap packet from another source may move s there:
// the stream has been silent MoveQuiet or more (its source stopped: a
// packet spoofed while it streams is refused), the gap packet continues its
// sequence, and claims no more missing frames than the time since its last
// packet holds, and MoveSlack.
func (r *Receiver) mayMove(s *Stream, g *tlvcodec.Gap) bool {
	quiet := r.now().Sub(s.last)
	if quiet < MoveQuiet || int64(g.NextSequence) <= int64(s.LastSeq) {
		return false
	}
	frameMs := r.frameMs
	if s.Format != nil {
		frameMs = int(s.Format.FrameMs)
	}
	claimed := time.Duration(int64(g.NextSequence)-int64(s.LastSeq)-1) * time.Duration(frameMs) * time.Millisecond
	return claimed <= quiet+MoveSlack
}

// write puts pcm in s's WAV file, after the silence its gap explains: the
// gap in packets times its last packet, at most MaxGapFillSeconds and never
// more than the file's own audio; a gap a gap packet reported (reported > 0),
// at most MaxReportedGapSeconds and never more than the time since the
// stream's last audio (reported, on the receiver's clock: the sender cannot
// make it write silence faster than real time).
func (r *Receiver) write(s *Stream, pcm []int16, missingBefore int, reported time.Duration) {
	if r.opts.WavDir == "" {
		return
	}
	fillMax := MaxGapFillSeconds
	if reported > 0 {
		fillMax = MaxReportedGapSeconds
	}
	if s.seg != nil && s.seg.w.n+2*len(pcm)+2*fillMax*s.Rate > maxWavData {
		r.endSegment(s)
	}
	if s.seg == nil && !r.newSegment(s) {
		return
	}
	g := s.seg
	fill := 0
	switch {
	case missingBefore > 0 && reported > 0:
		fill = max(0, min(missingBefore*g.lastFrame, MaxReportedGapSeconds*g.w.rate, int(reported.Seconds()*float64(g.w.rate))))
	case missingBefore > 0:
		fill = max(0, min(missingBefore*g.lastFrame, MaxGapFillSeconds*g.w.rate, g.real-g.silence))
	}

	if g.w.f == nil {
		if err := r.openFile(g, g.w.reopen); err != nil {
			r.warn(s, "file", "%v: a new WAV file", err)
			r.endSegment(s)
			if !r.newSegment(s) {
				return
			}
			g, fill = s.seg, 0
		}
	}
	r.open.MoveToFront(g.elem)
	if err := g.w.write(fill, pcm); err != nil {
		r.warn(s, "write", "%s: %v", g.w.path, err)
	}
	g.silence += fill
	g.real += len(pcm)
	if len(pcm) > 0 {
		g.lastFrame = len(pcm)
	}
}

// newSegment starts s's next WAV file under a name not yet taken.
func (r *Receiver) newSegment(s *Stream) bool {
	if len(s.WavPaths) >= MaxSegments {
		r.warn(s, "segments", "%d WAV files already: the rest of the stream is not written", MaxSegments)
		return false
	}
	g := &segment{}
	var err error
	for tries := 0; tries < 100; tries++ {
		name := fmt.Sprintf("stream-%d-%s", s.StreamID, s.Direction)
		if s.nextSuffix > 1 {
			name += fmt.Sprintf("-%d", s.nextSuffix)
		}
		path := filepath.Join(r.opts.WavDir, name+".wav")
		s.nextSuffix++
		err = r.openFile(g, func() (err error) { g.w, err = createWav(path, s.Rate); return err })
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		r.printf("ERROR      %v", err)
		r.warn(s, "file", "no WAV file: %v", err)
		return false
	}
	s.seg = g
	s.WavPaths = append(s.WavPaths, g.w.path)
	if s.WavPath == "" {
		s.WavPath = g.w.path
	}
	return true
}

// openFile opens a WAV file within the open-file bound: the least recently
// written file is closed first when at it, or when the process is out of
// descriptors.
func (r *Receiver) openFile(g *segment, open func() error) error {
	if r.open.Len() >= r.maxOpen {
		r.closeOldestFile()
	}
	err := open()
	if (errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)) && r.open.Len() > 0 {
		r.closeOldestFile()
		err = open()
	}
	if err != nil {
		return err
	}
	g.elem = r.open.PushFront(g)
	return nil
}

func (r *Receiver) closeOldestFile() {
	g := r.open.Remove(r.open.Back()).(*segment)
	g.elem = nil
	g.w.close()
}

// endSegment finalises s's WAV file, if one is being written.
func (r *Receiver) endSegment(s *Stream) {
	g := s.seg
	if g == nil {
		return
	}
	if g.elem != nil {
		r.open.Remove(g.elem)
		g.elem = nil
	}
	g.w.close()
	s.seg = nil
}

func decode(p []byte, c mediafork.Codec) []int16 {
	out := make([]int16, len(p)/c.BytesPerSample())
	return out[:c.Decode(out, p)]
}

// Streams returns a snapshot of the streams tracked, ordered by stream id and
// direction.
func (r *Receiver) Streams() []*Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Stream, 0, len(r.streams))
	for _, s := range r.streams {
		c := *s
		c.Payload = bytes.Clone(s.Payload)
		c.samples = slices.Clone(s.samples)
		c.seg, c.elem, c.warned = nil, nil, nil
		if s.Signaling != nil {
			sig := *s.Signaling
			c.Signaling = &sig
		}
		if s.End != nil {
			e := *s.End
			c.End = &e
		}
		if s.Format != nil {
			f := *s.Format
			c.Format = &f
		}
		if s.LastGap != nil {
			g := *s.LastGap
			c.LastGap = &g
		}
		c.announced = nil

		c.Warnings = slices.Clone(s.Warnings)
		c.WavPaths = slices.Clone(s.WavPaths)
		out = append(out, &c)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].StreamID != out[j].StreamID {
			return out[i].StreamID < out[j].StreamID
		}
		return out[i].Direction < out[j].Direction
	})
	return out
}

// Invalid is the number of datagrams that were not valid packets.
func (r *Receiver) Invalid() int { return r.Counts().Invalid }

// Counts returns the receiver's counters.
func (r *Receiver) Counts() Counts {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts
}

// DominantHz estimates the strongest frequency in the first audio of s.
func (s *Stream) DominantHz(rate int) int { return dominantHz(s.samples, rate) }

// WriteSummary prints one line per stream and direction and the totals,
// those of the streams evicted included.
func (r *Receiver) WriteSummary(w io.Writer) {
	streams := r.Streams()
	r.mu.Lock()
	counts, gone := r.counts, r.gone
	r.mu.Unlock()
	ids := map[uint32]bool{}
	t := gone
	fmt.Fprintf(w, "SUMMARY %d stream(s), %d direction(s), %s\n", countIDs(streams, ids), len(streams), r.now().Sub(r.started).Round(time.Millisecond))
	for _, s := range streams {
		ch, end := "-", "none"
		if s.Signaling != nil {
			ch = s.Signaling.ChannelID
		}
		if s.End != nil {
			end = s.End.Reason.String()
		}
		from := "assumed"
		switch {
		case s.undecodable:
			from = "refused: not decoded"
		case s.Format != nil:
			from = "format packet"
		}
		fmt.Fprintf(w, "  stream=%d dir=%-5s channel=%q from=%s packets=%d bytes=%d seq=%d..%d missing=%d reordered=%d refused=%d foreign=%d end=%s %s/%dHz (%s) dominant=%dHz",
			s.StreamID, s.Direction, ch, s.Source, s.Packets, s.Bytes, s.FirstSeq, s.LastSeq, s.Missing, s.Reordered, s.Refused, s.Foreign, end,
			s.Encoding, s.Rate, from, s.DominantHz(s.Rate))
		if s.Gaps > 0 || s.Moved > 0 {
			fmt.Fprintf(w, " gaps=%d gap_frames=%d moved=%d", s.Gaps, s.GapFrames, s.Moved)
			if s.LastGap != nil {
				fmt.Fprintf(w, " last_gap=%s", s.LastGap.Reason)
			}
		}
		if len(s.WavPaths) > 1 {
			fmt.Fprintf(w, " files=%d", len(s.WavPaths))
		}

		if s.WavPath != "" {
			fmt.Fprintf(w, " wav=%s", s.WavPath)
		}
		fmt.Fprintln(w)
		for _, m := range s.Warnings {
			fmt.Fprintf(w, "    warning: %s\n", m)
		}
		t.add(s)
	}
	if counts.Evicted > 0 {
		fmt.Fprintf(w, "  and %d stream(s) no longer tracked (evicted at --max-streams %d): counted in the total\n", counts.Evicted, r.maxStreams)
	}
	fmt.Fprintf(w, "TOTAL packets=%d bytes=%d missing=%d reordered=%d invalid=%d refused=%d foreign=%d unknown=%d evicted=%d\n",
		t.packets, t.bytes, t.missing, t.reordered, counts.Invalid, counts.Refused, counts.Foreign, counts.Unknown, counts.Evicted)
}

func countIDs(streams []*Stream, ids map[uint32]bool) int {
	for _, s := range streams {
		ids[s.StreamID] = true
	}
	return len(ids)
}
