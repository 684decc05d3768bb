package esl

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Bad settings are refused when a Client or Outbound is built; zero fields
// take their defaults.
func TestSettingsDefaultsAndRefusals(t *testing.T) {
	t.Parallel()
	c, err := NewClient("fs1", "127.0.0.1:1", "ClueCon", &recorder{}, ClientSettings{BackoffMin: time.Second}, discardLog())
	if assert.NoError(t, err) {
		assert.Equal(t, ClientSettings{ConnSettings: ConnSettings{CommandTimeout: 5 * time.Second, HandshakeTimeout: 5 * time.Second,
			MaxQueuedEvents: 10000, MaxQueuedBytes: 64 << 20}, BackoffMin: time.Second, BackoffMax: 30 * time.Second,
			StableAfter: 10 * time.Second}, c.set)
	}
	_, err = NewClient("fs1", "127.0.0.1:1", "ClueCon", &recorder{}, ClientSettings{BackoffMin: time.Minute, BackoffMax: time.Second}, discardLog())
	assert.EqualError(t, err, "esl client settings: BackoffMax is below BackoffMin")
	_, err = ListenOutbound("127.0.0.1:0", func(context.Context, *OutboundCall) {}, OutboundSettings{MaxConns: -1,
		ConnSettings: ConnSettings{MaxQueuedEvents: -2}}, discardLog())
	assert.EqualError(t, err, "esl outbound settings: MaxQueuedEvents is negative (-2)\nesl outbound settings: MaxConns is negative (-1)")
}
