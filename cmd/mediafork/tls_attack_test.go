package main

import (
	"bufio"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/internal/testcert"
)

// TLS listeners under abuse: a client that connects and never finishes its
// handshake (silent, or half a ClientHello) is hung up on at the handshake
// deadline, and plain HTTP to a TLS port gets a 400, on the ingest and the
// API alike. Holds (net/http bounds the handshake by ReadHeaderTimeout);
// kept as a regression test.
func TestTLSHandshakeDeadlineAndPlainHTTP(t *testing.T) {
	ca := testcert.NewCA(t, "mediafork test CA")
	certFile, keyFile := ca.Leaf(t, "127.0.0.1").Write(t, t.TempDir())
	s := newStackWith(t, 1, func(o *options) { o.requestTimeout = 300 * time.Millisecond }, func(c *conf.Config) {
		c.Ingest.TLS = conf.TLS{CertFile: certFile, KeyFile: keyFile}
		c.Ingest.URL = "wss://" + c.Ingest.Listen
		c.API.TLS = conf.TLS{CertFile: certFile, KeyFile: keyFile}
	})
	for _, addr := range []string{s.ingest, s.api} {
		for _, first := range []string{"", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"} {
			c, err := net.Dial("tcp", addr)
			require.NoError(t, err)
			io.WriteString(c, first)
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err = io.Copy(io.Discard, c)
			c.Close()
			assert.False(t, errors.Is(err, os.ErrDeadlineExceeded), "%s, %q: closed by the server, not by our deadline", addr, first)
		}
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		io.WriteString(c, "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		require.NoError(t, err, addr)
		assert.True(t, strings.HasPrefix(line, "HTTP/1.0 400"), "%s: %q", addr, line)
	}
}
