package mediafork

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/netip"

	"github.com/mediafork/mediafork/twiliows"
)

// twilioProtocol is Twilio Media Streams' WebSocket protocol (package
// twiliows): mediafork dials the endpoint's url when the fork starts and sends
// connected, start (streamSid; callSid the call's uuid; tracks; mediaFormat;
// customParameters the fork's metadata and the endpoint's parameters), media
// messages (track inbound for RX, outbound for TX; chunk counting each track's
// 20 ms frames from 1; timestamp the ms of the stream's media clock), dtmf for
// each digit the channel received, and stop, then closes (1000). Every
// connection counts its messages in sequenceNumber from 1 (start); a
// reconnection sends connected and start again with the same streamSid, and
// chunk and timestamp go on from the stream's media clock, so what was lost
// while down shows as a gap.
//
// The format: audio/x-mulaw at 8000 Hz by default (what every Twilio consumer
// expects, whatever the fork's own encoding); encoding l16 sends audio/x-l16
// at 8000 or 16000 Hz in little-endian byte order, as FreeSWITCH delivers it,
// Plivo streams it and raw-PCM consumers (speech engines' "linear16", "pcm16")
// take it; encoding l16be sends the same in network byte order as audio/L16
// (RFC 2586), for consumers of RTP-style L16 such as Telnyx's. directions:
// rx, tx or both (the default: the bug's); a consumer that treats every
// media message as the caller (Pipecat's serializer does) wants [rx].
//
// Keys, beyond the common ones (url: ws://host/path or wss://...):
//
//	headers: {Name: value}            sent with the upgrade (Authorization: ...): secrets, values from
//	                                  files or the environment (the config's {file: ...}, {env: ...})
//	parameters: {name: value}         added to customParameters
//	account_sid: AC...                start's and stop's accountSid (default "")
//	tls_ca_file: ca.pem               verify the server against these CAs, not the system's
//	tls_insecure_skip_verify: false   do not verify (testing only)
//	queue_ms: 2000                    audio queued for a slow connection; beyond, dropped and counted
//	connect_timeout: 5s               TCP, TLS and the upgrade
//	write_timeout: 2s                 a server slower than this to take a message is dropped and dialed again
type twilioProtocol struct{}

func (twilioProtocol) Name() Protocol { return ProtocolTwilio }
func (twilioProtocol) Shared() bool   { return false }
func (twilioProtocol) Keys() []string { return append(StreamKeys(), "account_sid") }

func (twilioProtocol) ParseOptions(keys map[string]any) (OutputOptions, error) {
	return parseStreamEndpoint(ProtocolTwilio, keys, "account_sid")
}

func (twilioProtocol) DecodeOptions(raw json.RawMessage) (OutputOptions, error) {
	return decodeStreamOptions(ProtocolTwilio, raw)
}

// Pin: the address is the url's host, resolved once; nothing else to pin.
func (twilioProtocol) Pin(_ context.Context, _ netip.AddrPort, opts OutputOptions, _ Resolver) (OutputOptions, error) {
	return opts, nil
}

