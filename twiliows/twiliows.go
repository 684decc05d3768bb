// Package twiliows is Twilio Media Streams' WebSocket messages
// (https://www.twilio.com/docs/voice/media-streams/websocket-messages), as
// mediafork's twilio output sends them and as their consumers (Pipecat's
// TwilioFrameSerializer, Twilio-built bots) read them: every message is a
// JSON text frame with an "event"; every one but "connected" carries
// "sequenceNumber", a string counting the messages of the connection from
// "1", and the stream's "streamSid". A media message's "chunk" (counting from
// "1") and "timestamp" (ms from the stream's start) are strings too; the
// start message's mediaFormat numbers are numbers.
//
//	{"event":"connected","protocol":"Call","version":"1.0.0"}
//	{"event":"start","sequenceNumber":"1","start":{"accountSid":"","streamSid":"MZ…","callSid":"…",
//	  "tracks":["inbound","outbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},
//	  "customParameters":{…}},"streamSid":"MZ…"}
//	{"event":"media","sequenceNumber":"2","media":{"track":"inbound","chunk":"1","timestamp":"0","payload":"…"},"streamSid":"MZ…"}
//	{"event":"dtmf","sequenceNumber":"9","dtmf":{"track":"inbound_track","digit":"1"},"streamSid":"MZ…"}
//	{"event":"stop","sequenceNumber":"10","stop":{"accountSid":"","callSid":"…"},"streamSid":"MZ…"}
//
// It is pure (bytes in, bytes out). The media and dtmf bodies and every
// message's header are appended to the caller's buffer without allocating,
// so a message costs no garbage on the media path; the rare messages
// (connected, start, stop) and the parsing of what a server sends go through
// encoding/json.
package twiliows

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Events.
const (
	EventConnected = "connected"
	EventStart     = "start"
	EventMedia     = "media"
	EventDTMF      = "dtmf"
	EventStop      = "stop"
	EventMark      = "mark"
	EventClear     = "clear"
)

// Tracks, as media messages and the start message's tracks name them, and
// the one track of a dtmf message.
const (
	TrackInbound     = "inbound"  // what the call's party sends: mediafork's RX
	TrackOutbound    = "outbound" // what is played to it: mediafork's TX
	DTMFTrackInbound = "inbound_track"
)

// Media formats a start message announces.
const (
	EncodingMulaw = "audio/x-mulaw" // G.711 µ-law, 8000 Hz: what every Twilio consumer expects
	EncodingL16   = "audio/x-l16"   // 16-bit linear PCM, little-endian (Plivo's and FreeSWITCH's byte order)
	EncodingL16BE = "audio/L16"     // 16-bit linear PCM in network byte order (RFC 2586's audio/L16)
)

// The connected message's protocol and version, as Twilio sends them.
const (
	Protocol = "Call"
	Version  = "1.0.0"
)

// Message is one message of either direction. Fields a message does not
// carry are empty.
type Message struct {
	Event          string `json:"event"`
	SequenceNumber string `json:"sequenceNumber,omitempty"`
	Protocol       string `json:"protocol,omitempty"` // connected
	Version        string `json:"version,omitempty"`  // connected
	Start          *Start `json:"start,omitempty"`
	Media          *Media `json:"media,omitempty"`
	DTMF           *DTMF  `json:"dtmf,omitempty"`
	Stop           *Stop  `json:"stop,omitempty"`
	Mark           *Mark  `json:"mark,omitempty"`
	StreamSid      string `json:"streamSid,omitempty"`
}

// Start is a start message's stream metadata.
type Start struct {
	AccountSid       string            `json:"accountSid"`
	StreamSid        string            `json:"streamSid"`
	CallSid          string            `json:"callSid"`
	Tracks           []string          `json:"tracks"`
	MediaFormat      MediaFormat       `json:"mediaFormat"`
	CustomParameters map[string]string `json:"customParameters"`
}

// MediaFormat is the format of the media messages' payloads.
type MediaFormat struct {
	Encoding   string `json:"encoding"`
	SampleRate int    `json:"sampleRate"`
	Channels   int    `json:"channels"`
}

// Media is a media message's track, position and base64 payload. A server
// sending audio back gives only Payload.
type Media struct {
	Track     string `json:"track,omitempty"`
	Chunk     string `json:"chunk,omitempty"`
	Timestamp string `json:"timestamp,omitempty"`
	Payload   string `json:"payload"`
}

// DTMF is a dtmf message's track and digit.
type DTMF struct {
	Track string `json:"track"`
	Digit string `json:"digit"`
}

// Stop is a stop message's account and call.
type Stop struct {
	AccountSid string `json:"accountSid"`
	CallSid    string `json:"callSid"`
}

// Mark is a mark message's name.
type Mark struct {
	Name string `json:"name"`
}

// HeaderRoom is the most bytes AppendHeader writes: what a buffer keeps in
// front of a body so that the header can be put before it in place.
const HeaderRoom = len(`{"event":"connected","sequenceNumber":"18446744073709551615",`)

// AppendHeader appends the start of a numbered message: its event and
// sequence number, up to the body: {"event":"media","sequenceNumber":"2",
func AppendHeader(b []byte, event string, seq uint64) []byte {
	b = append(b, `{"event":"`...)
	b = append(b, event...)
	b = append(b, `","sequenceNumber":"`...)
	b = strconv.AppendUint(b, seq, 10)
	return append(b, `",`...)
}

