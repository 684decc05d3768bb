package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// The ingest's boundary: what one connection's URL and first text frame ask
// for, parsed and checked before anything is forwarded.

var (
	uuidRE      = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)
	queryParams = map[string]bool{"profile": true, "to": true, "mix": true, "rate": true, "encoding": true, "token": true, CredentialParam: true}
)

// request is what the URL of one connection asked for.
type request struct {
	uuid    string
	bug     string
	trusted bool // a credential mediafork signed: its spec wins and is not re-checked
	spec    mediafork.Spec
	profile string
	to      []string
}

func (in *Ingest) parseRequest(r *http.Request, set *IngestSettings) (request, int, error) {
	req := request{uuid: r.PathValue("uuid")}
	if !uuidRE.MatchString(req.uuid) {
		return req, http.StatusNotFound, fmt.Errorf("not a channel uuid: %q", req.uuid)
	}
	q := r.URL.Query()
	for k := range q {
		if !queryParams[k] {
			return req, http.StatusNotFound, fmt.Errorf("unknown query parameter %q", k)
		}
	}
	if cred := q.Get(CredentialParam); cred != "" {
		spec, err := in.signer.Verify(cred, req.uuid, time.Now())
		if err != nil {
			return req, http.StatusUnauthorized, err
		}
		req.spec, req.bug, req.trusted = spec, spec.Bug, true
		return req, 0, nil
	}
	if set.Token != "" {
		given := q.Get("token")
		if _, pw, ok := r.BasicAuth(); ok && given == "" {
			given = pw
		}
		if subtle.ConstantTimeCompare([]byte(given), []byte(set.Token)) != 1 {
			return req, http.StatusUnauthorized, errors.New("missing or wrong token")
		}
	}
	p := set.Defaults
	req.profile = q.Get("profile")
	if req.profile != "" {
		prof, ok := set.Destinations.Profiles[req.profile]
		if !ok {
			return req, http.StatusBadRequest, fmt.Errorf("unknown profile %q", req.profile)
		}
		p = prof.Params
	}
	if v := q.Get("mix"); v != "" {
		p.Mix = mediafork.Mix(v)
	}
	if v := q.Get("rate"); v != "" {
		rate, err := mediafork.ParseRate(v)
		if err != nil {
			return req, http.StatusBadRequest, err
		}
		p.Rate = rate
	}
	if v := q.Get("encoding"); v != "" {
		p.Encoding = mediafork.Encoding(v)
	}
	if err := p.Validate(); err != nil {
		return req, http.StatusBadRequest, err
	}
	req.spec.Params = p
	req.to = q["to"]
	if err := set.Destinations.CheckAdHoc(r.Context(), req.to); err != nil {
		return req, http.StatusForbidden, err
	}
	return req, 0, nil
}

// firstMessage is the metadata text frame mod_audio_fork sends first, when the
// fork was started with metadata.
type firstMessage struct {
	mediafork.Metadata
	Profile string      `json:"profile"`
	To      stringOrSet `json:"to"`
}

// stringOrSet accepts "to": "h:p" as well as "to": ["h:p", ...].
type stringOrSet []string

func (s *stringOrSet) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*s = []string{one}
		return nil
	}
	return json.Unmarshal(b, (*[]string)(s))
}

// resolve merges where a fork's description comes from, first found wins: the
// fork mediafork signed itself; the first text frame; the URL query; the call's
// channel data (uuid_dump); defaults (channel_id = uuid).
func (in *Ingest) resolve(req request, first firstMessage, set *IngestSettings) (mediafork.Spec, []netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if req.trusted {
		spec := req.spec
		spec.Metadata.Fill(mediafork.Metadata{ChannelID: req.uuid})
		addrs, err := set.Destinations.Resolve(ctx, spec.Profile, spec.To, true)
		return spec, addrs, err
	}
	spec := req.spec
	spec.Metadata = first.Metadata
	spec.Profile, spec.To = first.Profile, first.To
	if spec.Profile == "" && len(spec.To) == 0 {
		spec.Profile, spec.To = req.profile, req.to
	}
	if in.lookup != nil {
		if call, err := in.lookup.LookupCall(ctx, req.uuid); err == nil {
			spec.Server = call.Server
			spec.Metadata.Fill(call.Metadata)
			if spec.Profile == "" && len(spec.To) == 0 {
				spec.Profile, spec.To = call.Profile, call.To
			}
		} else {
			in.log.Debug("call lookup failed", "uuid", req.uuid, "error", err)
		}
	}
	spec.Metadata.Fill(mediafork.Metadata{ChannelID: req.uuid})
	addrs, err := set.Destinations.Resolve(ctx, spec.Profile, spec.To, false)
	return spec, addrs, err
}
