package web

import (
	"context"
	"io"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/tlvcodec"
)

// A hand-typed fork asking for a rate above 48 kHz is refused before the
// upgrade, naming the bound: it never reaches a receiver as a format packet
// saying 1,600,000 Hz (issue 20, finding 2). 48 kHz itself is served, and
// its format packet says so.
func TestIngestRefusesRatesAbove48k(t *testing.T) {
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		for _, rate := range []string{"1600k", "1600000", "56000", "64k", "4294967296"} {
			a, err := fssim.DialAudioFork(context.Background(), r.url("/fork/u1?profile=analytics&mix=mono&rate="+rate), r.opts(fssim.AudioForkOptions{}))
			require.ErrorIs(t, err, websocket.ErrBadHandshake, rate)
			require.NotNil(t, a.Response, rate)
			assert.Equal(t, 400, a.Response.StatusCode, rate)
			body, _ := io.ReadAll(a.Response.Body)
			assert.Contains(t, string(body), "is above 48000 Hz, the highest rate FreeSWITCH runs a channel at", rate)
		}
		assert.Equal(t, 0, r.registry.Len())

		a := r.dial("/fork/u2?profile=analytics&mix=mono&rate=48k", fssim.AudioForkOptions{})
		a.Send(make([]byte, 1920)) // 20 ms at 48 kHz
		a.Stop("")
		ended := r.waitEnded(1)
		require.Len(t, ended, 1)
		require.NotNil(t, ended[0].Format)
		assert.Equal(t, uint32(48000), ended[0].Format.SampleRate)
		assert.Equal(t, tlvcodec.RX, ended[0].Direction)
		for _, s := range r.sink.Streams() {
			require.NotNil(t, s.Format)
			assert.LessOrEqual(t, s.Format.SampleRate, uint32(48000), "no format packet above 48 kHz reached the receiver")
		}
	})
}
