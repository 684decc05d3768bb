package main

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/web"
)

// useTLS puts TLS on the ingest (wss://) and API (HTTPS) listeners the config
// gives certificates for; the certificates reload when their files change
// (each reloader has a goroutine, which closeCerts stops). The ingest's is
// the ingest's own (web.Ingest.TLSListener: with the epoll reader, it
// decrypts the records; call after UsePoller). On an error both listeners are
// closed, and the reloaders made.
func (d *daemon) useTLS(c *conf.Config) error {
	wrap := func(ln net.Listener, t conf.TLS, what string, listen func(net.Listener, *tls.Config) (net.Listener, error)) (net.Listener, error) {
		if ln == nil || !t.Enabled() {
			return ln, nil
		}
		cr, err := web.NewCertReloader(web.CertSettings{CertFile: t.CertFile, KeyFile: t.KeyFile}, d.log.With("listener", what))
		if err != nil {
			return nil, fmt.Errorf("%s.tls: %w", what, err)
		}
		d.certs = append(d.certs, cr)
		tln, err := listen(ln, cr.TLSConfig())
		if err != nil {
			return nil, fmt.Errorf("%s.tls: %w", what, err)
		}
		return tln, nil
	}
	in, err := wrap(d.ingestLn, c.Ingest.TLS, "ingest", d.ingest.TLSListener)
	var api net.Listener
	if err == nil {
		api, err = wrap(d.apiLn, c.API.TLS, "api", func(ln net.Listener, cfg *tls.Config) (net.Listener, error) {
			return tls.NewListener(ln, cfg), nil
		})
	}
	if err != nil {
		d.ingestLn.Close()
		if d.apiLn != nil {
			d.apiLn.Close()
		}
		d.closeCerts()
		return err
	}
	d.ingestLn, d.apiLn = in, api
	return nil
}

// closeCerts stops the certificate reloaders.
func (d *daemon) closeCerts() {
	for _, cr := range d.certs {
		cr.Close()
	}
	d.certs = nil
}
