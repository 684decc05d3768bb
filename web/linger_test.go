package web

import (
	"errors"
	"io"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A peer still sending when mediafork refuses its connection can go on
// sending until it has read the refusal's close frame, and then reads the
// end of the connection. Closed with the peer's bytes unread or still
// coming, the socket would answer them with an RST: the peer's next write
// fails (connection reset) before it has looked at the reason (linger.go).
func TestRefusalReachesAPeerStillSending(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, func(s *IngestSettings) { s.MaxMessageBytes = 4096 }, 10)
		rc := rawDial(t, r, "/fork/still-sending?profile=analytics")
		big := clientFrame(true, opBinary, make([]byte, 128<<10), maskKey)
		// The first message, then the head of one over the limit: refused
		// on its header.
		rc.send(clientFrame(true, opBinary, make([]byte, 640), maskKey), big[:4096])
		rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := rc.readFrame()
		require.NoError(t, err)
		assert.Equal(t, websocket.CloseMessageTooBig, closeCode(f))
		// The rest of the message, as a module writing its audio would.
		for off := 4096; off < len(big); off += 4096 {
			_, werr := rc.c.Write(big[off:min(off+4096, len(big))])
			require.NoError(t, werr, "a write at %d after the refusal", off)
		}
		_, err = rc.br.ReadByte()
		assert.True(t, errors.Is(err, io.EOF), "the end of the connection, not %v", err)
		r.awaitGone("still-sending")
		r.awaitWait()
	})
}
