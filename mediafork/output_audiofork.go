package mediafork

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"unicode/utf8"

	"github.com/mediafork/mediafork/twiliows"
)

// audioforkProtocol is mod_audio_fork's own WebSocket stream, as a
// mod_audio_fork server (jambonz-style) takes it: mediafork dials the
// endpoint's url as mod_audio_fork would, offering the subprotocol
// audio.drachtio.org, sends the fork's metadata as a JSON object in the first
// text frame, then binary frames of 16-bit linear PCM, little-endian, in the
// endpoint's mix and rate, frame_ms long (20 ms by default), and closes with
// 1000 at the end; a reconnection sends the metadata frame again. The mix:
// directions [rx, tx] is stereo (interleaved, left RX, right TX: the bug's
// own when it is stereo), [rx] mono (RX alone), [mixed] mixed (a stereo bug's
// L+R, summed by mediafork, or a mixed bug's own). The rate is the bug's, or
// a lower one it divides by a whole number (low-pass filtered).
//
// The metadata frame: {"uuid", "bug", "channel_id", "exten", "caller_id",
// "called_id" (those set), "mix", "sample_rate", and the endpoint's
// parameters}.
//
// Keys, beyond the common ones (url, directions, rate, frame_ms; encoding is
// l16): those of twilio's but account_sid: headers, parameters, tls_ca_file,
// tls_insecure_skip_verify, queue_ms, connect_timeout, write_timeout.
type audioforkProtocol struct{}

// AudioForkSubprotocol is the WebSocket subprotocol mod_audio_fork offers.
const AudioForkSubprotocol = "audio.drachtio.org"

func (audioforkProtocol) Name() Protocol { return ProtocolAudioFork }
func (audioforkProtocol) Shared() bool   { return false }
func (audioforkProtocol) Keys() []string { return StreamKeys() }

// audioforkReserved are the metadata frame's own names.
func audioforkReserved() []string { return []string{"uuid", "bug", "mix", "sample_rate"} }

func (audioforkProtocol) ParseOptions(keys map[string]any) (OutputOptions, error) {
	o, err := parseStreamEndpoint(ProtocolAudioFork, keys)
	if err != nil {
		return nil, err
	}
	for k := range o.ep.Parameters {
		if slices.Contains(audioforkReserved(), k) {
			return nil, fmt.Errorf("parameters: %s is the metadata frame's own", k)
		}
	}
	return o, nil
}

func (audioforkProtocol) DecodeOptions(raw json.RawMessage) (OutputOptions, error) {
	return decodeStreamOptions(ProtocolAudioFork, raw)
}

func (audioforkProtocol) Pin(_ context.Context, _ netip.AddrPort, opts OutputOptions, _ Resolver) (OutputOptions, error) {
	return opts, nil
}

// audioforkMix is the mix an audiofork endpoint's directions make.
func audioforkMix(d DirSet) (Mix, bool) {
	switch d {
	case DirSetOf(DirRX, DirTX):
		return Stereo, true
	case DirSetOf(DirRX):
		return Mono, true
	case DirSetOf(DirMixed):
		return Mixed, true
	}
	return "", false
}

// Format: L16 in one of mod_audio_fork's mixes, the bug's own by default, in
// 20 ms frames.
func (audioforkProtocol) Format(ask EndpointFormat, _ OutputOptions, p Params) (EndpointFormat, error) {
	f := ask
	if f.Directions == 0 {
		f.Directions = p.Mix.Dirs()
	}
	if _, ok := audioforkMix(f.Directions); !ok {
		return f, fmt.Errorf("directions: audiofork carries mod_audio_fork's mixes: [rx, tx] (stereo), [rx] (mono) or [mixed], not %s", f.Directions)
	}
	if f.Encoding == "" {
		f.Encoding = L16
	}
	if f.Encoding != L16 {
		return f, fmt.Errorf("encoding: audiofork carries l16 (little-endian linear PCM, as mod_audio_fork), not %s", f.Encoding)
	}
	if f.FrameMs == 0 {
		f.FrameMs = 20
	}
	return f.Resolve(p)
}

func (audioforkProtocol) newStreamOutput(f *Fork, c OutputConfig) (forkOutput, error) {
	so, _ := c.Options.(StreamOptions)
	mix, _ := audioforkMix(c.Format.Directions)
	chans := len(c.Format.Directions.List())
	w := &audioforkWire{uuid: string(c.Call), bug: c.Bug, mix: mix, rate: c.Format.Rate,
		frameBytes: c.Format.Params(c.Mix).FrameSamples() * 2 * chans}
	if so.ep != nil {
		w.params = so.ep.Parameters
	}
	o, err := newStreamOutputOf(f, streamConfig{OutputConfig: c, wire: w, cutAudio: func(o *streamOutput) {
		o.pk, o.sh = newInterleavedCutter(c.Mix, c.BugRate, c.Format, o.dirs, o, o)
	}})
	if err != nil {
		return nil, err
	}
	return o, nil
}

