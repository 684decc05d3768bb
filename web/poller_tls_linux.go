//go:build linux

package web

import (
	"errors"

	"golang.org/x/sys/unix"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/transport/tlsrecord"
)

// wss:// on the epoll reader: crypto/tls has done the handshake and
// transport/tlsrecord has the keys (Ingest.TLSListener); here each read's
// records are opened in place and their plaintext parsed as ws:// bytes are.

// tlsState is a wss:// connection's record layer on the epoll reader,
// inside its polledConn (on: wss://): the state a frame needs is one
// pointer from the connection, not three.
type tlsState struct {
	on     bool
	rx     tlsrecord.Receiver // the reader goroutine's
	tx     tlsrecord.Sender   // under the connection's mu
	broken bool               // a record went out half written: nothing can follow it
	// midRecord: talk-back's writer (writeAll) has sealed records not all
	// written yet; nothing else may go until they are.
	midRecord bool
	// idle: reads since the last that ended inside a record; an empty part
	// is released after partIdleReads of them.
	idle uint16
	out  []byte // writeAll's sealed records
	// part is a record cut by the end of a read: part[:n], the rest to come.
	part []byte
	n    int
}

// errTLSBroken: a record went out half written before; nothing can follow.
var errTLSBroken = errors.New("tls: a record was cut short: the connection cannot be written on")

// partKeep is the most of a partial-record buffer a connection keeps
// between reads: a frame of 20 ms of 16 kHz stereo in one record fits.
const partKeep = 2048

// partIdleReads is how many reads an empty partial-record buffer is kept
// for (a second of frames or so): a peer whose records TCP cuts often keeps
// reusing it, one cut once in a while does not hold it on.
const partIdleReads = 64

// write seals frame (or, with seal, what seal appends: a close_notify) and
// writes it once, never waiting: dropped when the socket has no room. The
// caller holds the connection's mu.
func (t *tlsState) write(fd int, frame []byte, seal func(*tlsrecord.Sender, []byte) []byte) {
	if t.broken || t.midRecord {
		return
	}
	saved := t.tx
	var rec []byte
	if seal != nil {
		rec = seal(&t.tx, nil)
	} else {
		rec = t.tx.Seal(nil, frame)
	}
	n, _ := unix.Write(fd, rec)
	switch {
	case n <= 0: // nothing went: as if nothing was sealed
		t.tx = saved
	case n < len(rec):
		t.broken = true
	}
}

// readableTLS reads what arrived (one read), opens every whole record and
// acts on every whole frame. The read goes to the reader's warm buffer,
// where the records are opened in place (as readable does for ws://); the
// start of a record cut by the last read, kept in the connection's own
// buffer, is copied there first. Only a record larger than warm is completed
// in the connection's buffer.
func (pc *polledConn) readableTLS() {
	t := &pc.tls
	warm := pc.p.warm
	if t.n == 0 {
		t.noPart()
		n, err := unix.Read(pc.fd, warm)
		if pc.came(n, err) {
			pc.openRecords(warm[:n])
		}
		return
	}
	need := 0 // the cut record's length; 0 while its header is cut
	if k, err := tlsrecord.RecordLen(t.part[:t.n]); err == nil {
		need = k
	}
	if need <= len(warm) {
		k := copy(warm, t.part[:t.n])
		n, err := unix.Read(pc.fd, warm[k:])
		if pc.came(n, err) {
			t.n = 0
			pc.openRecords(warm[:k+n])
		}
		return
	}
	if len(t.part) < need {
		t.part = append(t.part[:t.n], make([]byte, need-t.n)...)
	}
	n, err := unix.Read(pc.fd, t.part[t.n:])
	if pc.came(n, err) {
		b := t.part[:t.n+n]
		t.n = 0
		pc.openRecords(b)
	}
}

