package mediafork

import (
	"sort"
	"strconv"
	"time"
	"unicode/utf8"
)

// LiveCall is an answered call mediafork knows of on a switch, forked or
// not: what the web console lists, with a Fork button on those that are not.
// The orchestrator learns of calls from CHANNEL_ANSWER, from the resync's
// list of answered channels at every (re)connect (calls answered before it
// connected), from the dialplan socket and from forks started on request;
// CHANNEL_HANGUP_COMPLETE, and a resync that no longer finds them, remove
// them.
type LiveCall struct {
	UUID   CallID `json:"uuid"`
	Server string `json:"freeswitch"`
	// From the channel's data (CHANNEL_ANSWER, uuid_dump); empty for a call
	// found streaming at a resync, whose fork carries its metadata.
	Channel   string `json:"channel,omitempty"`   // Channel-Name
	Caller    string `json:"caller,omitempty"`    // Caller-Caller-ID-Number
	Callee    string `json:"callee,omitempty"`    // Caller-Destination-Number
	Direction string `json:"direction,omitempty"` // Call-Direction
	// Answered is when the switch answered it (Caller-Channel-Answered-Time),
	// else when mediafork learnt of it.
	Answered time.Time `json:"answered"`
	// Wanted: a fork is asked for on it and has not ended (starting,
	// streaming or being retried).
	Wanted bool `json:"wanted"`
}

// track returns the call uuid on server, recording it when new; data fills
// in what is not known yet. o.mu is held.
func (o *Orchestrator) track(uuid CallID, server string, d ChannelData) *call {
	c := o.calls[uuid]
	if c == nil {
		c = &call{uuid: uuid, server: server, data: d, seen: time.Now()}
		o.calls[uuid] = c
		o.callsVersion.Add(1)
	} else if c.data == nil && d != nil {
		c.data = d
		o.callsVersion.Add(1)
	}
	return c
}

// maxCallField bounds each text field of a LiveCall: a switch's headers may
// be up to 64 KiB, and the console lists every call.
const maxCallField = 128

// clip cuts s to maxCallField bytes on a UTF-8 boundary.
func clip(s string) string {
	if len(s) <= maxCallField {
		return s
	}
	n := maxCallField
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// CallsVersion changes whenever a call is added to or removed from Calls, or
// learns its data: a caller polling Calls reads them again only then.
func (o *Orchestrator) CallsVersion() uint64 { return o.callsVersion.Load() }

// Calls lists the live calls mediafork knows of, on every switch, oldest
// answered first.
func (o *Orchestrator) Calls() []LiveCall {
	o.mu.Lock()
	out := make([]LiveCall, 0, len(o.calls))
	for _, c := range o.calls {
		lc := LiveCall{UUID: c.uuid, Server: c.server, Answered: c.seen, Wanted: c.spec != nil}
		if d := c.data; d != nil {
			lc.Channel, lc.Caller, lc.Callee = clip(d.Get("Channel-Name")), clip(d.Get("Caller-Caller-ID-Number")), clip(d.Get("Caller-Destination-Number"))
			lc.Direction = clip(d.Get("Call-Direction"))
			if us, err := strconv.ParseInt(d.Get("Caller-Channel-Answered-Time"), 10, 64); err == nil && us > 0 {
				lc.Answered = time.UnixMicro(us)
			}
		}
		out = append(out, lc)
	}
	o.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Answered.Equal(out[j].Answered) {
			return out[i].Answered.Before(out[j].Answered)
		}
		return out[i].UUID < out[j].UUID
	})
	return out
}
