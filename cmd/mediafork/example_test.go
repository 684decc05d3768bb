package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// The README's pair with a real FreeSWITCH: `tlvdump --listen ... --wav ...`
// (no --encoding) and `serve --config conf/mediafork.example.yaml`. The
// example rule sends pcmu; the receiver learns it from the format packet and
// decodes the tones at their own pitch.
func TestExampleConfigPairDecodesRight(t *testing.T) {
	s, _ := prepareStack(t, 1)
	c, err := conf.Load("../../conf/mediafork.example.yaml", func(string) (string, bool) { return "", false })
	require.NoError(t, err)
	c.FreeSWITCH[0].Address = s.switches[0].Addr()
	ingest, outbound, api := s.ports.bind(), s.ports.bind(), s.ports.bind()
	c.Ingest.Listen, c.Ingest.URL, c.Outbound.Listen, c.API.Listen = ingest, "ws://"+ingest, outbound, api
	s.ingest, s.outbound, s.api = ingest, outbound, api
	p := c.Profiles["analytics"]
	p.Endpoints = []string{s.sink.Addr().String()} // where tlvdump listens
	c.Profiles["analytics"] = p
	s.start(c, "")
	require.Eventually(t, func() bool { return s.d.switchesUp()["fs1"] }, 5*time.Second, 10*time.Millisecond)

	s.switches[0].Answer(fssim.CallOptions{Dest: "7002", ReadHz: 440, WriteHz: 1000}) // the example dialplan's rule-forked extension
	streams := s.waitPackets("Support-7002", 2, 25)
	for _, st := range streams {
		require.NotNil(t, st.Format, "a format packet came")
		assert.Equal(t, mediafork.PCMU, st.Encoding, "decoded as the format packet says")
		want := map[tlvcodec.Direction]float64{tlvcodec.RX: 440, tlvcodec.TX: 1000}[st.Direction]
		assert.InDelta(t, want, st.DominantHz(st.Rate), 10, "%s at its own pitch", st.Direction)
		assert.Empty(t, st.Warnings)
	}
}