// openRecords opens the whole records of b in place and parses their
// plaintext; a partial record at the end is kept for the next read. false
// when the connection ended.
func (pc *polledConn) openRecords(b []byte) bool {
	t := &pc.tls
	for {
		n, err := tlsrecord.RecordLen(b)
		if err != nil {
			pc.failTLS(err)
			return false
		}
		if n == 0 || n > len(b) {
			t.keepPart(b, n)
			return true
		}
		ev, plain, err := t.rx.Open(b[:n])
		b = b[n:]
		if err != nil {
			pc.failTLS(err)
			return false
		}
		switch ev {
		case tlsrecord.Data:
			if !pc.feed(plain) {
				return false
			}
		case tlsrecord.Closed: // close_notify without a close frame first
			pc.end(mediafork.EndMediaLost)
			return false
		case tlsrecord.UpdateRequested:
			pc.mu.Lock()
			t.tx.UpdateRequested()
			pc.mu.Unlock()
		}
	}
}

// keepPart keeps b, what a read left after its whole records: the start of
// a record of n bytes (0: its header is cut too), in part, for the next read
// to go on after it. b may lie in part itself (copy moves). The buffer has
// the record's length (the next partial record of a stream of frames fits
// it), or b's when that is more than partKeep: a record larger than warm is
// completed there (readableTLS grows it).
func (t *tlsState) keepPart(b []byte, n int) {
	if len(b) == 0 {
		t.n = 0
		if cap(t.part) > partKeep {
			t.part = nil // a large record's buffer is not kept
		}
		return
	}
	if cap(t.part) < len(b) {
		size := len(b)
		if n <= partKeep {
			size = max(size, n)
		}
		t.part = make([]byte, size)
	}
	t.part = t.part[:cap(t.part)]
	t.n = copy(t.part, b)
	t.idle = 0
}

// noPart notes a read that goes on from no partial record: an empty part
// buffer is released after partIdleReads of them in a row.
func (t *tlsState) noPart() {
	if t.part == nil {
		return
	}
	if t.idle++; t.idle >= partIdleReads {
		t.part, t.idle = nil, 0
	}
}

// feed parses the frames of plain, a record's plaintext; false when the
// connection ended. With nothing left over in the frame reader, they are
// parsed where plain lies (the read buffer, warm) and only a partial frame
// is copied to the connection's buffer.
func (pc *polledConn) feed(plain []byte) bool {
	r := pc.r
	if len(plain) == 0 {
		return true
	}
	if r.start == r.end {
		own := r.buf
		r.buf, r.start, r.end = plain[:len(plain):len(plain)], 0, len(plain)
		ok := pc.parse()
		if &r.buf[0] != &plain[0] { // grown for a large frame: the connection's own now
			return ok
		}
		rest := r.buf[r.start:r.end]
		r.buf, r.start, r.end = own, 0, 0
		if !ok {
			return false
		}
		plain = rest
	}
	for len(plain) > 0 {
		sp := r.space()
		if len(sp) == 0 { // not expected: a frame over the limit is refused first
			pc.fail(errTooBig)
			return false
		}
		k := copy(sp, plain)
		r.end += k
		plain = plain[k:]
		if !pc.parse() {
			return false
		}
	}
	return true
}

// failTLS ends a connection whose records cannot be read on: the alert the
// error asks for goes first (best effort).
func (pc *polledConn) failTLS(err error) {
	pc.s.log.Debug("closing the connection", "error", err)
	var ae *tlsrecord.AlertError
	if errors.As(err, &ae) && ae.Alert != 0 {
		pc.mu.Lock()
		if pc.fd >= 0 && !pc.closed {
			pc.tls.write(pc.fd, nil, func(s *tlsrecord.Sender, dst []byte) []byte { return s.SealAlert(dst, ae.Alert) })
			pc.tls.broken = true // no close_notify after a fatal alert
		}
		pc.mu.Unlock()
	}
	pc.end(mediafork.EndMediaLost)
}
