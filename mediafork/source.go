package mediafork

import "time"

// Source is an ingest protocol: how the media connection of one FreeSWITCH
// module (mod_audio_fork, mod_audio_stream) becomes a fork's description,
// metadata and PCM frames, and what its ends mean. The ingest's readers drive
// any Source message by message.
type Source interface {
	// Name is the module as Spec.Source names it: "audio_fork", "audio_stream".
	Name() string
	// Subprotocol is echoed when the module offers it ("" for none).
	Subprotocol() string
	// NewStream starts interpreting one connection. signed: a fork mediafork
	// started (a credential), whose description comes in its metadata text
	// frame for certain: audio before it is held however it is spaced, up to
	// the Source's bound. Otherwise (typed by hand) the metadata may never
	// come.
	NewStream(signed bool) SourceStream
}

// SourceStream interprets one connection's data messages, in order, from one
// goroutine at a time.
type SourceStream interface {
	// Message says what one data message, received at now, asks for (now is
	// zero once the fork has begun: the clock is not read per frame).
	Message(now time.Time, binary bool, p []byte) Step
	// Held is the audio held back until the fork began, in arrival order: what
	// StepFlush writes. Valid until the next Message.
	Held() [][]byte
	// PeerClosed is the end reason when the peer closes with code.
	PeerClosed(code int) EndReason
}

// Step is what a message asks of the ingest: any of these, done in this order.
type Step uint8

const (
	// StepBegin: resolve and begin the fork now, with p as the metadata text
	// when the message is text (none when it is binary).
	StepBegin Step = 1 << iota
	// StepFlush: write Held().
	StepFlush
	// StepAudio: write p, L16 PCM.
	StepAudio
	// StepGraceful: the module's graceful shutdown: flush and end the fork
	// now (with StepClose when the module will not close the connection
	// itself).
	StepGraceful
	// StepClose: close the connection (normal closure) and stop reading.
	StepClose
)

// Source names, as Spec.Source carries them.
const (
	SourceAudioFork   = "audio_fork"
	SourceAudioStream = "audio_stream"
)
