package mediafork

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// command runs what an operator typed in fs_cli (`mediafork start|stop|status|
// logger ...`, through the alias) and answers in the FreeSWITCH log.
func (o *Orchestrator) command(ctx context.Context, server string, args []string) {
	sw := o.sw(server)
	if sw == nil {
		return
	}
	say := func(format string, a ...any) {
		sw.Log(ctx, "NOTICE", "mediafork: "+fmt.Sprintf(format, a...))
	}
	if len(args) == 0 {
		say("usage: mediafork start <uuid> [profile | host:port | rtp://host:port ...] | stop <uuid> | pause <uuid> | resume <uuid> | status [<uuid>] | logger on|off")
		return
	}
	o.log.Info("fs_cli command", "freeswitch", server, "command", strings.Join(args, " "))
	switch args[0] {
	case "start":
		if len(args) < 2 {
			say("usage: mediafork start <uuid> [profile | host:port | rtp://host:port ...]")
			return
		}
		uuid, err := ParseCallID(args[1])
		if err == nil {
			err = o.startFromCLI(ctx, sw, uuid, args[2:])
		}
		if err != nil {
			say("start %s failed: %v", args[1], err)
			return
		}
		say("fork %s requested", args[1])
	case "stop":
		if len(args) != 2 {
			say("usage: mediafork stop <uuid>")
			return
		}
		uuid, err := ParseCallID(args[1])
		var wait func(context.Context) error
		if err == nil {
			wait, err = o.stop(ctx, uuid)
		}
		if err != nil {
			say("stop %s failed: %v", args[1], err)
			return
		}
		// Its forks end off the switch's event lane: waiting there held the
		// switch's other fs_cli commands up to StopWait.
		o.spawn(func() {
			wctx, cancel := o.untilClose(StopWait)
			defer cancel()
			if err := wait(wctx); err != nil {
				say("stop %s failed: %v", args[1], err)
				return
			}
			say("fork %s stopped", args[1])
		})
	case "pause", "resume":
		if len(args) != 2 {
			say("usage: mediafork %s <uuid>", args[0])
			return
		}
		uuid, err := ParseCallID(args[1])
		if err == nil {
			_, err = o.PauseFork(ctx, uuid, args[0] == "pause", "fs_cli")
		}
		if err != nil {
			say("%s %s failed: %v", args[0], args[1], err)
		}
		// PauseFork says it in the log itself.
	case "status":
		forks := o.registry.List()
		if len(args) > 1 {
			uuid, err := ParseCallID(args[1])
			if err != nil {
				say("status: %v", err)
				return
			}
			forks = o.registry.Get(uuid)
			if len(forks) == 0 {
				say("no fork on %s", args[1])
				return
			}
		}
		say("%d fork(s) live", len(forks))
		for _, f := range forks {
			in := f.Info()
			state := string(in.State)
			if in.Paused {
				state += " (paused)"
			}
			say("%s stream %d %s %s/%d/%s frames_in=%d packets_out=%d drops=%d endpoints=%s",
				in.UUID, in.StreamID, state, in.Mix, in.Rate, in.Encoding, in.FramesIn, sum(in.PacketsOut), in.Drops,
				strings.Join(in.EndpointNames(), ","))
			for _, o := range in.Outputs {
				if s := o.Stream; s != nil {
					state := "down"
					if s.Connected {
						state = "connected"
					}
					line := fmt.Sprintf("  %s %s %s sent=%d drops=%d connects=%d", o.Protocol, s.URL, state, s.MessagesSent, s.Drops, s.Connects)
					if s.StreamSid != "" {
						line += " stream_sid=" + s.StreamSid
					}
					if s.LastError != "" && !s.Connected {
						line += " last_error=" + strconv.Quote(s.LastError)
					}
					say("%s", line)
				}
			}
			if tb := in.Talkback; tb != nil {
				say("  %s", tb.Summary())
			}
		}
	case "logger":
		if len(args) != 2 || (args[1] != "on" && args[1] != "off") {
			say("usage: mediafork logger on|off")
			return
		}
		on := args[1] == "on"
		if o.OnLogger != nil {
			o.OnLogger(on)
		}
		o.summaries.Set(on)
		say("fork summaries every %s: %s", o.summaries.every, args[1])
	default:
		say("unknown command %q: start, stop, pause, resume, status or logger", args[0])

	}
}

// startFromCLI forks a call from fs_cli: the targets name a profile and/or
// host:port destinations; with none, the rules decide (Policy.Resolve).
func (o *Orchestrator) startFromCLI(ctx context.Context, sw Switch, uuid CallID, targets []string) error {
	p := o.Policy()
	var ask Ask
	for _, t := range targets {
		if _, ok := p.Destinations.Profiles[t]; ok && ask.Profile == "" {
			ask.Profile = t
		} else if strings.Contains(t, ":") {
			ask.To = append(ask.To, t)
		} else {
			return fmt.Errorf("%q is neither a profile nor host:port (nor rtp://host:port)", t)
		}
	}
	h, err := sw.Dump(ctx, uuid)
	if err != nil {
		return err
	}
	d := NewChannelData(h)
	spec, err := p.Resolve(ctx, Request{Trigger: TriggerCLI, UUID: uuid, Server: sw.Name(), Ask: ask, Data: d})
	if errors.Is(err, ErrNoRule) {
		return fmt.Errorf("no rule matches; give a profile or host:port")
	}
	if err != nil {
		return err
	}
	return o.startOn(ctx, sw, spec, d)
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}
