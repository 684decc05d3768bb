//go:build unix

package tlsrecord

import (
	"errors"
	"syscall"
)

// WriteNow seals p and writes it once, without waiting for room in the
// socket: dropped when there is none, when a Write is under way, or when the
// connection is not Fast (nor detached). What did not go at all is as if it
// had not been sealed; a record half written ends the writing.
func (c *Conn) WriteNow(p []byte) {
	if !c.Fast() || !c.outMu.TryLock() {
		return
	}
	defer c.outMu.Unlock()
	if c.detached || c.werr != nil {
		return
	}
	saved := c.tx
	c.writeNowLocked(c.tx.Seal(nil, p), saved)
}

// alert sends the alert err asks for, the same way, best effort.
func (c *Conn) alert(err error) {
	var ae *AlertError
	if !errors.As(err, &ae) || ae.Alert == 0 || !c.outMu.TryLock() {
		return
	}
	defer c.outMu.Unlock()
	if c.detached || c.werr != nil {
		return
	}
	saved := c.tx
	c.writeNowLocked(c.tx.SealAlert(nil, ae.Alert), saved)
}

func (c *Conn) writeNowLocked(rec []byte, saved Sender) {
	raw, err := c.SyscallConn()
	if err != nil {
		c.tx = saved
		return
	}
	n := -1
	raw.Write(func(fd uintptr) bool {
		n, _ = syscall.Write(int(fd), rec)
		return true // never wait for the poller
	})
	switch {
	case n <= 0:
		c.tx = saved
	case n < len(rec):
		c.werr = errors.New("tlsrecord: a record half written")
	}
}
