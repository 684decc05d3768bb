package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
	uuid  mediafork.CallID
	bug   string
	pass  *mediafork.Pass // a credential mediafork signed: its description, in the first text frame, wins
	spec  mediafork.Spec  // a fork typed by hand: what the query decided
	query mediafork.Ask   // what the URL query asked for
}

// policy is what decides a hand-typed fork at the ingest: its settings'
// destinations and defaults, through mediafork.Policy.Resolve as every other
// trigger.
func policy(set *IngestSettings) *mediafork.Policy {
	return &mediafork.Policy{Destinations: set.Destinations, Defaults: set.Defaults}
}

// status is the HTTP status of a Policy error before the upgrade.
func status(err error) int {
	if errors.Is(err, mediafork.ErrNotAllowed) {
		return http.StatusForbidden
	}
	return http.StatusBadRequest
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
		// The token only: the description it signed comes in the first text
		// frame (resolve).
		pass, err := in.signer.Verify(cred, req.uuid, time.Now())
		if l := in.callLookup(); err == nil && l != nil {
			err = l.Admit(req.uuid, pass.Bug, pass.Start)
		}
		if err != nil {
			return req, http.StatusUnauthorized, err
		}
		req.pass, req.bug = &pass, pass.Bug
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
	req.query = mediafork.Ask{Profile: q.Get("profile"), To: q["to"], Mix: mediafork.Mix(q.Get("mix")), Encoding: mediafork.Encoding(q.Get("encoding"))}
	if v := q.Get("rate"); v != "" {
		rate, err := mediafork.ParseRate(v)
		if err != nil {
			return req, http.StatusBadRequest, err
		}
		req.query.Rate = rate
	}
	// What the query asks is checked now; the destinations may come from the
	// first text frame or the call.
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	spec, perr := policy(set).Check(ctx, mediafork.Request{Trigger: mediafork.TriggerIngest, UUID: uuid, Ask: req.query})
	if perr != nil {
		return req, status(perr), perr
	}
	req.spec = spec
	return req, 0, nil
}

// firstMessage is the metadata text frame the module sends first, when the
// fork was started with metadata.
type firstMessage struct {
	mediafork.Metadata
	Profile string      `json:"profile"`
	To      stringOrSet `json:"to"`
	// Description is the signed description of a fork mediafork started
	// (key mediafork.DescriptionKey).
	Description string `json:"mediafork"`
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

// resolve decides the fork of a connection, first found wins: the fork
// mediafork signed itself (its description in the first text frame, or
// nothing: ErrBadDescription); else Policy.Resolve over the first text frame,
// the URL query, the call's channel data (uuid_dump: mediafork_profile /
// mediafork_to, metadata), defaults (channel_id = the uuid).
func (in *Ingest) resolve(req request, first firstMessage, set *IngestSettings) (mediafork.Spec, []mediafork.Target, error) {
	if req.pass != nil {
		// Resolved and checked when the fork was asked for; used as signed.
		desc := first.Description
		if d, ok := in.callLookup().(mediafork.Describer); ok && desc == "" {
			// No metadata came (mod_audio_stream dropped it): the
			// description this instance signed, if it did, checked as
			// any other against the credential.
			if desc = d.SignedDescription(req.uuid, req.pass.Start); desc != "" {
				in.log.Warn("the module sent no metadata; the fork begins with the description this instance signed", "uuid", req.uuid)
			}
		}
		spec, err := req.pass.Open(desc)
		if err == nil && (spec.TalkbackFor == "" || len(spec.Targets) > 0) { // a talk-back bug has none
			err = mediafork.CheckPinned(spec.Targets)
		}
		if err != nil {
			return mediafork.Spec{}, nil, err
		}
		if spec.Resumed && spec.Resume == nil {
			spec.Resume = in.continuation(context.Background(), req.uuid, spec.Start)
		}
		spec.Metadata.Fill(mediafork.Metadata{ChannelID: string(req.uuid)})
		return spec, spec.Targets, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r := mediafork.Request{Trigger: mediafork.TriggerIngest, UUID: req.uuid,
		Ask:      mediafork.Ask{Profile: first.Profile, To: first.To, Metadata: first.Metadata},
		Fallback: []mediafork.Ask{req.query}}
	if l := in.callLookup(); l != nil {
		if call, err := l.LookupCall(ctx, req.uuid); err == nil {
			r.Server = call.Server
			r.Fallback = append(r.Fallback, mediafork.Ask{Profile: call.Profile, To: call.To, Metadata: call.Metadata})
		} else {
			in.log.Debug("call lookup failed", "uuid", req.uuid, "error", err)
		}
	}
	spec, err := policy(set).Resolve(ctx, r)
	return spec, spec.Targets, err
}

// continuation is the continuation of a resumed fork whose credential had no
// room for it: its orchestrator's (mediafork.ContinuationSource). Without
// one the fork starts new streams (logged): its audio matters more than
// their continuity.
func (in *Ingest) continuation(ctx context.Context, uuid mediafork.CallID, st mediafork.Start) *mediafork.Continuation {
	src, ok := in.callLookup().(mediafork.ContinuationSource)
	if !ok {
		in.log.Warn("a resumed fork's continuation is not known here: new streams", "uuid", uuid)
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	c, err := src.ContinuationOf(ctx, uuid, st)
	if err != nil {
		in.log.Warn("a resumed fork's continuation is not known here: new streams", "uuid", uuid, "error", err)
		return nil
	}
	return &c
}