// AppendMediaBody appends the rest of a media message after its header:
// "media":{...},"streamSid":"..."}. payload is the raw audio, written in
// base64. streamSid must need no JSON escaping (mediafork's are "MZ" and hex).
func AppendMediaBody(b []byte, track string, chunk, timestampMs uint64, payload []byte, streamSid string) []byte {
	b = append(b, `"media":{"track":"`...)
	b = append(b, track...)
	b = append(b, `","chunk":"`...)
	b = strconv.AppendUint(b, chunk, 10)
	b = append(b, `","timestamp":"`...)
	b = strconv.AppendUint(b, timestampMs, 10)
	b = append(b, `","payload":"`...)
	b = base64.StdEncoding.AppendEncode(b, payload)
	b = append(b, `"},"streamSid":"`...)
	b = append(b, streamSid...)
	return append(b, `"}`...)
}

// MediaBodySize is the most bytes AppendMediaBody appends for a payload of
// payloadLen bytes and a stream sid of sidLen.
func MediaBodySize(payloadLen, sidLen int) int {
	return len(`"media":{"track":"outbound","chunk":"18446744073709551615","timestamp":"18446744073709551615","payload":""},"streamSid":""}`) +
		base64.StdEncoding.EncodedLen(payloadLen) + sidLen
}

// AppendDTMFBody appends the rest of a dtmf message after its header:
// "dtmf":{"track":"inbound_track","digit":"1"},"streamSid":"..."}. digit
// must be one of 0-9 * # A-D (the caller's to check).
func AppendDTMFBody(b []byte, digit byte, streamSid string) []byte {
	b = append(b, `"dtmf":{"track":"`+DTMFTrackInbound+`","digit":"`...)
	b = append(b, digit)
	b = append(b, `"},"streamSid":"`...)
	b = append(b, streamSid...)
	return append(b, `"}`...)
}

// DTMFBodySize is the most bytes AppendDTMFBody appends for a stream sid of
// sidLen.
func DTMFBodySize(sidLen int) int {
	return len(`"dtmf":{"track":"inbound_track","digit":"1"},"streamSid":""}`) + sidLen
}

// AppendMark appends a mark message, numbered seq, of stream streamSid: what
// Twilio sends back once the audio a server sent before its mark has been
// played (or cleared).
func AppendMark(b []byte, seq uint64, name, streamSid string) []byte {
	n, _ := json.Marshal(name) // a string always marshals
	b = AppendHeader(b, EventMark, seq)
	b = append(b, `"streamSid":"`...)
	b = append(b, streamSid...)
	b = append(b, `","mark":{"name":`...)
	b = append(b, n...)
	return append(b, `}}`...)
}

// AppendConnected appends the connected message, every connection's first.
func AppendConnected(b []byte) []byte {
	return append(b, `{"event":"connected","protocol":"`+Protocol+`","version":"`+Version+`"}`...)
}

// AppendStart appends the start message, numbered seq, of the stream s
// describes.
func AppendStart(b []byte, seq uint64, s Start) ([]byte, error) {
	if s.Tracks == nil {
		s.Tracks = []string{}
	}
	if s.CustomParameters == nil {
		s.CustomParameters = map[string]string{}
	}
	body, err := json.Marshal(struct {
		Start     Start  `json:"start"`
		StreamSid string `json:"streamSid"`
	}{s, s.StreamSid})
	if err != nil {
		return b, err
	}
	b = AppendHeader(b, EventStart, seq)
	return append(b, body[1:]...), nil // body without its '{'
}

// AppendStop appends the stop message, numbered seq, of stream streamSid.
func AppendStop(b []byte, seq uint64, s Stop, streamSid string) ([]byte, error) {
	body, err := json.Marshal(struct {
		Stop      Stop   `json:"stop"`
		StreamSid string `json:"streamSid"`
	}{s, streamSid})
	if err != nil {
		return b, err
	}
	b = AppendHeader(b, EventStop, seq)
	return append(b, body[1:]...), nil
}

// Errors of Parse.
var (
	ErrNotUTF8  = errors.New("twiliows: message is not UTF-8")
	ErrNotJSON  = errors.New("twiliows: message is not a JSON object")
	ErrNoEvent  = errors.New("twiliows: message has no event")
	ErrBadEvent = errors.New("twiliows: event is not a word")
	ErrTooDeep  = errors.New("twiliows: message nests too deep")
)

// MaxDepth bounds how deep a message's objects and arrays nest: Twilio's
// nest two deep; a deeper one is refused before it is decoded.
const MaxDepth = 8

// Depth is how deep b's JSON objects and arrays nest (strings skipped), up
// to limit+1: the cheap check before decoding what a server sends.
func Depth(b []byte, limit int) int {
	depth, most := 0, 0
	in, esc := false, false
	for _, c := range b {
		switch {
		case in:
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				in = false
			}
		case c == '"':
			in = true
		case c == '{' || c == '[':
			depth++
			if depth > most {
				most = depth
				if most > limit {
					return most
				}
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return most
}

// maxEventLen bounds an event's name: a word, not a payload.
const maxEventLen = 32

// Parse reads one message (a text frame). It refuses what is not UTF-8, not
// a JSON object of the message's shape, or has no event (or one that is not a
// short word); other fields are as the sender wrote them, to be checked by
// who uses them.
func Parse(b []byte) (Message, error) {
	var m Message
	if !utf8.Valid(b) {
		return m, ErrNotUTF8
	}
	if Depth(b, MaxDepth) > MaxDepth {
		return m, ErrTooDeep
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return Message{}, fmt.Errorf("%w: %v", ErrNotJSON, err)
	}
	if m.Event == "" {
		return m, ErrNoEvent
	}
	if len(m.Event) > maxEventLen {
		return m, ErrBadEvent
	}
	for i := 0; i < len(m.Event); i++ {
		if c := m.Event[i]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return m, ErrBadEvent
		}
	}
	return m, nil
}
