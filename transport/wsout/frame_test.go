package wsout_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/wstest"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/transport/wsout"
)

// dialRaw dials srv as a stream output does, for messages of up to size.
func dialRaw(t *testing.T, srv *wstest.Server, size int) mediafork.StreamConn {
	t.Helper()
	u, err := url.Parse(srv.URL)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := wsout.New().Dial(ctx, mediafork.StreamDial{URL: u, Addr: srv.Addr, MessageSize: size})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// The frames mediafork builds itself are read by gorilla's server (which
// refuses an unmasked or malformed client frame) as exactly what was
// written: every length encoding (7 bits, 16, 64), empty, text and binary,
// several gathered into one flush, more than a flush buffer holds, and one
// larger than any the connection was sized for.
func TestFramesReadBackExactly(t *testing.T) {
	srv := wstest.New(t, wstest.Options{})
	c := dialRaw(t, srv, 1300)
	type msg struct {
		text bool
		b    []byte
	}
	var want []msg
	deadline := time.Now().Add(10 * time.Second)
	for i, n := range []int{0, 1, 7, 8, 9, 125, 126, 127, 1300, 0xffff, 0x10000, 100000, 3} {
		b := make([]byte, n)
		for k := range b {
			b[k] = byte(k*31 + i)
		}
		m := msg{text: i%3 == 1, b: b}
		if m.text {
			b = bytes.Repeat([]byte("a"), n) // valid UTF-8
			m.b = b
		}
		want = append(want, m)
		require.NoError(t, c.WriteMessage(m.text, m.b, deadline))
		if i%4 == 3 {
			require.NoError(t, c.Flush(deadline))
		}
	}
	require.NoError(t, c.Flush(deadline))
	cs := srv.Wait(t, "every message", 10*time.Second, func(cs []wstest.Snapshot) bool {
		return len(cs) == 1 && (len(cs[0].Messages) >= len(want) || cs[0].Closed)
	})
	require.False(t, cs[0].Closed, "the server refused a frame")
	require.Len(t, cs[0].Messages, len(want))
	for i, m := range cs[0].Messages {
		assert.Equal(t, want[i].text, m.Text, "message %d's type", i)
		assert.True(t, bytes.Equal(want[i].b, m.Data), "message %d: %d bytes read back, %d written", i, len(m.Data), len(want[i].b))
	}
}

// A drain's writes allocate nothing: the media messages of a stream (two a
// frame for twilio) framed into the connection's buffer and flushed. The
// server is a socket read into one buffer (a WebSocket server in this
// process would count its own allocations); what it read is every frame's
// bytes.
func TestWriteAllocatesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var got atomic.Int64
	served := make(chan struct{})
	go func() {
		defer close(served)
		conn, aerr := ln.Accept()
		if aerr != nil {
			return
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		req, rerr := http.ReadRequest(br)
		if rerr != nil {
			return
		}
		h := sha1.Sum([]byte(req.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
			base64.StdEncoding.EncodeToString(h[:]))
		buf := make([]byte, 64<<10)
		for {
			n, rerr := br.Read(buf)
			got.Add(int64(n))
			if rerr != nil {
				return
			}
		}
	}()
	u, err := url.Parse("ws://" + ln.Addr().String() + "/media")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := wsout.New().Dial(ctx, mediafork.StreamDial{URL: u, Addr: netip.MustParseAddrPort(ln.Addr().String()), MessageSize: 1300})
	require.NoError(t, err)
	msg := bytes.Repeat([]byte{0x5a}, 1200)
	deadline := time.Now().Add(time.Minute)
	require.NoError(t, c.WriteMessage(false, msg, deadline)) // the buffer, once
	require.NoError(t, c.Flush(deadline))
	allocs := testing.AllocsPerRun(200, func() {
		c.WriteMessage(true, msg, deadline)
		c.WriteMessage(true, msg, deadline)
		c.Flush(deadline)
	})
	assert.Zero(t, allocs, "allocations per drain")
	const frame = 4 + 4 + 1200 // header with a 16-bit length, the key, the payload
	want := int64(frame * (1 + 2*201))
	c.Close() // the server reads to the end of the stream
	<-served
	assert.Equal(t, want, got.Load(), "bytes the server read")
}
