package web

import (
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/testcert"
)

// A certificate file replaced by a huge one (a wrong path in a rotation
// script, a log written over it) is not read whole on the handshake path,
// where every handshake waits for the reload: it is refused by its size, the
// old certificate stays, and it is refused at start too.
func TestCertReloaderRefusesAHugeFile(t *testing.T) {
	t.Parallel()
	ca := testcert.NewCA(t, "mediafork test CA")
	dir := t.TempDir()
	first := ca.Leaf(t, "127.0.0.1")
	certFile, keyFile := first.Write(t, dir)
	addr, logs := serveTLS(t, http.NotFoundHandler(), CertSettings{CertFile: certFile, KeyFile: keyFile, CheckInterval: time.Nanosecond})

	require.NoError(t, os.Truncate(certFile, 64<<20)) // sparse: 64 MiB to read, no disk
	leaf, err := handshake(t, addr, ca.ClientConfig("127.0.0.1"))
	require.NoError(t, err)
	assert.Equal(t, first.Serial, leaf.SerialNumber, "the old certificate stays")
	assert.Contains(t, logs.String(), "is over", "refused for its size, not read")

	_, err = NewCertReloader(CertSettings{CertFile: certFile, KeyFile: keyFile}, quiet)
	require.ErrorContains(t, err, "is over")
}
