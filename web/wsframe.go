package web

import (
	"encoding/binary"
	"errors"
	"fmt"
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
	return &frameReader{buf: make([]byte, 2048), max: max}
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
		grown := make([]byte, min(2*len(r.buf), r.max+14+1024))
		r.end = copy(grown, r.buf[r.start:r.end])
		r.start, r.buf = 0, grown
	}
	return r.buf[r.end:]
}

// next parses one frame. For evMessage, op is opText or opBinary; for evClose,
// code is the peer's close code (1005 when none). payload is valid until the
// next call to space.
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
		}
		control := opc >= opClose
		if control && (n > 125 || !fin) {
			return 0, 0, nil, 0, fmt.Errorf("%w: bad control frame", errProtocol)
		}
		if !control && n+uint64(len(r.msg)) > uint64(r.max) {
			return 0, 0, nil, 0, errTooBig
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
			code = 1005
			if len(p) >= 2 {
				code = int(binary.BigEndian.Uint16(p))
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
			r.msg, r.msgOp, r.inMsg = append(r.msg[:0], p...), opc, true
		case opContinuation:
			if !r.inMsg {
				return 0, 0, nil, 0, fmt.Errorf("%w: continuation without a message", errProtocol)
			}
			r.msg = append(r.msg, p...)
			if fin {
				r.inMsg = false
				return evMessage, r.msgOp, r.msg, 0, nil
			}
		default:
			return 0, 0, nil, 0, fmt.Errorf("%w: opcode %d", errProtocol, opc)
		}
	}
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
