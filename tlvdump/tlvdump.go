// Package tlvdump is a TLV receiver like ForkStream's tlv_receiver.py: it prints
// one line per packet, reports sequence gaps and reordering, writes a WAV file
// per stream and direction, and sums it all up at the end. `mediafork tlvdump`,
// `mediafork demo` and the tests use it.
package tlvdump

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// Options say how to read the audio (packets do not carry it) and what to print.
type Options struct {
	Encoding mediafork.Encoding // of the payload; default l16
	Rate     int                // sample rate; default 8000
	WavDir   string             // "" writes no WAV files
	Out      io.Writer          // one line per packet; nil prints nothing
	Keep     bool               // keep every payload in Stream.Payload (tests)
}

// Receiver listens for TLV packets on one UDP socket.
type Receiver struct {
	conn *net.UDPConn
	opts Options

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
	Packets        int    // audio packets
	Bytes          int    // audio payload bytes
	FirstSeq       uint32 // of the first audio packet
	LastSeq        uint32 // highest seen
	Missing        int    // sequence numbers skipped
	Reordered      int    // packets older than one already seen
	Duplicates     int
	End            *tlvcodec.End
	AudioBeforeSig bool
	WavPath        string
	Payload        []byte // every audio payload in arrival order, with Options.Keep
	samples        []int16
	wav            *wavWriter
}

// Listen opens the UDP socket.
func Listen(addr string, opts Options) (*Receiver, error) {
	if opts.Encoding == "" {
		opts.Encoding = mediafork.L16
	}
	if opts.Rate == 0 {
		opts.Rate = 8000
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
	if opts.WavDir != "" {
		if err := os.MkdirAll(opts.WavDir, 0o755); err != nil {
			conn.Close()
			return nil, err
		}
	}
	return &Receiver{conn: conn, opts: opts, streams: map[streamKey]*Stream{}, started: time.Now()}, nil
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
		s = &Stream{StreamID: id, Direction: dir}
		r.streams[k] = s
	}
	return s
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
	s.Packets++
	s.Bytes += len(a.Payload)
	if r.opts.Keep {
		s.Payload = append(s.Payload, a.Payload...)
	}
	pcm := decode(a.Payload, r.opts.Encoding)
	if len(s.samples) < maxAnalysed*r.opts.Rate {
		s.samples = append(s.samples, pcm...)
	}
	if r.opts.WavDir != "" && s.wav == nil && s.End == nil {
		s.WavPath = filepath.Join(r.opts.WavDir, fmt.Sprintf("stream-%d-%s.wav", s.StreamID, s.Direction))
		w, err := createWav(s.WavPath, r.opts.Rate)
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

func decode(p []byte, enc mediafork.Encoding) []int16 {
	var out []int16
	switch enc {
	case mediafork.PCMU:
		out = make([]int16, len(p))
		for i, b := range p {
			out[i] = mediafork.ULawToLinear(b)
		}
	case mediafork.PCMA:
		out = make([]int16, len(p))
		for i, b := range p {
			out[i] = mediafork.ALawToLinear(b)
		}
	case mediafork.L16BE:
		out = make([]int16, len(p)/2)
		for i := range out {
			out[i] = int16(uint16(p[2*i])<<8 | uint16(p[2*i+1]))
		}
	default:
		out = make([]int16, len(p)/2)
		for i := range out {
			out[i] = int16(uint16(p[2*i]) | uint16(p[2*i+1])<<8)
		}
	}
	return out
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
		fmt.Fprintf(w, "  stream=%d dir=%-5s channel=%q packets=%d bytes=%d seq=%d..%d missing=%d reordered=%d end=%s dominant=%dHz",
			s.StreamID, s.Direction, ch, s.Packets, s.Bytes, s.FirstSeq, s.LastSeq, s.Missing, s.Reordered, end, s.DominantHz(r.opts.Rate))
		if s.WavPath != "" {
			fmt.Fprintf(w, " wav=%s", s.WavPath)
		}
		fmt.Fprintln(w)
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
