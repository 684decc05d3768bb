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
// (each reloader has a goroutine, which closeCerts stops). On an error both
// listeners are closed, and the reloaders made.
func (d *daemon) useTLS(c *conf.Config) error {
	wrap := func(ln net.Listener, t conf.TLS, what string) (net.Listener, error) {
		if ln == nil || !t.Enabled() {
			return ln, nil
		}
		cr, err := web.NewCertReloader(web.CertSettings{CertFile: t.CertFile, KeyFile: t.KeyFile}, d.log.With("listener", what))
		if err != nil {
			return nil, fmt.Errorf("%s.tls: %w", what, err)
		}
		d.certs = append(d.certs, cr)
		return tls.NewListener(ln, cr.TLSConfig()), nil
	}
	in, err := wrap(d.ingestLn, c.Ingest.TLS, "ingest")
	var api net.Listener
	if err == nil {
		api, err = wrap(d.apiLn, c.API.TLS, "api")
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
