package web

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/internal/testcert"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/transport/tlsrecord"
)

// serveTLS serves h over TLS with a reloading certificate from certFile and
// keyFile, as serve does; it returns the address and the reloader's log.
func serveTLS(t *testing.T, h http.Handler, set CertSettings) (string, *syncbuf.Buffer) {
	t.Helper()
	return serveTLSOn(t, h, set, false)
}

// serveTLSOn is serveTLS, with transport/tlsrecord's listener (as the
// ingest's TLSListener makes it with the epoll reader) when records is true.
func serveTLSOn(t *testing.T, h http.Handler, set CertSettings, records bool) (string, *syncbuf.Buffer) {
	t.Helper()
	logs := &syncbuf.Buffer{}
	cr, err := NewCertReloader(set, slog.New(slog.NewTextHandler(logs, nil)))
	require.NoError(t, err)
	t.Cleanup(cr.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = tls.NewListener(ln, cr.TLSConfig())
	if records {
		srv.Listener, err = tlsrecord.NewListener(ln, cr.TLSConfig())
		require.NoError(t, err)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return ln.Addr().String(), logs
}

// A wss:// fork beside a ws:// one, on each reader, through the ingest's
// TLS listener as serve makes it: the epoll reader decrypts the records
// itself (transport/tlsrecord), the goroutine reader leaves them to
// crypto/tls; every byte arrives as with ws://. A connection whose suite
// tlsrecord does not implement (CBC) stays on crypto/tls and the goroutine
// reader, counted and logged once.
func TestTLSForkOnEachReader(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "mediafork test CA")
	certFile, keyFile := ca.Leaf(t, "127.0.0.1", "localhost").Write(t, t.TempDir())
	for _, reader := range []string{"epoll", "goroutine"} {
		t.Run(reader, func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			r := newRigWith(t, reader, nil, 10)
			r.ingest.log = slog.New(slog.NewTextHandler(logs, nil))
			cr, err := NewCertReloader(CertSettings{CertFile: certFile, KeyFile: keyFile}, quiet)
			require.NoError(t, err)
			t.Cleanup(cr.Close)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			tln, err := r.ingest.TLSListener(ln, cr.TLSConfig())
			require.NoError(t, err)
			srv := httptest.NewUnstartedServer(r.ingest.Handler())
			srv.Listener = tln
			srv.Start()
			t.Cleanup(srv.Close)
			cbc := ca.ClientConfig("127.0.0.1")
			cbc.MaxVersion, cbc.CipherSuites = tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
			pcm := fssim.Tone(8000, 1, 8000, 440, 1000)
			calls := []struct {
				url string
				cfg *tls.Config
			}{
				{"wss://" + ln.Addr().String() + "/fork/tls-call?profile=analytics", ca.ClientConfig("127.0.0.1")},
				{"wss://" + ln.Addr().String() + "/fork/cbc-call?profile=analytics", cbc},
				{r.url("/fork/plain-call?profile=analytics"), nil},
			}
			for _, c := range calls {
				a, err := fssim.DialAudioFork(context.Background(), c.url, fssim.AudioForkOptions{
					Metadata: `{"channel_id":"` + c.url[:3] + `"}`, TLSConfig: c.cfg})
				require.NoError(t, err, c.url)
				assert.Equal(t, fssim.Subprotocol, a.Conn.Subprotocol())
				_, isTLS := a.Conn.NetConn().(*tls.Conn)
				assert.Equal(t, c.cfg != nil, isTLS)
				require.NoError(t, a.Stream(context.Background(), pcm, fssim.FrameBytes(8000, 2), 0))
				var ce *websocket.CloseError
				require.ErrorAs(t, a.Stop(""), &ce)
				assert.Equal(t, websocket.CloseNormalClosure, ce.Code)
			}
			streams := r.waitEnded(6)
			left, right := deinterleave(pcm)
			for _, s := range streams {
				want := map[tlvcodec.Direction][]byte{tlvcodec.RX: left, tlvcodec.TX: right}[s.Direction]
				assert.True(t, bytes.Equal(want, s.Payload), "%s %s: %d bytes of %d", s.Signaling.ChannelID, s.Direction, len(s.Payload), len(want))
				assert.Equal(t, tlvcodec.ReasonHangup, s.End.Reason, "ended by the close, not as media lost")
			}
			st := &r.ingest.Stats
			if reader == "epoll" {
				assert.Equal(t, uint64(1), st.TLSEpoll.Load(), "the AES-GCM connection decrypted by the epoll reader")
				assert.Equal(t, uint64(1), st.TLSGoroutine.Load(), "the CBC one left to crypto/tls")
				assert.Equal(t, 1, strings.Count(logs.String(), "served by crypto/tls and the goroutine reader"), logs.String())
				assert.Contains(t, logs.String(), "CBC")
			} else {
				assert.Equal(t, uint64(2), st.TLSGoroutine.Load())
				assert.Zero(t, st.TLSEpoll.Load())
			}
		})
	}
}

