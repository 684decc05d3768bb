package esl

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// What FreeSWITCH says and how: event names, the media modules' event
// subclasses, the fs_cli alias, reply texts. The rest of mediafork sees typed
// events (mediafork.CallEvent) and typed errors (mediafork.ErrSwitchRefused,
// ErrSwitchUnavailable) only.

// Event names mediafork acts on.
const (
	EventChannelAnswer         = "CHANNEL_ANSWER"
	EventChannelHangupComplete = "CHANNEL_HANGUP_COMPLETE"
	EventAPI                   = "API"
	EventBackgroundJob         = "BACKGROUND_JOB"
	EventCustom                = "CUSTOM"
	// EventDTMF: a channel received a digit from its far end (fired when the
	// channel dequeues it): DTMF-Digit URL-encoded (%23 is #), DTMF-Duration
	// in samples at 8 kHz (testdata/dtmf).
	EventDTMF = "DTMF"
	// Talk-back's (../shared/freeswitch/captures/talkback): a media bug
	// added or removed (Media-Bug-Function: displace, Media-Bug-Target: the
	// file; the stop comes at the frame the file ran out), and a bridge made
	// or gone (Bridge-A-Unique-ID, Bridge-B-Unique-ID).
	EventMediaBugStart   = "MEDIA_BUG_START"
	EventMediaBugStop    = "MEDIA_BUG_STOP"
	EventChannelBridge   = "CHANNEL_BRIDGE"
	EventChannelUnbridge = "CHANNEL_UNBRIDGE"
)

// mod_audio_fork's event subclasses.
const (
	AudioForkConnect       = "mod_audio_fork::connect"
	AudioForkConnectFailed = "mod_audio_fork::connect_failed" // body {"reason": "..."}
	AudioForkDisconnect    = "mod_audio_fork::disconnect"
	AudioForkBufferOverrun = "mod_audio_fork::buffer_overrun"
	// AudioForkPlayAudio: a playAudio message written to a file; body
	// {"audioContentType":"raw","sampleRate":8000,"file":"<tmp>/<uuid>_<n>.tmp.r8"}.
	AudioForkPlayAudio = "mod_audio_fork::play_audio"
)

// mod_audio_stream's event subclasses (../shared/freeswitch/captures/audio_stream).
const (
	AudioStreamConnect    = "mod_audio_stream::connect"    // {"status":"connected"}
	AudioStreamDisconnect = "mod_audio_stream::disconnect" // {"status":"disconnected","message":{"code":1000,"reason":"..."}}
	AudioStreamError      = "mod_audio_stream::error"      // {"status":"error","message":{"code":6,"error":"..."}}
	AudioStreamJSON       = "mod_audio_stream::json"       // a text message from the server, verbatim
	AudioStreamPlay       = "mod_audio_stream::play"       // a streamAudio message from the server, saved to a file
)

// SubscribedEvents are the events mediafork listens to (`event plain ...`), on
// every (re)connect: both modules' events, whichever one a switch uses.
// Every word after CUSTOM is a subclass: events go before it.
var SubscribedEvents = []string{EventChannelAnswer, EventChannelHangupComplete, EventAPI, EventBackgroundJob,
	EventDTMF, EventMediaBugStart, EventMediaBugStop, EventChannelBridge, EventChannelUnbridge,
	EventCustom, AudioForkConnect, AudioForkConnectFailed, AudioForkDisconnect, AudioForkBufferOverrun, AudioForkPlayAudio,
	AudioStreamConnect, AudioStreamDisconnect, AudioStreamError, AudioStreamJSON, AudioStreamPlay}

// The fs_cli alias: `mediafork <args>` typed in fs_cli expands to `echo
// [mediafork] <args>`, whose API event carries the arguments to mediafork.
const (
	AliasName    = "mediafork"
	AliasMarker  = "[mediafork]"
	AliasCommand = "echo " + AliasMarker
)

