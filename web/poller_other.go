//go:build !linux

package web

import (
	"errors"

	"github.com/gorilla/websocket"
)

// pollers are the epoll readers: Linux only.
type pollers struct{}

// UsePoller fails here: the epoll reader is Linux's; the goroutine reader
// serves.
func (in *Ingest) UsePoller(ReaderSettings) error {
	return errors.New("the epoll reader is available on Linux only")
}

// Close stops the epoll readers: there are none here.
func (in *Ingest) Close() {}

// streamPolled is never called without pollers.
func (in *Ingest) streamPolled(conn *websocket.Conn, s *session) {
	defer in.conns.Done()
	defer conn.Close()
	defer s.recoverPanic()
	in.stream(conn, s)
}
