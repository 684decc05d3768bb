package tlsrecord

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/internal/testcert"
)

// server is a Listener on loopback with a fresh certificate; each accepted
// Conn runs its handshake on a goroutine of its own (clients dial and
// handshake before the test takes the Conn), then comes on conns.
type server struct {
	ln    *Listener
	ca    *testcert.CA
	dir   string
	conns chan *Conn
}

func newServer(t *testing.T, mutate func(*tls.Config)) *server {
	t.Helper()
	ca := testcert.NewCA(t, "tlsrecord test CA")
	leaf := ca.Leaf(t, "127.0.0.1")
	cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	require.NoError(t, err)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if mutate != nil {
		mutate(cfg)
	}
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln, err := NewListener(inner, cfg)
	require.NoError(t, err)
	s := &server{ln: ln, ca: ca, dir: t.TempDir(), conns: make(chan *Conn, 16)}
	require.NoError(t, os.WriteFile(filepath.Join(s.dir, "ca.pem"), ca.PEM, 0o600))
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*Conn).Handshake()
				s.conns <- c.(*Conn)
			}()
		}
	}()
	return s
}

func (s *server) addr() string { return s.ln.Addr().String() }

func (s *server) accept(t *testing.T) *Conn {
	t.Helper()
	select {
	case c := <-s.conns:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// echo serves c: every byte read is written back, until EOF or an error,
// which it returns.
func echo(c *Conn) error {
	buf := make([]byte, 700) // smaller than a record: reads leave plaintext buffered
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return werr
			}
		}
		if err != nil {
			return err
		}
	}
}

// exchange writes payloads on a client connection and reads every one back.
func exchange(t *testing.T, c net.Conn, payloads ...[]byte) {
	t.Helper()
	var all []byte
	go func() {
		for _, p := range payloads {
			if _, err := c.Write(p); err != nil {
				return
			}
		}
	}()
	for _, p := range payloads {
		all = append(all, p...)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, len(all))
	_, err := io.ReadFull(c, got)
	require.NoError(t, err)
	require.True(t, bytes.Equal(all, got), "the echo differs")
}

func random(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

// payloads of every size class: empty records are not sent by crypto/tls for
// an empty Write, so the smallest is one byte; 40,000 bytes span three records.
func payloads() [][]byte {
	return [][]byte{random(1), random(646), random(16384), random(40000), random(3)}
}

// Every suite this package implements, against crypto/tls's client (the TLS
// 1.2 suites by choice; TLS 1.3 crypto/tls's own pick): the records go both
// ways, the server's after the session ticket crypto/tls sent (TLS 1.3), its
// close_notify reaches the client.
func TestGoClientEverySuite(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		version uint16
		suite   uint16
	}{
		{"TLS1.3", tls.VersionTLS13, 0},
		{"TLS1.2-AES128-GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256},
		{"TLS1.2-AES256-GCM", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384},
		{"TLS1.2-CHACHA20", tls.VersionTLS12, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil)
			cfg := s.ca.ClientConfig("127.0.0.1")
			cfg.MaxVersion = tc.version
			if tc.suite != 0 {
				cfg.CipherSuites = []uint16{tc.suite}
			}
			client, err := tls.Dial("tcp", s.addr(), cfg)
			require.NoError(t, err)
			defer client.Close()
			c := s.accept(t)
			done := make(chan error, 1)
			go func() { done <- echo(c) }()
			exchange(t, client, payloads()...)
			assert.True(t, c.Fast(), c.Reason())
			assert.Equal(t, tc.version, c.TLSConnectionState().Version)
			if tc.suite != 0 {
				assert.Equal(t, tc.suite, c.TLSConnectionState().CipherSuite)
			}
			// The client's close_notify ends the echo with EOF; the
			// server's reaches the client as EOF too.
			require.NoError(t, client.CloseWrite())
			assert.ErrorIs(t, <-done, io.EOF)
			require.NoError(t, c.Close())
			_, err = client.Read(make([]byte, 1))
			assert.ErrorIs(t, err, io.EOF, "the server's close_notify")
		})
	}
}

// A resumed TLS 1.3 session is taken over too; a TLS 1.2 ticket is refused
// (crypto/tls logs no master secret when it resumes): a full handshake,
// taken over.
func TestResumption(t *testing.T) {
	t.Parallel()
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil)
			cfg := s.ca.ClientConfig("127.0.0.1")
			cfg.MaxVersion = version
			cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)
			for i := range 2 {
				client, err := tls.Dial("tcp", s.addr(), cfg)
				require.NoError(t, err)
				c := s.accept(t)
				go echo(c)
				exchange(t, client, random(100)) // also reads the ticket
				assert.True(t, c.Fast(), c.Reason())
				assert.Equal(t, i == 1 && version == tls.VersionTLS13, c.TLSConnectionState().DidResume, "connection %d", i)
				assert.Equal(t, c.TLSConnectionState().DidResume, client.ConnectionState().DidResume)
				client.Close()
			}
		})
	}
}