// Reply texts.
const (
	// ReplyOperationFailed is what uuid_audio_fork and uuid_audio_stream answer
	// for anything refused: an unknown uuid, a bug already attached, a bad
	// argument.
	ReplyOperationFailed = "-ERR Operation Failed"
	// ReplyTrue and ReplyFalse are module_exists' answers.
	ReplyTrue  = "true"
	ReplyFalse = "false"
)

// mod_audio_stream's error codes (libwsc) that mean the connection was never
// made; the others mean an established one broke (1 is a TCP drop).
var audioStreamConnectErrors = map[int]bool{6: true, 7: true, 8: true, 10: true} // connect failed, TLS init, TLS handshake, timeout

// CallEvent turns one ESL event into the domain's event; false for events
// mediafork does not act on (or that name no valid channel).
func CallEvent(e *Event) (mediafork.CallEvent, bool) {
	switch e.Name {
	case EventChannelAnswer:
		d := mediafork.NewChannelData(e.Headers)
		return mediafork.CallAnswered{Data: d}, d.UUID() != ""
	case EventChannelHangupComplete:
		uuid, err := mediafork.ParseCallID(e.UUID())
		return mediafork.CallHungUp{UUID: uuid}, err == nil
	case EventAPI:
		if e.Get("API-Command") != "echo" {
			return nil, false
		}
		args, ok := strings.CutPrefix(e.Get("API-Command-Argument"), AliasMarker)
		if !ok {
			return nil, false
		}
		return mediafork.CLICommand{Args: strings.Fields(args)}, true
	case EventDTMF:
		d, err := dtmfEvent(e)
		return d, err == nil
	case EventMediaBugStart, EventMediaBugStop:
		return displaceEvent(e)
	case EventChannelBridge, EventChannelUnbridge:
		a, errA := mediafork.ParseCallID(e.Get("Bridge-A-Unique-ID"))
		b, errB := mediafork.ParseCallID(e.Get("Bridge-B-Unique-ID"))
		if errA != nil || errB != nil {
			return nil, false
		}
		if e.Name == EventChannelBridge {
			return mediafork.LegsBridged{A: a, B: b}, true
		}
		return mediafork.LegsUnbridged{A: a, B: b}, true
	case EventCustom:
	default:
		return nil, false
	}
	uuid, err := mediafork.ParseCallID(e.UUID())
	if err != nil {
		return nil, false
	}
	switch e.Subclass() {
	case AudioForkConnect, AudioStreamConnect:
		return mediafork.MediaConnected{UUID: uuid}, true
	case AudioForkConnectFailed:
		var b struct {
			Reason string `json:"reason"`
		}
		reason := string(e.Body)
		if json.Unmarshal(e.Body, &b) == nil && b.Reason != "" {
			reason = b.Reason
		}
		return mediafork.MediaConnectFailed{UUID: uuid, Reason: reason}, true
	case AudioForkDisconnect:
		return mediafork.MediaDisconnected{UUID: uuid, Reason: "disconnected", At: eventTime(e)}, true
	case AudioForkBufferOverrun:
		return mediafork.BufferOverrun{UUID: uuid}, true
	case AudioStreamDisconnect:
		code, text := audioStreamMessage(e.Body, "reason")
		return mediafork.MediaDisconnected{UUID: uuid, Reason: fmt.Sprintf("closed %d %s", code, text), At: eventTime(e)}, true
	case AudioForkPlayAudio, AudioStreamPlay:
		return playEvent(uuid, e)
	case AudioStreamError:
		code, text := audioStreamMessage(e.Body, "error")
		reason := fmt.Sprintf("error %d: %s", code, text)
		if audioStreamConnectErrors[code] {
			return mediafork.MediaConnectFailed{UUID: uuid, Reason: reason}, true
		}
		return mediafork.MediaDisconnected{UUID: uuid, Reason: reason, At: eventTime(e)}, true
	}
	return nil, false
}

