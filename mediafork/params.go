package mediafork

import (
	"fmt"
	"strconv"
	"strings"
)

// Mix is how mod_audio_fork mixes the call: which channels the WebSocket carries.
type Mix string

// Mixes, as uuid_audio_fork names them.
const (
	Mono   Mix = "mono"   // the read stream only: RX
	Mixed  Mix = "mixed"  // read and write summed: one MIXED direction
	Stereo Mix = "stereo" // interleaved L = read (RX), R = write (TX)
)

// Channels is the number of interleaved channels in the PCM.
func (m Mix) Channels() int {
	if m == Stereo {
		return 2
	}
	return 1
}

// Directions lists the TLV directions a fork of this mix carries, in the order
// their signaling goes out.
func (m Mix) Directions() []Direction {
	switch m {
	case Stereo:
		return []Direction{DirRX, DirTX}
	case Mixed:
		return []Direction{DirMixed}
	}
	return []Direction{DirRX}
}

// MaxDatagram is the most one UDP datagram carries over IPv4 (65,535 less the
// IP and UDP headers): a TLV packet may say 65,535, but none larger than this
// can be sent.
const MaxDatagram = 65507

// MaxRate is the highest sample rate mediafork accepts anywhere (config,
// API, fs_cli, channel variables, the ingest query) and puts in a format
// packet: 48 kHz, the highest rate a FreeSWITCH channel runs at (Opus and
// L16 top out there). mod_audio_fork would resample to any multiple of 8000
// it is asked for, but above 48 kHz that adds bytes, not audio, and a
// receiver told 1.6 MHz sizes its buffers and its analysis by it.
const MaxRate = 48000

// ValidRate reports whether hz is a rate mediafork sends: a positive
// multiple of 8000 up to MaxRate (8, 16, 24, 32, 40 or 48 kHz).
func ValidRate(hz int) bool { return hz > 0 && hz%8000 == 0 && hz <= MaxRate }

// rateError says why hz is not a valid rate, naming the key.
func rateError(hz int) error {
	if hz > MaxRate {
		return fmt.Errorf("rate: %d Hz is above %d Hz, the highest rate FreeSWITCH runs a channel at", hz, MaxRate)
	}
	return fmt.Errorf("rate: %d is not a multiple of 8000", hz)
}

// Params say how a fork's audio arrives and how it leaves.
type Params struct {
	Mix      Mix      `json:"mix"`
	Rate     int      `json:"rate"`
	Encoding Encoding `json:"encoding"`
	FrameMs  int      `json:"frame_ms"`
}

// FrameSamples is the number of samples per channel in one packet.
func (p Params) FrameSamples() int { return p.Rate * p.FrameMs / 1000 }

// PayloadSize is the audio bytes in one full packet.
func (p Params) PayloadSize() int { return p.FrameSamples() * p.Encoding.BytesPerSample() }

// Validate reports the first parameter that is out of range, naming it.
func (p Params) Validate() error {
	if errs := p.Problems(); len(errs) > 0 {
		return errs[0]
	}
	return nil
}

// Problems is every parameter out of range, each naming its key ("rate: ..."),
// for a config check that reports all at once. A frame length is judged only
// at a valid rate and encoding.
func (p Params) Problems() []error {
	var errs []error
	switch p.Mix {
	case Mono, Mixed, Stereo:
	default:
		errs = append(errs, fmt.Errorf("mix: %q is not one of mono|mixed|stereo", p.Mix))
	}
	rateOK := ValidRate(p.Rate)
	if !rateOK {
		errs = append(errs, rateError(p.Rate))
	}
	encOK := p.Encoding.Codec() != nil
	if !encOK {
		errs = append(errs, fmt.Errorf("encoding: %q is not one of %s", p.Encoding, EncodingNames()))
	}
	switch {
	case p.FrameMs <= 0 || (rateOK && p.Rate*p.FrameMs%1000 != 0):
		errs = append(errs, fmt.Errorf("frame_ms: %d does not make whole samples at %d Hz", p.FrameMs, p.Rate))
	case rateOK && encOK && p.PayloadSize() > MaxAudioPayload:
		errs = append(errs, fmt.Errorf("frame_ms: %d ms of %s at %d Hz is %d bytes, more than one UDP datagram (%d bytes) holds",
			p.FrameMs, p.Encoding, p.Rate, p.PayloadSize(), MaxDatagram))
	}
	return errs
}

// ParseRate accepts mod_audio_fork's spellings: 8k, 16k, 8000, 16000. A
// number above MaxRate is refused here, before it can overflow or travel.
func ParseRate(s string) (int, error) {
	digits, mult := s, 1
	if strings.HasSuffix(s, "k") {
		digits, mult = s[:len(s)-1], 1000
	}
	n, err := strconv.Atoi(digits)
	if err != nil || strconv.Itoa(n) != digits || n < 0 {
		return 0, fmt.Errorf("rate: %q is not a sample rate", s)
	}
	if n > MaxRate/mult {
		return 0, fmt.Errorf("rate: %s is above %d Hz, the highest rate FreeSWITCH runs a channel at", s, MaxRate)
	}
	return n * mult, nil
}

// Metadata is what a fork's signaling packets say about the call.
type Metadata struct {
	ChannelID string `json:"channel_id,omitempty"`
	Exten     string `json:"exten,omitempty"`
	CallerID  string `json:"caller_id,omitempty"`
	CalledID  string `json:"called_id,omitempty"`
}

// Fill sets every field of m that is empty from other: the first source found wins.
func (m *Metadata) Fill(other Metadata) {
	fill := func(dst *string, src string) {
		if *dst == "" {
			*dst = src
		}
	}
	fill(&m.ChannelID, other.ChannelID)
	fill(&m.Exten, other.Exten)
	fill(&m.CallerID, other.CallerID)
	fill(&m.CalledID, other.CalledID)
}
