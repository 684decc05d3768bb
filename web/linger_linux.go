package web

import (
	"net"
	"os"
)

// lingerFD lingers a refused connection the epoll reader owns as a raw
// socket (out of its epoll set already): the socket goes back into Go's
// netpoller for the drain. It takes fd over.
func (in *Ingest) lingerFD(fd int) {
	f := os.NewFile(uintptr(fd), "ingest")
	c, err := net.FileConn(f) // a dup of fd
	f.Close()
	if err != nil {
		return
	}
	in.lingerClose(c)
}