// newInterleavedCutter makes what cuts the PCM of a bug of mix at bugRate
// into frames of format carrying its directions dirs interleaved (L16
// little-endian, one channel a direction in order): one Packetizer "direction"
// (dirs[0]) whose samples are the whole interleaved set, read in place from
// the bug's PCM when it only picks (stereo from stereo, RX from stereo or
// mono, mixed from mixed), else from a shaper that mixes and downsamples.
func newInterleavedCutter(mix Mix, bugRate int, format EndpointFormat, dirs []Direction, fr Framer, sink PacketSink) (*Packetizer, *shaper) {
	frame := format.Params(mix).FrameSamples()
	codec := pcmCopy(2 * len(dirs))
	one := dirs[:1]
	m := bugRate / format.Rate
	if sum := mix == Stereo && format.Directions.Has(DirMixed); m == 1 && !sum {
		return newPacketizer(2*mix.Channels(), one, []int{0}, frame, codec, fr, sink), nil
	}
	pk := newPacketizer(2*len(dirs), one, []int{0}, frame, codec, fr, sink)
	return pk, newShaper(mix, dirs, m, pk)
}

// pcmCopy is a Codec of interleaved L16 little-endian samples of n bytes
// each (a sample of every channel), copied as they are: audiofork's frames.
type pcmCopy int

func (c pcmCopy) Name() Encoding      { return L16 }
func (c pcmCopy) Code() uint8         { return 0 }
func (c pcmCopy) BytesPerSample() int { return int(c) }

func (c pcmCopy) Encode(dst, src []byte, stride, n int) {
	size := int(c)
	if stride == size {
		copy(dst[:n*size], src[:n*size])
		return
	}
	for i := 0; i < n; i++ {
		copy(dst[i*size:(i+1)*size], src[i*stride:i*stride+size])
	}
}

func (c pcmCopy) Decode(dst []int16, src []byte) int {
	n := len(src) / 2
	for i := 0; i < n; i++ {
		dst[i] = int16(uint16(src[2*i]) | uint16(src[2*i+1])<<8)
	}
	return n
}

// audioforkWire is one audiofork output's messages.
type audioforkWire struct {
	uuid, bug  string
	mix        Mix
	rate       int
	params     map[string]string
	frameBytes int
}

func (w *audioforkWire) subprotocol() string        { return AudioForkSubprotocol }
func (w *audioforkWire) slotsPerFrame() int         { return 1 }
func (w *audioforkWire) slotSize() (room, size int) { return 0, w.frameBytes }

// hello sends the metadata frame.
func (w *audioforkWire) hello(send sendFunc, md Metadata) error {
	m := map[string]any{"uuid": w.uuid, "mix": string(w.mix), "sample_rate": w.rate}
	if w.bug != "" {
		m["bug"] = w.bug
	}
	for k, v := range map[string]string{"channel_id": md.ChannelID, "exten": md.Exten, "caller_id": md.CallerID, "called_id": md.CalledID} {
		if v != "" {
			m[k] = v
		}
	}
	for k, v := range w.params {
		m[k] = v
	}
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return send(true, b)
}

// audio copies one frame of every direction, interleaved.
func (w *audioforkWire) audio(s *slot, _ Direction, _ uint32, payload []byte) {
	s.n, s.kind, s.text = copy(s.buf, payload), slotInterleaved, false
}

// mod_audio_fork's stream carries no DTMF.
func (w *audioforkWire) sendsDTMF() bool  { return false }
func (w *audioforkWire) dtmf(*slot, DTMF) {}

func (w *audioforkWire) message(s *slot) []byte { return s.buf[:s.n] }

// bye: nothing; the close (1000) says it.
func (w *audioforkWire) bye(sendFunc, EndReason) error { return nil }

// server: a mod_audio_fork server sends JSON text messages with a "type"
// (playAudio, killAudio, transcription, ...) and, on a bidirectional stream
// as jambonz's module takes it, binary audio (L16 little-endian mono at the
// endpoint's rate), {"type":"mark","data":{"name":...}} and
// {"type":"killAudio"}: talk-back (SPEC §9). A text frame that is not such
// an object is refused.
func (w *audioforkWire) server(text bool, b []byte) (string, talkbackMsg, error) {
	if !text {
		return "binary", talkbackMsg{op: talkAudio, audio: b}, nil
	}
	if !utf8.Valid(b) {
		return "", talkbackMsg{}, fmt.Errorf("text frame is not UTF-8")
	}
	if twiliows.Depth(b, twiliows.MaxDepth) > twiliows.MaxDepth {
		return "", talkbackMsg{}, fmt.Errorf("text frame nests too deep")
	}
	var m struct {
		Type string `json:"type"`
		Data *struct {
			Name *string `json:"name"`
		} `json:"data"`
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return "", talkbackMsg{}, fmt.Errorf("text frame is not a JSON object of its shape: %v", err)
	}
	if m.Type == "" || len(m.Type) > 32 {
		return "", talkbackMsg{}, fmt.Errorf("text frame has no type")
	}
	for i := 0; i < len(m.Type); i++ {
		if c := m.Type[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == ':' || c == '.') {
			return "", talkbackMsg{}, fmt.Errorf("type is not a word")
		}
	}
	switch m.Type {
	case "mark":
		if m.Data == nil || m.Data.Name == nil || *m.Data.Name == "" {
			return "", talkbackMsg{}, fmt.Errorf("mark without a name")
		}
		return m.Type, talkbackMsg{op: talkMark, name: *m.Data.Name}, nil
	case "killAudio":
		return m.Type, talkbackMsg{op: talkClear}, nil
	}
	return m.Type, talkbackMsg{}, nil
}

// markEcho is jambonz's answer: {"type":"mark","data":{"name":...,
// "event":"playout"|"cleared"}}.
func (w *audioforkWire) markEcho(name string, cleared bool) []byte {
	event := "playout"
	if cleared {
		event = "cleared"
	}
	b, _ := json.Marshal(map[string]any{"type": "mark", "data": map[string]string{"name": name, "event": event}})
	return b
}
