package web

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// The WebSocket frames a client sends (RFC 6455 section 5), read by the epoll
// reader once gorilla has done the handshake.
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

var (
	errProtocol = errors.New("websocket protocol error")
	errTooBig   = errors.New("message too big")
)

// wireError is a protocol error answered with 1002 and this reason (gorilla's
// words where gorilla sees it), so that both readers put the same bytes on the
// wire: an invalid close frame, a 64-bit length with the top bit set.
type wireError string

func (e wireError) Error() string        { return "websocket protocol error: " + string(e) }
func (e wireError) Is(target error) bool { return target == errProtocol }

const (
	errTopBit  = wireError("64-bit length with the top bit set")
	errOneByte = wireError("close frame with a 1-byte payload")
)

// validCloseCode tells whether a peer may send code: gorilla's list, 1000-1003,
// 1007-1013 and 3000-4999. 1004 is reserved; 1005, 1006 and 1015 are never sent
// on the wire; below 1000 and 1016-2999 are unassigned.
func validCloseCode(code int) bool {
	switch code {
	case 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013:
		return true
	}
	return code >= 3000 && code <= 4999
}

// closeReply is the code a server answers a valid close with: the peer's, or
// 1000 for a close without one.
func closeReply(code int) int {
	if code == 1005 {
		return 1000
	}
	return code
}

// keepMsg is the capacity of the fragment buffer kept between messages; a
// bigger one (a large fragmented message) is let go once handed out.
const keepMsg = 4096

// maxBuffer is the most a frameReader holds for a limit of max: its read
// buffer (one whole frame and some slack) and a fragmented message.
func maxBuffer(max int) int { return max + 14 + 1024 }

// frameEvent is what frameReader.next found.
type frameEvent int

const (
	evNeedMore frameEvent = iota
	evMessage
	evClose
	evPing
)

// frameReader parses client frames out of a buffer it owns, unmasking payloads
// in place: a whole unfragmented message is handed on without a copy.
type frameReader struct {
	buf        []byte
	start, end int // unparsed bytes: buf[start:end]
	max        int // largest message

	msg   []byte // a fragmented message being assembled
	msgOp byte
	inMsg bool
}

func newFrameReader(max int) *frameReader {
	return &frameReader{buf: make([]byte, min(2048, maxBuffer(max))), max: max}
}

// space returns where the next read goes, compacting or growing the buffer.
func (r *frameReader) space() []byte {
	if r.start == r.end {
		r.start, r.end = 0, 0
	}
	if len(r.buf)-r.end < 1024 && r.start > 0 {
		r.end = copy(r.buf, r.buf[r.start:r.end])
		r.start = 0
	}
	if len(r.buf)-r.end < 1024 {
		grown := make([]byte, min(2*len(r.buf), maxBuffer(r.max)))
		r.end = copy(grown, r.buf[r.start:r.end])
		r.start, r.buf = 0, grown
	}
	return r.buf[r.end:]
}

