package web

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"os"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// clientFrame builds a masked client frame.
func clientFrame(fin bool, op byte, payload []byte, key [4]byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	var b []byte
	switch n := len(payload); {
	case n < 126:
		b = []byte{b0, 0x80 | byte(n)}
	case n < 65536:
		b = binary.BigEndian.AppendUint16([]byte{b0, 0x80 | 126}, uint16(n))
	default:
		b = binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, uint64(n))
	}
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i&3])
	}
	return b
}

// feedFrames pushes stream through a frameReader in pieces of random size and
// collects the messages, checking at every step that the reader's buffers stay
// within bounds and no message is over the limit.
func feedFrames(t testing.TB, stream []byte, max int, rng *rand.Rand) (msgs [][]byte, ops []byte, closeCode int, err error) {
	r := newFrameReader(max)
	for {
		ev, op, p, code, perr := r.next()
		if len(r.buf) > maxBuffer(max) || cap(r.msg) > max || len(p) > max {
			t.Fatalf("over the bounds for max %d: buffer %d, fragments %d, payload %d", max, len(r.buf), cap(r.msg), len(p))
		}
		if perr != nil {
			return msgs, ops, 0, perr
		}
		switch ev {
		case evNeedMore:
			if len(stream) == 0 {
				return msgs, ops, 0, nil
			}
			space := r.space()
			n := copy(space, stream[:min(len(stream), 1+rng.IntN(3000))])
			r.end += n
			stream = stream[n:]
		case evMessage:
			msgs, ops = append(msgs, bytes.Clone(p)), append(ops, op)
		case evClose:
			return msgs, ops, code, nil
		}
	}
}

// refParse is a plain reference parser of a whole client byte stream: what
// feedFrames must find, whatever the pieces.
func refParse(b []byte, max int) (msgs [][]byte, ops []byte, closeCode int, err error) {
	var msg []byte
	var msgOp byte
	inMsg := false
	for len(b) >= 2 {
		fin, op := b[0]&0x80 != 0, b[0]&0x0F
		if b[0]&0x70 != 0 || b[1]&0x80 == 0 {
			return msgs, ops, 0, errProtocol
		}
		n, h := uint64(b[1]&0x7F), 2
		switch n {
		case 126:
			if len(b) < 4 {
				return msgs, ops, 0, nil
			}
			n, h = uint64(binary.BigEndian.Uint16(b[2:])), 4
		case 127:
			if len(b) < 10 {
				return msgs, ops, 0, nil
			}
			n, h = binary.BigEndian.Uint64(b[2:]), 10
			if n >= 1<<63 {
				return msgs, ops, 0, errProtocol
			}
		}
		if op >= opClose && (n > 125 || !fin) {
			return msgs, ops, 0, errProtocol
		}
		if op < opClose && (n > uint64(max) || (op == opContinuation && uint64(len(msg))+n > uint64(max))) {
			return msgs, ops, 0, errTooBig
		}
		if uint64(len(b)-h-4) < n || len(b) < h+4 {
			return msgs, ops, 0, nil
		}
		key := b[h : h+4]
		p := make([]byte, n)
		for i := range p {
			p[i] = b[h+4+i] ^ key[i%4]
		}
		b = b[h+4+int(n):]
		switch op {
		case opClose:
			switch {
			case len(p) == 0:
				return msgs, ops, 1005, nil
			case len(p) == 1:
				return msgs, ops, 0, errProtocol
			}
			code := int(binary.BigEndian.Uint16(p))
			if !(code >= 1000 && code <= 1003 || code >= 1007 && code <= 1013 || code >= 3000 && code <= 4999) || !utf8.Valid(p[2:]) {
				return msgs, ops, 0, errProtocol
			}
			return msgs, ops, code, nil
		case opPing, opPong:
		case opText, opBinary:
			if inMsg {
				return msgs, ops, 0, errProtocol
			}
			if fin {
				msgs, ops = append(msgs, p), append(ops, op)
			} else {
				msg, msgOp, inMsg = p, op, true
			}
		case opContinuation:
			if !inMsg {
				return msgs, ops, 0, errProtocol
			}
			msg = append(msg, p...)
			if fin {
				msgs, ops = append(msgs, msg), append(ops, msgOp)
				msg, inMsg = nil, false
			}
		default:
			return msgs, ops, 0, errProtocol
		}
	}
	return msgs, ops, 0, nil
}

