package rtpcodec

import (
	"strings"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Headers as an independent parser (pion/rtp) reads them, and the bytes by hand.
func TestHeader(t *testing.T) {
	t.Parallel()
	b := make([]byte, HeaderSize+4)
	PutHeader(b, true, 96, 0xFFFE, 0xDEADBEEF, 0x01020304)
	copy(b[HeaderSize:], []byte{1, 2, 3, 4})
	assert.Equal(t, []byte{0x80, 0x80 | 96, 0xFF, 0xFE, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4}, b[:HeaderSize])
	var p rtp.Packet
	require.NoError(t, p.Unmarshal(b))
	assert.Equal(t, uint8(2), p.Version)
	assert.True(t, p.Marker)
	assert.False(t, p.Padding)
	assert.False(t, p.Extension)
	assert.Empty(t, p.CSRC)
	assert.Equal(t, uint8(96), p.PayloadType)
	assert.Equal(t, uint16(0xFFFE), p.SequenceNumber)
	assert.Equal(t, uint32(0xDEADBEEF), p.Timestamp)
	assert.Equal(t, uint32(0x01020304), p.SSRC)
	assert.Equal(t, []byte{1, 2, 3, 4}, p.Payload)

	PutHeader(b, false, 0, 1, 2, 3)
	require.NoError(t, p.Unmarshal(b))
	assert.False(t, p.Marker)
	assert.Equal(t, uint8(0), p.PayloadType)
}

func TestEvents(t *testing.T) {
	t.Parallel()
	for digit, code := range map[byte]uint8{'0': 0, '5': 5, '9': 9, '*': 10, '#': 11, 'A': 12, 'B': 13, 'C': 14, 'D': 15} {
		got, ok := EventCode(digit)
		assert.True(t, ok, "%q", digit)
		assert.Equal(t, code, got, "%q", digit)
	}
	for _, bad := range []byte{'a', 'E', ' ', 0} {
		_, ok := EventCode(bad)
		assert.False(t, ok, "%q", bad)
	}
	b := make([]byte, EventSize)
	PutEvent(b, 11, true, 10, 2000)
	assert.Equal(t, []byte{11, 0x80 | 10, 0x07, 0xD0}, b, "#, end, -10 dBm0, 2000 units")
	PutEvent(b, 3, false, 0xff, 65535)
	assert.Equal(t, []byte{3, 0x3f, 0xFF, 0xFF}, b, "volume is six bits; R is zero")
}

func TestNTPTime(t *testing.T) {
	t.Parallel()
	// 1970-01-01 is 2208988800 s after NTP's epoch; half a second is 2^31.
	assert.Equal(t, uint64(2208988800)<<32|1<<31, NTPTime(time.Unix(0, 500_000_000)))
	ts := time.Date(2026, 12, 7, 12, 0, 0, 250_000_000, time.UTC)
	n := NTPTime(ts)
	assert.Equal(t, uint64(ts.Unix()+2208988800), n>>32)
	assert.Equal(t, uint64(1<<30), n&0xFFFFFFFF)
}

// A compound packet as pion/rtcp reads it: SR (counts, NTP, RTP time), SDES
// with the CNAME, BYE.
func TestCompound(t *testing.T) {
	t.Parallel()
	s := SenderInfo{SSRC: 0xCAFEF00D, NTPTime: 0x0102030405060708, RTPTime: 160000, Packets: 250, Octets: 40000}
	for _, cname := range []string{"", "a", "ab", "abc", "a1b2c3d4-0000-4000-8000-123456789abc", strings.Repeat("x", 300)} {
		for _, bye := range []bool{false, true} {
			buf := make([]byte, MaxCompoundSize+10)
			n, err := PutCompound(buf, s, cname, bye)
			require.NoError(t, err)
			want := cname
			if len(want) > MaxCNAME {
				want = want[:MaxCNAME]
			}
			require.Equal(t, CompoundSize(want, bye), n)
			assert.Zero(t, n%4, "32-bit aligned")
			assert.LessOrEqual(t, n, MaxCompoundSize)
			pkts, err := rtcp.Unmarshal(buf[:n])
			require.NoError(t, err, "cname %q bye %v", cname, bye)
			if bye {
				require.Len(t, pkts, 3)
			} else {
				require.Len(t, pkts, 2)
			}
			sr, ok := pkts[0].(*rtcp.SenderReport)
			require.True(t, ok, "%T", pkts[0])
			assert.Equal(t, s.SSRC, sr.SSRC)
			assert.Equal(t, s.NTPTime, sr.NTPTime)
			assert.Equal(t, s.RTPTime, sr.RTPTime)
			assert.Equal(t, s.Packets, sr.PacketCount)
			assert.Equal(t, s.Octets, sr.OctetCount)
			assert.Empty(t, sr.Reports)
			sdes, ok := pkts[1].(*rtcp.SourceDescription)
			require.True(t, ok, "%T", pkts[1])
			require.Len(t, sdes.Chunks, 1)
			assert.Equal(t, s.SSRC, sdes.Chunks[0].Source)
			require.Len(t, sdes.Chunks[0].Items, 1)
			assert.Equal(t, rtcp.SDESCNAME, sdes.Chunks[0].Items[0].Type)
			assert.Equal(t, want, sdes.Chunks[0].Items[0].Text)
			if bye {
				g, ok := pkts[2].(*rtcp.Goodbye)
				require.True(t, ok, "%T", pkts[2])
				assert.Equal(t, []uint32{s.SSRC}, g.Sources)
			}
		}
	}
	_, err := PutCompound(make([]byte, 40), s, "cname", false)
	assert.ErrorIs(t, err, ErrShortBuffer)
}

func TestNothingAllocates(t *testing.T) {
	buf := make([]byte, MaxCompoundSize)
	s := SenderInfo{SSRC: 1}
	cname := "a1b2c3d4-0000-4000-8000-123456789abc"
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		PutHeader(buf, true, 0, 1, 2, 3)
		PutEvent(buf[HeaderSize:], 1, true, 10, 800)
		s.NTPTime = NTPTime(time.Now())
		PutCompound(buf, s, cname, true)
	}))
}
