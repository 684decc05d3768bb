// Package boundedfile reads the small files mediafork's config names (the
// config file itself, secrets, certificates) so that no file can block it or
// make it read without end: a path that is not a regular file (a FIFO, a
// device such as /dev/zero, a directory) is refused, opening never waits, and
// a file is read up to a bound.
package boundedfile

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// MaxPEM bounds a certificate chain or key file: a chain is a few KiB.
const MaxPEM = 1 << 20

// Read is path's content, of at most max bytes. It never waits to open the
// file: a path that is no regular file is refused before it is opened (a
// device may do something on open), and the open is non-blocking, so that a
// FIFO swapped in after that look is not waited on for a writer and a write
// lease another process holds on the file (fcntl F_SETLEASE, which stalls a
// blocking open until the lease is given up, 45 s by default on Linux) is an
// error at once (EWOULDBLOCK), to be tried again later. What was opened is
// looked at again (fstat) before a byte is read: it must be a regular file of
// at most max bytes. On a regular file O_NONBLOCK changes nothing else.
func Read(path string, max int64) ([]byte, error) {
	if st, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("cannot read %s: %s", path, oneLine(err.Error()))
	} else if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot read %s: %s", path, oneLine(err.Error()))
	}
	defer f.Close()
	st, err := f.Stat()
	switch {
	case err != nil:
		return nil, fmt.Errorf("cannot read %s: %s", path, oneLine(err.Error()))
	case !st.Mode().IsRegular(): // replaced since the look above
		return nil, fmt.Errorf("%s is not a regular file", path)
	case st.Size() > max:
		return nil, fmt.Errorf("%s is over %d bytes", path, max)
	}
	b, err := io.ReadAll(io.LimitReader(f, max+1)) // it may grow as it is read
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
	cert, key, err := PEMPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(cert, key)
}

// PEMPair is the content of a certificate file and its key file, each read by
// Read, at most MaxPEM bytes.
func PEMPair(certFile, keyFile string) (cert, key []byte, err error) {
	if cert, err = Read(certFile, MaxPEM); err != nil {
		return nil, nil, err
	}
	if key, err = Read(keyFile, MaxPEM); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
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
