package main

import (
	"fmt"
	"strings"
)

// notify tells systemd (Type=notify) about the daemon's state; a failure is
// logged, never fatal: the daemon serves the same without a service manager.
func (d *daemon) notify(send func(status string) (bool, error), status string) {
	if _, err := send(status); err != nil {
		d.log.Warn("sd_notify failed", "error", err)
	}
}

// listenStatus is the STATUS= line systemctl status shows: where each
// listener is bound and how many forks are live.
func (d *daemon) listenStatus() string {
	parts := []string{"ingest " + d.ingestLn.Addr().String()}
	if d.apiLn != nil {
		parts = append(parts, "api "+d.apiLn.Addr().String())
	}
	if d.outbound != nil {
		parts = append(parts, "outbound ESL "+d.outbound.Addr().String())
	}
	return fmt.Sprintf("%s; %d forks", strings.Join(parts, ", "), d.registry.Len())
}
