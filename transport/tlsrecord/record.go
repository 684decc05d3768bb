// Package tlsrecord serves TLS server connections whose records, once
// crypto/tls has finished the handshake, this package reads and writes: the
// state of a connection's record layer (its keys, sequence numbers and the
// bytes read ahead) can then be handed to a reader that works on the raw
// socket outside Go's netpoller — mediafork's epoll reader decrypts wss://
// frames where it parses ws:// ones. The handshake stays crypto/tls's (the
// certificate, its reload, versions, suites, tickets); this package only takes
// the traffic secrets crypto/tls logs (Config.KeyLogWriter), checks the
// sequence numbers against the records crypto/tls wrote and read, and
// implements the AEAD record protection of TLS 1.3 (RFC 8446 section 5) and
// TLS 1.2 (RFC 5288, RFC 7905): AES-GCM and ChaCha20-Poly1305. A connection
// whose suite it does not implement stays on crypto/tls (Conn.Fast).
//
// The same state is what the kernel's TLS (TCP_ULP "tls", TLS_RX/TLS_TX)
// takes; this package decrypts in user space because the kernels it was
// measured on have none (BENCHMARKS.md).
package tlsrecord

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"hash"

	"golang.org/x/crypto/chacha20poly1305"
)

// Record content types (RFC 8446 section 5.1).
const (
	typeChangeCipherSpec = 20
	typeAlert            = 21
	typeHandshake        = 22
	typeApplicationData  = 23
)

// Alert descriptions this package sends or reads.
const (
	alertCloseNotify            = 0
	alertUnexpectedMessage      = 10
	alertBadRecordMAC           = 20
	alertRecordOverflow         = 22
	alertDecodeError            = 50
	alertUserCanceled           = 90
	alertNoRenegotiation        = 100
	alertLevelWarning      byte = 1
	alertLevelFatal        byte = 2
)

const (
	// HeaderLen is the length of a record's header.
	HeaderLen = 5
	// maxPlaintext is the most a record carries (RFC 8446 section 5.1).
	maxPlaintext = 16384
	// MaxRecord is the longest record a peer may send: TLS 1.2 allows 2,048
	// bytes of expansion (TLS 1.3 256), plus the header.
	MaxRecord = HeaderLen + maxPlaintext + 2048
	// maxUseless is how many records in a row may carry no data (empty
	// records, warnings, key updates) before the peer is taken for hostile:
	// crypto/tls's bound.
	maxUseless = 16
	// keyUpdate is the handshake message type of a TLS 1.3 KeyUpdate.
	keyUpdate = 24
)

// RecordLen returns the length of the record at the start of b, header
// included, or 0 when b does not hold a whole header yet. A header that is
// no record of an established TLS 1.2 or 1.3 connection (an unknown type,
// another version, a length over the maximum) is an error: the connection
// must end.
func RecordLen(b []byte) (int, error) {
	if len(b) < HeaderLen {
		return 0, nil
	}
	if b[0] < typeChangeCipherSpec || b[0] > typeApplicationData || b[1] != 3 || b[2] != 3 {
		return 0, &AlertError{alertDecodeError, fmt.Sprintf("not a TLS record header: % x", b[:HeaderLen])}
	}
	n := int(binary.BigEndian.Uint16(b[3:]))
	if n > MaxRecord-HeaderLen {
		return 0, &AlertError{alertRecordOverflow, fmt.Sprintf("record of %d bytes", n)}
	}
	return HeaderLen + n, nil
}

// AlertError is a record the connection cannot go on after: a fatal alert the
// peer sent, or one this side should send (Alert) before closing.
type AlertError struct {
	Alert  uint8 // the alert to send; 0 when the peer sent one
	Reason string
}

func (e *AlertError) Error() string { return "tls: " + e.Reason }

// suite is one AEAD cipher suite.
type suite struct {
	id      uint16
	version uint16 // tls.VersionTLS13, or VersionTLS12 for the TLS 1.2 suites
	keyLen  int
	chacha  bool
	hash    func() hash.Hash
}

var suites = []suite{
	{tls.TLS_AES_128_GCM_SHA256, tls.VersionTLS13, 16, false, sha256.New},
	{tls.TLS_AES_256_GCM_SHA384, tls.VersionTLS13, 32, false, sha512.New384},
	{tls.TLS_CHACHA20_POLY1305_SHA256, tls.VersionTLS13, 32, true, sha256.New},
	{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, 16, false, sha256.New},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, 16, false, sha256.New},
	{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, tls.VersionTLS12, 32, false, sha512.New384},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.VersionTLS12, 32, false, sha512.New384},
	{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, tls.VersionTLS12, 32, true, sha256.New},
	{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.VersionTLS12, 32, true, sha256.New},
	{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.VersionTLS12, 16, false, sha256.New},
	{tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.VersionTLS12, 32, false, sha512.New384},
}

