package web

import (
	"net/http"
	"sort"
	"time"
)

// SwitchHealth is one switch as /readyz reports it.
type SwitchHealth struct {
	Name     string    `json:"name"`
	State    string    `json:"state"` // connected, connecting, auth_failed, down
	Required bool      `json:"required"`
	Since    time.Time `json:"-"` // when State began
}

// Health is what readiness is made of: whether the listeners are bound and
// serving, and every switch.
type Health func() (listening bool, switches []SwitchHealth)

// SetHealth makes /readyz answer from h: ready while the listeners serve and
// every required switch is connected; an optional switch that is down never
// makes the instance unready (one down switch of ten must not take the ingest
// out of a load balancer). Without it, /readyz wants every switch connected.
func (a *API) SetHealth(h Health) { a.health = h }

type readyBody struct {
	Ready      bool           `json:"ready"`
	Listening  bool           `json:"listening"`
	NotReady   []string       `json:"not_ready,omitempty"` // why, one entry per cause
	FreeSWITCH []switchHealth `json:"freeswitch"`
	HA         *haReady       `json:"ha,omitempty"` // in a cluster: the switches this instance leads
}

type switchHealth struct {
	SwitchHealth
	Since string `json:"since"` // RFC 3339
}

func (a *API) ready(w http.ResponseWriter, r *http.Request) {
	var listening bool
	var sw []SwitchHealth
	if a.health != nil {
		listening, sw = a.health()
	} else { // every switch required
		listening = true
		for name, up := range a.switches() {
			st := "down"
			if up {
				st = "connected"
			}
			sw = append(sw, SwitchHealth{Name: name, State: st, Required: true})
		}
	}
	sort.Slice(sw, func(i, j int) bool { return sw[i].Name < sw[j].Name })
	body := readyBody{Ready: listening, Listening: listening, FreeSWITCH: []switchHealth{}, HA: a.haReady()}
	if !listening {
		body.NotReady = append(body.NotReady, "listeners not serving yet")
	}
	for _, s := range sw {
		since := ""
		if !s.Since.IsZero() {
			since = s.Since.UTC().Format(time.RFC3339)
		}
		body.FreeSWITCH = append(body.FreeSWITCH, switchHealth{s, since})
		if s.Required && s.State != "connected" {
			body.Ready = false
			body.NotReady = append(body.NotReady, "required switch "+s.Name+" is "+s.State)
		}
	}
	status := http.StatusOK
	if !body.Ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, body)
}