// next parses one frame. For evMessage, op is opText or opBinary; for evClose,
// code is the peer's close code (1005 when none; an invalid close is a protocol
// error). payload is valid until the next call to next or space. No length can
// wrap: a frame is refused before anything is added to what is buffered.
func (r *frameReader) next() (ev frameEvent, op byte, payload []byte, code int, err error) {
	for {
		b := r.buf[r.start:r.end]
		if len(b) < 2 {
			return evNeedMore, 0, nil, 0, nil
		}
		fin, rsv, opc := b[0]&0x80 != 0, b[0]&0x70, b[0]&0x0F
		masked, n := b[1]&0x80 != 0, uint64(b[1]&0x7F)
		if rsv != 0 || !masked {
			return 0, 0, nil, 0, fmt.Errorf("%w: reserved bits or unmasked client frame", errProtocol)
		}
		hdr := 2
		switch n {
		case 126:
			if len(b) < 4 {
				return evNeedMore, 0, nil, 0, nil
			}
			n, hdr = uint64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return evNeedMore, 0, nil, 0, nil
			}
			n, hdr = binary.BigEndian.Uint64(b[2:]), 10
			if n>>63 != 0 {
				return 0, 0, nil, 0, errTopBit
			}
		}
		control := opc >= opClose
		if control && (n > 125 || !fin) {
			return 0, 0, nil, 0, fmt.Errorf("%w: bad control frame", errProtocol)
		}
		if !control {
			buffered := 0 // what this frame adds to
			if opc == opContinuation {
				buffered = len(r.msg) // at most max; empty outside a message
			}
			if n > uint64(r.max) || n > uint64(r.max-buffered) {
				return 0, 0, nil, 0, errTooBig
			}
		}
		hdr += 4
		if uint64(len(b)) < uint64(hdr)+n {
			if uint64(hdr)+n > uint64(len(r.buf)) && r.start == 0 {
				r.grow(hdr + int(n))
			}
			return evNeedMore, 0, nil, 0, nil
		}
		p := b[hdr : hdr+int(n)]
		unmask(p, b[hdr-4:hdr])
		r.start += hdr + int(n)
		switch opc {
		case opClose:
			switch {
			case len(p) == 0:
				code = 1005
			case len(p) == 1:
				return 0, 0, nil, 0, errOneByte
			default:
				code = int(binary.BigEndian.Uint16(p))
				if !validCloseCode(code) {
					return 0, 0, nil, 0, wireError("bad close code " + strconv.Itoa(code))
				}
				if !utf8.Valid(p[2:]) {
					return 0, 0, nil, 0, wireError("invalid utf8 payload in close frame")
				}
			}
			return evClose, 0, p, code, nil
		case opPing:
			return evPing, 0, p, 0, nil
		case opPong:
			continue
		case opText, opBinary:
			if r.inMsg {
				return 0, 0, nil, 0, fmt.Errorf("%w: new message inside a fragmented one", errProtocol)
			}
			if fin {
				return evMessage, opc, p, 0, nil
			}
			r.msg, r.msgOp, r.inMsg = r.msg[:0], opc, true
			r.appendMsg(p)
		case opContinuation:
			if !r.inMsg {
				return 0, 0, nil, 0, fmt.Errorf("%w: continuation without a message", errProtocol)
			}
			r.appendMsg(p)
			if fin {
				// Handed out, then forgotten: its length must not count against
				// the next message, its capacity is kept only when small.
				msg := r.msg
				r.msg, r.inMsg = r.msg[:0], false
				if cap(r.msg) > keepMsg {
					r.msg = nil
				}
				return evMessage, r.msgOp, msg, 0, nil
			}
		default:
			return 0, 0, nil, 0, fmt.Errorf("%w: opcode %d", errProtocol, opc)
		}
	}
}

// appendMsg adds a fragment to the message being assembled; the caller has
// checked that the total stays within max, and the capacity does too.
func (r *frameReader) appendMsg(p []byte) {
	if need := len(r.msg) + len(p); need > cap(r.msg) {
		grown := make([]byte, len(r.msg), min(max(2*cap(r.msg), need, 256), max(r.max, need)))
		copy(grown, r.msg)
		r.msg = grown
	}
	r.msg = append(r.msg, p...)
}

// grow makes room for a frame of size bytes (within the message limit).
func (r *frameReader) grow(size int) {
	if size <= len(r.buf) {
		return
	}
	grown := make([]byte, size+1024)
	r.end = copy(grown, r.buf[r.start:r.end])
	r.start, r.buf = 0, grown
}

// unmask XORs p with the 4-byte key, eight bytes at a time.
func unmask(p, key []byte) {
	k := binary.LittleEndian.Uint32(key)
	k8 := uint64(k) | uint64(k)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}

// serverFrame is an unmasked frame from the server (close, pong).
func serverFrame(op byte, payload []byte) []byte {
	return append([]byte{0x80 | op, byte(len(payload))}, payload...)
}

// closeFrame is a close frame with code and reason.
func closeFrame(code int, reason string) []byte {
	p := binary.BigEndian.AppendUint16(nil, uint16(code))
	return serverFrame(opClose, append(p, truncate(reason, 120)...))
}
