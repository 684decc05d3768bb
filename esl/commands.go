package esl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mediafork/mediafork/mediafork"
)

// APIRunner runs api commands: an inbound Client or an outbound socket.
type APIRunner interface {
	API(ctx context.Context, cmd string) (string, error)
}

// Commands are the api commands mediafork sends, with their FreeSWITCH quirks.
type Commands struct {
	R    APIRunner
	name string
}

// NewCommands runs commands through r, on the switch called name.
func NewCommands(name string, r APIRunner) *Commands { return &Commands{R: r, name: name} }

// Name is the switch's name.
func (c *Commands) Name() string { return c.name }

// ErrBadArgument is returned for a command argument that would change the
// command line: empty, or holding a space, a control character or a
// character FreeSWITCH's parser treats specially.
var ErrBadArgument = errors.New("esl: bad command argument")

// api sends `name arg arg ...` after checking every argument: this is the one
// place a command line is put together from values that came from outside
// (call uuids, URLs, bug names, metadata, variable values). ESL ends a command
// at the first newline, so a newline in an argument would smuggle a second
// command in; api commands split on spaces, so a space would shift arguments.
func (c *Commands) api(ctx context.Context, name string, args ...string) (string, error) {
	return c.apiRest(ctx, name, args, "")
}

// apiRest is api with a last argument that is the rest of the line
// (mod_audio_stream's metadata): it may hold spaces, never a control
// character, ' or a \ other than in a \u escape: FreeSWITCH's argument
// splitter removes paired quotes and processes \", \\, \n and the like, and
// leaves \u alone (measured on 1.10.12). "" adds nothing.
func (c *Commands) apiRest(ctx context.Context, name string, args []string, rest string) (string, error) {
	for _, a := range args {
		if err := checkArg(a); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
	}
	line := name + " " + strings.Join(args, " ")
	if rest != "" {
		if err := checkRest(rest); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
		line += " " + rest
	}
	body, err := c.R.API(ctx, line)
	switch {
	case err == nil:
		return body, nil
	case strings.HasPrefix(body, "-"): // FreeSWITCH answered -ERR or -USAGE
		return body, fmt.Errorf("%w: %s: %s", mediafork.ErrSwitchRefused, name, clip(body, 200))
	default:
		return "", fmt.Errorf("%w: %s: %v", mediafork.ErrSwitchUnavailable, name, err)
	}
}

// checkRest checks a rest-of-line argument.
func checkRest(a string) error {
	if len(a) > 16<<10 {
		return fmt.Errorf("%w: %d bytes", ErrBadArgument, len(a))
	}
	if a != strings.TrimSpace(a) {
		return fmt.Errorf("%w: leading or trailing space", ErrBadArgument)
	}
	for i := 0; i < len(a); i++ {
		c := a[i]
		if c < ' ' || c == 0x7f || c == '\'' || (c == '\\' && (i+1 == len(a) || a[i+1] != 'u')) {
			return fmt.Errorf("%w: %q holds a control character, ' or \\", ErrBadArgument, clip(a, 64))
		}
	}
	return nil
}

func checkArg(a string) error {
	if a == "" {
		return fmt.Errorf("%w: empty", ErrBadArgument)
	}
	if len(a) > 16<<10 {
		return fmt.Errorf("%w: %d bytes", ErrBadArgument, len(a))
	}
	for i := 0; i < len(a); i++ {
		if c := a[i]; c <= ' ' || c == 0x7f {
			return fmt.Errorf("%w: %q holds a space or control character", ErrBadArgument, clip(a, 64))
		}
	}
	return nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// SetVar is uuid_setvar; an empty value unsets the variable.
func (c *Commands) SetVar(ctx context.Context, uuid mediafork.CallID, name, value string) error {
	args := []string{string(uuid), name}
	if value != "" {
		args = append(args, value)
	}
	_, err := c.api(ctx, "uuid_setvar", args...)
	return err
}

// Log writes a line into the FreeSWITCH log, which fs_cli shows. The text is
// free-form: control characters become spaces, so it stays one line.
func (c *Commands) Log(ctx context.Context, level, text string) error {
	if err := checkArg(level); err != nil {
		return fmt.Errorf("log: %w", err)
	}
	clean := strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, text)
	_, err := c.R.API(ctx, "log "+level+" "+clip(clean, 2048))
	return err
}