// handshake connects to addr trusting pool and returns the server's leaf.
func handshake(t *testing.T, addr string, cfg *tls.Config) (*x509.Certificate, error) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// awaitServed waits until a handshake sees want, the reloader having taken
// the files (its goroutine looks every CheckInterval).
func awaitServed(t *testing.T, addr string, cfg *tls.Config, want *testcert.Leaf) {
	t.Helper()
	require.Eventually(t, func() bool {
		leaf, err := handshake(t, addr, cfg)
		return err == nil && leaf.SerialNumber.Cmp(want.Serial) == 0
	}, 10*time.Second, time.Millisecond, "serial %x never served", want.Serial)
}

// Rotating the files changes what the next handshakes see, without a
// restart; a pair that does not load keeps the old certificate with one log
// line; a client that does not trust the CA fails.
// Both listeners: crypto/tls's, and transport/tlsrecord's (the epoll
// reader's), whose handshakes are crypto/tls's with the same config.
func TestCertificateReloadsOnChange(t *testing.T) {
	t.Parallel()
	for _, records := range []bool{false, true} {
		t.Run(map[bool]string{false: "crypto-tls", true: "tlsrecord"}[records], func(t *testing.T) {
			t.Parallel()
			testCertificateReloads(t, records)
		})
	}
}

func testCertificateReloads(t *testing.T, records bool) {
	ca := testcert.NewCA(t, "mediafork test CA")
	dir := t.TempDir()
	first := ca.Leaf(t, "127.0.0.1")
	certFile, keyFile := first.Write(t, dir)
	addr, logs := serveTLSOn(t, http.NotFoundHandler(), CertSettings{CertFile: certFile, KeyFile: keyFile, CheckInterval: time.Millisecond}, records)
	trusting := ca.ClientConfig("127.0.0.1")

	leaf, err := handshake(t, addr, trusting)
	require.NoError(t, err)
	assert.Equal(t, first.Serial, leaf.SerialNumber)

	second := ca.Leaf(t, "127.0.0.1")
	second.Write(t, dir)
	awaitServed(t, addr, trusting, second) // the new certificate, no restart
	assert.Contains(t, logs.String(), "TLS certificate reloaded")

	// A broken certificate file (renamed in whole): the old one stays,
	// logged once however often the reloader looks.
	failures := strings.Count(logs.String(), "TLS certificate reload failed") // the rotation may have shown a half pair
	require.NoError(t, os.WriteFile(certFile+".tmp", []byte("not a certificate\n"), 0o600))
	require.NoError(t, os.Rename(certFile+".tmp", certFile))
	require.Eventually(t, func() bool {
		return strings.Count(logs.String(), "TLS certificate reload failed") > failures
	}, 10*time.Second, time.Millisecond)
	for range 3 {
		leaf, err = handshake(t, addr, trusting)
		require.NoError(t, err)
		assert.Equal(t, second.Serial, leaf.SerialNumber, "a failed reload keeps the old certificate")
	}
	assert.Equal(t, failures+1, strings.Count(logs.String(), "TLS certificate reload failed"), logs.String())
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		assert.NotContains(t, line, `\n`, "one line per message")
	}

	// Fixed again: the reloader takes it.
	third := ca.Leaf(t, "127.0.0.1")
	third.Write(t, dir)
	awaitServed(t, addr, trusting, third)

	// A client that trusts another CA: the handshake fails.
	other := testcert.NewCA(t, "someone else")
	_, err = handshake(t, addr, other.ClientConfig("127.0.0.1"))
	var unknown x509.UnknownAuthorityError
	require.ErrorAs(t, err, &unknown)
	// And a wss:// fork from it never reaches the ingest.
	_, err = fssim.DialAudioFork(context.Background(), "wss://"+addr+"/fork/x", fssim.AudioForkOptions{TLSConfig: other.ClientConfig("127.0.0.1")})
	require.ErrorAs(t, err, &unknown)
}