// TLS 1.3's other suites, and ChaCha20 in TLS 1.2, with OpenSSL's client
// (crypto/tls's picks AES-128-GCM here); OpenSSL's key updates both ways: "k"
// updates its keys, "K" also asks for ours (the server's next record is
// preceded by its KeyUpdate).
func TestOpenSSLClient(t *testing.T) {
	t.Parallel()
	needOpenSSL(t)
	cases := []struct{ name, flags, suite string }{
		{"TLS1.3-AES256-GCM", "-tls1_3 -ciphersuites TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"},
		{"TLS1.3-CHACHA20", "-tls1_3 -ciphersuites TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256"},
		{"TLS1.3-AES128-GCM", "-tls1_3 -ciphersuites TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"},
		{"TLS1.2-CHACHA20", "-tls1_2 -cipher ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"},
		{"TLS1.2-AES256-GCM", "-tls1_2 -cipher ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil)
			args := append([]string{"s_client", "-connect", s.addr(), "-CAfile", filepath.Join(s.dir, "ca.pem"), "-verify_return_error"}, strings.Fields(tc.flags)...)
			cmd := exec.Command("openssl", args...)
			stdin, err := cmd.StdinPipe()
			require.NoError(t, err)
			out := &lockedBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			require.NoError(t, cmd.Start())
			defer cmd.Process.Kill()
			c := s.accept(t)
			done := make(chan error, 1)
			go func() { done <- echo(c) }()
			for i := range 3 {
				line := fmt.Sprintf("line-%d-%s", i, hex.EncodeToString(random(300)))
				fmt.Fprintln(stdin, line)
				out.await(t, line)
			}
			stdin.Close()
			assert.True(t, c.Fast(), c.Reason())
			assert.Equal(t, tc.suite, tls.CipherSuiteName(c.TLSConnectionState().CipherSuite))
			select {
			case err := <-done:
				assert.ErrorIs(t, err, io.EOF, "OpenSSL's close_notify")
			case <-time.After(10 * time.Second):
				t.Fatal("the echo did not end")
			}
			cmd.Wait()
		})
	}
}

// OpenSSL's key updates, in interactive s_client: "k" updates its write keys
// (our Receiver follows), "K" also asks us to update ours (our Sender sends
// a KeyUpdate before its next record, and OpenSSL reads on).
func TestOpenSSLKeyUpdate(t *testing.T) {
	t.Parallel()
	needOpenSSL(t)
	for _, suite := range []string{"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"} {
		t.Run(suite, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil)
			cmd := exec.Command("openssl", "s_client", "-connect", s.addr(), "-CAfile", filepath.Join(s.dir, "ca.pem"),
				"-verify_return_error", "-tls1_3", "-ciphersuites", suite)
			stdin, err := cmd.StdinPipe()
			require.NoError(t, err)
			out := &lockedBuffer{}
			cmd.Stdout, cmd.Stderr = out, out
			require.NoError(t, cmd.Start())
			defer cmd.Process.Kill()
			c := s.accept(t)
			rx0, tx0 := c.rx.d, c.tx.d
			done := make(chan error, 1)
			go func() { done <- echo(c) }()
			send := func(line string) {
				fmt.Fprintln(stdin, line)
				out.await(t, line)
			}
			send("before-" + hex.EncodeToString(random(8)))
			for i, cmdLine := range []string{"k", "K", "K", "k"} {
				// s_client takes a whole read of its input for the command:
				// the next line goes once it has printed this one's.
				fmt.Fprintln(stdin, cmdLine)
				out.awaitCount(t, "KEYUPDATE", i+1)
				send(fmt.Sprintf("after-%d-%s", i, hex.EncodeToString(random(8))))
			}
			assert.Equal(t, 4, strings.Count(out.String(), "KEYUPDATE"))
			assert.True(t, c.Fast(), c.Reason())
			stdin.Close()
			select {
			case err := <-done:
				assert.ErrorIs(t, err, io.EOF)
			case <-time.After(10 * time.Second):
				t.Fatal("the echo did not end")
			}
			cmd.Wait()
			// OpenSSL read our records after each "K": our keys moved twice,
			// its four times, each as RFC 8446 section 7.2 derives them.
			for range 4 {
				require.NoError(t, rx0.update())
			}
			for range 2 {
				require.NoError(t, tx0.update())
			}
			assert.Equal(t, rx0.secret, c.rx.d.secret, "the client's keys, updated four times")
			assert.Equal(t, tx0.secret, c.tx.d.secret, "ours, updated twice")
		})
	}
}

