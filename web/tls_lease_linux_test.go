//go:build linux

package web

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/mediafork/mediafork/internal/testcert"
)

// Issue 20 finding 1: a certificate rotation froze every TLS handshake. The
// reloader opened the new cert.pem on the handshake path, under its mutex,
// and the open waited: a write lease (fcntl F_SETLEASE) held on the file by
// whoever writes the certificates stalls a blocking open until the lease is
// given up or the kernel breaks it (lease-break-time, 45 s by default), and
// every handshake waited behind it. The lease here is a real one, held by
// the test: once the reloader has tried to open the file (the kernel is
// breaking the lease), handshakes complete, with the old certificate, while
// the lease is still held; given up, the next look loads the new pair.
func TestCertRotationUnderALeaseNeverStallsHandshakes(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "mediafork test CA")
	dir := t.TempDir()
	first := ca.Leaf(t, "127.0.0.1")
	certFile, keyFile := first.Write(t, dir)
	addr, logs := serveTLS(t, http.NotFoundHandler(), CertSettings{CertFile: certFile, KeyFile: keyFile, CheckInterval: time.Millisecond})
	trusting := ca.ClientConfig("127.0.0.1")

	// The new certificate, under a write lease taken before it is renamed
	// into place (a rename does not break a lease; an open does).
	second := ca.Leaf(t, "127.0.0.1")
	next := filepath.Join(dir, "cert.pem.next")
	require.NoError(t, os.WriteFile(next, second.CertPEM, 0o600))
	f, err := os.OpenFile(next, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	fd := int(f.Fd())
	_, err = unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_WRLCK)
	require.NoError(t, err, "F_SETLEASE (needs the file's owner or CAP_LEASE)")
	lease := func() int {
		l, err := unix.FcntlInt(uintptr(fd), unix.F_GETLEASE, 0)
		if err != nil {
			return -1
		}
		return l
	}
	release := func() { unix.FcntlInt(uintptr(fd), unix.F_SETLEASE, unix.F_UNLCK) }
	defer release()
	require.Equal(t, unix.F_WRLCK, lease())
	require.NoError(t, os.WriteFile(keyFile+".tmp", second.KeyPEM, 0o600))
	require.NoError(t, os.Rename(keyFile+".tmp", keyFile))
	require.NoError(t, os.Rename(next, certFile))

	// The reloader has tried to open the new cert.pem: the kernel is breaking
	// the lease (F_GETLEASE says what it is being broken to: a read lease).
	// A handshake meanwhile, for a reloader that looks on handshakes.
	spare := make(chan error, 1)
	go func() { _, err := handshake(t, addr, trusting); spare <- err }()
	require.Eventually(t, func() bool { return lease() == unix.F_RDLCK }, 10*time.Second, time.Millisecond,
		"the reloader never opened the new certificate")
	for range 5 {
		leaf, err := handshake(t, addr, trusting)
		require.NoError(t, err)
		assert.Equal(t, first.Serial, leaf.SerialNumber, "a handshake while the lease is held: the old certificate")
	}
	// Still held: the handshakes did not wait for the lease to end.
	require.Equal(t, unix.F_RDLCK, lease(), "the lease is still being broken")
	assert.NotContains(t, logs.String(), "TLS certificate reloaded")
	require.NoError(t, <-spare)

	release()
	require.Eventually(t, func() bool {
		leaf, err := handshake(t, addr, trusting)
		return err == nil && leaf.SerialNumber.Cmp(second.Serial) == 0
	}, 10*time.Second, 5*time.Millisecond, "the new pair, once the lease is given up")
	assert.Equal(t, 1, strings.Count(logs.String(), "TLS certificate reloaded"), logs.String())
}

// A FIFO swapped in for cert.pem is refused, not waited on for a writer, and
// handshakes go on with the old certificate; a good pair after it loads.
func TestCertFIFOSwappedInIsRefused(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "mediafork test CA")
	dir := t.TempDir()
	first := ca.Leaf(t, "127.0.0.1")
	certFile, _ := first.Write(t, dir)
	addr, logs := serveTLS(t, http.NotFoundHandler(), CertSettings{CertFile: certFile, KeyFile: filepath.Join(dir, "key.pem"), CheckInterval: time.Millisecond})
	trusting := ca.ClientConfig("127.0.0.1")

	fifo := filepath.Join(dir, "fifo")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	require.NoError(t, os.Rename(fifo, certFile))
	require.Eventually(t, func() bool {
		_, err := handshake(t, addr, trusting) // for a reloader that looks on handshakes
		return err == nil && strings.Contains(logs.String(), "not a regular file")
	}, 10*time.Second, time.Millisecond)
	for range 3 {
		leaf, err := handshake(t, addr, trusting)
		require.NoError(t, err)
		assert.Equal(t, first.Serial, leaf.SerialNumber, "the old certificate stays")
	}

	second := ca.Leaf(t, "127.0.0.1")
	second.Write(t, dir)
	require.Eventually(t, func() bool {
		leaf, err := handshake(t, addr, trusting)
		return err == nil && leaf.SerialNumber.Cmp(second.Serial) == 0
	}, 10*time.Second, 5*time.Millisecond, "a good pair after the FIFO")
}
