//go:build linux

package web

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// corrupting is a client's TCP connection that flips a bit of the last byte
// (a record's authentication tag) of its write number at, once armed.
type corrupting struct {
	net.Conn
	armed  atomic.Bool
	writes int
	at     int
}

func (c *corrupting) Write(p []byte) (int, error) {
	if c.armed.Load() {
		if c.writes++; c.writes == c.at {
			p = append([]byte(nil), p...)
			p[len(p)-1] ^= 1
		}
	}
	return c.Conn.Write(p)
}

// A record that does not authenticate, on the epoll reader after the
// handover (and, for reference, on the goroutine reader with crypto/tls):
// the connection ends at once with the alert TLS says (bad_record_mac), the
// fork as media lost, and nothing of the record is forwarded; frames cut
// across records before it arrive whole.
func TestBadRecordEndsTheConnection(t *testing.T) {
	t.Parallel()
	for _, reader := range []string{"epoll+tls", "goroutine+tls"} {
		t.Run(reader, func(t *testing.T) {
			t.Parallel()
			r := newRigWith(t, reader, nil, 10)
			raw, err := net.Dial("tcp", r.srv.Listener.Addr().String())
			require.NoError(t, err)
			cc := &corrupting{Conn: raw, at: 3}
			c := tls.Client(cc, r.tls)
			defer c.Close()
			fmt.Fprintf(c, "GET /fork/bad-record?profile=analytics HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: %s\r\n\r\n", Subprotocol)
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
			rc := &rawConn{t: t, c: c, br: br}
			rc.send(clientFrame(true, opText, []byte(`{"channel_id":"bad-record"}`), maskKey))
			// A frame cut in two records, then one whole: both arrive.
			frame := clientFrame(true, opBinary, make([]byte, 640), maskKey)
			rc.send(frame[:100], frame[100:], frame)
			r.awaitPackets("bad-record", 3) // two frames, two directions
			cc.armed.Store(true)
			rc.send(frame, frame, frame) // the third write's record does not authenticate
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = io.ReadAll(br)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "remote error: tls: bad record MAC", "the alert, as crypto/tls sends it")
			for _, s := range r.waitEnded(2) {
				assert.Equal(t, tlvcodec.ReasonMediaLost, s.End.Reason)
				assert.Equal(t, 4*320, len(s.Payload), "%s: the four frames before the bad record, not it", s.Direction)
			}
		})
	}
}
