package fssim

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
)

// The channel variables the modules read for wss:// URLs, as the real switch
// showed them (../shared/freeswitch/captures/tls, and the realswitch tests).
const (
	// mod_audio_fork (libwebsockets; read at start): forgive a self-signed
	// leaf (not a certificate from an unknown CA), skip the host name check.
	VarForkAllowSelfSigned = "MOD_AUDIO_FORK_ALLOW_SELFSIGNED"
	VarForkSkipHostname    = "MOD_AUDIO_FORK_SKIP_SERVER_CERT_HOSTNAME_CHECK"
	// mod_audio_stream (libwsc, one context per connection): the trust,
	// SYSTEM (the default: the switch's store), NONE (no verification) or a
	// PEM file; and no host name check when true.
	VarStreamCAFile          = "STREAM_TLS_CA_FILE"
	VarStreamDisableHostname = "STREAM_TLS_DISABLE_HOSTNAME_VALIDATION"
)

// Errors the modules report for a certificate they refuse (the real texts).
const (
	// mod_audio_fork's connect_failed reason, the same for every TLS failure.
	forkTLSFailure = "connect SSL err 1: error:00000001:lib(0)::reason(1)"
	// mod_audio_stream's error code 9 (SSL_ERROR) text.
	streamTLSFailure = "TLS error: error:0A000086:SSL routines::certificate verify failed"
)

// errCertificate is a server certificate the module refused.
var errCertificate = errors.New("certificate verify failed")

// truthy is FreeSWITCH's switch_true.
func truthy(v string) bool {
	switch strings.ToLower(v) {
	case "yes", "on", "true", "t", "enabled", "active", "allow", "1":
		return true
	}
	return false
}

// forkTLS is what mod_audio_fork trusts on c for a server named host: the
// switch's store (base; nil: the system roots), with the call's variables.
func (c *Call) forkTLS(base *tls.Config, host string) *tls.Config {
	skipHost := truthy(c.Var(VarForkSkipHostname))
	return verifying(base, rootsOf(base), truthy(c.Var(VarForkAllowSelfSigned)), func(leaf *x509.Certificate) error {
		if skipHost {
			return nil
		}
		return leaf.VerifyHostname(host) // an IP host against the IP SANs, as OpenSSL does
	})
}

// streamTLS is what mod_audio_stream trusts on c for a server named host.
// libwsc matches the host against the certificate's DNS names only: an IP
// SAN is not enough.
func (c *Call) streamTLS(base *tls.Config, host string) *tls.Config {
	roots := rootsOf(base)
	switch file := c.Var(VarStreamCAFile); file {
	case "", "SYSTEM":
	case "NONE":
		cfg := cloneOf(base)
		cfg.InsecureSkipVerify = true
		return cfg
	default:
		// A file that does not load trusts nothing: the server's certificate
		// is refused (what the module says then is not recorded).
		roots = x509.NewCertPool()
		if pem, err := os.ReadFile(file); err == nil {
			roots.AppendCertsFromPEM(pem)
		}
	}
	skipHost := truthy(c.Var(VarStreamDisableHostname))
	return verifying(base, roots, false, func(leaf *x509.Certificate) error {
		if skipHost {
			return nil
		}
		for _, name := range leaf.DNSNames {
			if strings.EqualFold(name, host) {
				return nil
			}
		}
		return fmt.Errorf("%q is not among the DNS names %v", host, leaf.DNSNames)
	})
}

// verifying is base verifying the server's chain against roots (nil: the
// system's), forgiving a self-signed leaf when allowSelfSigned, then its name
// with checkHost. A refusal wraps errCertificate.
func verifying(base *tls.Config, roots *x509.CertPool, allowSelfSigned bool, checkHost func(*x509.Certificate) error) *tls.Config {
	cfg := cloneOf(base)
	cfg.InsecureSkipVerify = true // verified below, as the module does
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return fmt.Errorf("%w: no certificate", errCertificate)
		}
		leaf := cs.PeerCertificates[0]
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter}); err != nil &&
			!(allowSelfSigned && selfSigned(leaf)) {
			return fmt.Errorf("%w: %v", errCertificate, err)
		}
		if err := checkHost(leaf); err != nil {
			return fmt.Errorf("%w: %v", errCertificate, err)
		}
		return nil
	}
	return cfg
}

// selfSigned is a certificate that is its own issuer (OpenSSL's error 18,
// which MOD_AUDIO_FORK_ALLOW_SELFSIGNED forgives), CA or not.
func selfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) == nil
}

func rootsOf(base *tls.Config) *x509.CertPool {
	if base == nil {
		return nil
	}
	return base.RootCAs
}

func cloneOf(base *tls.Config) *tls.Config {
	if base == nil {
		return &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return base.Clone()
}
