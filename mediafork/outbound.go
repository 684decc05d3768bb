package mediafork

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// OutboundCall is a call that reached mediafork through the dialplan `socket`
// application: its channel data, and commands on its socket.
type OutboundCall interface {
	Switch
	Data() ChannelData
	Resume(ctx context.Context) error
}

// HandleOutbound decides about a call from the dialplan socket: the channel
// variables (ForkStream's `mediafork=ip:port[,channel_id][,exten][,caller_id]
// [,called_id]`, or mediafork_profile / mediafork_to / _mix / _rate /
// _encoding) and else the rules (Policy.Resolve). It always resumes the
// dialplan, so `socket` behaves like a ForkStream() step; the fork keeps
// streaming after the socket is gone.
func (o *Orchestrator) HandleOutbound(ctx context.Context, oc OutboundCall) {
	d := oc.Data()
	uuid := d.UUID()
	if rerr := oc.Resume(ctx); rerr != nil {
		o.log.Warn("outbound: resume failed", "uuid", uuid, "error", rerr)
	}
	spec, err := o.outboundSpec(ctx, oc.Name(), d)
	switch {
	case errors.Is(err, ErrNoRule):
		o.log.Info("outbound: nothing to fork", "uuid", uuid)
	case err != nil:
		o.log.Warn("outbound: bad mediafork variables; not forked", "uuid", uuid, "error", err)
		oc.Log(ctx, "WARNING", fmt.Sprintf("mediafork: %s not forked: %v", uuid, err))
	default:
		if err := o.startOn(ctx, oc, spec, d); err != nil {
			o.log.Warn("outbound: fork failed", "uuid", uuid, "error", err)
			oc.Log(ctx, "WARNING", fmt.Sprintf("mediafork: %s not forked: %v", uuid, err))
		}
	}
}

// outboundSpec resolves what the channel variables ask for; ErrNoRule when
// they ask nothing and no rule matches.
func (o *Orchestrator) outboundSpec(ctx context.Context, server string, d ChannelData) (Spec, error) {
	ask, err := SocketAsk(d)
	if err != nil {
		return Spec{}, err
	}
	return o.Policy().Resolve(ctx, Request{Trigger: TriggerSocket, Server: server, Ask: ask, Data: d})
}

// SocketAsk reads what a channel's variables ask for: ForkStream's
// `mediafork=ip:port[,channel_id][,exten][,caller_id][,called_id]`,
// mediafork_profile, mediafork_to (host:port;host:port), mediafork_mix,
// mediafork_rate, mediafork_encoding.
func SocketAsk(d ChannelData) (Ask, error) {
	v := func(name string) string { return d.Get("variable_" + name) }
	var a Ask
	if fs := v("mediafork"); fs != "" {
		parts := strings.Split(fs, ",")
		a.To = []string{strings.TrimSpace(parts[0])}
		fields := []*string{&a.Metadata.ChannelID, &a.Metadata.Exten, &a.Metadata.CallerID, &a.Metadata.CalledID}
		for i, f := range parts[1:] {
			if i < len(fields) {
				*fields[i] = f
			}
		}
	}
	a.Profile = v("mediafork_profile")
	if to := v("mediafork_to"); to != "" {
		a.To = append(a.To, splitList(to)...)
	}
	a.Mix, a.Encoding = Mix(v("mediafork_mix")), Encoding(v("mediafork_encoding"))
	if r := v("mediafork_rate"); r != "" {
		rate, err := ParseRate(r)
		if err != nil {
			return Ask{}, &BadRequest{fmt.Errorf("mediafork_rate: %w", err)}
		}
		a.Rate = rate
	}
	return a, nil
}