// errClass is what a parse error is, for comparing the two parsers.
func errClass(err error) string {
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, errTooBig):
		return "too big"
	case errors.Is(err, errProtocol):
		return "protocol"
	}
	return err.Error()
}

// attackSeeds are issue 9's frames and the lengths at every boundary.
func attackSeeds() [][]byte {
	key := [4]byte{0x11, 0x22, 0x33, 0x44}
	hdr64 := func(fin bool, op byte, n uint64) []byte {
		if fin {
			op |= 0x80
		}
		return append(binary.BigEndian.AppendUint64([]byte{op, 0x80 | 127}, n), key[:]...)
	}
	audio := clientFrame(true, opBinary, make([]byte, 640), key)
	frag := clientFrame(false, opBinary, make([]byte, 20), key)
	var seeds [][]byte
	for _, n := range []uint64{1<<64 - 14, 1<<64 - 20, 1<<64 - 1, 1 << 63, 1<<63 - 1, 1<<63 + 1, 8192 - 20, 8192 - 19, 8193, 1 << 32} {
		seeds = append(seeds, cat(audio, frag, hdr64(false, opContinuation, n)))
		seeds = append(seeds, cat(frag, hdr64(true, opContinuation, n)))
		seeds = append(seeds, cat(audio, hdr64(true, opBinary, n)))
	}
	text := clientFrame(false, opText, make([]byte, 3000), key)
	seeds = append(seeds,
		// A fragmented message then a single frame, each within the limit.
		cat(clientFrame(false, opBinary, make([]byte, 3000), key), clientFrame(true, opContinuation, make([]byte, 3000), key),
			clientFrame(true, opBinary, make([]byte, 6000), key)),
		// Text fragments over the limit in total, a ping inside.
		cat(text, clientFrame(true, opPing, []byte("hi"), key), clientFrame(false, opContinuation, make([]byte, 3000), key),
			clientFrame(true, opContinuation, make([]byte, 3000), key)),
		// A close inside a fragmented message.
		cat(frag, clientFrame(true, opClose, []byte{0x03, 0xE8}, key), clientFrame(true, opContinuation, []byte("x"), key)),
		// Invalid closes.
		cat(audio, clientFrame(true, opClose, []byte{0x03}, key)),
		cat(audio, clientFrame(true, opClose, []byte{0x03, 0xED}, key)),
		cat(audio, clientFrame(true, opClose, []byte{0x03, 0xE8, 0xFF}, key)),
		// The graceful frame, then a close without a code.
		cat(audio, clientFrame(true, opBinary, nil, key), clientFrame(true, opClose, nil, key)),
	)
	return seeds
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

func TestFrameReader(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 1))
	key := [4]byte{1, 2, 3, 4}
	big := make([]byte, 70000)
	for i := range big {
		big[i] = byte(i * 7)
	}
	var stream []byte
	stream = append(stream, clientFrame(true, opText, []byte(`{"hello":"world"}`), key)...)
	stream = append(stream, clientFrame(true, opBinary, big[:640], key)...)
	stream = append(stream, clientFrame(true, opPing, []byte("p"), key)...)
	stream = append(stream, clientFrame(false, opBinary, big[:100], key)...) // fragmented
	stream = append(stream, clientFrame(true, opPong, nil, key)...)          // control inside a fragmented message
	stream = append(stream, clientFrame(true, opContinuation, big[100:300], key)...)
	stream = append(stream, clientFrame(true, opBinary, big[:70000], key)...) // 64-bit length
	stream = append(stream, clientFrame(true, opBinary, nil, key)...)         // graceful shutdown
	stream = append(stream, clientFrame(true, opClose, []byte{0x03, 0xE8}, key)...)
	msgs, ops, code, err := feedFrames(t, stream, 100000, rng)
	require.NoError(t, err)
	require.Len(t, msgs, 5)
	assert.Equal(t, []byte{opText, opBinary, opBinary, opBinary, opBinary}, ops)
	assert.Equal(t, `{"hello":"world"}`, string(msgs[0]))
	assert.Equal(t, big[:640], msgs[1])
	assert.Equal(t, big[:300], msgs[2])
	assert.Equal(t, big[:70000], msgs[3])
	assert.Empty(t, msgs[4])
	assert.Equal(t, 1000, code)

	for name, bad := range map[string][]byte{
		"unmasked":           {0x82, 0x01, 0x00},
		"reserved bits":      append([]byte{0xC2, 0x80}, 1, 2, 3, 4),
		"unknown opcode":     append([]byte{0x83, 0x80}, 1, 2, 3, 4),
		"long control":       clientFrame(true, opPing, make([]byte, 126), key),
		"fragmented close":   clientFrame(false, opClose, nil, key),
		"stray continuation": clientFrame(true, opContinuation, []byte("x"), key),
		"too big":            clientFrame(true, opBinary, make([]byte, 5000), key),
	} {
		_, _, _, err = feedFrames(t, bad, 4096, rng)
		assert.Error(t, err, name)
	}
	_, _, _, err = feedFrames(t, clientFrame(true, opBinary, make([]byte, 5000), key), 4096, rng)
	assert.ErrorIs(t, err, errTooBig)
}

