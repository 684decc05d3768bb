package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/web"
)

func serveCmd() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the daemon",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, path, err := loadConfig(file)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			log, _ := newLogger(c.Log, os.Stderr)
			log.Info("mediafork starting", "config", orDefaults(path))
			return serve(ctx, c, log, nil)
		},
	}
	cmd.Flags().StringVar(&file, "config", "", "config file (default ./mediafork.yaml if present)")
	return cmd
}

func orDefaults(path string) string {
	if path == "" {
		return "(defaults)"
	}
	return path
}

func newLogger(c conf.Log, w *os.File) (*slog.Logger, *slog.LevelVar) {
	level := new(slog.LevelVar)
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts)), level
	}
	return slog.New(slog.NewTextHandler(w, opts)), level
}

// shutdownGrace bounds how long the daemon waits for forks to end on SIGTERM.
const shutdownGrace = 4 * time.Second

// serve runs the daemon until ctx is done; ready, if not nil, gets the ingest
// address once it listens.
func serve(ctx context.Context, c *conf.Config, log *slog.Logger, ready func(ingest net.Addr)) error {
	sender := mediafork.NewSender()
	registry := mediafork.NewRegistry(sender, c.Ingest.MaxForks, c.Fork.EndPacket, log)
	signer := mediafork.NewSigner([]byte(c.Ingest.Key))
	ingest := web.NewIngest(registry, signer, nil, ingestSettings(c), log)
	// The control plane (inbound/outbound ESL, rules) plugs in here: it starts
	// forks through the switch with URLs signed by signer, and answers the
	// ingest's call lookups (ingest.SetLookup).

	ln, err := net.Listen("tcp", c.Ingest.Listen)
	if err != nil {
		return fmt.Errorf("ingest: %w", err)
	}
	srv := &http.Server{Handler: ingest.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("ingest listening", "addr", ln.Addr().String(), "url", c.Ingest.URL)
	if ready != nil {
		ready(ln.Addr())
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("ingest: %w", err)
	}
	log.Info("shutting down: ending forks", "forks", registry.Len())
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := registry.StopAll(sctx, tlvcodec.ReasonShutdown); err != nil {
		log.Warn("forks did not all end in time", "left", registry.Len())
	}
	srv.Shutdown(sctx)
	ingest.Wait()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("mediafork stopped")
	return nil
}

func ingestSettings(c *conf.Config) web.IngestSettings {
	return web.IngestSettings{
		Token:           c.Ingest.Token,
		MaxMessageBytes: c.Ingest.MaxMessageBytes,
		Defaults:        c.Fork.Params(),
		Destinations:    c.DomainDestinations(),
	}
}