// needOpenSSL skips a test without OpenSSL's command, but fails it in CI
// (.ci/run installs it).
func needOpenSSL(t *testing.T) {
	if _, err := exec.LookPath("openssl"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true and no openssl command: .ci/run installs it")
		}
		t.Skip("no openssl command (Debian: apt-get install openssl)")
	}
}

// lockedBuffer collects a process's output; await waits for a string in it.
type lockedBuffer struct{ syncbuf.Buffer }

func (b *lockedBuffer) await(t *testing.T, s string) {
	t.Helper()
	b.awaitCount(t, s, 1)
}

func (b *lockedBuffer) awaitCount(t *testing.T, s string, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for strings.Count(b.String(), s) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%q never came; output:\n%s", s, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Detach mid-stream: what the Conn had decrypted and not returned, what it
// had read and not decrypted, and what the socket holds after, opened by the
// Receiver handed over, is every byte the client sent after those read; the
// Sender handed over writes records the client reads after the server's
// earlier ones, and a key update asked for before the handover goes out first.
func TestDetachHandsEverythingOver(t *testing.T) {
	t.Parallel()
	for _, version := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil)
			cfg := s.ca.ClientConfig("127.0.0.1")
			cfg.MaxVersion = version
			client, err := tls.Dial("tcp", s.addr(), cfg)
			require.NoError(t, err)
			defer client.Close()
			c := s.accept(t)
			sent := append(random(3000), random(20000)...)
			go client.Write(sent) // records of up to 16 KiB, small ones first (crypto/tls's dynamic record sizing)
			// Read part of the first record through the Conn, and write.
			first := make([]byte, 1000)
			_, err = io.ReadFull(c, first)
			require.NoError(t, err)
			_, err = c.Write([]byte("before"))
			require.NoError(t, err)
			// Let the rest arrive, so that some is read ahead below.
			require.Eventually(t, func() bool { return pending(c) }, 5*time.Second, time.Millisecond)

			st, err := c.Detach()
			require.NoError(t, err)
			// The sending side's cipher is made again when it first seals
			// (below); the Conn keeps no copy of either side.
			assert.Nil(t, st.Sender.d.aead, "the Sender handed over with its cipher")
			assert.Nil(t, c.rx.d.aead, "the Conn's Receiver kept")
			assert.Nil(t, c.tx.d.aead, "the Conn's Sender kept")
			_, err = c.Read(make([]byte, 1))
			assert.ErrorIs(t, err, net.ErrClosed, "a detached Conn reads nothing")
			got := append(append([]byte(nil), first...), st.Plain...)
			raw := st.Raw
			buf := make([]byte, MaxRecord)
			c.NetConn().SetReadDeadline(time.Now().Add(10 * time.Second))
			for len(got) < len(sent) {
				n, lerr := RecordLen(raw)
				require.NoError(t, lerr)
				if n == 0 || len(raw) < n {
					m, rerr := c.NetConn().Read(buf)
					require.NoError(t, rerr)
					raw = append(raw, buf[:m]...)
					continue
				}
				ev, plain, oerr := st.Receiver.Open(raw[:n])
				require.NoError(t, oerr)
				require.Equal(t, Data, ev)
				got = append(got, plain...)
				raw = raw[n:]
			}
			assert.True(t, bytes.Equal(sent, got), "the bytes after the handover")

			if version == tls.VersionTLS13 {
				st.Sender.UpdateRequested() // as if the client had asked: crypto/tls follows the KeyUpdate
			}
			_, err = c.NetConn().Write(st.Sender.Seal(nil, []byte("after")))
			require.NoError(t, err)
			_, err = c.NetConn().Write(st.Sender.SealCloseNotify(nil))
			require.NoError(t, err)
			client.SetReadDeadline(time.Now().Add(10 * time.Second))
			all, err := io.ReadAll(client)
			require.NoError(t, err)
			assert.Equal(t, "beforeafter", string(all))
		})
	}
}

// pending reports whether the Conn has bytes read ahead (decrypted or not).
func pending(c *Conn) bool {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	if c.re-c.rs > 0 {
		return true
	}
	// Read the socket on: another record.
	c.raw.SetReadDeadline(time.Now().Add(time.Millisecond))
	defer c.raw.SetReadDeadline(time.Time{})
	if c.re == len(c.rbuf) {
		return false
	}
	n, _ := c.raw.Read(c.rbuf[c.re:])
	c.re += n
	return n > 0
}