// Format: pcmu at 8000 Hz unless the endpoint says l16 (8000 or 16000 Hz),
// in 20 ms frames, the bug's directions but mixed (twilio's tracks are a
// party's each).
func (twilioProtocol) Format(ask EndpointFormat, _ OutputOptions, p Params) (EndpointFormat, error) {
	f := ask
	if f.Directions == 0 {
		f.Directions = p.Mix.Dirs()
		if f.Directions.Has(DirMixed) {
			return f, fmt.Errorf("directions: twilio's tracks are inbound (rx) and outbound (tx), which a %s bug does not keep apart: fork stereo (or mono for rx)", p.Mix)
		}
	}
	if f.Directions.Has(DirMixed) {
		return f, fmt.Errorf("directions: twilio's tracks are inbound (rx) and outbound (tx); mixed is neither")
	}
	if f.Encoding == "" {
		f.Encoding = PCMU
	}
	switch f.Encoding {
	case PCMU:
		if f.Rate == 0 {
			f.Rate = 8000
		}
		if f.Rate != 8000 {
			return f, fmt.Errorf("rate: twilio's audio/x-mulaw is 8000 Hz; use encoding l16 for %d Hz", f.Rate)
		}
	case L16, L16BE:
		if f.Rate == 0 {
			f.Rate = 8000
			if p.Rate%16000 == 0 {
				f.Rate = 16000
			}
		}
		if f.Rate != 8000 && f.Rate != 16000 {
			return f, fmt.Errorf("rate: twilio's audio/x-l16 is 8000 or 16000 Hz, not %d", f.Rate)
		}
	default:
		return f, fmt.Errorf("encoding: twilio carries pcmu (audio/x-mulaw), l16 (audio/x-l16) or l16be (audio/L16), not %s", f.Encoding)
	}
	if f.FrameMs == 0 {
		f.FrameMs = 20
	}
	return f.Resolve(p)
}

func (twilioProtocol) newStreamOutput(f *Fork, c OutputConfig) (forkOutput, error) {
	so, _ := c.Options.(StreamOptions)
	w := &twilioWire{sid: c.Identity.StreamSid, callSid: string(c.Call), frameMs: c.Format.FrameMs,
		format: twiliows.MediaFormat{Encoding: twilioEncoding(c.Format.Encoding), SampleRate: c.Format.Rate, Channels: 1}}
	w.tracks[DirRX], w.tracks[DirTX] = twiliows.TrackInbound, twiliows.TrackOutbound
	for _, d := range c.Format.Directions.List() {
		w.trackList = append(w.trackList, w.tracks[d])
	}
	if so.ep != nil {
		w.account, w.params = so.ep.AccountSid, so.ep.Parameters
	}
	w.frameBytes = c.Format.Params(c.Mix).FrameSamples() * c.Format.Encoding.BytesPerSample()
	o, err := newStreamOutputOf(f, streamConfig{OutputConfig: c, wire: w, cutAudio: func(o *streamOutput) {
		o.pk, o.sh = newCutter(c.Mix, c.BugRate, c.Format, o.dirs, o, o)
	}})
	if err != nil {
		return nil, err
	}
	return o, nil
}

func twilioEncoding(e Encoding) string {
	switch e {
	case L16:
		return twiliows.EncodingL16
	case L16BE:
		return twiliows.EncodingL16BE
	}
	return twiliows.EncodingMulaw
}

// Slot kinds of a twilio stream.
const (
	twilioMedia uint8 = iota + 1
	twilioDTMF
)

// twilioWire is one twilio output's messages.
type twilioWire struct {
	sid, callSid, account string
	params                map[string]string
	tracks                [4]string // by Direction
	trackList             []string
	format                twiliows.MediaFormat
	frameMs               int
	frameBytes            int

	seq uint64 // the connection's last sequenceNumber (writer goroutine)
}

func (w *twilioWire) subprotocol() string { return "" }
func (w *twilioWire) slotsPerFrame() int  { return len(w.trackList) }

func (w *twilioWire) slotSize() (room, size int) {
	return twiliows.HeaderRoom, max(twiliows.MediaBodySize(w.frameBytes, len(w.sid)), twiliows.DTMFBodySize(len(w.sid)))
}

func (w *twilioWire) hello(send sendFunc, md Metadata) error {
	w.seq = 0
	if err := send(true, twiliows.AppendConnected(nil)); err != nil {
		return err
	}
	params := map[string]string{}
	for k, v := range w.params {
		params[k] = v
	}
	for k, v := range map[string]string{"channel_id": md.ChannelID, "exten": md.Exten, "caller_id": md.CallerID, "called_id": md.CalledID} {
		if v != "" {
			params[k] = v
		}
	}
	w.seq++
	b, err := twiliows.AppendStart(nil, w.seq, twiliows.Start{AccountSid: w.account, StreamSid: w.sid, CallSid: w.callSid,
		Tracks: w.trackList, MediaFormat: w.format, CustomParameters: params})
	if err != nil {
		return err
	}
	return send(true, b)
}

