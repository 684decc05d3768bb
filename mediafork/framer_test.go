package mediafork

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The TLV framer's packets, byte for byte, written out by hand from SPEC §1.
func TestTLVFramerBytes(t *testing.T) {
	t.Parallel()
	fr := &TLVFramer{StreamID: 0x01020304}
	start := time.Date(2024, 1, 15, 12, 34, 56, 0, time.UTC) // 0x65A52670
	md := Metadata{ChannelID: "TEST-CHANNEL", Exten: "8888", CallerID: "+1", CalledID: "+2"}
	hexField := func(s string, n int) string { return hex.EncodeToString([]byte(s)) + strings.Repeat("00", n-len(s)) }
	payload := []byte{0xAA, 0xBB, 0xCC}

	for _, tc := range []struct {
		name  string
		build func(b []byte) []byte
		want  string
	}{
		{"signaling RX", func(b []byte) []byte { return fr.Signaling(b, DirRX, md, start) },
			"01" + "00ac" + "01020304" + "01" + hexField("TEST-CHANNEL", 64) + hexField("8888", 32) +
				hexField("+1", 32) + hexField("+2", 32) + "65a52670"},
		{"signaling TX", func(b []byte) []byte { return fr.Signaling(b, DirTX, md, start) },
			"01" + "00ac" + "01020304" + "02" + hexField("TEST-CHANNEL", 64) + hexField("8888", 32) +
				hexField("+1", 32) + hexField("+2", 32) + "65a52670"},
		{"format l16 8k 20ms", func(b []byte) []byte {
			return fr.Format(b, DirRX, Params{Mix: Stereo, Rate: 8000, Encoding: L16, FrameMs: 20})
		}, "04" + "0010" + "01020304" + "01" + "01" + "00001f40" + "01" + "0014"},
		{"format l16be 16k 30ms mixed", func(b []byte) []byte {
			return fr.Format(b, DirMixed, Params{Mix: Mixed, Rate: 16000, Encoding: L16BE, FrameMs: 30})
		}, "04" + "0010" + "01020304" + "03" + "02" + "00003e80" + "01" + "001e"},
		{"format pcmu 8k 20ms", func(b []byte) []byte {
			return fr.Format(b, DirTX, Params{Mix: Stereo, Rate: 8000, Encoding: PCMU, FrameMs: 20})
		}, "04" + "0010" + "01020304" + "02" + "03" + "00001f40" + "01" + "0014"},
		{"format pcma 48k 10ms", func(b []byte) []byte {
			return fr.Format(b, DirRX, Params{Mix: Mono, Rate: 48000, Encoding: PCMA, FrameMs: 10})
		}, "04" + "0010" + "01020304" + "01" + "04" + "0000bb80" + "01" + "000a"},
		{"audio", func(b []byte) []byte {
			copy(b[fr.AudioHeaderSize():], payload)
			return fr.Audio(b, DirTX, 0x0A0B0C0D, len(payload))
		}, "02" + "000f" + "01020304" + "02" + "0a0b0c0d" + "aabbcc"},
		{"end hangup", func(b []byte) []byte { return fr.EndPacket(b, DirRX, 50, EndHangup) },
			"03" + "000d" + "01020304" + "01" + "00000032" + "01"},
		{"end media lost", func(b []byte) []byte { return fr.EndPacket(b, DirMixed, 0, EndMediaLost) },
			"03" + "000d" + "01020304" + "03" + "00000000" + "03"},
		{"end shutdown", func(b []byte) []byte { return fr.EndPacket(b, DirTX, 0xFFFFFFFF, EndShutdown) },
			"03" + "000d" + "01020304" + "02" + "ffffffff" + "04"},
		{"dtmf #", func(b []byte) []byte {
			return fr.DTMFPacket(b, DirRX, DTMF{Digit: '#', Duration: 250 * time.Millisecond, MediaTime: 3500 * time.Millisecond})
		}, "05" + "000f" + "01020304" + "01" + "23" + "00fa" + "00000dac"},
		{"dtmf D capped", func(b []byte) []byte {
			return fr.DTMFPacket(b, DirRX, DTMF{Digit: 'D', Duration: 2 * time.Minute, MediaTime: 2000 * time.Hour})
		}, "05" + "000f" + "01020304" + "01" + "44" + "ffff" + "ffffffff"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := make([]byte, fr.MaxControlSize()+8)
			for i := range b {
				b[i] = 0xEE // the framer must write every byte of its packet
			}
			got := tc.build(b)
			assert.Equal(t, tc.want, hex.EncodeToString(got))
			assert.LessOrEqual(t, len(got), fr.MaxControlSize())
		})
	}
}

