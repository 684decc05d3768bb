//go:build unix

package conf

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// loadOrUnblock loads yaml, failing the test if the load has not returned
// by the deadline; fifo, opened for writing then, lets a load blocked on it
// return so that the test ends.
func loadOrUnblock(t *testing.T, yaml, fifo string) error {
	t.Helper()
	return loadPathOrUnblock(t, write(t, yaml), fifo)
}

// loadPathOrUnblock is loadOrUnblock of the config file at path.
func loadPathOrUnblock(t *testing.T, path, fifo string) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := LoadEnviron(path, nil)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		if f, err := os.OpenFile(fifo, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		<-done
		t.Fatalf("loading blocked on the FIFO %s", fifo)
		return nil
	}
}

// A secret file that is a FIFO (a secrets tool's named pipe, a mistake) is
// refused at once: opening a FIFO for reading blocks until a writer comes,
// which hung serve at start, config check, and every later reload (the
// watcher goroutine, for good) before the "not a regular file" check ran.
func TestSecretFileFIFOIsRefusedNotWaitedOn(t *testing.T) {
	t.Parallel()
	fifo := filepath.Join(t.TempDir(), "token")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	err := loadOrUnblock(t, "api: {token_file: "+fifo+"}\n", fifo)
	require.Error(t, err)
	assert.Equal(t, []string{"api.token_file"}, keysOf(err))
	assert.ErrorContains(t, err, "not a regular file")
}

// The TLS files config check loads must be regular files of a certificate's
// size: a cert_file that is a FIFO hung config check and every reload (the
// running daemon's too), and one like /dev/zero or a huge file was read
// whole into memory, without end for a device.
func TestTLSFilesAreBoundedAndRegular(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "cert.pem")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	key := filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(key, []byte("-----BEGIN EC PRIVATE KEY-----\n-----END EC PRIVATE KEY-----\n"), 0o600))
	err := loadOrUnblock(t, "api: {tls: {cert_file: "+fifo+", key_file: "+key+"}}\n", fifo)
	require.Error(t, err)
	assert.Equal(t, []string{"api.tls"}, keysOf(err))
	assert.ErrorContains(t, err, "not a regular file")

	huge := filepath.Join(dir, "huge.pem")
	f, err := os.Create(huge)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(64<<20)) // sparse: no disk, 64 MiB to read
	require.NoError(t, f.Close())
	_, err = LoadEnviron(write(t, "ingest: {url: wss://127.0.0.1:8090, tls: {cert_file: "+huge+", key_file: "+key+"}}\n"), nil)
	require.Error(t, err)
	assert.Equal(t, []string{"ingest.tls"}, keysOf(err))
	assert.ErrorContains(t, err, "is over")
}

// The config file is read as the secrets are (issue 20): a config path that
// is a FIFO is refused, not waited on for a writer (os.ReadFile blocked serve
// at start and the reload goroutine for good), and one that is huge or a
// device is refused by its size, not read whole into memory.
func TestConfigFileIsBoundedAndRegular(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	fifo := filepath.Join(dir, "mediafork.yaml")
	require.NoError(t, syscall.Mkfifo(fifo, 0o600))
	err := loadPathOrUnblock(t, fifo, fifo)
	require.Error(t, err)
	assert.ErrorContains(t, err, "not a regular file")

	huge := filepath.Join(dir, "huge.yaml")
	require.NoError(t, os.WriteFile(huge, []byte("log: {level: debug}\n"), 0o600))
	require.NoError(t, os.Truncate(huge, 64<<20)) // sparse: no disk, 64 MiB of NULs to read
	_, err = LoadEnviron(huge, nil)
	require.Error(t, err)
	assert.ErrorContains(t, err, "is over")

	_, err = LoadEnviron("/dev/zero", nil)
	require.Error(t, err)
	assert.ErrorContains(t, err, "not a regular file")
}
