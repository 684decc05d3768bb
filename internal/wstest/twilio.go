package wstest

import (
	"encoding/base64"
	"fmt"
	"strconv"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/twiliows"
)

// TwilioStream is one connection's messages as a Twilio Media Streams
// consumer reads them (as Pipecat's serializer and Twilio's examples do):
// connected first, then start, media, dtmf, stop; each checked on the way.
type TwilioStream struct {
	Messages  []twiliows.Message
	Connected bool
	Start     *twiliows.Start
	StreamSid string            // of the start message
	Payload   map[string][]byte // each track's payloads, decoded from base64, in order
	Chunks    map[string][]int  // each track's chunk numbers, in order
	Times     map[string][]int  // and timestamps
	Digits    string            // dtmf digits, in order
	Stopped   bool
	Problems  []string // what a consumer would trip on
}

// ReadTwilio reads one connection's messages.
func ReadTwilio(msgs []Message) TwilioStream {
	s := TwilioStream{Payload: map[string][]byte{}, Chunks: map[string][]int{}, Times: map[string][]int{}}
	bad := func(f string, a ...any) { s.Problems = append(s.Problems, fmt.Sprintf(f, a...)) }
	seq := 0
	for i, raw := range msgs {
		if !raw.Text {
			bad("message %d is a binary frame", i)
			continue
		}
		m, err := twiliows.Parse(raw.Data)
		if err != nil {
			bad("message %d: %v", i, err)
			continue
		}
		s.Messages = append(s.Messages, m)
		if i == 0 && m.Event != twiliows.EventConnected {
			bad("the first message is %q, not connected", m.Event)
		}
		if m.Event == twiliows.EventConnected {
			if i != 0 || m.Protocol != twiliows.Protocol || m.Version != twiliows.Version {
				bad("connected message %d: %+v", i, m)
			}
			s.Connected = true
			continue
		}
		seq++
		if m.SequenceNumber != strconv.Itoa(seq) {
			bad("message %d (%s): sequenceNumber %q, want %d", i, m.Event, m.SequenceNumber, seq)
		}
		if s.Start != nil && m.StreamSid != s.StreamSid {
			bad("message %d (%s): streamSid %q, the start's %q", i, m.Event, m.StreamSid, s.StreamSid)
		}
		switch m.Event {
		case twiliows.EventStart:
			if s.Start != nil || m.Start == nil {
				bad("message %d: a second start, or one without its object", i)
				continue
			}
			s.Start, s.StreamSid = m.Start, m.StreamSid
			if m.Start.StreamSid != m.StreamSid {
				bad("start.streamSid %q, streamSid %q", m.Start.StreamSid, m.StreamSid)
			}
		case twiliows.EventMedia:
			if s.Start == nil || m.Media == nil {
				bad("message %d: media before start, or without its object", i)
				continue
			}
			p, err := base64.StdEncoding.DecodeString(m.Media.Payload)
			if err != nil {
				bad("message %d: payload: %v", i, err)
			}
			tr := m.Media.Track
			chunk, err1 := strconv.Atoi(m.Media.Chunk)
			ts, err2 := strconv.Atoi(m.Media.Timestamp)
			if err1 != nil || err2 != nil {
				bad("message %d: chunk %q, timestamp %q are not numbers", i, m.Media.Chunk, m.Media.Timestamp)
			}
			if c := s.Chunks[tr]; len(c) > 0 && (chunk <= c[len(c)-1] || ts < s.Times[tr][len(c)-1]) {
				bad("message %d: %s chunk %d at %d ms after chunk %d at %d ms", i, tr, chunk, ts, c[len(c)-1], s.Times[tr][len(c)-1])
			}
			s.Payload[tr] = append(s.Payload[tr], p...)
			s.Chunks[tr] = append(s.Chunks[tr], chunk)
			s.Times[tr] = append(s.Times[tr], ts)
		case twiliows.EventDTMF:
			if m.DTMF == nil || m.DTMF.Track != twiliows.DTMFTrackInbound || len(m.DTMF.Digit) != 1 {
				bad("message %d: dtmf %+v", i, m.DTMF)
				continue
			}
			s.Digits += m.DTMF.Digit
		case twiliows.EventStop:
			if m.Stop == nil || s.Start == nil || m.Stop.CallSid != s.Start.CallSid {
				bad("message %d: stop %+v", i, m.Stop)
			}
			s.Stopped = true
		default:
			bad("message %d: event %q", i, m.Event)
		}
		if s.Stopped && m.Event != twiliows.EventStop {
			bad("message %d (%s) after stop", i, m.Event)
		}
	}
	return s
}

// Samples decodes a track's payloads in the start's format.
func (s TwilioStream) Samples(track string) []int16 {
	if s.Start == nil {
		return nil
	}
	var c mediafork.Codec
	switch s.Start.MediaFormat.Encoding {
	case twiliows.EncodingMulaw:
		c = mediafork.PCMU.Codec()
	case twiliows.EncodingL16:
		c = mediafork.L16.Codec()
	case twiliows.EncodingL16BE:
		c = mediafork.L16BE.Codec()
	default:
		return nil
	}
	p := s.Payload[track]
	out := make([]int16, len(p)/c.BytesPerSample())
	return out[:c.Decode(out, p)]
}
