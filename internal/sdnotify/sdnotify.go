// Package sdnotify tells systemd how the service is doing (sd_notify(3)): one
// datagram of NEWLINE-separated KEY=VALUE lines to the unix socket named by
// $NOTIFY_SOCKET. Without that variable (not run by systemd with Type=notify)
// every call does nothing.
package sdnotify

import (
	"net"
	"os"
	"strconv"
	"strings"
)

// Send sends state lines ("READY=1", "STATUS=...") in one datagram. It
// reports false, nil when $NOTIFY_SOCKET is unset.
func Send(lines ...string) (sent bool, err error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return false, nil
	}
	if name[0] == '@' { // Linux abstract namespace
		name = "\x00" + name[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return false, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(lines, "\n") + "\n")); err != nil {
		return false, err
	}
	return true, nil
}

// Ready says startup (or a reload) is complete.
func Ready(status string) (bool, error) { return Send("READY=1", status1(status)) }

// Reloading says a reload began. MONOTONIC_USEC is what systemd ≥ 253 asks
// for with Type=notify-reload; older systemd ignores it.
func Reloading(status string) (bool, error) {
	lines := []string{"RELOADING=1", status1(status)}
	if us, ok := monotonicUsec(); ok {
		lines = append(lines, "MONOTONIC_USEC="+strconv.FormatInt(us, 10))
	}
	return Send(lines...)
}

// Stopping says shutdown began.
func Stopping(status string) (bool, error) { return Send("STOPPING=1", status1(status)) }

// status1 is a STATUS= line, on one line whatever status holds.
func status1(s string) string { return "STATUS=" + strings.ReplaceAll(s, "\n", " ") }
