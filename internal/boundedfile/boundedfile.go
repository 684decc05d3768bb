// Package boundedfile reads the small files mediafork's config names
// (secrets, certificates) so that no file can block it or make it read
// without end: a path that is not a regular file (a FIFO, a device such as
// /dev/zero, a directory) is refused before it is opened, and a file is read
// up to a bound.
package boundedfile

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
)

// MaxPEM bounds a certificate chain or key file: a chain is a few KiB.
const MaxPEM = 1 << 20

// Read is path's content, of at most max bytes.
func Read(path string, max int64) ([]byte, error) {
	// Stat before open: opening a FIFO for reading blocks until a writer
	// comes, and a device may never end.
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cannot read %s: %s", path, oneLine(err.Error()))
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %s", path, oneLine(err.Error()))
	}
	defer f.Close()
	if st, serr := f.Stat(); serr != nil || !st.Mode().IsRegular() { // replaced in between
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %s", path, oneLine(err.Error()))
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s is over %d bytes", path, max)
	}
	return b, nil
}

// KeyPair is tls.LoadX509KeyPair with both files read by Read, at most
// MaxPEM bytes each.
func KeyPair(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := Read(certFile, MaxPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := Read(keyFile, MaxPEM)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(cert, key)
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// CertPool is the PEM certificates of path (at most MaxPEM bytes), as a pool
// to verify servers against; a file holding none is refused.
func CertPool(path string) (*x509.CertPool, error) {
	b, err := Read(path, MaxPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
