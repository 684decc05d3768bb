package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// A subject is one thing measured: a binary, how the calls reach it, and
// which reader serves them. Every row measures every subject, one run of
// each in turn (interleaved), so that they share the machine's minutes.
type subject struct {
	label   string
	bin     string
	ingress string // ws, wss (TLS in mediafork) or haproxy (TLS in HAProxy, plain ingest)
	reader  string // "" (the binary's default) or goroutine (serve --ingest-reader goroutine)
	// protocol is the endpoint's output protocol, named in the subject's
	// label only when several are compared.
	protocol, shownProtocol string
	control                 bool
}

func (s subject) String() string {
	t := s.label + " (" + s.ingress
	if s.reader != "" {
		t += ", " + s.reader + " reader"
	}
	if s.shownProtocol != "" {
		t += ", to " + s.shownProtocol
	}
	return t + ")"
}

// subjects are -bin × -ingress × -protocol, then the -control (to the first
// protocol).
func subjects(bins, ingresses, protocols []string, control string) ([]subject, error) {
	var out []subject
	type named struct{ label, path string }
	var nb []named
	for _, b := range bins {
		label, path, ok := strings.Cut(b, "=")
		if !ok {
			label, path = filepath.Base(b), b
		}
		nb = append(nb, named{label, path})
	}
	for _, in := range ingresses {
		switch in {
		case "ws", "wss", "haproxy":
		default:
			return nil, fmt.Errorf("-ingress %q: ws, wss or haproxy", in)
		}
	}
	for _, p := range protocols {
		switch p {
		case "tlv", "rtp", "twilio", "audiofork":
		default:
			return nil, fmt.Errorf("-protocol %q: tlv, rtp, twilio or audiofork", p)
		}
	}
	shown := func(p string) string {
		if len(protocols) > 1 {
			return p
		}
		return ""
	}
	for _, b := range nb {
		for _, in := range ingresses {
			for _, p := range protocols {
				out = append(out, subject{label: b.label, bin: b.path, ingress: in, protocol: p, shownProtocol: shown(p)})
			}
		}
	}
	switch control {
	case "", "none":
	case "goroutine":
		for _, in := range ingresses {
			if in != "haproxy" {
				out = append(out, subject{label: "control " + nb[0].label, bin: nb[0].path, ingress: in, reader: "goroutine",
					protocol: protocols[0], shownProtocol: shown(protocols[0]), control: true})
			}
		}
	default:
		label, path, ok := strings.Cut(control, "=")
		if !ok {
			label, path = filepath.Base(control), control
		}
		out = append(out, subject{label: "control " + label, bin: path, ingress: "ws", protocol: protocols[0], shownProtocol: shown(protocols[0]), control: true})
	}
	return out, nil
}

// testCert is a throwaway CA and a leaf for 127.0.0.1, for wss:// runs.
type testCert struct {
	dir                      string
	certFile, keyFile, combo string // combo: the leaf and its key, as HAProxy takes them
	client                   *tls.Config
}

func newTestCert() (*testCert, error) {
	dir, err := os.MkdirTemp("", "mediafork-bench-tls")
	if err != nil {
		return nil, err
	}
	key := func() *ecdsa.PrivateKey { k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader); return k }
	caKey, leafKey := key(), key()
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "mediafork bench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	kder, _ := x509.MarshalECPrivateKey(leafKey)
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	c := &testCert{dir: dir, certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem"), combo: filepath.Join(dir, "combo.pem")}
	for _, f := range []struct {
		path string
		b    []byte
	}{{c.certFile, certPEM}, {c.keyFile, keyPEM}, {c.combo, append(append([]byte(nil), certPEM...), keyPEM...)}} {
		if err := os.WriteFile(f.path, f.b, 0o600); err != nil {
			return nil, err
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	// X25519 alone, as the modules' OpenSSL 3.0 (Debian 12) offers: Go's
	// client would add X25519MLKEM768, whose handshake makes the server
	// allocate some 10 KiB more (RSS/fork).
	c.client = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", CurvePreferences: []tls.CurveID{tls.X25519}}
	return c, nil
}

// haproxy is HAProxy terminating TLS in front of the plain ingest, in TCP
// mode (the least it can do for a WebSocket), preferring AES-128-GCM as
// crypto/tls does with Go's client: the same cipher as mediafork's wss://.
type haproxy struct {
	cmd  *exec.Cmd
	dir  string
	addr string
}

func startHAProxy(bin, ingest string, cert *testCert, addr string) (*haproxy, error) {
	dir, err := os.MkdirTemp("", "mediafork-bench-haproxy")
	if err != nil {
		return nil, err
	}
	cfg := fmt.Sprintf(`global
  maxconn 4096
  ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
defaults
  mode tcp
  timeout connect 5s
  timeout client 120s
  timeout server 120s
frontend wss
  bind %s ssl crt %s
  default_backend ingest
backend ingest
  server mediafork %s
`, addr, cert.combo, ingest)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(bin, "-db", "-f", path)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("haproxy (Debian: apt-get install haproxy): %w", err)
	}
	h := &haproxy{cmd: cmd, dir: dir, addr: addr}
	if err := waitListening(addr); err != nil {
		h.stop()
		return nil, err
	}
	return h, nil
}

func (h *haproxy) stop() {
	h.cmd.Process.Signal(syscall.SIGTERM)
	h.cmd.Wait()
	os.RemoveAll(h.dir)
}

// loadAvg is /proc/loadavg's three averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// waitQuiet waits until the 1-minute load average is below limit, at most
// max; it says on stderr what it waited for.
func waitQuiet(what string, limit float64, max time.Duration) {
	deadline := time.Now().Add(max)
	for {
		var l1 float64
		fmt.Sscan(loadAvg(), &l1)
		if l1 < limit {
			return
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "bench: %s: the load average stayed at %.2f (not below %.2f) for %s; starting anyway\n", what, l1, limit, max)
			return
		}
		fmt.Fprintf(os.Stderr, "bench: %s: waiting for the load average (%.2f) to fall below %.2f\n", what, l1, limit)
		time.Sleep(15 * time.Second)
	}
}
