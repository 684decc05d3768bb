package web

import (
	"net/http"
	"sort"
	"strings"

	"github.com/mediafork/mediafork/mediafork"
)

// What an operator chooses from when forking a call by hand: the profiles
// of the config in force (GET /v1/profiles) and the live calls
// (GET /v1/calls). Neither carries a secret: a profile is its name, its
// parameters and its endpoints' addresses, protocols and formats.

// profileView is one profile as GET /v1/profiles lists it.
type profileView struct {
	Name        string           `json:"name"`
	Description string           `json:"description"` // one line: where the audio goes, in which format
	Params      mediafork.Params `json:"params"`      // the fork's, the profile's over the defaults
	Endpoints   []endpointView   `json:"endpoints"`
}

// endpointView is one endpoint of a profile.
type endpointView struct {
	Address  string `json:"address"`
	Protocol string `json:"protocol"`
	Format   string `json:"format"` // "rx+tx pcmu 8000 Hz 20 ms"; "" when the profile cannot feed it
}

// maxDescription bounds a profile's description.
const maxDescription = 160

// profiles lists p's profiles by name.
func profiles(p *mediafork.Policy) []profileView {
	out := []profileView{}
	if p == nil || p.Destinations == nil {
		return out
	}
	for name, prof := range p.Destinations.Profiles {
		params := p.Defaults
		if v := prof.Params.Mix; v != "" {
			params.Mix = v
		}
		if v := prof.Params.Rate; v != 0 {
			params.Rate = v
		}
		if v := prof.Params.Encoding; v != "" {
			params.Encoding = v
		}
		if v := prof.Params.FrameMs; v != 0 {
			params.FrameMs = v
		}
		pv := profileView{Name: name, Params: params, Endpoints: []endpointView{}}
		var parts []string
		for i, addr := range prof.Endpoints {
			var ask mediafork.EndpointFormat
			if i < len(prof.Formats) {
				ask = prof.Formats[i]
			}
			ev := endpointView{Address: scrub(addr), Protocol: mediafork.ProtocolTLV.String()}
			if i < len(prof.Protocols) {
				ev.Protocol = prof.Protocols[i].Protocol.String()
			}
			if f, err := ask.Resolve(params); err == nil {
				ev.Format = formatName(f)
			}
			pv.Endpoints = append(pv.Endpoints, ev)
			parts = append(parts, ev.Protocol+" "+ev.Address+" ("+ev.Format+")")
		}
		pv.Description = describe(params, parts)
		out = append(out, pv)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// describe is a profile in one line: "stereo → tlv 127.0.0.1:9000 (rx+tx
// pcmu 8000 Hz 20 ms)", cut to maxDescription.
func describe(p mediafork.Params, endpoints []string) string {
	s := string(p.Mix) + " bug → "
	if len(endpoints) == 0 {
		s += "no endpoint"
	} else {
		s += strings.Join(endpoints, ", ")
	}
	if len(s) > maxDescription {
		cut := maxDescription - len("…")
		for cut > 0 && s[cut]&0xC0 == 0x80 {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// listProfiles is GET /v1/profiles.
func (a *API) listProfiles(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"profiles": profiles(a.o.Policy())})
}

// listCalls is GET /v1/calls: every live call on every switch, with the
// forks of each (their uuid, state and profile).
func (a *API) listCalls(w http.ResponseWriter, r *http.Request) {
	type callView struct {
		mediafork.LiveCall
		Forks []string `json:"forks"` // the states of its forks: streaming, starting, failed
	}
	states := map[mediafork.CallID][]string{}
	for _, in := range a.o.Forks() {
		if in.State != mediafork.StateEnded {
			states[in.UUID] = append(states[in.UUID], string(in.State))
		}
	}
	calls := a.o.Calls()
	out := make([]callView, 0, len(calls))
	for _, c := range calls {
		cv := callView{LiveCall: c, Forks: states[c.UUID]}
		if cv.Forks == nil {
			cv.Forks = []string{}
		}
		out = append(out, cv)
	}
	writeJSON(w, http.StatusOK, map[string]any{"calls": out})
}
