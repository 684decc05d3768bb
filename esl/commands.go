package esl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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

// StartFork is `uuid_audio_fork <uuid> start <url> <mix> <rate> <bug> <metadata>`.
// The rate is always given (FreeSWITCH 1.10.12 + mod_audio_fork segfaults
// without it) and nothing may hold a space: the module splits on spaces.
func (c *Commands) StartFork(ctx context.Context, uuid, url, mix string, rate int, bug, metadata string) error {
	for what, v := range map[string]string{"uuid": uuid, "url": url, "bug name": bug, "metadata": metadata} {
		if strings.ContainsAny(v, " \t\r\n") {
			return fmt.Errorf("uuid_audio_fork: %s must not contain spaces", what)
		}
	}
	if rate <= 0 {
		return errors.New("uuid_audio_fork: the rate is required")
	}
	cmd := fmt.Sprintf("uuid_audio_fork %s start %s %s %d %s", uuid, url, mix, rate, bug)
	if metadata != "" {
		cmd += " " + metadata
	}
	_, err := c.R.API(ctx, cmd)
	return err
}

// StopFork is `uuid_audio_fork <uuid> stop <bug>`.
func (c *Commands) StopFork(ctx context.Context, uuid, bug string) error {
	_, err := c.R.API(ctx, fmt.Sprintf("uuid_audio_fork %s stop %s", uuid, bug))
	return err
}

// SetVar is uuid_setvar.
func (c *Commands) SetVar(ctx context.Context, uuid, name, value string) error {
	_, err := c.R.API(ctx, fmt.Sprintf("uuid_setvar %s %s %s", uuid, name, value))
	return err
}

// Log writes a line into the FreeSWITCH log, which fs_cli shows.
func (c *Commands) Log(ctx context.Context, level, text string) error {
	_, err := c.R.API(ctx, fmt.Sprintf("log %s %s", level, strings.ReplaceAll(text, "\n", " ")))
	return err
}

// Dump is uuid_dump: the channel's data, decoded.
func (c *Commands) Dump(ctx context.Context, uuid string) (map[string]string, error) {
	body, err := c.R.API(ctx, "uuid_dump "+uuid)
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
func (c *Commands) AnsweredChannels(ctx context.Context) ([]string, error) {
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
	var out []string
	for _, r := range list.Rows {
		switch r.CallState {
		case "ACTIVE", "HELD", "EARLY_ANSWERED", "ANSWERED":
			out = append(out, r.UUID)
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
