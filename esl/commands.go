package esl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/mediafork/mediafork/mediafork"
)

// APIRunner runs api commands: an inbound Client or an outbound socket.
type APIRunner interface {
	API(ctx context.Context, cmd string) (string, error)
}

// AliasCommand is what fs_cli's `mediafork ...` expands to: echo, whose API
// event carries the arguments to mediafork.
const AliasCommand = "echo [mediafork]"

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
	for _, a := range args {
		if err := checkArg(a); err != nil {
			return "", fmt.Errorf("%s: %w", name, err)
		}
	}
	body, err := c.R.API(ctx, name+" "+strings.Join(args, " "))
	switch {
	case err == nil:
		return body, nil
	case strings.HasPrefix(body, "-"): // FreeSWITCH answered -ERR or -USAGE
		return body, fmt.Errorf("%w: %s: %s", mediafork.ErrSwitchRefused, name, clip(body, 200))
	default:
		return "", fmt.Errorf("%w: %s: %v", mediafork.ErrSwitchUnavailable, name, err)
	}
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

// StartFork is `uuid_audio_fork <uuid> start <url> <mix> <rate> <bug> [<metadata>]`.
// The rate is always given (FreeSWITCH 1.10.12 + mod_audio_fork segfaults
// without it) and nothing may hold a space: the module splits on spaces.
func (c *Commands) StartFork(ctx context.Context, uuid mediafork.CallID, url, mix string, rate int, bug, metadata string) error {
	if rate <= 0 {
		return errors.New("uuid_audio_fork: the rate is required")
	}
	args := []string{string(uuid), "start", url, mix, strconv.Itoa(rate), bug}
	if metadata != "" {
		args = append(args, metadata)
	}
	_, err := c.api(ctx, "uuid_audio_fork", args...)
	return err
}

// StopFork is `uuid_audio_fork <uuid> stop <bug>`.
func (c *Commands) StopFork(ctx context.Context, uuid mediafork.CallID, bug string) error {
	_, err := c.api(ctx, "uuid_audio_fork", string(uuid), "stop", bug)
	return err
}

// SetVar is uuid_setvar.
func (c *Commands) SetVar(ctx context.Context, uuid mediafork.CallID, name, value string) error {
	_, err := c.api(ctx, "uuid_setvar", string(uuid), name, value)
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
	c.R.API(ctx, "alias del mediafork") // a stale one from an earlier run
	_, err := c.R.API(ctx, "alias add mediafork "+AliasCommand)
	return err
}

// rawCommand is a command eslgo has no type for (resume).
type rawCommand string

func (r rawCommand) BuildMessage() string { return string(r) }