func suiteFor(version, id uint16) *suite {
	for i := range suites {
		if suites[i].id == id && suites[i].version == version {
			return &suites[i]
		}
	}
	return nil
}

// fixedIVLen is the length of the write IV a TLS 1.2 key block gives: the
// implicit 4-byte salt for AES-GCM (an 8-byte explicit nonce travels in each
// record), the whole 12-byte nonce base for ChaCha20-Poly1305.
func (s *suite) fixedIVLen() int {
	if s.chacha {
		return 12
	}
	return 4
}

func (s *suite) aead(key []byte) (cipher.AEAD, error) {
	if s.chacha {
		return chacha20poly1305.New(key)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// expandLabel is HKDF-Expand-Label (RFC 8446 section 7.1).
func expandLabel(h func() hash.Hash, secret []byte, label string, context []byte, length int) ([]byte, error) {
	info := binary.BigEndian.AppendUint16(nil, uint16(length))
	info = append(info, byte(len("tls13 ")+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, byte(len(context)))
	info = append(info, context...)
	return hkdf.Expand(h, secret, string(info), length)
}

// prf12 is the TLS 1.2 PRF (RFC 5246 section 5): P_hash(secret, label + seed).
func prf12(h func() hash.Hash, secret []byte, label string, seed []byte, n int) []byte {
	labelSeed := append([]byte(label), seed...)
	mac := hmac.New(h, secret)
	mac.Write(labelSeed)
	a := mac.Sum(nil) // A(1)
	out := make([]byte, 0, n+mac.Size())
	for len(out) < n {
		mac.Reset()
		mac.Write(a)
		mac.Write(labelSeed)
		out = mac.Sum(out)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0])
	}
	return out[:n]
}

// direction is the protection of one direction of a connection: the same
// for the side that seals it and the side that opens it.
type direction struct {
	suite   *suite
	version uint16
	key     []byte
	aead    cipher.AEAD // made from key when first used (cipher): a sending side may never write
	iv      [12]byte    // TLS 1.3 and ChaCha20: the nonce base; TLS 1.2 AES-GCM: the salt in iv[:4]
	secret  []byte      // TLS 1.3: the traffic secret, for KeyUpdate
	seq     uint64
	// Scratch for each record's nonce and TLS 1.2 additional data: in the
	// struct, since what is passed to the AEAD interface escapes.
	nonceBuf [12]byte
	aadBuf   [13]byte
}

// direction13 keys a TLS 1.3 direction from its traffic secret.
func direction13(s *suite, secret []byte) (*direction, error) {
	d := &direction{suite: s, version: tls.VersionTLS13, secret: append([]byte(nil), secret...)}
	return d, d.rekey()
}

// rekey derives the key and IV from the traffic secret (RFC 8446 section 7.3).
func (d *direction) rekey() error {
	key, err := expandLabel(d.suite.hash, d.secret, "key", nil, d.suite.keyLen)
	if err != nil {
		return err
	}
	iv, err := expandLabel(d.suite.hash, d.secret, "iv", nil, 12)
	if err != nil {
		return err
	}
	d.key, d.aead = key, nil
	copy(d.iv[:], iv)
	d.seq = 0
	return nil
}

// update moves a TLS 1.3 direction to its next traffic secret (KeyUpdate,
// RFC 8446 section 7.2).
func (d *direction) update() error {
	next, err := expandLabel(d.suite.hash, d.secret, "traffic upd", nil, d.suite.hash().Size())
	if err != nil {
		return err
	}
	d.secret = next
	return d.rekey()
}

// directions12 keys both directions of a TLS 1.2 connection from its master
// secret and the hello randoms (RFC 5246 section 6.3): the client's writes,
// then the server's.
func directions12(s *suite, master, clientRandom, serverRandom []byte) (client, server *direction, err error) {
	ivLen := s.fixedIVLen()
	seed := append(append([]byte(nil), serverRandom...), clientRandom...)
	kb := prf12(s.hash, master, "key expansion", seed, 2*s.keyLen+2*ivLen)
	client = &direction{suite: s, version: tls.VersionTLS12, key: kb[:s.keyLen:s.keyLen]}
	server = &direction{suite: s, version: tls.VersionTLS12, key: kb[s.keyLen : 2*s.keyLen : 2*s.keyLen]}
	copy(client.iv[:], kb[2*s.keyLen:2*s.keyLen+ivLen])
	copy(server.iv[:], kb[2*s.keyLen+ivLen:])
	return client, server, nil
}

// cipher is the direction's AEAD, made when first needed (about 1.7 KiB
// for AES-GCM: a connection's sending side may write nothing before its end).
func (d *direction) cipher() cipher.AEAD {
	if d.aead == nil {
		a, err := d.suite.aead(d.key)
		if err != nil {
			panic("tlsrecord: " + err.Error()) // the key has the suite's length: cannot fail
		}
		d.aead = a
	}
	return d.aead
}

// nonce is the per-record nonce of TLS 1.3 and of ChaCha20 in TLS 1.2: the
// IV with the sequence number XORed into its last 8 bytes.
func (d *direction) nonce(n *[12]byte) {
	*n = d.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], d.seq)
	for i := range s {
		n[4+i] ^= s[i]
	}
}

