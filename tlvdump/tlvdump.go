// Package tlvdump is a TLV receiver like ForkStream's tlv_receiver.py: it prints
// one line per packet, reports sequence gaps and reordering, writes a WAV file
// per stream and direction, and sums it all up at the end. `mediafork tlvdump`,
// `mediafork demo` and the tests use it.
package tlvdump

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// Options say how to read the audio of streams that carry no format packet
// (ForkStream's, or mediafork's with fork.format_packet off) and what to print.
// A stream's format packet always wins; Encoding or Rate given and disagreeing
// with it is reported.
type Options struct {
	Encoding mediafork.Encoding // of the payload; "" assumes l16
	Rate     int                // sample rate; 0 assumes 8000
	FrameMs  int                // audio per packet, to check payload sizes; 0 assumes 20
	WavDir   string             // "" writes no WAV files
	Out      io.Writer          // one line per packet; nil prints nothing
	Keep     bool               // keep every payload in Stream.Payload (tests)
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

	mu      sync.Mutex
	streams map[streamKey]*Stream
	invalid int
	started time.Time
}

type streamKey struct {
	id  uint32
	dir tlvcodec.Direction
}

// Stream is what arrived for one stream and direction.
type Stream struct {
	StreamID       uint32
	Direction      tlvcodec.Direction
	Signaling      *tlvcodec.Signaling
	Format         *tlvcodec.Format   // the stream's format packet, if one came
	Encoding       mediafork.Encoding // what the audio is decoded as
	Rate           int                // and at what sample rate
	Packets        int                // audio packets
	Bytes          int                // audio payload bytes
	FirstSeq       uint32             // of the first audio packet
	LastSeq        uint32             // highest seen
	Missing        int                // sequence numbers skipped
	Reordered      int                // packets older than one already seen
	Duplicates     int
	End            *tlvcodec.End
	AudioBeforeSig bool
	// The format packet belongs after the signaling and before the audio.
	FormatBeforeSig   bool
	AudioBeforeFormat bool     // audio came first, then a format packet
	Warnings          []string // format disagreements and size mismatches, once each
	WavPath           string
	Payload           []byte // every audio payload in arrival order, with Options.Keep
	samples           []int16
	wav               *wavWriter
	codec             mediafork.Codec
	sizeChecked       bool // the payload-size warning was given or is moot
	shortSize         int  // a short payload seen, the tail unless more follows
}

