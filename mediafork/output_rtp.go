package mediafork

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/mediafork/mediafork/rtpcodec"
)

// rtpProtocol is RTP over UDP (RFC 3550, RFC 3551): one RTP stream per
// direction of the endpoint, each with its own random SSRC, first sequence
// number and timestamp, the marker bit on its first packet. The first
// direction (RX, TX, MIXED in that order) goes to `address`, each next one
// two ports up (the even-port convention: RX to 5000, TX to 5002), TX to
// `tx_address` instead when set; each stream's RTCP goes to its port + 1
// (so `address` must be even). Payload types: pcmu 0 and pcma 8 (8000 Hz),
// l16 a dynamic type in network byte order at the endpoint's rate (l16 and
// l16be are the same on the wire). DTMF the channel received goes as RFC 4733
// telephone-events on the RX stream (on MIXED when the endpoint has no RX).
// Every 5 s of audio each stream sends an RTCP sender report with its CNAME
// (the call's uuid), and a BYE at the end. The fork's SDP (Fork.SDP)
// describes its RTP streams for receivers.
//
// Keys, beyond the common ones:
//
//	tx_address: host:port          where TX goes when the endpoint carries RX and TX (default: address's port + 2)
//	payload_type: 96-127           l16's dynamic payload type (default 96)
//	dtmf_payload_type: 96-127      telephone-event's (default 101)
type rtpProtocol struct{}

// RTP's defaults and bounds.
const (
	DefaultL16PayloadType  = 96
	DefaultDTMFPayloadType = 101
	// RTCPInterval is the media time between two sender reports of a stream.
	RTCPInterval = 5 * time.Second
	// dtmfVolume is the telephone-event volume sent: -10 dBm0, a typical
	// keypad level (RFC 4733 §2.5.2.2).
	dtmfVolume = 10
	// dtmfEndCopies: the final packet of an event is sent three times (RFC
	// 4733 §2.5.1.4).
	dtmfEndCopies = 3
)

// RTPOptions are an RTP endpoint's options.
type RTPOptions struct {
	// TxAddress is tx_address as configured; Pin resolves it into Tx.
	TxAddress       string         `json:"-"`
	Tx              netip.AddrPort `json:"tx,omitzero"`
	PayloadType     uint8          `json:"pt,omitempty"`  // l16's; 0: DefaultL16PayloadType
	DTMFPayloadType uint8          `json:"dpt,omitempty"` // 0: DefaultDTMFPayloadType
}

// OptionsOf is ProtocolRTP.
func (RTPOptions) OptionsOf() Protocol { return ProtocolRTP }

func (o RTPOptions) payloadType(e Encoding) uint8 {
	switch e {
	case PCMU:
		return 0
	case PCMA:
		return 8
	}
	if o.PayloadType != 0 {
		return o.PayloadType
	}
	return DefaultL16PayloadType
}

func (o RTPOptions) dtmfPayloadType() uint8 {
	if o.DTMFPayloadType != 0 {
		return o.DTMFPayloadType
	}
	return DefaultDTMFPayloadType
}

func rtpOptions(o OutputOptions) RTPOptions {
	if ro, ok := o.(RTPOptions); ok {
		return ro
	}
	return RTPOptions{}
}

func (rtpProtocol) Name() Protocol { return ProtocolRTP }
func (rtpProtocol) Shared() bool   { return false }
func (rtpProtocol) Keys() []string {
	return []string{"tx_address", "payload_type", "dtmf_payload_type"}
}

func (rtpProtocol) ParseOptions(keys map[string]any) (OutputOptions, error) {
	var o RTPOptions
	if v, ok := keys["tx_address"]; ok {
		s, isStr := v.(string)
		if !isStr || s == "" {
			return nil, fmt.Errorf("tx_address: %v is not host:port", v)
		}
		o.TxAddress = s
	}
	for _, k := range []struct {
		key string
		dst *uint8
	}{{"payload_type", &o.PayloadType}, {"dtmf_payload_type", &o.DTMFPayloadType}} {
		v, ok := keys[k.key]
		if !ok {
			continue
		}
		n, err := dynamicPayloadType(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.key, err)
		}
		*k.dst = n
	}
	if o.PayloadType != 0 && o.PayloadType == o.dtmfPayloadType() {
		return nil, fmt.Errorf("dtmf_payload_type: %d is payload_type too: each needs its own", o.dtmfPayloadType())
	}
	if o == (RTPOptions{}) {
		return nil, nil
	}
	return o, nil
}