// Issue 20: a replacement that keeps both files' size and mtime (cp -p,
// rsync -t, a restore) went unnoticed for good: the reloader looked at size
// and mtime only. It reads the files every HashInterval too and loads them
// when their content changed; content that did not change is not loaded
// again.
func TestCertReplacedWithTheSameSizeAndTimeIsNoticed(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "mediafork test CA")
	dir := t.TempDir()
	first := ca.Leaf(t, "127.0.0.1")
	certFile, keyFile := first.Write(t, dir)
	// Size and time are looked at every millisecond, the content every 20.
	addr, logs := serveTLS(t, http.NotFoundHandler(), CertSettings{CertFile: certFile, KeyFile: keyFile,
		CheckInterval: time.Millisecond, HashInterval: 20 * time.Millisecond})
	trusting := ca.ClientConfig("127.0.0.1")
	stats := func() [2]os.FileInfo {
		c, err := os.Stat(certFile)
		require.NoError(t, err)
		k, err := os.Stat(keyFile)
		require.NoError(t, err)
		return [2]os.FileInfo{c, k}
	}
	before := stats()

	// A new pair of the same sizes (the signature's length varies: draw
	// until it fits), written in place, the times put back.
	second := ca.Leaf(t, "127.0.0.1")
	for len(second.CertPEM) != len(first.CertPEM) || len(second.KeyPEM) != len(first.KeyPEM) {
		second = ca.Leaf(t, "127.0.0.1")
	}
	for i, f := range []struct {
		path string
		b    []byte
	}{{certFile, second.CertPEM}, {keyFile, second.KeyPEM}} {
		w, err := os.OpenFile(f.path, os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = w.WriteAt(f.b, 0)
		require.NoError(t, err)
		require.NoError(t, w.Close())
		require.NoError(t, os.Chtimes(f.path, before[i].ModTime(), before[i].ModTime()))
	}
	after := stats()
	for i := range after {
		require.Equal(t, before[i].Size(), after[i].Size())
		require.Equal(t, before[i].ModTime(), after[i].ModTime())
	}
	awaitServed(t, addr, trusting, second)
	assert.Equal(t, 1, strings.Count(logs.String(), "TLS certificate reloaded"), "loaded once, not at every read: %s", logs.String())
}

// The certificate is checked at start: a server never starts with one it
// cannot serve.
func TestCertReloaderRefusesABadPairAtStart(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "mediafork test CA")
	dir := t.TempDir()
	certFile, _ := ca.Leaf(t, "127.0.0.1").Write(t, dir)
	_, keyFile := ca.Leaf(t, "127.0.0.1").Write(t, t.TempDir()) // another leaf's key
	_, err := NewCertReloader(CertSettings{CertFile: certFile, KeyFile: keyFile}, quiet)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "\n")
	_, err = NewCertReloader(CertSettings{CertFile: dir + "/missing.pem", KeyFile: keyFile}, quiet)
	require.ErrorContains(t, err, "missing.pem")
}