// Listen opens the UDP socket.
func Listen(addr string, opts Options) (*Receiver, error) {
	r := &Receiver{opts: opts, streams: map[streamKey]*Stream{}, codec: opts.Encoding.Codec(),
		rate: cmp.Or(opts.Rate, DefaultRate), frameMs: cmp.Or(opts.FrameMs, DefaultFrameMs)}
	if opts.Encoding == "" {
		r.codec = DefaultEncoding.Codec()
	}
	if r.codec == nil {
		return nil, fmt.Errorf("encoding: %q is not one of %s", opts.Encoding, mediafork.EncodingNames())
	}
	if r.rate < 0 || r.frameMs < 0 {
		return nil, fmt.Errorf("rate %d, frame %d ms: must be positive", r.rate, r.frameMs)
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
	r.conn, r.started = conn, time.Now()
	return r, nil
}

// Addr is the address packets go to.
func (r *Receiver) Addr() *net.UDPAddr { return r.conn.LocalAddr().(*net.UDPAddr) }

// Run receives until ctx is done, then closes the socket and the WAV files.
func (r *Receiver) Run(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { r.conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	defer r.close()
	buf := make([]byte, 65536)
	for {
		n, from, err := r.conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		r.Handle(buf[:n], from)
	}
}

func (r *Receiver) close() {
	r.conn.Close()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.streams {
		if s.wav != nil {
			s.wav.Close()
		}
	}
}

func (r *Receiver) printf(format string, args ...any) {
	if r.opts.Out != nil {
		fmt.Fprintf(r.opts.Out, format+"\n", args...)
	}
}

// Handle processes one datagram.
func (r *Receiver) Handle(b []byte, from net.Addr) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var h tlvcodec.Header
	if err := h.Unmarshal(b); err != nil {
		r.invalid++
		r.printf("INVALID    from=%v len=%d: %v", from, len(b), err)
		return
	}
	switch h.Type {
	case tlvcodec.TypeSignaling:
		var sig tlvcodec.Signaling
		if err := sig.Unmarshal(b); err != nil {
			r.invalid++
			r.printf("INVALID    from=%v len=%d: %v", from, len(b), err)
			return
		}
		s := r.stream(sig.StreamID, sig.Direction)
		s.Signaling = &sig
		if s.Format != nil {
			s.FormatBeforeSig = true
		}
		r.printf("SIGNALING  stream=%d dir=%s len=%d channel=%q exten=%q caller=%q called=%q ts=%s",
			sig.StreamID, sig.Direction, len(b), sig.ChannelID, sig.Exten, sig.CallerID, sig.CalledID,
			time.Unix(int64(sig.Timestamp), 0).UTC().Format(time.RFC3339))
	case tlvcodec.TypeAudio:
		var a tlvcodec.Audio
		if err := a.Unmarshal(b); err != nil {
			r.invalid++
			r.printf("INVALID    from=%v len=%d: %v", from, len(b), err)
			return
		}
		s := r.stream(a.StreamID, a.Direction)
		r.audio(s, &a)
		r.printf("AUDIO      stream=%d dir=%s seq=%d len=%d payload=%d", a.StreamID, a.Direction, a.Sequence, len(b), len(a.Payload))
	case tlvcodec.TypeFormat:
		var f tlvcodec.Format
		if err := f.Unmarshal(b); err != nil {
			r.invalid++
			r.printf("INVALID    from=%v len=%d: %v", from, len(b), err)
			return
		}
		s := r.stream(f.StreamID, f.Direction)
		name := fmt.Sprintf("code(%d)", f.Encoding)
		if c, ok := mediafork.CodecByCode(f.Encoding); ok {
			name = string(c.Name())
		}
		r.printf("FORMAT     stream=%d dir=%s encoding=%s rate=%d channels=%d frame_ms=%d",
			f.StreamID, f.Direction, name, f.SampleRate, f.Channels, f.FrameMs)
		r.format(s, &f)
	case tlvcodec.TypeEnd:
		var e tlvcodec.End
		if err := e.Unmarshal(b); err != nil {
			r.invalid++
			r.printf("INVALID    from=%v len=%d: %v", from, len(b), err)
			return
		}
		s := r.stream(e.StreamID, e.Direction)
		s.End = &e
		r.printf("END        stream=%d dir=%s last_seq=%d reason=%s", e.StreamID, e.Direction, e.LastSequence, e.Reason)
		if s.wav != nil {
			s.wav.Close()
		}
	default:
		r.printf("UNKNOWN    type=0x%02x stream=%d len=%d (ignored)", uint8(h.Type), h.StreamID, len(b))
	}
}

func (r *Receiver) stream(id uint32, dir tlvcodec.Direction) *Stream {
	k := streamKey{id, dir}
	s := r.streams[k]
	if s == nil {
		s = &Stream{StreamID: id, Direction: dir, codec: r.codec, Encoding: r.codec.Name(), Rate: r.rate}
		r.streams[k] = s
	}
	return s
}

// warn reports a problem with a stream once: in the packet lines and the summary.
func (r *Receiver) warn(s *Stream, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.Warnings = append(s.Warnings, msg)
	r.printf("WARNING    stream=%d dir=%s %s", s.StreamID, s.Direction, msg)
}

// format makes s decode as its format packet says, saying so when that differs
// from what was given on the command line.
func (r *Receiver) format(s *Stream, f *tlvcodec.Format) {
	s.Format = f
	if s.Packets > 0 {
		s.AudioBeforeFormat = true
	}
	c, ok := mediafork.CodecByCode(f.Encoding)
	if !ok {
		r.warn(s, "format packet: encoding code %d is not one of %s; decoding as %s", f.Encoding, mediafork.EncodingNames(), s.Encoding)
		return
	}
	if f.Channels != 1 {
		r.warn(s, "format packet: %d channels; decoding as one", f.Channels)
	}
	given := []string{}
	if r.opts.Encoding != "" && r.opts.Encoding != c.Name() {
		given = append(given, "--encoding "+string(r.opts.Encoding))
	}
	if r.opts.Rate != 0 && r.opts.Rate != int(f.SampleRate) {
		given = append(given, fmt.Sprintf("--rate %d", r.opts.Rate))
	}
	if len(given) > 0 {
		r.warn(s, "format packet says %s at %d Hz, not %s: decoding as the format packet says",
			c.Name(), f.SampleRate, strings.Join(given, " "))
	}
	s.codec, s.Encoding, s.Rate = c, c.Name(), int(f.SampleRate)
	s.sizeChecked = true // the stream says what it is
}

// checkSize warns once when a stream without a format packet carries payloads
// that are not frame_ms of the assumed encoding and rate: most likely it is
// decoded wrongly. A short payload may be the stream's last, so it only counts
// once more audio follows it.
func (r *Receiver) checkSize(s *Stream, n int) {
	if s.sizeChecked || s.Format != nil {
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
	r.warn(s, "payload %d bytes, not %d ms of %s at %s (%d bytes): %s", n, r.frameMs, s.codec.Name(), khz(r.rate), want, guess(n, r.codec, r.rate, r.frameMs))
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

// maxAnalysed is how much audio per stream is kept for the frequency estimate.
const maxAnalysed = 2

func (r *Receiver) audio(s *Stream, a *tlvcodec.Audio) {
	if s.Signaling == nil && s.Packets == 0 {
		s.AudioBeforeSig = true
	}
	switch {
	case s.Packets == 0:
		s.FirstSeq, s.LastSeq = a.Sequence, a.Sequence
	case a.Sequence == s.LastSeq+1:
		s.LastSeq = a.Sequence
	case a.Sequence > s.LastSeq:
		gap := int(a.Sequence - s.LastSeq - 1)
		s.Missing += gap
		r.printf("GAP        stream=%d dir=%s expected=%d got=%d missing=%d", s.StreamID, s.Direction, s.LastSeq+1, a.Sequence, gap)
		s.LastSeq = a.Sequence
	case a.Sequence == s.LastSeq:
		s.Duplicates++
		r.printf("DUPLICATE  stream=%d dir=%s seq=%d", s.StreamID, s.Direction, a.Sequence)
	default:
		s.Reordered++
		if s.Missing > 0 {
			s.Missing-- // a late packet fills a gap reported earlier
		}
		r.printf("REORDER    stream=%d dir=%s seq=%d after=%d", s.StreamID, s.Direction, a.Sequence, s.LastSeq)
	}
	r.checkSize(s, len(a.Payload))
	s.Packets++
	s.Bytes += len(a.Payload)
	if r.opts.Keep {
		s.Payload = append(s.Payload, a.Payload...)
	}
	pcm := decode(a.Payload, s.codec)
	if len(s.samples) < maxAnalysed*s.Rate {
		s.samples = append(s.samples, pcm...)
	}
	if r.opts.WavDir != "" && s.wav == nil && s.End == nil {
		s.WavPath = filepath.Join(r.opts.WavDir, fmt.Sprintf("stream-%d-%s.wav", s.StreamID, s.Direction))
		w, err := createWav(s.WavPath, s.Rate)
		if err != nil {
			r.printf("ERROR      %v", err)
			s.WavPath = ""
		}
		s.wav = w
	}
	if s.wav != nil {
		s.wav.Write(pcm)
	}
}

func decode(p []byte, c mediafork.Codec) []int16 {
	out := make([]int16, len(p)/c.BytesPerSample())
	return out[:c.Decode(out, p)]
}

// Streams returns a snapshot of what arrived, ordered by stream id and direction.
func (r *Receiver) Streams() []*Stream {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Stream, 0, len(r.streams))
	for _, s := range r.streams {
		c := *s
		c.Payload = bytes.Clone(s.Payload)
		c.samples = slices.Clone(s.samples)
		c.wav = nil
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
		c.Warnings = slices.Clone(s.Warnings)
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
func (r *Receiver) Invalid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.invalid
}

// DominantHz estimates the strongest frequency in the first seconds of s.
func (s *Stream) DominantHz(rate int) int { return dominantHz(s.samples, rate) }

// WriteSummary prints one line per stream and direction and the totals.
func (r *Receiver) WriteSummary(w io.Writer) {
	streams := r.Streams()
	ids := map[uint32]bool{}
	var packets, bytes, missing, reordered int
	fmt.Fprintf(w, "SUMMARY %d stream(s), %d direction(s), %s\n", countIDs(streams, ids), len(streams), time.Since(r.started).Round(time.Millisecond))
	for _, s := range streams {
		ch, end := "-", "none"
		if s.Signaling != nil {
			ch = s.Signaling.ChannelID
		}
		if s.End != nil {
			end = s.End.Reason.String()
		}
		from := "assumed"
		if s.Format != nil {
			from = "format packet"
		}
		fmt.Fprintf(w, "  stream=%d dir=%-5s channel=%q packets=%d bytes=%d seq=%d..%d missing=%d reordered=%d end=%s %s/%dHz (%s) dominant=%dHz",
			s.StreamID, s.Direction, ch, s.Packets, s.Bytes, s.FirstSeq, s.LastSeq, s.Missing, s.Reordered, end,
			s.Encoding, s.Rate, from, s.DominantHz(s.Rate))
		if s.WavPath != "" {
			fmt.Fprintf(w, " wav=%s", s.WavPath)
		}
		fmt.Fprintln(w)
		for _, m := range s.Warnings {
			fmt.Fprintf(w, "    warning: %s\n", m)
		}
		packets += s.Packets
		bytes += s.Bytes
		missing += s.Missing
		reordered += s.Reordered
	}
	fmt.Fprintf(w, "TOTAL packets=%d bytes=%d missing=%d reordered=%d invalid=%d\n", packets, bytes, missing, reordered, r.Invalid())
}

func countIDs(streams []*Stream, ids map[uint32]bool) int {
	for _, s := range streams {
		ids[s.StreamID] = true
	}
	return len(ids)
}