// dynamicPayloadType reads a payload type of RFC 3551's dynamic range.
func dynamicPayloadType(v any) (uint8, error) {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case uint64:
		n = int64(min(x, math.MaxInt32))
	case float64:
		if x != math.Trunc(x) {
			return 0, fmt.Errorf("%v is not a whole number", v)
		}
		n = int64(x)
	default:
		return 0, fmt.Errorf("%v is not a number", v)
	}
	if n < 96 || n > 127 {
		return 0, fmt.Errorf("%d is not a dynamic payload type (96-127)", n)
	}
	return uint8(n), nil
}

func (rtpProtocol) DecodeOptions(raw json.RawMessage) (OutputOptions, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var o RTPOptions
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	for _, pt := range []uint8{o.PayloadType, o.DTMFPayloadType} {
		if pt != 0 && (pt < 96 || pt > 127) {
			return nil, fmt.Errorf("payload type %d is not dynamic", pt)
		}
	}
	if o.Tx.IsValid() {
		if err := rtpPort(o.Tx); err != nil {
			return nil, fmt.Errorf("tx_address: %w", err)
		}
	}
	return o, nil
}

// rtpPort checks that a is an RTP stream's address: an even port, its RTCP
// port (the next, odd one) on the same host.
func rtpPort(a netip.AddrPort) error {
	switch {
	case !a.Addr().IsValid() || a.Port() == 0:
		return fmt.Errorf("%s is not an address", a)
	case a.Port()%2 != 0:
		return fmt.Errorf("port %d is odd: an RTP stream takes an even port, its RTCP the next one", a.Port())
	}
	return nil
}

func (rtpProtocol) Pin(ctx context.Context, addr netip.AddrPort, opts OutputOptions, resolve Resolver) (OutputOptions, error) {
	if err := rtpPort(addr); err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	o := rtpOptions(opts)
	if o.TxAddress != "" {
		tx, err := resolve(ctx, o.TxAddress)
		if err != nil {
			return nil, fmt.Errorf("tx_address: %w", err)
		}
		if err := rtpPort(tx); err != nil {
			return nil, fmt.Errorf("tx_address: %w", err)
		}
		o.Tx, o.TxAddress = tx, ""
	}
	if o == (RTPOptions{}) {
		return nil, nil
	}
	return o, nil
}

// Format: the fork's own format where the endpoint sets nothing, in what RTP
// carries: l16 goes in network byte order (l16be), G.711 at 8000 Hz.
func (rtpProtocol) Format(ask EndpointFormat, opts OutputOptions, p Params) (EndpointFormat, error) {
	f, err := ask.Resolve(p)
	if err != nil {
		return f, err
	}
	o := rtpOptions(opts)
	switch f.Encoding {
	case L16:
		f.Encoding = L16BE // RFC 3551 §4.5.11: L16 is in network byte order
	case PCMU, PCMA:
		if f.Rate != 8000 {
			return f, fmt.Errorf("rate: %s over RTP is 8000 Hz (static payload type %d); use encoding l16 for %d Hz",
				f.Encoding, o.payloadType(f.Encoding), f.Rate)
		}
		if o.PayloadType != 0 {
			return f, fmt.Errorf("payload_type: %s has the static payload type %d; payload_type is l16's", f.Encoding, o.payloadType(f.Encoding))
		}
	}
	if o.Tx.IsValid() || o.TxAddress != "" {
		if dirs := f.Directions.List(); !f.Directions.Has(DirTX) || dirs[0] == DirTX {
			return f, fmt.Errorf("tx_address: the endpoint's first stream (%s) goes to address; tx_address is for TX beside RX", dirName(dirs[0]))
		}
	}
	return f, nil
}