// explicit12 reports whether records carry an 8-byte explicit nonce (TLS
// 1.2 AES-GCM).
func (d *direction) explicit12() bool { return d.version == tls.VersionTLS12 && !d.suite.chacha }

// open decrypts the whole record rec in place and returns its content type
// and plaintext (a slice of rec); it advances the sequence number.
func (d *direction) open(rec []byte) (byte, []byte, error) {
	typ, body := rec[0], rec[HeaderLen:]
	nonce := &d.nonceBuf
	var aad []byte
	if d.version == tls.VersionTLS13 {
		if typ != typeApplicationData {
			return 0, nil, &AlertError{alertUnexpectedMessage, fmt.Sprintf("record of type %d after the handshake", typ)}
		}
		d.nonce(nonce)
		aad = rec[:HeaderLen]
	} else {
		if d.explicit12() {
			if len(body) < 8 {
				return 0, nil, &AlertError{alertBadRecordMAC, "record too short"}
			}
			copy(nonce[:4], d.iv[:4])
			copy(nonce[4:], body[:8])
			body = body[8:]
		} else {
			d.nonce(nonce)
		}
		if len(body) < d.cipher().Overhead() {
			return 0, nil, &AlertError{alertBadRecordMAC, "record too short"}
		}
		binary.BigEndian.PutUint64(d.aadBuf[:], d.seq)
		d.aadBuf[8], d.aadBuf[9], d.aadBuf[10] = typ, 3, 3
		binary.BigEndian.PutUint16(d.aadBuf[11:], uint16(len(body)-d.cipher().Overhead()))
		aad = d.aadBuf[:]
	}
	plain, err := d.cipher().Open(body[:0], nonce[:], body, aad)
	if err != nil {
		return 0, nil, &AlertError{alertBadRecordMAC, "record authentication failed"}
	}
	d.seq++
	if d.version == tls.VersionTLS13 {
		i := len(plain) - 1
		for i >= 0 && plain[i] == 0 {
			i--
		}
		if i < 0 {
			return 0, nil, &AlertError{alertUnexpectedMessage, "record with no content type"}
		}
		typ, plain = plain[i], plain[:i]
	}
	if len(plain) > maxPlaintext {
		return 0, nil, &AlertError{alertRecordOverflow, "record over 16 KiB of plaintext"}
	}
	return typ, plain, nil
}

// seal appends a record of type typ carrying p (at most maxPlaintext bytes)
// to dst; it advances the sequence number.
func (d *direction) seal(dst []byte, typ byte, p []byte) []byte {
	start := len(dst)
	nonce := &d.nonceBuf
	if d.version == tls.VersionTLS13 {
		n := len(p) + 1 + d.cipher().Overhead()
		dst = append(dst, typeApplicationData, 3, 3, byte(n>>8), byte(n))
		inner := len(dst)
		dst = append(dst, p...)
		dst = append(dst, typ)
		d.nonce(nonce)
		dst = d.cipher().Seal(dst[:inner], nonce[:], dst[inner:], dst[start:inner])
	} else {
		n := len(p) + d.cipher().Overhead()
		if d.explicit12() {
			n += 8
		}
		dst = append(dst, typ, 3, 3, byte(n>>8), byte(n))
		if d.explicit12() {
			// The sequence number as the explicit nonce, as crypto/tls does:
			// unique per key.
			dst = binary.BigEndian.AppendUint64(dst, d.seq)
			copy(nonce[:4], d.iv[:4])
			copy(nonce[4:], dst[len(dst)-8:])
		} else {
			d.nonce(nonce)
		}
		aad := &d.aadBuf
		binary.BigEndian.PutUint64(aad[:], d.seq)
		aad[8], aad[9], aad[10] = typ, 3, 3
		binary.BigEndian.PutUint16(aad[11:], uint16(len(p)))
		body := len(dst)
		dst = append(dst, p...)
		dst = d.cipher().Seal(dst[:body], nonce[:], dst[body:], aad[:])
	}
	d.seq++
	return dst
}

// Event is what a record a Receiver opened carried.
type Event int

