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

// switchStatuses are the console's view of the switches: health's states
// with why a switch is not connected and when it tries again.
func (d *daemon) switchStatuses() []web.SwitchStatus {
	var out []web.SwitchStatus
	for _, c := range d.bridge.Clients() {
		st := c.Status()
		up := st.State == esl.StateConnected && d.orchestrator.Knows(c.Name())
		state, reason := string(st.State), st.Reason
		if st.State == esl.StateConnected && !up {
			state, reason = string(esl.StateConnecting), "connected; setting up (fs_cli alias, media module, resync)"
		}
		row := web.SwitchStatus{Name: st.Name, Addr: st.Addr, Up: up, State: state, Reason: reason,
			Since: st.Since, Next: st.NextAttempt}
		if d.node != nil {
			if m, ok := d.node.Leader(st.Name); ok {
				row.Leader = m.Name
			}
			row.Leads = d.node.Leads(st.Name)
		}
		out = append(out, row)
	}
	return out
}