// Routes: the i-th direction's RTP to address's port + 2i (TX to tx_address
// when set), its RTCP to the next port.
func (rtpProtocol) Routes(t Target, dirs []Direction) (media, control []netip.AddrPort, err error) {
	o := rtpOptions(t.Options)
	media, control = make([]netip.AddrPort, len(dirs)), make([]netip.AddrPort, len(dirs))
	for i, d := range dirs {
		a := t.Addr
		port := int(a.Port()) + 2*i
		if d == DirTX && i > 0 && o.Tx.IsValid() {
			a, port = o.Tx, int(o.Tx.Port())
		}
		if port%2 != 0 || port+1 > math.MaxUint16 {
			return nil, nil, fmt.Errorf("address: the %s stream would take ports %d and %d: an even port below 65535 is needed", dirName(d), port, port+1)
		}
		media[i] = netip.AddrPortFrom(a.Addr(), uint16(port))
		control[i] = netip.AddrPortFrom(a.Addr(), uint16(port+1))
	}
	return media, control, nil
}

func (rtpProtocol) NewFramer(c FramerConfig) Framer {
	o := rtpOptions(c.Options)
	r := &rtpFramer{
		pt:      o.payloadType(c.Format.Encoding),
		dtmfPT:  o.dtmfPayloadType(),
		rate:    c.Format.Rate,
		frame:   uint32(c.Format.Params(c.Mix).FrameSamples()),
		bps:     c.Format.Encoding.BytesPerSample(),
		cname:   string(c.Call),
		srEvery: uint32(c.Format.Rate) * uint32(RTCPInterval/time.Second),
		dtmfDir: dtmfStream(c.Format.Directions),
		em:      c.Emitter,
	}

	for _, d := range c.Dirs {
		id := c.Identity.RTP[d]
		r.dirs[d] = rtpStream{ssrc: id.SSRC, seq0: id.Seq, ts0: id.Timestamp}
		if rs := c.Resume; rs != nil {
			// Where the stream stood: its audio packets up to Last (those
			// the gaps skipped counted too: an estimate for the sender
			// reports) and each digit's packets among them.
			s := &r.dirs[d]
			s.started, s.mark = rs.Last > 0, true
			s.audio, s.end = rs.Last, id.Timestamp+rs.Last*r.frame
			if d == r.dtmfDir {
				s.extra = uint16(rs.Digits * (1 + dtmfEndCopies))
			}
			s.packets = rs.Last + uint32(s.extra)
			s.octets = rs.Last * r.frame * uint32(r.bps)
		}
	}
	return r
}

// dtmfStream is the stream DTMF goes on: RX, else MIXED (which carries the
// far end too), else none (0: a TX-only endpoint hears only what the channel
// sends).
func dtmfStream(s DirSet) Direction {
	switch {
	case s.Has(DirRX):
		return DirRX
	case s.Has(DirMixed):
		return DirMixed
	}
	return 0
}

// rtpFramer builds one RTP output's packets: per direction an RTP stream
// whose sequence numbers follow the Packetizer's (plus the DTMF packets, which
// take numbers too) and whose timestamps follow its media clock, and the
// RTCP that goes with each.
type rtpFramer struct {
	pt, dtmfPT uint8
	rate       int
	frame      uint32 // samples per full packet
	bps        int    // payload bytes per sample
	cname      string
	srEvery    uint32    // samples between sender reports
	dtmfDir    Direction // 0: none
	dirs       [4]rtpStream
	em         Emitter
	buf        [rtpcodec.MaxCompoundSize]byte
}

// rtpStream is one direction's RTP stream.
type rtpStream struct {
	ssrc    uint32
	seq0    uint16 // sequence number of the Packetizer's packet 1
	ts0     uint32 // timestamp of the stream's first sample
	extra   uint16 // packets that were not audio (DTMF), which took sequence numbers
	audio   uint32 // the Packetizer's last packet
	end     uint32 // the timestamp after the last audio sample sent
	started bool   // a packet went out: no more marker
	mark    bool   // the next packet follows a gap: marker
	packets uint32 // RTP packets sent, for sender reports
	octets  uint32 // their payload bytes
	sinceSR uint32 // samples since the last sender report
	sr      bool   // one went out
}

