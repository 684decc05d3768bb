package web

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"os"
	"testing"

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
// collects the messages.
func feedFrames(t testing.TB, stream []byte, max int, rng *rand.Rand) (msgs [][]byte, ops []byte, closeCode int, err error) {
	r := newFrameReader(max)
	for {
		ev, op, p, code, perr := r.next()
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

func TestFrameReader(t *testing.T) {
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
		_, _, _, err := feedFrames(t, bad, 4096, rng)
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
	if raw, err := os.ReadFile(captures + "t01_stereo_8k/ws/conn01/audio.raw"); err == nil {
		stream := clientFrame(true, opText, []byte(`{"hello":"world"}`), [4]byte{1, 2, 3, 4})
		for i := 0; i+640 <= 640*5; i += 640 {
			stream = append(stream, clientFrame(true, opBinary, raw[i:i+640], [4]byte{5, 6, 7, 8})...)
		}
		f.Add(stream, uint8(2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint8) {
		rng := rand.New(rand.NewPCG(uint64(cut), 7))
		msgs, _, _, _ := feedFrames(t, data, 8192, rng)
		for _, m := range msgs {
			if len(m) > 8192 {
				t.Fatal("message over the limit")
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
