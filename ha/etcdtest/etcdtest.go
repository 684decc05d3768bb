// Package etcdtest runs a real etcd server inside a test process (etcd's own
// embed package): one member, its data in a temporary directory, serving its
// clients on a loopback port the kernel picks (port 0, read back).
package etcdtest

import (
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Server is a running etcd.
type Server struct {
	Endpoint string // the client URL: http://127.0.0.1:<port>
	e        *embed.Etcd
}

// Start runs an etcd for t; it stops when t ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := StartIn(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// StartIn runs an etcd keeping its data in dir.
func StartIn(dir string) (*Server, error) {
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(dir, "data")
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.LogLevel = "error"
	// One member: it never dials its peer URL, so port 0 stands there too.
	peer := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	client := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Faster than the defaults, for tests on a busy machine.
	cfg.TickMs, cfg.ElectionMs = 50, 500
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		return nil, fmt.Errorf("etcd not ready in 30s")
	}
	return &Server{Endpoint: "http://" + e.Clients[0].Addr().String(), e: e}, nil
}

// Close stops the server.
func (s *Server) Close() { s.e.Close() }
