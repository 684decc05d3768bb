package mediafork

import (
	"context"
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
// _encoding) and else the rules. It always resumes the dialplan, so `socket`
// behaves like a ForkStream() step; the fork keeps streaming after the socket
// is gone.
func (o *Orchestrator) HandleOutbound(ctx context.Context, oc OutboundCall) {
	d := oc.Data()
	uuid := d.UUID()
	spec, adhoc, err := o.outboundSpec(d)
	if rerr := oc.Resume(ctx); rerr != nil {
		o.log.Warn("outbound: resume failed", "uuid", uuid, "error", rerr)
	}
	switch {
	case err != nil:
		o.log.Warn("outbound: bad mediafork variables; not forked", "uuid", uuid, "error", err)
		oc.Log(ctx, "WARNING", fmt.Sprintf("mediafork: %s not forked: %v", uuid, err))
	case spec == nil:
		o.log.Info("outbound: nothing to fork", "uuid", uuid)
	default:
		o.mu.Lock()
		if c := o.calls[uuid]; c == nil {
			o.calls[uuid] = &call{uuid: uuid, server: oc.Name(), data: d}
		}
		o.mu.Unlock()
		if err := o.startOn(ctx, oc, *spec, adhoc); err != nil {
			o.log.Warn("outbound: fork failed", "uuid", uuid, "error", err)
			oc.Log(ctx, "WARNING", fmt.Sprintf("mediafork: %s not forked: %v", uuid, err))
		}
	}
}

// outboundSpec reads the channel variables; nil with no error when nothing is
// asked for and no rule matches.
func (o *Orchestrator) outboundSpec(d ChannelData) (*Spec, bool, error) {
	p := o.Policy()
	v := func(name string) string { return d.Get("variable_" + name) }
	spec := Spec{UUID: d.UUID(), Params: p.Defaults, Metadata: d.DefaultMetadata()}
	asked := false
	if fs := v("mediafork"); fs != "" {
		parts := strings.Split(fs, ",")
		spec.To = []string{strings.TrimSpace(parts[0])}
		fields := []*string{&spec.Metadata.ChannelID, &spec.Metadata.Exten, &spec.Metadata.CallerID, &spec.Metadata.CalledID}
		for i, f := range parts[1:] {
			if i < len(fields) && f != "" {
				*fields[i] = f
			}
		}
		asked = true
	}
	if prof := v("mediafork_profile"); prof != "" {
		pp, ok := p.Destinations.Profiles[prof]
		if !ok {
			return nil, false, fmt.Errorf("mediafork_profile: unknown profile %q", prof)
		}
		spec.Profile, spec.Params, asked = prof, pp.Params, true
	}
	if to := v("mediafork_to"); to != "" {
		spec.To, asked = append(spec.To, splitList(to)...), true
	}
	if !asked {
		r := FirstMatch(p.Rules, d)
		if r == nil {
			return nil, false, nil
		}
		s := r.Spec(d)
		return &s, false, nil
	}
	if m := v("mediafork_mix"); m != "" {
		spec.Mix = Mix(m)
	}
	if r := v("mediafork_rate"); r != "" {
		rate, err := ParseRate(r)
		if err != nil {
			return nil, false, fmt.Errorf("mediafork_rate: %w", err)
		}
		spec.Rate = rate
	}
	if e := v("mediafork_encoding"); e != "" {
		spec.Encoding = Encoding(e)
	}
	if err := spec.Params.Validate(); err != nil {
		return nil, false, err
	}
	return &spec, true, nil
}
