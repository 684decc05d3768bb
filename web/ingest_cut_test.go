package web

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// Frames cut anywhere by TCP arrive whole: a read that ends inside a frame's
// header or payload keeps what it has for the next (the epoll reader reads a
// connection with nothing left over into its own buffer and copies only the
// rest of a partial frame to the connection's), and a frame larger than the
// connection's buffer grows it, also when that read went to the reader's.
// Each write below waits until the frames before it were acted on, so each
// cut is a read's end.
func TestFramesCutAnywhere(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		await := awaitSizes(t, r)
		rng := rand.New(rand.NewPCG(10, 11))
		var pcm []byte
		frame := func(n int) []byte {
			p := noise(rng, n)
			pcm = append(pcm, p...)
			return clientFrame(true, opBinary, p, maskKey)
		}
		c := rawDial(t, r, "/fork/cut?profile=analytics")

		c.send(frame(640)) // the first message: the fork begins, the socket is handed over
		await(640)
		f1, f2 := frame(640), frame(3000) // f2: larger than a connection's first buffer
		c.send(append(f1, f2[:100]...))   // ends inside f2's payload
		await(640)
		f3, f4 := frame(644), frame(640)
		c.send(append(append(f2[100:], f3...), f4[:1]...)) // ends inside f4's header
		await(3000, 644)
		c.send(f4[1:])
		await(640)
		c.send(frame(9000)) // larger than the connection's buffer, nothing left over
		await(9000)
		c.send(frame(640))
		await(640)
		c.send(clientFrame(true, opClose, []byte{0x03, 0xe8}, maskKey))

		left, right := deinterleave(pcm)
		for _, s := range r.waitEnded(2) {
			want := left
			if s.Direction == tlvcodec.TX {
				want = right
			}
			assert.Equal(t, want, s.Payload, "%s, %s reader", s.Direction, reader)
		}
	})
}

// awaitSizes hooks r's ingest; the function it returns waits for the next
// messages the ingest takes, one of each size in turn.
func awaitSizes(t *testing.T, r *rig) func(sizes ...int) {
	got := make(chan int, 16)
	r.ingest.testHook = func(p []byte) { got <- len(p) }
	return func(sizes ...int) {
		t.Helper()
		for _, n := range sizes {
			select {
			case m := <-got:
				require.Equal(t, n, m, "message size")
			case <-time.After(10 * time.Second):
				t.Fatalf("no message of %d bytes", n)
			}
		}
	}
}

// noise is n random bytes: audio no two frames share.
func noise(rng *rand.Rand, n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}
