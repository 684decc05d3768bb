//go:build !unix

package udp

func (e *Endpoint) init() error { return nil }

// send writes one datagram. (Windows does not block a UDP send on a full
// buffer: it drops the datagram.)
func (e *Endpoint) send(b []byte) error {
	_, err := e.conn.Write(b)
	return err
}