const (
	// Data: application data, the plaintext returned.
	Data Event = iota
	// Skip: nothing for the caller (an empty record, a TLS 1.2 warning, a
	// key update the Receiver has made).
	Skip
	// UpdateRequested: the peer updated its keys and asks for ours to be
	// updated: the caller calls its Sender's UpdateRequested.
	UpdateRequested
	// Closed: the peer's close_notify; it sends nothing more.
	Closed
)

// Receiver opens the records a peer sends on an established connection.
type Receiver struct {
	d       direction // by value: the epoll reader reaches it per frame, one pointer less to miss
	useless int       // records in a row that carried no data
}

// Open decrypts the whole record rec (RecordLen bytes) in place and says
// what it carried: Data with its plaintext (a slice of rec), or an Event the
// Receiver has handled. An error ends the connection: a fatal alert from the
// peer, a record that does not authenticate, a handshake message other than
// a TLS 1.3 KeyUpdate (renegotiation, for one), too many records with no data.
func (r *Receiver) Open(rec []byte) (Event, []byte, error) {
	typ, plain, err := r.d.open(rec)
	if err != nil {
		return 0, nil, err
	}
	if typ == typeApplicationData && len(plain) > 0 {
		r.useless = 0
		return Data, plain, nil
	}
	if r.useless++; r.useless > maxUseless {
		return 0, nil, &AlertError{alertUnexpectedMessage, "too many records with no data"}
	}
	switch typ {
	case typeApplicationData:
		return Skip, nil, nil
	case typeAlert:
		if len(plain) != 2 {
			return 0, nil, &AlertError{alertDecodeError, "malformed alert"}
		}
		switch {
		case plain[1] == alertCloseNotify:
			return Closed, nil, nil
		case plain[1] == alertUserCanceled || (r.d.version == tls.VersionTLS12 && plain[0] == alertLevelWarning):
			return Skip, nil, nil
		}
		return 0, nil, &AlertError{0, fmt.Sprintf("the peer sent alert %d", plain[1])}
	case typeHandshake:
		if r.d.version != tls.VersionTLS13 {
			return 0, nil, &AlertError{alertNoRenegotiation, "renegotiation refused"}
		}
		// One whole KeyUpdate, alone at the end of its record (the key
		// changes after it: RFC 8446 section 5.1).
		if len(plain) != 5 || plain[0] != keyUpdate || plain[1] != 0 || plain[2] != 0 || plain[3] != 1 || plain[4] > 1 {
			return 0, nil, &AlertError{alertUnexpectedMessage, fmt.Sprintf("post-handshake message of %d bytes, type %d", len(plain), plain[0])}
		}
		if err := r.d.update(); err != nil {
			return 0, nil, err
		}
		if plain[4] == 1 {
			return UpdateRequested, nil, nil
		}
		return Skip, nil, nil
	}
	return 0, nil, &AlertError{alertUnexpectedMessage, fmt.Sprintf("record of type %d after the handshake", typ)}
}

// Sender seals the records of an established connection. Its state is a
// value: a caller that could not write what it sealed may restore a copy
// taken before (the sequence numbers then as if nothing was sealed).
type Sender struct {
	d             direction
	updatePending bool // the peer asked for a KeyUpdate: one goes before the next record
}

// Seal appends to dst the application data records carrying p (split at 16
// KiB); when the peer asked for a key update, a KeyUpdate first (RFC 8446
// section 4.6.3: before the next application data).
func (s *Sender) Seal(dst, p []byte) []byte {
	dst = s.keyUpdate(dst)
	for {
		n := min(len(p), maxPlaintext)
		dst = s.d.seal(dst, typeApplicationData, p[:n])
		if p = p[n:]; len(p) == 0 {
			return dst
		}
	}
}

// SealCloseNotify appends a close_notify alert to dst.
func (s *Sender) SealCloseNotify(dst []byte) []byte {
	return s.SealAlert(dst, alertCloseNotify)
}

// SealAlert appends the alert desc (fatal but for close_notify) to dst.
func (s *Sender) SealAlert(dst []byte, desc uint8) []byte {
	level := alertLevelFatal
	if desc == alertCloseNotify {
		level = alertLevelWarning
	}
	return s.d.seal(dst, typeAlert, []byte{level, desc})
}

// UpdateRequested notes the peer's request to update this direction's keys
// (Receiver.Open's UpdateRequested).
func (s *Sender) UpdateRequested() { s.updatePending = true }

func (s *Sender) keyUpdate(dst []byte) []byte {
	if !s.updatePending || s.d.version != tls.VersionTLS13 {
		return dst
	}
	s.updatePending = false
	dst = s.d.seal(dst, typeHandshake, []byte{keyUpdate, 0, 0, 1, 0}) // update_not_requested
	next := s.d
	if err := next.update(); err != nil {
		panic("tlsrecord: key update: " + err.Error()) // HKDF with a valid hash cannot fail
	}
	s.d = next
	return dst
}
