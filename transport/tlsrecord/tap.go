package tlsrecord

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"net"
	"sync"
)

// maxCaptured bounds the records a tap keeps of a handshake, each way:
// a server's first flight with a long certificate chain fits many times. A
// handshake that writes or reads more is served on by crypto/tls.
const maxCaptured = 64 << 10

// tap is the connection crypto/tls does its handshake on. It reads one record
// (header, then body) at a time, so that crypto/tls never holds bytes past the
// last record of the handshake, and it keeps a copy of the records each way:
// the sequence numbers are checked against them (Conn.takeOver). After the
// handshake it passes everything through.
type tap struct {
	net.Conn
	done bool // the handshake is over: pass through

	in, out recordLog

	mu      sync.Mutex // the key log is written by crypto/tls's handshake, read after it
	secrets map[string][]byte
	random  []byte // the client random the key log names
}

// recordLog follows a stream of records and keeps those that may be
// protected (TLS 1.3's, all of type application_data; TLS 1.2's after a
// ChangeCipherSpec), up to maxCaptured, and the random of a first record
// that is a hello.
type recordLog struct {
	hdr     [HeaderLen]byte
	have    int // header bytes seen of the current record
	left    int // body bytes still to come of it
	cur     []byte
	keeping bool // the current record is kept
	records [][]byte
	size    int
	over    bool // more than maxCaptured: nothing kept any more
	ccs     bool // a ChangeCipherSpec went by
	n       int  // records seen
	random  []byte
}

// next is how many bytes may be read now without passing the end of the
// current record: the rest of its header, or of its body.
func (l *recordLog) next() int {
	if l.have < HeaderLen {
		return HeaderLen - l.have
	}
	return l.left
}

// add follows b, which continues the stream.
func (l *recordLog) add(b []byte) {
	for len(b) > 0 {
		if l.have < HeaderLen {
			k := copy(l.hdr[l.have:], b)
			l.have += k
			b = b[k:]
			if l.have == HeaderLen {
				l.left = int(binary.BigEndian.Uint16(l.hdr[3:]))
				typ := l.hdr[0]
				l.keeping = typ == typeApplicationData || (l.ccs && typ == typeHandshake) || (l.n == 0 && typ == typeHandshake)
				if l.keeping && (l.over || l.size+HeaderLen+l.left > maxCaptured) {
					l.over, l.records, l.keeping = true, nil, false
				}
				if typ == typeChangeCipherSpec {
					l.ccs = true
				}
				if l.keeping {
					l.size += HeaderLen + l.left
					l.cur = append(make([]byte, 0, HeaderLen+l.left), l.hdr[:]...)
				}
				if l.left == 0 {
					l.end()
				}
			}
			continue
		}
		k := min(len(b), l.left)
		if l.keeping {
			l.cur = append(l.cur, b[:k]...)
		}
		l.left -= k
		b = b[k:]
		if l.left == 0 {
			l.end()
		}
	}
}

func (l *recordLog) end() {
	r := l.cur
	if l.n == 0 && l.keeping && l.hdr[0] == typeHandshake {
		// A hello: header, handshake type, 3-byte length, 2-byte version,
		// 32-byte random. The rest of it is not kept.
		if len(r) >= HeaderLen+6+32 && (r[HeaderLen] == 1 || r[HeaderLen] == 2) {
			l.random = append([]byte(nil), r[HeaderLen+6:HeaderLen+6+32]...)
		}
		l.size -= len(r)
		r = nil
	}
	if l.keeping && r != nil {
		l.records = append(l.records, r)
	}
	l.cur, l.have, l.keeping = nil, 0, false
	l.n++
}

func (t *tap) Read(p []byte) (int, error) {
	if t.done {
		return t.Conn.Read(p)
	}
	if k := t.in.next(); len(p) > k {
		p = p[:k]
	}
	n, err := t.Conn.Read(p)
	t.in.add(p[:n])
	return n, err
}

func (t *tap) Write(p []byte) (int, error) {
	n, err := t.Conn.Write(p)
	if !t.done {
		t.out.add(p[:n])
	}
	return n, err
}

// serverRandom is the random of the ServerHello, the first record the server
// wrote (crypto/tls writes it alone in its record).
func (t *tap) serverRandom() []byte { return t.out.random }

// keyLog is the tap's Config.KeyLogWriter: crypto/tls writes a line
// "LABEL <client random> <secret>" per secret, in hex.
type keyLog struct{ t *tap }

// The secrets kept: the TLS 1.3 application traffic secrets and the TLS 1.2
// master secret; the handshake secrets are not needed.
var keptLabels = map[string]bool{"CLIENT_TRAFFIC_SECRET_0": true, "SERVER_TRAFFIC_SECRET_0": true, "CLIENT_RANDOM": true}

func (k keyLog) Write(line []byte) (int, error) {
	f := bytes.Fields(line)
	if len(f) != 3 || !keptLabels[string(f[0])] {
		return len(line), nil
	}
	random, err1 := hex.DecodeString(string(f[1]))
	secret, err2 := hex.DecodeString(string(f[2]))
	if err1 != nil || err2 != nil {
		return len(line), nil
	}
	t := k.t
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.secrets == nil {
		t.secrets = map[string][]byte{}
	}
	t.secrets[string(f[0])] = secret
	t.random = random
	return len(line), nil
}

func (t *tap) secret(label string) []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.secrets[label]
}
