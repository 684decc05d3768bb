package main

import (
	"github.com/mediafork/mediafork/esl"
	"github.com/mediafork/mediafork/web"
)

// health is /readyz's view: the listeners serve, and each switch's state with
// whether the config requires it.
func (d *daemon) health() (bool, []web.SwitchHealth) {
	required := map[string]bool{}
	for _, fs := range d.cfg.Load().FreeSWITCH {
		required[fs.Name] = fs.Required
	}
	var out []web.SwitchHealth
	for _, c := range d.bridge.Clients() {
		st, since := c.State()
		// Connected once forks can be started on it: the orchestrator has it
		// (alias installed, module known), as switchStats says.
		if st == esl.StateConnected && !d.orchestrator.Knows(c.Name()) {
			st = esl.StateConnecting
		}
		out = append(out, web.SwitchHealth{Name: c.Name(), State: string(st), Required: required[c.Name()], Since: since})
	}
	return d.serving.Load(), out
}