// hostileClient completes a handshake with crypto/tls's client and returns
// the socket, on which the test writes records of its own, sealed with the
// client's keys (the server's receiving state, copied: the same keys and
// sequence number), and the server's Conn.
func hostileClient(t *testing.T, s *server, version uint16) (net.Conn, *Sender, *Conn) {
	t.Helper()
	cfg := s.ca.ClientConfig("127.0.0.1")
	cfg.MaxVersion = version
	raw, err := net.Dial("tcp", s.addr())
	require.NoError(t, err)
	t.Cleanup(func() { raw.Close() })
	client := tls.Client(raw, cfg)
	require.NoError(t, client.Handshake())
	c := s.accept(t)
	require.True(t, c.Fast(), c.Reason())
	return raw, &Sender{d: c.rx.d}, c
}

// Records a server must refuse: each ends Read with an error, never data.
func TestHostileRecords(t *testing.T) {
	t.Parallel()
	type attack struct {
		name    string
		version uint16
		records func(s *Sender) []byte
		want    string
	}
	seal := func(s *Sender, typ byte, p []byte) []byte { return s.d.seal(nil, typ, p) }
	attacks := []attack{
		{"tampered", tls.VersionTLS13, func(s *Sender) []byte {
			r := s.Seal(nil, []byte("hello"))
			r[len(r)-1] ^= 1
			return r
		}, "authentication failed"},
		{"NewSessionTicket from the client", tls.VersionTLS13, func(s *Sender) []byte {
			return seal(s, typeHandshake, []byte{4, 0, 0, 1, 0})
		}, "post-handshake message"},
		{"KeyUpdate cut short", tls.VersionTLS13, func(s *Sender) []byte {
			return seal(s, typeHandshake, []byte{keyUpdate, 0, 0, 1})
		}, "post-handshake message"},
		{"KeyUpdate with a bad request byte", tls.VersionTLS13, func(s *Sender) []byte {
			return seal(s, typeHandshake, []byte{keyUpdate, 0, 0, 1, 2})
		}, "post-handshake message"},
		{"fatal alert", tls.VersionTLS13, func(s *Sender) []byte {
			return seal(s, typeAlert, []byte{alertLevelFatal, 40})
		}, "the peer sent alert 40"},
		{"empty records", tls.VersionTLS13, func(s *Sender) []byte {
			var b []byte
			for range maxUseless + 1 {
				b = append(b, seal(s, typeApplicationData, nil)...)
			}
			return b
		}, "too many records with no data"},
		{"renegotiation", tls.VersionTLS12, func(s *Sender) []byte {
			return seal(s, typeHandshake, []byte{1, 0, 0, 0})
		}, "renegotiation refused"},
		{"not a record", tls.VersionTLS13, func(*Sender) []byte {
			return []byte("GET / HTTP/1.1\r\n\r\n")
		}, "not a TLS record header"},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil)
			raw, snd, c := hostileClient(t, s, a.version)
			_, err := raw.Write(a.records(snd))
			require.NoError(t, err)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, err := c.Read(make([]byte, 100))
			assert.Zero(t, n)
			require.Error(t, err)
			assert.Contains(t, err.Error(), a.want)
			var ae *AlertError
			assert.True(t, errors.As(err, &ae))
			_, err2 := c.Read(make([]byte, 100))
			assert.Equal(t, err, err2, "the error stays")
		})
	}
}

// A suite this package does not implement (CBC) leaves the connection with
// crypto/tls, which serves it on; Detach refuses it.
func TestUnimplementedSuiteStaysWithCryptoTLS(t *testing.T) {
	t.Parallel()
	s := newServer(t, func(c *tls.Config) {
		c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	})
	cfg := s.ca.ClientConfig("127.0.0.1")
	cfg.MaxVersion = tls.VersionTLS12
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
	client, err := tls.Dial("tcp", s.addr(), cfg)
	require.NoError(t, err)
	defer client.Close()
	c := s.accept(t)
	go echo(c)
	exchange(t, client, payloads()...)
	assert.False(t, c.Fast())
	assert.Contains(t, c.Reason(), "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA")
	_, err = c.Detach()
	assert.Error(t, err)
}