// Dump is uuid_dump: the channel's data, decoded.
func (c *Commands) Dump(ctx context.Context, uuid mediafork.CallID) (map[string]string, error) {
	body, err := c.api(ctx, "uuid_dump", string(uuid))
	if err != nil {
		return nil, err
	}
	h := ParseHeaderBlock(body)
	if h["Unique-ID"] == "" {
		return nil, fmt.Errorf("uuid_dump %s: no channel data in the answer", uuid)
	}
	return h, nil
}

// AnsweredChannels lists the uuids of answered channels (show channels as json).
func (c *Commands) AnsweredChannels(ctx context.Context) ([]mediafork.CallID, error) {
	body, err := c.R.API(ctx, "show channels as json")
	if err != nil {
		return nil, err
	}
	var list struct {
		Rows []struct {
			UUID      string `json:"uuid"`
			CallState string `json:"callstate"`
		} `json:"rows"`
	}
	if err := json.Unmarshal([]byte(body), &list); err != nil {
		return nil, fmt.Errorf("show channels as json: %w", err)
	}
	var out []mediafork.CallID
	for _, r := range list.Rows {
		switch r.CallState {
		case "ACTIVE", "HELD", "EARLY_ANSWERED", "ANSWERED":
			if id, err := mediafork.ParseCallID(r.UUID); err == nil {
				out = append(out, id)
			}
		}
	}
	return out, nil
}

// InstallAlias makes fs_cli's `mediafork ...` reach mediafork as an API event.
func (c *Commands) InstallAlias(ctx context.Context) error {
	c.R.API(ctx, "alias del "+AliasName) // a stale one from an earlier run
	_, err := c.R.API(ctx, "alias add "+AliasName+" "+AliasCommand)
	return err
}

// ModuleExists is module_exists: whether the switch has loaded a module.
func (c *Commands) ModuleExists(ctx context.Context, module string) (bool, error) {
	body, err := c.api(ctx, "module_exists", module)
	if err != nil {
		return false, err
	}
	switch strings.TrimSpace(body) {
	case ReplyTrue:
		return true, nil
	case ReplyFalse:
		return false, nil
	}
	return false, fmt.Errorf("%w: module_exists %s: answered %q", mediafork.ErrSwitchRefused, module, clip(body, 64))
}

// rawCommand is a command eslgo has no type for (resume).
type rawCommand string

func (r rawCommand) BuildMessage() string { return string(r) }

// NewSwitch is the Switch for a FreeSWITCH whose forks module starts
// (mediafork.ModuleAudioFork, ModuleAudioForkJambonz or ModuleAudioStream),
// running commands through c.
func NewSwitch(module string, c *Commands) mediafork.Switch {
	switch module {
	case mediafork.ModuleAudioStream:
		return AudioStream{c}
	case mediafork.ModuleAudioForkJambonz:
		return AudioForkJambonz{AudioFork{c}}
	}
	return AudioFork{c}
}

// Displace mixes file into what leg sends, the rest of the call untouched:
// `uuid_displace <leg> start <file> 0 mux` (0: the whole file; mux: mixed,
// not replacing — without it the leg's incoming audio is muted too). The
// displace ends itself at the file's end (MEDIA_BUG_STOP).
func (c *Commands) Displace(ctx context.Context, leg mediafork.CallID, file string) error {
	_, err := c.api(ctx, "uuid_displace", string(leg), "start", file, "0", "mux")
	return err
}

// StopDisplace is `uuid_displace <leg> stop <file>` (-ERR once it has ended
// by itself).
func (c *Commands) StopDisplace(ctx context.Context, leg mediafork.CallID, file string) error {
	_, err := c.api(ctx, "uuid_displace", string(leg), "stop", file)
	return err
}

