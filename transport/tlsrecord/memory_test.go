package tlsrecord

import (
	"crypto/tls"
	"io"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Once its records are this package's, a Conn lets go of crypto/tls's
// connection and of the tap the handshake ran on (their buffers, ciphers,
// config and captured records: some 4.5 KiB a connection waiting for its
// first message would hold on for nothing): both are collected while the
// Conn lives on and serves, and TLSConnectionState still says what crypto/tls
// negotiated. A Conn crypto/tls serves on keeps its connection.
func TestFastConnLetsGoOfTheHandshake(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		version uint16
		suites  []uint16
	}{
		{"TLS1.3", tls.VersionTLS13, nil},
		{"TLS1.2", tls.VersionTLS12, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newServer(t, nil)
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			leaf := s.ca.Leaf(t, "127.0.0.1")
			cert, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
			require.NoError(t, err)
			ln, err := NewListener(inner, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
			require.NoError(t, err)
			defer ln.Close()
			cfg := s.ca.ClientConfig("127.0.0.1")
			cfg.MaxVersion, cfg.CipherSuites = tc.version, tc.suites
			dialed := make(chan *tls.Conn, 1)
			go func() {
				client, derr := tls.Dial("tcp", ln.Addr().String(), cfg)
				if derr != nil {
					client = nil
				}
				dialed <- client
			}()
			nc, err := ln.Accept()
			require.NoError(t, err)
			c := nc.(*Conn)
			defer c.Close()
			collected := make(chan string, 2)
			runtime.AddCleanup(c.tc, func(what string) { collected <- what }, "crypto/tls's connection")
			runtime.AddCleanup(c.tap, func(what string) { collected <- what }, "the tap")
			require.NoError(t, c.Handshake())
			client := <-dialed
			require.NotNil(t, client, "the client's handshake")
			defer client.Close()
			require.True(t, c.Fast(), c.Reason())

			done := make(chan error, 1)
			go func() { done <- echo(c) }()
			exchange(t, client, random(646))
			awaitCollected(t, collected, 2)
			exchange(t, client, payloads()...) // the Conn serves on
			assert.Equal(t, tc.version, c.TLSConnectionState().Version)
			if tc.suites != nil {
				assert.Equal(t, tc.suites[0], c.TLSConnectionState().CipherSuite)
			}
			require.NoError(t, client.CloseWrite())
			assert.ErrorIs(t, <-done, io.EOF)
			runtime.KeepAlive(c)
		})
	}

	t.Run("crypto/tls serves on", func(t *testing.T) {
		t.Parallel()
		cbc := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}
		s := newServer(t, func(c *tls.Config) { c.CipherSuites = cbc })
		cfg := s.ca.ClientConfig("127.0.0.1")
		cfg.MaxVersion, cfg.CipherSuites = tls.VersionTLS12, cbc
		client, err := tls.Dial("tcp", s.addr(), cfg)
		require.NoError(t, err)
		defer client.Close()
		c := s.accept(t)
		require.False(t, c.Fast())
		assert.NotNil(t, c.tc, "crypto/tls reads and writes the records")
		done := make(chan error, 1)
		go func() { done <- echo(c) }()
		exchange(t, client, payloads()...)
		require.NoError(t, client.CloseWrite())
		assert.ErrorIs(t, <-done, io.EOF)
	})
}

// awaitCollected runs the garbage collector until n cleanups have reported.
func awaitCollected(t *testing.T, collected <-chan string, n int) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for got := 0; got < n; {
		runtime.GC()
		select {
		case <-collected:
			got++
		case <-deadline:
			t.Fatalf("%d of %d objects not collected: something still holds them", n-got, n)
		case <-time.After(10 * time.Millisecond): // the cleanups run on a goroutine of their own, after a cycle
		}
	}
}

// A Conn waits for a record after a small one (an upgrade request, the
// first message) with a small buffer; a frame's record, and a record of any
// size after, are read whole all the same.
func TestFirstReadBufferIsSmall(t *testing.T) {
	t.Parallel()
	s := newServer(t, nil)
	client, err := tls.Dial("tcp", s.addr(), s.ca.ClientConfig("127.0.0.1"))
	require.NoError(t, err)
	defer client.Close()
	c := s.accept(t)
	request := random(300) // an upgrade request's size
	_, err = client.Write(request)
	require.NoError(t, err)
	got := make([]byte, len(request))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.ReadFull(c, got)
	require.NoError(t, err)
	assert.Equal(t, request, got)
	c.inMu.Lock()
	size := cap(c.rbuf)
	c.inMu.Unlock()
	assert.LessOrEqual(t, size, 512, "the buffer a connection waits with for its first frame")

	done := make(chan error, 1)
	go func() { done <- echo(c) }()
	exchange(t, client, random(646), random(646), random(16384), random(3))
	require.NoError(t, client.CloseWrite())
	assert.ErrorIs(t, <-done, io.EOF)
}

// continued finds where the records under a direction's keys begin among
// the handshake's, opening each at most once, in place (the records are not
// kept), with the direction's one cipher: a record that does not open leaves
// it as it was.
func TestContinuedOpensInPlace(t *testing.T) {
	s := suiteFor(tls.VersionTLS13, tls.TLS_AES_128_GCM_SHA256)
	secret, other := random(32), random(32)
	seal := func(secret []byte, n int) [][]byte {
		d, err := direction13(s, secret)
		require.NoError(t, err)
		snd := Sender{d: *d}
		var recs [][]byte
		for i := 0; i < n; i++ {
			recs = append(recs, snd.Seal(nil, random(100)))
		}
		return recs
	}
	for _, tc := range []struct {
		name    string
		records [][]byte
		seq     uint64
		err     bool
	}{
		{"none", nil, 0, false},
		{"only the handshake's", seal(other, 3), 0, false},
		{"the handshake's, then two", append(seal(other, 4), seal(secret, 2)...), 2, false},
		{"one under the keys, then one not", append(seal(secret, 1), seal(other, 1)...), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := direction13(s, secret)
			require.NoError(t, err)
			seq, err := continued(d, tc.records)
			if tc.err {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.seq, seq)
			// d goes on: the next record opens.
			d.seq = seq
			next := seal(secret, int(seq)+1)
			_, plain, err := d.open(next[seq])
			require.NoError(t, err)
			assert.Len(t, plain, 100)
		})
	}
}
