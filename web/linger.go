package web

import (
	"io"
	"net"
	"time"
)

// A connection mediafork refuses after the upgrade (close 1008, 1009, 1002)
// gets its close frame and is then closed while the peer may still be
// sending: its metadata, held audio. Closing a socket with unread bytes makes
// the kernel send an RST, and the peer's kernel may then discard the close
// frame it has not read yet: the module would log a reset, not the reason.
// So a refused connection lingers: the write side is shut down (the peer
// reads our close frame, then EOF) and what the peer still sends is read and
// discarded until it closes, for at most lingerFor and lingerBytes.
const (
	lingerFor   = time.Second
	lingerBytes = 256 << 10
	// maxLingering bounds the refused connections lingering at once; past it
	// a refused connection is closed at once, as before.
	maxLingering = 256
)

// lingerClose closes c, a refused connection, as described above. The drain
// runs on a goroutine counted in the ingest's connections (Wait waits for it).
func (in *Ingest) lingerClose(c net.Conn) {
	if w, ok := c.(*frameWatch); ok {
		c = w.Conn // the socket: the watch refuses every read after a refusal
	}
	select {
	case in.lingering <- struct{}{}:
	default:
		c.Close()
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(lingerFor))
	in.conns.Add(1)
	go func() {
		defer in.conns.Done()
		defer func() { <-in.lingering }()
		io.CopyN(io.Discard, c, lingerBytes)
		c.Close()
	}()
}
