//go:build linux

package web

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/transport/tlsrecord"
)

// A record cut by the end of a read is kept in a buffer of the record's
// length (a frame's record: well under partKeep), or of the bytes there are
// while its header is cut; the emptied buffer serves the next cut record and
// is released after partIdleReads reads that cut none; a large record's is
// not kept.
func TestPartialRecordBuffer(t *testing.T) {
	record := func(n int) []byte {
		rec := make([]byte, n)
		rec[0], rec[1], rec[2], rec[3], rec[4] = 23, 3, 3, byte((n-tlsrecord.HeaderLen)>>8), byte(n-tlsrecord.HeaderLen)
		for i := tlsrecord.HeaderLen; i < n; i++ {
			rec[i] = byte(i)
		}
		return rec
	}
	frameRec := record(668) // a 640-byte frame's (646 with its WebSocket header) in TLS 1.3
	var ts tlsState
	ts.keepPart(frameRec[:300], len(frameRec))
	require.Equal(t, 300, ts.n)
	assert.Equal(t, frameRec[:300], ts.part[:ts.n])
	assert.GreaterOrEqual(t, cap(ts.part), len(frameRec), "room for the record")
	assert.Less(t, cap(ts.part), partKeep, "no more than the record's length")
	kept := &ts.part[0]

	ts.keepPart(nil, 0) // the record came whole; nothing after it
	assert.Zero(t, ts.n)
	for i := 0; i < partIdleReads-1; i++ {
		ts.noPart()
	}
	require.NotNil(t, ts.part, "kept for a while")
	ts.keepPart(frameRec[:10], len(frameRec))
	assert.Same(t, kept, &ts.part[0], "the next cut record reuses it")
	ts.keepPart(nil, 0)
	for i := 0; i < partIdleReads-1; i++ {
		ts.noPart()
	}
	require.NotNil(t, ts.part, "a cut record starts the count again")
	ts.noPart()
	assert.Nil(t, ts.part, "released after partIdleReads reads with nothing cut")

	var hs tlsState
	hs.keepPart(frameRec[:3], 0) // the header cut: the record's length not known
	assert.Equal(t, frameRec[:3], hs.part[:hs.n])
	assert.Less(t, cap(hs.part), 64)

	var ls tlsState
	big := record(16406) // a whole TLS 1.3 record: larger than a reader's warm buffer
	ls.keepPart(big[:5000], len(big))
	assert.Equal(t, big[:5000], ls.part[:ls.n])
	ls.keepPart(nil, 0)
	assert.Nil(t, ls.part, "a large record's buffer is not kept")
}

// holdingConn is a client's TCP connection whose writes, once held, are
// kept for the test to send cut where it chooses.
type holdingConn struct {
	net.Conn
	hold atomic.Bool
	mu   sync.Mutex
	held []byte
}

func (h *holdingConn) Write(p []byte) (int, error) {
	if !h.hold.Load() {
		return h.Conn.Write(p)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.held = append(h.held, p...)
	return len(p), nil
}

func (h *holdingConn) take() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	b := h.held
	h.held = nil
	return b
}

// Records cut anywhere by TCP arrive whole, on both readers over TLS: a read
// that ends inside a record's header or its body keeps what it has for the
// next (the epoll reader: in the connection's buffer, then first in the
// reader's warm buffer; a record larger than warm is completed in the
// connection's buffer). Each write below waits until the frames before it
// were acted on, so each cut is a read's end.
func TestRecordsCutAnywhere(t *testing.T) {
	t.Parallel()
	for _, reader := range []string{"epoll+tls", "goroutine+tls"} {
		t.Run(reader, func(t *testing.T) {
			t.Parallel()
			r := newRigWith(t, reader, nil, 10)
			logs := r.logTo()
			await := awaitSizes(t, r)
			raw, err := net.Dial("tcp", r.srv.Listener.Addr().String())
			require.NoError(t, err)
			hc := &holdingConn{Conn: raw}
			cfg := r.tls.Clone()
			cfg.DynamicRecordSizingDisabled = true // whole 16 KiB records from the start
			c := tls.Client(hc, cfg)
			defer c.Close()
			fmt.Fprintf(c, "GET /fork/cut-records?profile=analytics HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n", Subprotocol)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

			rng := rand.New(rand.NewPCG(12, 13))
			var pcm []byte
			// records returns the records of one frame of n bytes of audio.
			records := func(n int) []byte {
				p := noise(rng, n)
				pcm = append(pcm, p...)
				_, werr := c.Write(clientFrame(true, opBinary, p, maskKey))
				require.NoError(t, werr)
				return hc.take()
			}
			send := func(parts ...[]byte) {
				t.Helper()
				var b []byte
				for _, p := range parts {
					b = append(b, p...)
				}
				_, werr := raw.Write(b)
				require.NoError(t, werr)
			}

			_, err = c.Write(clientFrame(true, opBinary, make([]byte, 640), maskKey)) // the fork begins
			require.NoError(t, err)
			pcm = append(pcm, make([]byte, 640)...)
			await(640)
			if strings.HasPrefix(reader, "epoll") { // handed over: the epoll reader reads from here
				require.Eventually(t, func() bool { return strings.Contains(logs.String(), "wss:// on the epoll reader") },
					10*time.Second, 5*time.Millisecond)
			}
			hc.hold.Store(true)
			a, b, big, d, e, f := records(640), records(644), records(20000), records(640), records(640), records(3000)
			require.Greater(t, len(big), 16384+tlsrecord.HeaderLen, "a record larger than a reader's warm buffer")

			send(a, b[:3]) // ends inside b's header
			await(640)
			send(b[3:], big[:100]) // inside the body of a record larger than warm
			await(644)
			send(big[100:], d[:tlsrecord.HeaderLen]) // at the end of d's header
			await(20000)
			send(d[tlsrecord.HeaderLen:], e[:400]) // inside a frame's record
			await(640)
			send(e[400:], f)
			await(640, 3000)
			_, err = c.Write(clientFrame(true, opClose, []byte{0x03, 0xe8}, maskKey))
			require.NoError(t, err)
			send(hc.take())

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
}
