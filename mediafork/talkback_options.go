package mediafork

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// TalkbackTo is who hears what an endpoint's receiver sends back into the
// call (SPEC §9): the forked channel's far end (the caller, for a fork on the
// inbound leg), the party the channel is bridged to, or both. Its zero value
// is off: the endpoint cannot speak.
type TalkbackTo uint8

// Parties of talk-back: a set of legs (bit 0 far, bit 1 other).
const (
	TalkbackOff   TalkbackTo = 0
	TalkbackFar   TalkbackTo = 1 // added to the forked channel's TX
	TalkbackOther TalkbackTo = 2 // added to the TX of the channel bridged to it
	TalkbackBoth  TalkbackTo = TalkbackFar | TalkbackOther
)

// ParseTalkbackTo reads far | other | both (any case).
func ParseTalkbackTo(s string) (TalkbackTo, error) {
	for _, t := range []TalkbackTo{TalkbackFar, TalkbackOther, TalkbackBoth} {
		if strings.EqualFold(s, t.String()) {
			return t, nil
		}
	}
	return TalkbackOff, fmt.Errorf("%q is not one of far|other|both", s)
}

// String is the party as configuration spells it ("" when off).
func (t TalkbackTo) String() string {
	switch t {
	case TalkbackFar:
		return "far"
	case TalkbackOther:
		return "other"
	case TalkbackBoth:
		return "both"
	}
	return ""
}

// Has reports whether leg is among the parties.
func (t TalkbackTo) Has(leg Leg) bool { return t&(1<<leg) != 0 }

// Within reports whether every party of t is one of allowed's.
func (t TalkbackTo) Within(allowed TalkbackTo) bool { return t != 0 && t&^allowed == 0 }

// MarshalText writes the party ("" when off).
func (t TalkbackTo) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads a party; "" is off.
func (t *TalkbackTo) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*t = TalkbackOff
		return nil
	}
	v, err := ParseTalkbackTo(string(b))
	if err != nil {
		return err
	}
	*t = v
	return nil
}

// Leg is one party talk-back is played to: the forked channel's far end
// (LegFar: mixed into that channel's TX) or the party it is bridged to
// (LegOther: mixed into the bridged channel's TX).
type Leg uint8

// Legs.
const (
	LegFar   Leg = 0
	LegOther Leg = 1
)

func (l Leg) String() string {
	if l == LegOther {
		return "other"
	}
	return "far"
}

// TalkbackKeys are the endpoint keys of every protocol that carries
// talk-back (tlv, twilio, audiofork).
func TalkbackKeys() []string { return []string{"talkback", "talkback_to"} }

// parseTalkback reads an endpoint's talkback and talkback_to keys: off
// unless talkback is true; talkback_to (default far) only with it.
func parseTalkback(keys map[string]any) (TalkbackTo, error) {
	on := false
	if v, ok := keys["talkback"]; ok {
		b, isBool := v.(bool)
		if !isBool {
			return 0, fmt.Errorf("talkback: %v is not true or false", v)
		}
		on = b
	}
	v, ok := keys["talkback_to"]
	if !ok {
		if on {
			return TalkbackFar, nil
		}
		return TalkbackOff, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return 0, fmt.Errorf("talkback_to: %v is not one of far|other|both", v)
	}
	to, err := ParseTalkbackTo(s)
	if err != nil {
		return 0, fmt.Errorf("talkback_to: %w", err)
	}
	if !on {
		return 0, fmt.Errorf("talkback_to: set talkback: true too (talk-back is off by default)")
	}
	return to, nil
}

// TLVOptions are a TLV endpoint's options: whether its receiver may send
// talk-back packets (SPEC §9) and to whom. A TLV endpoint with talk-back has
// an output (a stream id) of its own, so that what it sends back names it.
type TLVOptions struct {
	Talkback TalkbackTo `json:"tb"`
}

// OptionsOf is tlv.
func (TLVOptions) OptionsOf() Protocol { return ProtocolTLV }

// Injection is how a fork's talk-back gets into the switch, decided by the
// module that streams it and signed in its credential.
type Injection string

// Injections.
const (
	// InjectNone: the fork cannot play talk-back (a fork typed by hand on a
	// switch mediafork has no control connection to).
	InjectNone Injection = ""
	// InjectStream: jambonz's mod_audio_fork started with its bidirectional
	// arguments takes L16 frames down the fork's own WebSocket and mixes
	// them into the channel's TX; marks echoed, killAudio clears.
	InjectStream Injection = "stream"
	// InjectPlayAudio: drachtio's mod_audio_fork writes each playAudio
	// message into a file and says so (CUSTOM mod_audio_fork::play_audio);
	// mediafork mixes it in with uuid_displace ... mux.
	InjectPlayAudio Injection = "play_audio"
	// InjectStreamAudio: mod_audio_stream's streamAudio, likewise
	// (CUSTOM mod_audio_stream::play).
	InjectStreamAudio Injection = "stream_audio"
)

// DefaultTalkbackMaxQueue bounds a fork's queued talk-back (talkback.max_queue).
const DefaultTalkbackMaxQueue = 30 * time.Second

// TalkbackSettings are the process-wide talk-back bounds (config talkback).
type TalkbackSettings struct {
	// MaxQueue is the most audio one fork holds for its receivers to be
	// played; a receiver sending more is refused (counted) until it drains.
	MaxQueue time.Duration
}

// decodeTLVOptions reads a TLV target's options from a credential.
func decodeTLVOptions(raw json.RawMessage) (OutputOptions, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var o TLVOptions
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&o); err != nil {
		return nil, fmt.Errorf("tlv options: %w", err)
	}
	if o.Talkback == TalkbackOff {
		return nil, nil
	}
	return o, nil
}