// Plain HTTP to the TLS port is answered 400, as net/http does for its own
// TLS connections; a config this package cannot add its hooks to is refused.
func TestPlainHTTPAndBadConfig(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	raw, err := net.Dial("tcp", s.addr())
	require.NoError(t, err)
	defer raw.Close()
	io.WriteString(raw, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(raw).ReadString('\n')
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(line, "HTTP/1.0 400"), line)
	assert.Error(t, s.accept(t).Handshake())

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer inner.Close()
	_, err = NewListener(inner, &tls.Config{KeyLogWriter: io.Discard})
	assert.Error(t, err)
}

// The per-record path allocates nothing: opening a record in place, and
// sealing into a buffer with room, for every AEAD and both versions.
func TestRecordsAllocateNothing(t *testing.T) {
	frame := random(646)
	for _, s := range suites {
		if s.id == tls.TLS_RSA_WITH_AES_128_GCM_SHA256 || s.id == tls.TLS_RSA_WITH_AES_256_GCM_SHA384 {
			continue // the same record layer as the ECDHE suites
		}
		var tx, rx *direction
		var err error
		if s.version == tls.VersionTLS13 {
			secret := random(s.hash().Size())
			tx, err = direction13(&s, secret)
			require.NoError(t, err)
			rx, err = direction13(&s, secret)
		} else {
			tx, _, err = directions12(&s, random(48), random(32), random(32))
			cp := *tx
			rx = &cp
		}
		require.NoError(t, err)
		snd, rcv := &Sender{d: *tx}, &Receiver{d: *rx}
		buf := make([]byte, 0, 2048)
		allocs := testing.AllocsPerRun(200, func() {
			rec := snd.Seal(buf[:0], frame)
			ev, plain, err := rcv.Open(rec)
			if err != nil || ev != Data || !bytes.Equal(plain, frame) {
				t.Fatalf("%s: %v %v", tls.CipherSuiteName(s.id), ev, err)
			}
		})
		assert.Zero(t, allocs, tls.CipherSuiteName(s.id))
	}
}

// BenchmarkOpenFrame: a record of one mod_audio_fork frame (646 bytes: 20
// ms of 8 kHz stereo L16 and its WebSocket header) opened in place, as the
// epoll reader does per frame (a copy of the record included).
func BenchmarkOpenFrame(b *testing.B) {
	for _, id := range []uint16{tls.TLS_AES_128_GCM_SHA256, tls.TLS_AES_256_GCM_SHA384, tls.TLS_CHACHA20_POLY1305_SHA256} {
		b.Run(tls.CipherSuiteName(id), func(b *testing.B) {
			s := suiteFor(tls.VersionTLS13, id)
			secret := random(s.hash().Size())
			tx, _ := direction13(s, secret)
			snd := &Sender{d: *tx}
			rx, _ := direction13(s, secret)
			rcv := &Receiver{d: *rx}
			recs := make([][]byte, 1024)
			for i := range recs {
				recs[i] = snd.Seal(nil, random(646))
			}
			buf := make([]byte, len(recs[0]))
			b.SetBytes(646)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%len(recs) == 0 && i > 0 {
					b.StopTimer()
					rcv.d.seq -= uint64(len(recs))
					b.StartTimer()
				}
				copy(buf, recs[i%len(recs)])
				if _, _, err := rcv.Open(buf); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// CloseWrite, as crypto/tls's: the client reads what was written, then the
// end of the stream (close_notify, then the socket's FIN); the server still
// reads what the client sends after, and writes nothing more. The same on a
// connection crypto/tls serves on (CBC).
func TestCloseWriteThenReadOn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		suites []uint16
		fast   bool
	}{{"fast", nil, true}, {"crypto-tls", []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}, false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, func(c *tls.Config) { c.CipherSuites = tc.suites })
			cfg := s.ca.ClientConfig("127.0.0.1")
			if tc.suites != nil {
				cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, tc.suites
			}
			client, err := tls.Dial("tcp", s.addr(), cfg)
			require.NoError(t, err)
			defer client.Close()
			c := s.accept(t)
			require.Equal(t, tc.fast, c.Fast(), c.Reason())
			_, err = c.Write([]byte("refused"))
			require.NoError(t, err)
			require.NoError(t, c.CloseWrite())
			_, err = c.Write([]byte("more"))
			assert.Error(t, err, "a write after CloseWrite")

			client.SetReadDeadline(time.Now().Add(10 * time.Second))
			got, err := io.ReadAll(client)
			require.NoError(t, err, "close_notify: a clean end of the stream")
			assert.Equal(t, "refused", string(got))

			_, err = client.Write([]byte("still sending"))
			require.NoError(t, err)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 64)
			n, err := io.ReadAtLeast(c, buf, len("still sending"))
			require.NoError(t, err)
			assert.Equal(t, "still sending", string(buf[:n]))
		})
	}
}