// eventTime is when the switch fired e (Event-Date-Timestamp, µs since the
// epoch); zero when absent or implausible (before 2000, or a day ahead of
// this clock).
func eventTime(e *Event) time.Time {
	us, err := strconv.ParseInt(e.Get("Event-Date-Timestamp"), 10, 64)
	if err != nil {
		return time.Time{}
	}
	t := time.UnixMicro(us)
	if t.Year() < 2000 || t.After(time.Now().Add(24*time.Hour)) {
		return time.Time{}
	}
	return t
}

// dtmfDurationUnit is DTMF-Duration's unit: a sample at 8 kHz, whatever the
// channel's rate.
const dtmfDurationUnit = time.Second / 8000

// dtmfEvent validates a DTMF event into the domain's: a call uuid, a digit of
// 0-9 * # A-D (the header is URL-decoded already), a duration in samples at
// 8 kHz (a missing or unreadable one is 0; a longer one than
// mediafork.MaxDTMFDuration is that).
func dtmfEvent(e *Event) (mediafork.DTMFReceived, error) {
	uuid, err := mediafork.ParseCallID(e.UUID())
	if err != nil {
		return mediafork.DTMFReceived{}, err
	}
	digit, err := mediafork.ParseDigit(e.Get("DTMF-Digit"))
	if err != nil {
		return mediafork.DTMFReceived{}, err
	}
	d := mediafork.DTMFReceived{UUID: uuid, Digit: digit}
	if n, err := strconv.ParseUint(e.Get("DTMF-Duration"), 10, 64); err == nil {
		d.Duration = time.Duration(min(n, uint64(mediafork.MaxDTMFDuration/dtmfDurationUnit))) * dtmfDurationUnit
	}
	return d, nil
}

// audioStreamMessage reads mod_audio_stream's {"message":{"code":N,"<text>":"..."}}.
func audioStreamMessage(body []byte, text string) (int, string) {
	var b struct {
		Message map[string]any `json:"message"`
	}
	if json.Unmarshal(body, &b) != nil {
		return 0, clip(string(body), 200)
	}
	code, _ := b.Message["code"].(float64)
	s, _ := b.Message[text].(string)
	return int(code), clip(s, 200)
}

// maxTalkbackFile bounds a talk-back file's path: it goes into a command line.
const maxTalkbackFile = 1024

// playEvent reads the module's "audio written" event: the file, which must
// be one such a module writes (<uuid>_<n>.tmp.<ext>, no space or control
// character: it goes into uuid_displace's command line), and its rate.
func playEvent(uuid mediafork.CallID, e *Event) (mediafork.CallEvent, bool) {
	var b struct {
		File       string `json:"file"`
		SampleRate int    `json:"sampleRate"`
	}
	if len(e.Body) > 4096 || json.Unmarshal(e.Body, &b) != nil || !talkbackFile(b.File) {
		return nil, false
	}
	return mediafork.TalkbackFileReady{UUID: uuid, File: b.File, Rate: b.SampleRate, At: e.At}, true
}

// displaceEvent reads a MEDIA_BUG_START/STOP of a displace of a talk-back
// file; false for any other bug.
func displaceEvent(e *Event) (mediafork.CallEvent, bool) {
	if e.Get("Media-Bug-Function") != "displace" {
		return nil, false
	}
	leg, err := mediafork.ParseCallID(e.UUID())
	file := e.Get("Media-Bug-Target")
	if err != nil || !talkbackFile(file) {
		return nil, false
	}
	if e.Name == EventMediaBugStart {
		return mediafork.DisplaceStarted{Leg: leg, File: file, At: e.At}, true
	}
	return mediafork.DisplaceStopped{Leg: leg, File: file, At: e.At}, true
}

// talkbackFile reports whether f is a file a media module wrote for a fork
// (mediafork.FileOwner), fit for a command line.
func talkbackFile(f string) bool {
	if f == "" || len(f) > maxTalkbackFile || checkArg(f) != nil {
		return false
	}
	return mediafork.FileOwner(f) != ""
}
