package web

import (
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// audioStreamSource is amigniter's mod_audio_stream
// (../shared/freeswitch/captures/audio_stream): no subprotocol offered (none
// needed; one answered is ignored); the metadata is a text frame, but audio
// captured while the upgrade was pending is queued and flushed in a burst
// right after the 101, before the metadata (s09c: 25 frames within 0.8 ms,
// then the metadata, then live audio every 20 ms); without metadata there is
// no text frame at all (s01). It never sends a zero-length frame (no graceful
// shutdown: s07), closes 1000 "Normal closure" on stop and hangup (s08, s16),
// echoes our close, and never reconnects.
//
// So before a fork begins, the audio that opens a connection is held until a
// text frame, the metadata. For a fork typed by hand, whose metadata may never
// come, a frame coming BurstGap or more after the one before it is live
// audio, and the fork begins without metadata (it would have come within the
// burst). A fork mediafork started has metadata for certain (its signed
// description), which may come after a gap and even after live audio: over
// wss:// libwsc sends the burst, stalls 44 ms, then the metadata (measured on
// the real switch with metadata of 149 to 8192 bytes), and with 8 KB of it a
// live frame came first; its audio is held until the metadata. Either way no
// more is held than maxHeldFrames / maxHeldBytes: then the fork begins without
// metadata (a signed one is then refused).
type audioStreamSource struct{}

// BurstGap separates a queued burst (frames 0.0–0.1 ms apart, s09c) from live
// audio (20 ms apart, or 100 ms with STREAM_BUFFER_SIZE).
const BurstGap = 5 * time.Millisecond

// Bounds of what is held: libwsc queues at most 1 s (its connect timeout),
// 50 frames of 20 ms.
const (
	maxHeldFrames = 64
	maxHeldBytes  = 512 << 10
)

func (audioStreamSource) Name() string        { return mediafork.SourceAudioStream }
func (audioStreamSource) Subprotocol() string { return "" }

func (audioStreamSource) NewStream(signed bool) mediafork.SourceStream {
	return &audioStreamStream{signed: signed}
}

type audioStreamStream struct {
	signed, begun bool
	held          [][]byte
	heldBytes     int
	last          time.Time // arrival of the last held frame
}

func (s *audioStreamStream) Message(now time.Time, binary bool, p []byte) mediafork.Step {
	if s.begun {
		s.held = nil // written at StepFlush
		if binary && len(p) > 0 {
			return mediafork.StepAudio
		}
		return 0 // later text frames: logged and ignored; an empty frame carries nothing
	}
	switch {
	case !binary: // the metadata, after any burst
		s.begun = true
		return mediafork.StepBegin | s.flush()
	case !s.signed && len(s.held) > 0 && now.Sub(s.last) >= BurstGap,
		len(s.held)+1 > maxHeldFrames, s.heldBytes+len(p) > maxHeldBytes:
		s.begun = true // live audio: no metadata is coming
		return mediafork.StepBegin | mediafork.StepFlush | mediafork.StepAudio
	}
	s.held = append(s.held, append([]byte(nil), p...))
	s.heldBytes += len(p)
	s.last = now
	return 0
}

func (s *audioStreamStream) flush() mediafork.Step {
	if len(s.held) > 0 {
		return mediafork.StepFlush
	}
	return 0
}

func (s *audioStreamStream) Held() [][]byte { return s.held }

// PeerClosed: the module closes 1000 "Normal closure" on stop and hangup, and
// echoes ours with our code and reason (s10).
func (s *audioStreamStream) PeerClosed(int) mediafork.EndReason { return mediafork.EndHangup }

// sourceFor is the Source of a connection: the one a signed credential names;
// for a fork typed by hand, mod_audio_fork when its subprotocol is offered
// (it always is: every t* request.txt), else mod_audio_stream (which never
// offers one: every audio_stream/s*/ws/*/request.txt).
func sourceFor(pass *mediafork.Pass, offered []string) mediafork.Source {
	if pass != nil {
		if pass.Source == mediafork.SourceAudioStream {
			return audioStreamSource{}
		}
		return audioForkSource{}
	}
	for _, p := range offered {
		if p == Subprotocol {
			return audioForkSource{}
		}
	}
	return audioStreamSource{}
}
