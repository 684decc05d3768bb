package mediafork

import "fmt"

// PauseMode is what a paused fork sends (a profile's `pause`): nothing — its
// streams stop, and the pause is a gap (reason 3) when it ends — or silence
// in the audio's place, the streams going on. Either way no audio of the call
// leaves mediafork while it is paused: the frames are dropped, or replaced,
// on the media path, whatever the module does, and DTMF digits are dropped
// too (PCI: a caller reading or keying a card number). The zero value is
// PauseNothing.
type PauseMode string

// Pause modes.
const (
	PauseNothing PauseMode = ""
	PauseSilence PauseMode = "silence"
)

// ParsePauseMode reads a profile's pause key: "nothing" (or "") or
// "silence".
func ParsePauseMode(s string) (PauseMode, error) {
	switch s {
	case "", "nothing":
		return PauseNothing, nil
	case "silence":
		return PauseSilence, nil
	}
	return "", fmt.Errorf("pause: %q is not nothing or silence", s)
}

// String is the mode as configuration spells it.
func (m PauseMode) String() string {
	if m == PauseNothing {
		return "nothing"
	}
	return string(m)
}

// Pause makes the fork drop its audio (and digits) from its next frame on,
// or send silence instead (PauseSilence). It returns false when it was
// paused already. Safe from any goroutine; never waits for the media path.
func (f *Fork) Pause() bool {
	return f.ctl.Or(ctlPaused)&ctlPaused == 0
}

// Resume ends a pause: the next frame's audio is sent, after a gap (reason
// 3) for the audio dropped. It returns false when the fork was not paused.
func (f *Fork) Resume() bool {
	return f.ctl.And(^ctlPaused)&ctlPaused != 0
}

// Paused reports whether the fork is paused.
func (f *Fork) Paused() bool { return f.ctl.Load()&ctlPaused != 0 }
