package main

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/internal/sdnotify"
)

// watchConfig reloads on SIGHUP (hup, already registered with signal.Notify)
// and when the config file changes, until ctx is done.
func (d *daemon) watchConfig(ctx context.Context, hup chan os.Signal) {
	defer signal.Stop(hup)
	var events <-chan fsnotify.Event
	if d.path != "" {
		if w, err := fsnotify.NewWatcher(); err != nil {
			d.log.Warn("cannot watch the config file; reload with SIGHUP", "error", err)
		} else {
			defer w.Close()
			// Watch the directory: editors and config managers replace the file.
			if err := w.Add(filepath.Dir(d.path)); err != nil {
				d.log.Warn("cannot watch the config file; reload with SIGHUP", "error", err)
			}
			events = w.Events
		}
	}
	var debounce <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			d.reload("SIGHUP")
		case ev := <-events:
			if filepath.Clean(ev.Name) == filepath.Clean(d.path) && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce = time.After(200 * time.Millisecond) // one reload for a burst of writes
			}
		case <-debounce:
			debounce = nil
			d.reload("file changed")
		}
	}
}

// reload loads the config again and swaps in what can change while running,
// each component through its one Reload (or Set) method: rules, profiles,
// allow list, fork defaults, tokens, ingest.max_forks and
// ingest.max_message_bytes, listen_in, log level. An invalid file is refused
// with one log line; the running config stays.
func (d *daemon) reload(why string) {
	d.notify(sdnotify.Reloading, "reloading the config: "+why)
	defer func() { d.notify(sdnotify.Ready, d.listenStatus()) }()
	if d.path == "" {
		d.log.Warn("config reload: no config file to reload", "why", why)
		d.reloads.Record(false, time.Now())
		return
	}
	c, err := conf.Load(d.path, nil)
	if err != nil {
		d.log.Error("config reload refused; the running config stays", "why", why, "error", err)
		d.reloads.Record(false, time.Now())
		return
	}
	ingest := d.ingestSettings(c)
	// Checked by conf already; a refusal here would be a bug, and changes nothing.
	if err := d.ingest.Reload(ingest); err != nil {
		d.log.Error("config reload refused; the running config stays", "why", why, "error", err)
		d.reloads.Record(false, time.Now())
		return
	}
	old := d.cfg.Load()
	d.cfg.Store(c)
	d.orchestrator.SetPolicy(d.tracked(d.policy(c)))
	d.registry.SetStreamEndpoints(d.destinations(c))
	d.registry.SetMax(c.Ingest.MaxForks)
	d.api.Reload(apiSettings(c))
	d.console.Reload(consoleSettings(c))
	d.level.UnmarshalText([]byte(c.Log.Level))
	for key, same := range map[string]bool{
		"freeswitch":         reflect.DeepEqual(old.FreeSWITCH, c.FreeSWITCH),
		"ingest.listen":      old.Ingest.Listen == c.Ingest.Listen,
		"ingest.key":         old.Ingest.Key == c.Ingest.Key,
		"outbound.listen":    old.Outbound.Listen == c.Outbound.Listen,
		"api.listen":         old.API.Listen == c.API.Listen,
		"log.format":         old.Log.Format == c.Log.Format,
		"fork.end_packet":    old.Fork.EndPacket == c.Fork.EndPacket,
		"fork.format_packet": old.Fork.FormatPacket == c.Fork.FormatPacket,
		"fork.dtmf_packet":   old.Fork.DTMFPacket == c.Fork.DTMFPacket,
		"fork.gap_packet":    old.Fork.GapPacket == c.Fork.GapPacket,
		"fork.checkpoint":    old.Fork.Checkpoint == c.Fork.Checkpoint,
		"ha":                 reflect.DeepEqual(old.HA, c.HA),
		"ingest.tls":         old.Ingest.TLS == c.Ingest.TLS, // the files' contents reload by themselves
		"api.tls":            old.API.TLS == c.API.TLS,
		"limits":             old.Limits == c.Limits, // given to the components when they are built (serve.go)
	} {
		if !same {
			d.log.Warn("config reload: this key takes effect at the next start", "key", key)
		}
	}
	d.reloads.Record(true, time.Now())
	d.log.Info("config reloaded", "why", why, "rules", len(c.Rules), "profiles", len(c.Profiles))
}
