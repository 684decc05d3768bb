package web

import (
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/transport/udp"
)

// A reload swaps in what reloads (README, Reload) and keeps the rest as the
// ingest was built: the limits take effect at the next start. A bad reload
// changes nothing.
func TestIngestReloadKeepsWhatIsFixed(t *testing.T) {
	t.Parallel()
	in, err := NewIngest(mediafork.NewRegistry(udp.New(), 10, true, quiet), mediafork.NewSigner([]byte("k")), nil,
		IngestSettings{Token: "old", MediaTimeout: time.Minute}, quiet)
	require.NoError(t, err)
	s := in.settings.Load()
	assert.Equal(t, 64<<10, s.MaxMessageBytes, "the default")
	assert.Equal(t, 30*time.Second, s.FirstMessageTimeout, "the default")

	require.NoError(t, in.Reload(IngestSettings{Token: "new", MaxMessageBytes: 1000, RefuseHandTyped: true, MediaTimeout: time.Second}))
	s = in.settings.Load()
	assert.Equal(t, "new", s.Token)
	assert.Equal(t, 1000, s.MaxMessageBytes)
	assert.True(t, s.RefuseHandTyped)
	assert.Equal(t, time.Minute, s.MediaTimeout, "limits.ingest_media_timeout takes effect at the next start")

	assert.ErrorContains(t, in.Reload(IngestSettings{Token: "bad", MaxMessageBytes: -1}), "MaxMessageBytes is negative")
	assert.Equal(t, "new", in.settings.Load().Token, "a refused reload changes nothing")
}

// Bad settings are refused when a component is built, every problem at once.
func TestBadSettingsRefusedWhenBuilt(t *testing.T) {
	t.Parallel()
	reg := mediafork.NewRegistry(udp.New(), 10, true, quiet)
	_, err := NewIngest(reg, mediafork.NewSigner(nil), nil, IngestSettings{MediaTimeout: -time.Second, FirstMessageTimeout: -1}, quiet)
	assert.EqualError(t, err, "ingest settings: FirstMessageTimeout is negative (-1ns)\ningest settings: MediaTimeout is negative (-1s)")
	in, err := NewIngest(reg, mediafork.NewSigner(nil), nil, IngestSettings{}, quiet)
	require.NoError(t, err)
	assert.ErrorContains(t, in.UsePoller(ReaderSettings{RoundInterval: 3 * time.Millisecond, MaxRoundInterval: 2 * time.Millisecond}),
		"MaxRoundInterval is below RoundInterval")
	_, err = NewConsole(reg, func() map[string]bool { return nil }, ConsoleSettings{MaxClients: -1}, slog.New(slog.DiscardHandler))
	assert.ErrorContains(t, err, "console settings: MaxClients is negative")
	_, err = NewCertReloader(CertSettings{CertFile: "x.pem"}, quiet)
	assert.ErrorContains(t, err, "must both be set")
}
