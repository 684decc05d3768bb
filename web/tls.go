package web

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mediafork/mediafork/internal/boundedfile"
)

// isTLS reports whether r came over TLS: such a connection must stay on the
// goroutine reader (the epoll reader reads the socket's bytes as frames).
func isTLS(r *http.Request) bool { return r.TLS != nil }

// CertReloader serves a certificate from a pair of PEM files and takes new
// files without a restart: a handshake looks at the files' size, time and
// identity at most once per CheckInterval (CertSettings) and loads them when
// they changed (mtime has nanoseconds on Linux file systems). Each file is
// read only when it is a regular file of at most boundedfile.MaxPEM bytes:
// the handshakes wait while it is read. Looking on handshake needs no
// goroutine and follows whatever replaced the files (rename, symlink swap,
// in-place write). A pair that does not load (a half-written rotation) keeps
// the old certificate, with one log line per change seen.
type CertReloader struct {
	certFile, keyFile string
	every             time.Duration // CheckInterval
	log               *slog.Logger

	mu      sync.Mutex
	cert    *tls.Certificate
	sig     fileSig // of the files cert came from
	failed  fileSig // the last pair that did not load (logged once)
	checked time.Time
}

type fileSig struct{ cert, key fileID }

type fileID struct {
	size  int64
	mtime time.Time
	err   string // why it could not be looked at
}

// NewCertReloader loads the pair of s now: a server must not start with a
// certificate it cannot serve.
func NewCertReloader(s CertSettings, log *slog.Logger) (*CertReloader, error) {
	if err := s.resolve(); err != nil {
		return nil, err
	}
	certFile, keyFile := s.CertFile, s.KeyFile
	r := &CertReloader{certFile: certFile, keyFile: keyFile, every: s.CheckInterval, log: log.With("component", "tls", "cert_file", certFile)}
	sig, err := r.stat()
	if err != nil {
		return nil, err
	}
	cert, err := boundedfile.KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %s", oneLine(err.Error()))
	}
	r.cert, r.sig, r.checked = &cert, sig, time.Now()
	return r, nil
}

// TLSConfig serves the reloading certificate, HTTP/1.1 only (WebSocket
// upgrades are HTTP/1.1; mod_audio_fork and mod_audio_stream offer no ALPN).
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate, NextProtos: []string{"http/1.1"}}
}

// GetCertificate is tls.Config's: the current certificate, reloaded first
// when the files changed.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= r.every {
		r.checked = now
		r.reload()
	}
	return r.cert, nil
}

// reload loads the files when they differ from the loaded ones (r.mu held).
func (r *CertReloader) reload() {
	sig, err := r.stat()
	if err == nil {
		if sig == r.sig {
			return
		}
		var cert tls.Certificate
		if cert, err = boundedfile.KeyPair(r.certFile, r.keyFile); err == nil {
			r.cert, r.sig, r.failed = &cert, sig, fileSig{}
			r.log.Info("TLS certificate reloaded", "serial", serialOf(&cert))
			return
		}
	} else {
		sig = fileSig{cert: fileID{size: -1, err: err.Error()}} // each cause logged once too
	}
	if sig != r.failed {
		r.log.Error("TLS certificate reload failed; serving the previous one", "error", oneLine(err.Error()))
	}
	r.failed = sig
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
	return fileID{size: st.Size(), mtime: st.ModTime()}, nil
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
