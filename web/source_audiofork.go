package web

import (
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// audioForkSource is drachtio's mod_audio_fork (../shared/freeswitch/captures):
// it offers the subprotocol audio.drachtio.org and aborts on any other answer;
// its first message is the metadata text frame when the fork was started with
// metadata (right after the handshake: audio captured before it is dropped),
// else audio; a zero-length binary frame is its graceful shutdown, after
// which it sends nothing, not even a close frame (t13_graceful): the server
// flushes, ends the fork and closes at once.
type audioForkSource struct{}

func (audioForkSource) Name() string        { return mediafork.SourceAudioFork }
func (audioForkSource) Subprotocol() string { return Subprotocol }

func (audioForkSource) NewStream(bool) mediafork.SourceStream { return &audioForkStream{} }

type audioForkStream struct {
	begun bool
}

func (s *audioForkStream) Message(_ time.Time, binary bool, p []byte) mediafork.Step {
	var step mediafork.Step
	if !s.begun {
		s.begun = true
		step = mediafork.StepBegin
		if !binary {
			return step
		}
	}
	switch {
	case !binary:
		return step // later text frames: logged and ignored
	case len(p) == 0:
		return step | mediafork.StepGraceful | mediafork.StepClose
	}
	return step | mediafork.StepAudio
}

func (s *audioForkStream) Held() [][]byte { return nil }

// PeerClosed: the module closes 1000 with an empty reason on stop and hangup,
// and echoes ours.
func (s *audioForkStream) PeerClosed(int) mediafork.EndReason { return mediafork.EndHangup }