// FuzzFrameReader: arbitrary bytes never panic or hand out more than the limit;
// arbitrary payloads cut into arbitrary frames come out whole.
func FuzzFrameReader(f *testing.F) {
	f.Add([]byte{0x82, 0x84, 1, 2, 3, 4, 5, 6, 7, 8}, uint8(3))
	f.Add(clientFrame(true, opText, []byte(`{"a":1}`), [4]byte{9, 9, 9, 9}), uint8(1))
	// Recorded mod_audio_fork traffic: the metadata frame and real audio frames.
	raw, err := os.ReadFile(captures + "t01_stereo_8k/ws/conn01/audio.raw")
	if err != nil {
		f.Fatal(err)
	}
	stream := clientFrame(true, opText, []byte(`{"hello":"world"}`), [4]byte{1, 2, 3, 4})
	for i := 0; i+640 <= 640*5; i += 640 {
		stream = append(stream, clientFrame(true, opBinary, raw[i:i+640], [4]byte{5, 6, 7, 8})...)
	}
	f.Add(stream, uint8(2))
	for i, seed := range attackSeeds() {
		f.Add(seed, uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		rng := rand.New(rand.NewPCG(uint64(cut), 7))
		max := 8192
		if cut&0x80 != 0 {
			max = 100 + int(cut)
		}
		// feedFrames checks the bounds; the reference parser, the result.
		msgs, ops, code, err := feedFrames(t, data, max, rng)
		wantMsgs, wantOps, wantCode, wantErr := refParse(data, max)
		if errClass(err) != errClass(wantErr) || code != wantCode || !bytes.Equal(ops, wantOps) || len(msgs) != len(wantMsgs) {
			t.Fatalf("reader: %d messages %v close %d err %v; reference: %d messages %v close %d err %v",
				len(msgs), ops, code, err, len(wantMsgs), wantOps, wantCode, wantErr)
		}
		for i := range msgs {
			if !bytes.Equal(msgs[i], wantMsgs[i]) {
				t.Fatalf("message %d differs from the reference's", i)
			}
		}
		// The same bytes as a payload, split into a fragmented message.
		var stream []byte
		pieces := 1 + int(cut)%5
		step := len(data)/pieces + 1
		for i := 0; i < len(data) || i == 0; i += step {
			op := byte(opContinuation)
			if i == 0 {
				op = opBinary
			}
			end := min(i+step, len(data))
			stream = append(stream, clientFrame(end == len(data), op, data[i:end], [4]byte{cut, 1, 2, 3})...)
			if end == len(data) {
				break
			}
		}
		got, _, _, err := feedFrames(t, stream, 1<<20, rng)
		if err != nil || len(got) != 1 || !bytes.Equal(got[0], data) {
			t.Fatalf("payload of %d bytes in %d pieces: %v, %d messages", len(data), pieces, err, len(got))
		}
	})
}

func BenchmarkFrameReader(b *testing.B) {
	frame := clientFrame(true, opBinary, make([]byte, 640), [4]byte{1, 2, 3, 4})
	r := newFrameReader(65536)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for i := 0; i < b.N; i++ {
		r.end += copy(r.space(), frame)
		if ev, _, _, _, err := r.next(); ev != evMessage || err != nil {
			b.Fatal(ev, err)
		}
	}
}
