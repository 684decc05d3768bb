package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/mediafork/mediafork/mediafork"
)

// The ingest's boundary: what one connection's URL and first text frame ask
// for, parsed and checked before anything is forwarded.

var (
	queryParams = map[string]bool{"profile": true, "to": true, "mix": true, "rate": true, "encoding": true, "token": true, CredentialParam: true}
)

// request is what the URL of one connection asked for.
type request struct {
	uuid    mediafork.CallID
	bug     string
	trusted bool // a credential mediafork signed: its spec wins and is not re-checked
	spec    mediafork.Spec
	profile string
	to      []string
}

func (in *Ingest) parseRequest(r *http.Request, set *IngestSettings) (request, int, error) {
	uuid, err := mediafork.ParseCallID(r.PathValue("uuid"))
	req := request{uuid: uuid}
	if err != nil {
		return req, http.StatusNotFound, err
	}
	q := r.URL.Query()
	for k := range q {
		if !queryParams[k] {
			return req, http.StatusNotFound, fmt.Errorf("unknown query parameter %q", k)
		}
	}
	if cred := q.Get(CredentialParam); cred != "" {
		spec, err := in.signer.Verify(cred, req.uuid, time.Now())
		if err == nil {
			err = mediafork.CheckPinned(spec.Addrs)
		}
		if err == nil && in.lookup != nil {
			err = in.lookup.Admit(req.uuid, spec.Start)
		}
		if err != nil {
			return req, http.StatusUnauthorized, err
		}
		req.spec, req.bug, req.trusted = spec, spec.Bug, true
		return req, 0, nil
	}
	if set.Token == "" && set.RefuseHandTyped {
		return req, http.StatusUnauthorized, errors.New("forks without a credential need ingest.token on a non-loopback listener")
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
	if len(req.to) > 0 {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if _, err := set.Destinations.Resolve(ctx, "", req.to, true); err != nil {
			if errors.Is(err, mediafork.ErrNotAllowed) {
				return req, http.StatusForbidden, err
			}
			return req, http.StatusBadRequest, err
		}
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
		// Resolved and checked when the fork was asked for; used as signed.
		spec := req.spec
		spec.Metadata.Fill(mediafork.Metadata{ChannelID: string(req.uuid)})
		return spec, spec.Addrs, nil
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
	spec.Metadata.Fill(mediafork.Metadata{ChannelID: string(req.uuid)})
	addrs, err := set.Destinations.Resolve(ctx, spec.Profile, spec.To, true)
	spec.Addrs = addrs
	return spec, addrs, err
}
