// Package testport gives tests loopback TCP addresses for what cannot take
// port 0: a daemon running as a process of its own (its config has no port
// 0: ingest.url must name the port), and an address that refuses
// connections.
package testport

import (
	"net"
	"testing"
)

// Reserved is a loopback TCP address for a daemon that runs as a process of
// its own, that no other process is given meanwhile: a connection to a
// listener on port 0 is accepted and closed from the listener's side first,
// which leaves the port in TIME_WAIT (a minute): the kernel hands it to no
// bind(:0) and no outgoing connection while it lasts, and a listener that
// asks for it by number (SO_REUSEADDR, as Go's) gets it. A port a listener
// was merely closed on could be given to anyone at once.
func Reserved(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	if cerr := server.Close(); cerr != nil { // first: the TIME_WAIT is on the listener's port
		t.Fatal(cerr)
	}
	return ln.Addr().String()
}