// undefVar is what uuid_getvar answers for a variable not set.
const undefVar = "_undef_"

// getVar is uuid_getvar, "" for a variable not set.
func (c *Commands) getVar(ctx context.Context, uuid mediafork.CallID, name string) (string, error) {
	body, err := c.api(ctx, "uuid_getvar", string(uuid), name)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(body)
	if v == undefVar {
		return "", nil
	}
	return v, nil
}

// BridgedLeg is the channel uuid is bridged to: its bridge_uuid, when that
// channel exists and names uuid back (bridge_uuid stays set after a bridge
// is gone: a hung-up or re-bridged peer is none). "" for none.
func (c *Commands) BridgedLeg(ctx context.Context, uuid mediafork.CallID) (mediafork.CallID, error) {
	v, err := c.getVar(ctx, uuid, "bridge_uuid")
	if err != nil || v == "" {
		return "", err
	}
	peer, err := mediafork.ParseCallID(v)
	if err != nil {
		return "", fmt.Errorf("bridge_uuid of %s: %w", uuid, err)
	}
	back, err := c.getVar(ctx, peer, "bridge_uuid")
	if err != nil {
		if errors.Is(err, mediafork.ErrSwitchRefused) {
			return "", nil // gone
		}
		return "", err
	}
	if back != string(uuid) {
		return "", nil
	}
	return peer, nil
}

// AudioFork drives forks with drachtio's mod_audio_fork (uuid_audio_fork).
type AudioFork struct{ *Commands }

// Module is mediafork.ModuleAudioFork.
func (AudioFork) Module() string { return mediafork.ModuleAudioFork }

// StartFork is `uuid_audio_fork <uuid> start <url> <mix> <rate> <bug> [<metadata>]`.
// The rate is always given (FreeSWITCH 1.10.12 + mod_audio_fork segfaults
// without it) and nothing may hold a space: the module splits on spaces.
func (s AudioFork) StartFork(ctx context.Context, f mediafork.ForkStart) error {
	if f.Rate <= 0 {
		return errors.New("uuid_audio_fork: the rate is required")
	}
	meta, err := MetadataFrame(mediafork.ModuleAudioFork, f.Metadata, f.Description)
	if err != nil {
		return err
	}
	args := []string{string(f.UUID), "start", f.URL, string(f.Mix), strconv.Itoa(f.Rate), f.Bug}
	if meta != "" {
		args = append(args, meta)
	}
	_, err = s.api(ctx, "uuid_audio_fork", args...)
	return err
}

// StopFork is `uuid_audio_fork <uuid> stop <bug>`.
func (s AudioFork) StopFork(ctx context.Context, uuid mediafork.CallID, bug string) error {
	_, err := s.api(ctx, "uuid_audio_fork", string(uuid), "stop", bug)
	return err
}

// AudioForkJambonz drives forks with jambonz's mod_audio_fork: drachtio's
// commands, and a fork that talks back is started with its bidirectional
// arguments, `... <bug> <metadata> true true <rate>`, so that the module
// takes L16 frames at <rate> down the fork's WebSocket and mixes them into
// the channel's TX (../shared/freeswitch/captures/talkback, j01).
type AudioForkJambonz struct{ AudioFork }

// Module is mediafork.ModuleAudioForkJambonz.
func (AudioForkJambonz) Module() string { return mediafork.ModuleAudioForkJambonz }

// StartFork starts a plain fork as drachtio's module would; with
// f.StreamBack, bidirectionally: the module wants exactly ten fields, the
// bug name and the metadata being positional tokens that are never empty.
func (s AudioForkJambonz) StartFork(ctx context.Context, f mediafork.ForkStart) error {
	if f.StreamBack == 0 {
		return s.AudioFork.StartFork(ctx, f)
	}
	if f.Rate <= 0 {
		return errors.New("uuid_audio_fork: the rate is required")
	}
	meta, err := MetadataFrame(mediafork.ModuleAudioForkJambonz, f.Metadata, f.Description)
	if err != nil {
		return err
	}
	if meta == "" {
		meta = "{}"
	}
	_, err = s.api(ctx, "uuid_audio_fork", string(f.UUID), "start", f.URL, string(f.Mix), strconv.Itoa(f.Rate), f.Bug, meta,
		"true", "true", strconv.Itoa(f.StreamBack))
	return err
}

