package tlvdump

import (
	"bytes"
	"net"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// A DTMF packet is printed with its digit, duration and media time and
// counted; it makes no stream. One that does not parse is skipped as of an
// unknown type.
func TestDTMFPacketsPrinted(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	r, err := newReceiver(Options{Out: &out, Keep: true})
	require.NoError(t, err)
	from := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5}
	b, err := (&tlvcodec.DTMF{StreamID: 77, Direction: tlvcodec.RX, Digit: '#', DurationMs: 250, MediaTimeMs: 3500}).Marshal()
	require.NoError(t, err)
	r.Handle(b, from)
	bad := bytes.Clone(b)
	bad[8] = 'x'
	r.Handle(bad, from)
	assert.Contains(t, out.String(), "DTMF       stream=77 dir=RX digit=# duration_ms=250 media_time_ms=3500\n")
	assert.Contains(t, out.String(), "UNKNOWN    type=0x05 stream=77 len=15 (ignored)")
	c := r.Counts()
	assert.Equal(t, 1, c.DTMF)
	assert.Equal(t, 1, c.Unknown)
	assert.Zero(t, c.Invalid)
	assert.Empty(t, r.Streams(), "no stream made")
}