// audio writes a media message's body: chunk the Packetizer's number of the
// track's frame, timestamp where it starts on the media clock.
func (w *twilioWire) audio(s *slot, dir Direction, seq uint32, payload []byte) {
	b := twiliows.AppendMediaBody(s.body(twiliows.HeaderRoom), w.tracks[dir], uint64(seq), uint64(seq-1)*uint64(w.frameMs), payload, w.sid)
	s.n, s.kind, s.text = len(b), twilioMedia, true
}

func (w *twilioWire) sendsDTMF() bool { return true }

func (w *twilioWire) dtmf(s *slot, d DTMF) {
	b := twiliows.AppendDTMFBody(s.body(twiliows.HeaderRoom), byte(d.Digit), w.sid)
	s.n, s.kind, s.text = len(b), twilioDTMF, true
}

// message puts the event and the connection's next sequenceNumber in front
// of the body, in the slot's room.
func (w *twilioWire) message(s *slot) []byte {
	event := twiliows.EventMedia
	if s.kind == twilioDTMF {
		event = twiliows.EventDTMF
	}
	w.seq++
	var hdr [twiliows.HeaderRoom]byte
	h := twiliows.AppendHeader(hdr[:0], event, w.seq)
	at := twiliows.HeaderRoom - len(h)
	copy(s.buf[at:], h)
	return s.buf[at : twiliows.HeaderRoom+s.n]
}

func (w *twilioWire) bye(send sendFunc, _ EndReason) error {
	w.seq++
	b, err := twiliows.AppendStop(nil, w.seq, twiliows.Stop{AccountSid: w.account, CallSid: w.callSid}, w.sid)
	if err != nil {
		return err
	}
	return send(true, b)
}

// server: a Twilio server sends JSON text messages; on a bidirectional
// stream media (its base64 payload in the stream's mediaFormat), mark and
// clear, each naming the stream's streamSid (talk-back, SPEC §9); anything
// else is refused.
func (w *twilioWire) server(text bool, b []byte) (string, talkbackMsg, error) {
	if !text {
		return "", talkbackMsg{}, errNoMessage
	}
	m, err := twiliows.Parse(b)
	if err != nil {
		return "", talkbackMsg{}, err
	}
	switch m.Event {
	case twiliows.EventMedia, twiliows.EventMark, twiliows.EventClear:
		if m.StreamSid != w.sid {
			return "", talkbackMsg{}, fmt.Errorf("%s for streamSid %.40q, not this stream's", m.Event, m.StreamSid)
		}
	}
	switch m.Event {
	case twiliows.EventMedia:
		if m.Media == nil || m.Media.Payload == "" {
			return "", talkbackMsg{}, fmt.Errorf("media without a payload")
		}
		audio, err := base64.StdEncoding.DecodeString(m.Media.Payload)
		if err != nil {
			return "", talkbackMsg{}, fmt.Errorf("media payload is not base64")
		}
		return m.Event, talkbackMsg{op: talkAudio, audio: audio}, nil
	case twiliows.EventMark:
		if m.Mark == nil || m.Mark.Name == "" {
			return "", talkbackMsg{}, fmt.Errorf("mark without a name")
		}
		return m.Event, talkbackMsg{op: talkMark, name: m.Mark.Name}, nil
	case twiliows.EventClear:
		return m.Event, talkbackMsg{op: talkClear}, nil
	}
	return m.Event, talkbackMsg{}, nil
}

// markEcho: Twilio sends the mark back, with its name, numbered with the
// connection's messages.
func (w *twilioWire) markEcho(name string, _ bool) []byte {
	w.seq++
	return twiliows.AppendMark(nil, w.seq, name, w.sid)
}