var _ Framer = (*rtpFramer)(nil)

func (r *rtpFramer) AudioHeaderSize() int { return rtpcodec.HeaderSize }
func (r *rtpFramer) MaxControlSize() int  { return len(r.buf) }

// Start keeps the emitter: RTP has nothing to send before the audio.
func (r *rtpFramer) Start(e Emitter, _ []Direction, _ Metadata, _ Params, _ time.Time) { r.em = e }

// Audio writes the RTP header: the sequence number and timestamp of the
// Packetizer's packet seq, the marker bit on the stream's first packet. A
// sender report goes out with the stream's first packet and every
// RTCPInterval of audio after.
func (r *rtpFramer) Audio(b []byte, dir Direction, seq uint32, payloadLen int) []byte {
	s := &r.dirs[dir]
	ts := s.ts0 + (seq-1)*r.frame
	rtpcodec.PutHeader(b, !s.started || s.mark, r.pt, s.seq0+uint16(seq-1)+s.extra, ts, s.ssrc)
	samples := uint32(payloadLen / r.bps)
	s.started, s.mark, s.audio, s.end = true, false, seq, ts+samples
	s.packets++
	s.octets += uint32(payloadLen)
	s.sinceSR += samples
	if !s.sr || s.sinceSR >= r.srEvery {
		r.report(dir, false)
	}
	return b[:rtpcodec.HeaderSize+payloadLen]
}

// report sends dir's RTCP: a sender report pairing now with the end of the
// audio sent so far on the RTP clock, the CNAME, and a BYE at the end.
func (r *rtpFramer) report(dir Direction, bye bool) {
	s := &r.dirs[dir]
	end := s.end
	if !s.started {
		end = s.ts0
	}
	info := rtpcodec.SenderInfo{SSRC: s.ssrc, NTPTime: rtpcodec.NTPTime(time.Now()), RTPTime: end,
		Packets: s.packets, Octets: s.octets}
	n, err := rtpcodec.PutCompound(r.buf[:], info, r.cname, bye)
	s.sinceSR, s.sr = 0, true
	r.em.Emit(ControlRoute(dir), packet(r.buf[:], n, err))
}

// DTMF sends an RFC 4733 event on the DTMF stream: its first packet (marker
// set) and the final one three times, all with the event's start as their
// timestamp and its whole duration (the digit is reported once it ended).
func (r *rtpFramer) DTMF(e Emitter, _ Direction, d DTMF) {
	if r.dtmfDir == 0 {
		return
	}
	code, ok := rtpcodec.EventCode(byte(d.Digit))
	if !ok {
		return
	}
	s := &r.dirs[r.dtmfDir]
	ts := s.ts0 + uint32(int64(d.MediaTime)*int64(r.rate)/int64(time.Second))
	dur := uint16(min(int64(d.Duration)*int64(r.rate)/int64(time.Second), math.MaxUint16))
	b := r.buf[:rtpcodec.HeaderSize+rtpcodec.EventSize]
	for i := range 1 + dtmfEndCopies {
		rtpcodec.PutHeader(b, i == 0, r.dtmfPT, s.seq0+uint16(s.audio)+s.extra, ts, s.ssrc)
		rtpcodec.PutEvent(b[rtpcodec.HeaderSize:], code, i > 0, dtmfVolume, dur)
		s.extra++
		s.packets++
		s.octets += rtpcodec.EventSize
		e.Emit(MediaRoute(r.dtmfDir), b)
	}
}

// Gap marks each stream's next packet (RFC 3550 §5.1: the marker begins a
// talkspurt after silence): its sequence number and timestamp jump by the
// packets missed, as the Packetizer's seq did.
func (r *rtpFramer) Gap(_ Emitter, dirs []Direction, _, missing uint32, _ GapReason) {
	if missing == 0 {
		return
	}
	for _, d := range dirs {
		r.dirs[d].mark = true
	}
}

// End sends each stream's last sender report with a BYE.

func (r *rtpFramer) End(_ Emitter, dirs []Direction, _ []uint32, _ EndReason) {
	for _, d := range dirs {
		r.report(d, true)
	}
}