// IsJambonzAudioFork reports whether the switch's mod_audio_fork is
// jambonz's: its usage names the bidirectional arguments (drachtio's does
// not); asked with `uuid_audio_fork` and no argument, which only answers
// the usage.
func (c *Commands) IsJambonzAudioFork(ctx context.Context) bool {
	body, _ := c.R.API(ctx, "uuid_audio_fork")
	return strings.Contains(body, "bidirectionalAudio_stream_enabled")
}

// MetadataFrame is the metadata as either module's command line carries it,
// and as the module then sends it in its first text frame: a compact JSON
// object of the signaling fields (empty ones left out) and the description
// (under mediafork.DescriptionKey), written so that FreeSWITCH's argument
// splitter passes it unchanged: inside strings, every space, ", \, ',
// control character and DEL is a \u escape (the splitter removes paired
// quotes, processes \", \\, \n, \t, \r, \s and splits mod_audio_fork's
// arguments on spaces; it leaves \u alone). "" for none. Both modules send at
// most mediafork.MaxMetadataFrame bytes of it and cut the rest: a longer one
// is a *BadRequest, refused before the command is sent.
func MetadataFrame(module string, m mediafork.Metadata, desc string) (string, error) {
	b := []byte{'{'}
	field := func(key, v string) {
		if v == "" {
			return
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = appendSafeString(b, key)
		b = append(b, ':')
		b = appendSafeString(b, v)
	}
	field("channel_id", m.ChannelID)
	field("exten", m.Exten)
	field("caller_id", m.CallerID)
	field("called_id", m.CalledID)
	field(mediafork.DescriptionKey, desc)
	if len(b) == 1 {
		return "", nil
	}
	b = append(b, '}')
	if len(b) > mediafork.MaxMetadataFrame {
		return "", &mediafork.BadRequest{Err: fmt.Errorf("metadata of %d bytes is over the %d that %s sends: fewer endpoints or shorter metadata", len(b), mediafork.MaxMetadataFrame, module)}
	}
	return string(b), nil
}

// appendSafeString appends s as a JSON string that FreeSWITCH's argument
// splitter leaves as it is (MetadataFrame). Invalid UTF-8 becomes U+FFFD.
func appendSafeString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch {
		case r <= ' ', r == '"', r == '\\', r == '\'', r == 0x7f, r == '\u2028', r == '\u2029':
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

// AudioStream drives forks with amigniter's mod_audio_stream
// (uuid_audio_stream): no bug names, one stream per channel.
type AudioStream struct{ *Commands }

// Module is mediafork.ModuleAudioStream.
func (AudioStream) Module() string { return mediafork.ModuleAudioStream }

// StartFork is `uuid_audio_stream <uuid> start <url> <mix> <rate> [<metadata>]`,
// the metadata being the rest of the line.
func (s AudioStream) StartFork(ctx context.Context, f mediafork.ForkStart) error {
	if f.Rate <= 0 {
		return errors.New("uuid_audio_stream: the rate is required")
	}
	meta, err := MetadataFrame(mediafork.ModuleAudioStream, f.Metadata, f.Description)
	if err != nil {
		return err
	}
	_, err = s.apiRest(ctx, "uuid_audio_stream", []string{string(f.UUID), "start", f.URL, string(f.Mix), strconv.Itoa(f.Rate)}, meta)
	return err
}

// StopFork is `uuid_audio_stream <uuid> stop`: the channel has one stream.
func (s AudioStream) StopFork(ctx context.Context, uuid mediafork.CallID, _ string) error {
	_, err := s.api(ctx, "uuid_audio_stream", string(uuid), "stop")
	return err
}