// captured is an Emitter that keeps every control packet with its route.
type captured struct {
	routes []Route
	pkts   [][]byte
}

func (c *captured) Emit(r Route, pkt []byte) {
	c.routes = append(c.routes, r)
	c.pkts = append(c.pkts, bytes.Clone(pkt))
}

// nopEmitter drops what it is given (allocation tests).
type nopEmitter struct{}

func (nopEmitter) Emit(Route, []byte) {}

// What the TLV framer sends at start, on DTMF and at the end, in order and
// on each direction's media route; with every extension off, ForkStream's
// signaling alone.
func TestTLVFramerSends(t *testing.T) {
	t.Parallel()
	start := time.Date(2024, 1, 15, 12, 34, 56, 0, time.UTC)
	md := Metadata{ChannelID: "c"}
	p := Params{Mix: Stereo, Rate: 8000, Encoding: PCMU, FrameMs: 20}
	fr := &TLVFramer{StreamID: 5}
	var c captured
	dirs := []Direction{DirRX, DirTX}
	fr.Start(&c, dirs, md, p, start)
	fr.DTMF(&c, DirRX, DTMF{Digit: '7', Duration: 100 * time.Millisecond, MediaTime: time.Second})
	fr.End(&c, dirs, []uint32{9, 8}, EndStopped)
	types := []byte{}
	for _, pkt := range c.pkts {
		types = append(types, pkt[0])
	}
	assert.Equal(t, []byte{1, 4, 1, 4, 5, 3, 3}, types)
	assert.Equal(t, []Route{MediaRoute(DirRX), MediaRoute(DirRX), MediaRoute(DirTX), MediaRoute(DirTX), MediaRoute(DirRX),
		MediaRoute(DirRX), MediaRoute(DirTX)}, c.routes)
	assert.Equal(t, fr.Signaling(make([]byte, 172), DirTX, md, start), c.pkts[2])
	assert.Equal(t, fr.EndPacket(make([]byte, 13), DirTX, 8, EndStopped), c.pkts[6])

	off := &TLVFramer{StreamID: 5, Extensions: Extensions{NoEnd: true, NoFormat: true, NoDTMF: true}}
	var o captured
	off.Start(&o, dirs, md, p, start)
	off.DTMF(&o, DirRX, DTMF{Digit: '7'})
	off.End(&o, dirs, []uint32{9, 8}, EndStopped)
	require.Len(t, o.pkts, 2)
	assert.Equal(t, c.pkts[0], o.pkts[0])
	assert.Equal(t, c.pkts[2], o.pkts[1])
}

func TestFramerAllocatesNothing(t *testing.T) {
	var fr Framer = &TLVFramer{StreamID: 9}
	b := make([]byte, 512)
	md := Metadata{ChannelID: strings.Repeat("é", 40)}
	p := Params{Mix: Stereo, Rate: 8000, Encoding: PCMU, FrameMs: 20}
	now := time.Now()
	dirs, last := []Direction{DirRX, DirTX}, []uint32{7, 7}
	var e nopEmitter
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		fr.Start(e, dirs, md, p, now)
		fr.Audio(b, DirTX, 7, 160)
		fr.DTMF(e, DirRX, DTMF{Digit: '1', Duration: time.Second})
		fr.End(e, dirs, last, EndStopped)
	}))
}

func TestFramerShortBufferIsABug(t *testing.T) {
	t.Parallel()
	fr := &TLVFramer{StreamID: 9}
	require.Panics(t, func() { fr.EndPacket(make([]byte, 12), DirRX, 0, EndHangup) })
	require.Panics(t, func() { fr.Format(make([]byte, 15), DirRX, Params{Encoding: L16}) })
	require.Panics(t, func() { fr.DTMFPacket(make([]byte, 15), DirRX, DTMF{Digit: 'x'}) })
}
