package web

import (
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mediafork/mediafork/internal/boundedfile"
	"github.com/mediafork/mediafork/transport/tlsrecord"
)

// isTLS reports whether r came over crypto/tls's TLS: such a connection
// stays on the goroutine reader (the epoll reader cannot decrypt its
// records). TLSListener's connections do not count: the epoll reader reads
// theirs.
func isTLS(r *http.Request) bool { return r.TLS != nil }

// TLSListener serves TLS with config on ln, for this ingest. With the epoll
// reader (UsePoller first), crypto/tls does each handshake and
// transport/tlsrecord takes the connection's records over, so that the epoll
// reader decrypts them where it reads: wss:// at about the CPU of ws://
// (BENCHMARKS.md). A connection whose suite tlsrecord does not implement
// stays on crypto/tls and the goroutine reader (IngestStats.TLSGoroutine).
// Without the epoll reader, crypto/tls serves every connection.
func (in *Ingest) TLSListener(ln net.Listener, config *tls.Config) (net.Listener, error) {
	if in.poller == nil {
		return tls.NewListener(ln, config), nil
	}
	return tlsrecord.NewListener(ln, config)
}

// CertReloader serves a certificate from a pair of PEM files and takes new
// files without a restart. A handshake only loads the pair in force (an
// atomic pointer): nothing it does waits on a file or a lock. The reloader's
// own goroutine looks at the files (which file, size, mtime) every
// CheckInterval and reads them when those changed, and at least every
// HashInterval even when not (a replacement may keep them: cp -p, rsync -t,
// a rewrite within one tick of the file system's clock, an attribute cache);
// the pair is parsed when its content (SHA-256) differs from the pair in
// force. Each file is read only when it is a regular file of at most
// boundedfile.MaxPEM bytes, opened without waiting (boundedfile.Read: a FIFO
// or a lease another process holds on it is an error at once, tried again at
// the next look). A pair that does not load (a half-written rotation) keeps
// the old certificate, with one log line per cause. Close stops the
// goroutine.
type CertReloader struct {
	certFile, keyFile string
	set               CertSettings
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
	stop, done        chan struct{}
	closeOnce         sync.Once

	// Owned by the goroutine (and NewCertReloader before it starts).
	seen   fileSig   // the files' size and time when they were last read
	read   time.Time // when they were last read
	sum    [sha256.Size]byte
	badSum [sha256.Size]byte // content that did not load (logged once)
	failed string            // the last failure logged
}

type fileSig struct{ cert, key fileID }

// fileID is what the reloader compares of a file between looks: which file
// it is (a rename over it makes another; mtime alone may not change, its
// clock ticking every few milliseconds), its size and its mtime.
type fileID struct {
	st os.FileInfo
}

func (a fileID) same(b fileID) bool {
	return a.st != nil && b.st != nil && os.SameFile(a.st, b.st) && a.st.Size() == b.st.Size() && a.st.ModTime().Equal(b.st.ModTime())
}

func (a fileSig) same(b fileSig) bool { return a.cert.same(b.cert) && a.key.same(b.key) }

// NewCertReloader loads the pair of s now (a server must not start with a
// certificate it cannot serve) and starts looking for new files; Close stops
// that.
func NewCertReloader(s CertSettings, log *slog.Logger) (*CertReloader, error) {
	if err := s.resolve(); err != nil {
		return nil, err
	}
	r := &CertReloader{certFile: s.CertFile, keyFile: s.KeyFile, set: s, log: log.With("component", "tls", "cert_file", s.CertFile),
		stop: make(chan struct{}), done: make(chan struct{})}
	sig, err := r.stat()
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := boundedfile.PEMPair(r.certFile, r.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %s", oneLine(err.Error()))
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("tls: %s", oneLine(err.Error()))
	}
	r.cert.Store(&cert)
	r.seen, r.read, r.sum = sig, time.Now(), pairSum(certPEM, keyPEM)
	go r.run()
	return r, nil
}

// Close stops looking at the files; the pair in force is served on.
func (r *CertReloader) Close() {
	r.closeOnce.Do(func() { close(r.stop) })
	<-r.done
}

// TLSConfig serves the reloading certificate, HTTP/1.1 only (WebSocket
// upgrades are HTTP/1.1; mod_audio_fork and mod_audio_stream offer no ALPN).
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate, NextProtos: []string{"http/1.1"}}
}

// GetCertificate is tls.Config's: the pair in force.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cert.Load(), nil
}

func (r *CertReloader) run() {
	defer close(r.done)
	tick := time.NewTicker(r.set.CheckInterval)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case now := <-tick.C:
			r.check(now)
		}
	}
}

// check reads the files when their size or time changed, when the last read
// failed, or when HashInterval has passed; it loads a pair whose content
// differs from the one in force.
func (r *CertReloader) check(now time.Time) {
	sig, err := r.stat()
	if err == nil {
		if sig.same(r.seen) && now.Sub(r.read) < r.set.HashInterval {
			return
		}
		var certPEM, keyPEM []byte
		if certPEM, keyPEM, err = boundedfile.PEMPair(r.certFile, r.keyFile); err == nil {
			r.seen, r.read = sig, now
			sum := pairSum(certPEM, keyPEM)
			if sum == r.sum || sum == r.badSum { // unchanged; or refused and logged
				return
			}
			var cert tls.Certificate
			if cert, err = tls.X509KeyPair(certPEM, keyPEM); err == nil {
				r.cert.Store(&cert)
				r.sum, r.badSum, r.failed = sum, [sha256.Size]byte{}, ""
				r.log.Info("TLS certificate reloaded", "serial", serialOf(&cert))
				return
			}
			r.badSum, r.failed = sum, "" // new content: logged even when the cause reads the same
		}
	}
	if msg := oneLine(err.Error()); msg != r.failed {
		r.log.Error("TLS certificate reload failed; serving the previous one", "error", msg)
		r.failed = msg
	}
}

// pairSum identifies a pair by its content.
func pairSum(certPEM, keyPEM []byte) [sha256.Size]byte {
	h := sha256.New()
	h.Write(certPEM)
	h.Write([]byte{0}) // PEM has no NUL: the boundary is unambiguous
	h.Write(keyPEM)
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

func (r *CertReloader) stat() (fileSig, error) {
	c, err := statID(r.certFile)
	if err != nil {
		return fileSig{}, err
	}
	k, err := statID(r.keyFile)
	if err != nil {
		return fileSig{}, err
	}
	return fileSig{c, k}, nil
}

func statID(path string) (fileID, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileID{}, fmt.Errorf("tls: %s", oneLine(err.Error()))
	}
	if !st.Mode().IsRegular() {
		return fileID{}, errors.New("tls: " + path + " is not a regular file")
	}
	return fileID{st}, nil
}

// oneLine keeps an error on one log line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// serialOf is the leaf's serial number in hex, for the log.
func serialOf(c *tls.Certificate) string {
	if c.Leaf == nil {
		return ""
	}
	return c.Leaf.SerialNumber.Text(16)
}
