package mediafork

import (
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
		{"end hangup", func(b []byte) []byte { return fr.End(b, DirRX, 50, EndHangup) },
			"03" + "000d" + "01020304" + "01" + "00000032" + "01"},
		{"end media lost", func(b []byte) []byte { return fr.End(b, DirMixed, 0, EndMediaLost) },
			"03" + "000d" + "01020304" + "03" + "00000000" + "03"},
		{"end shutdown", func(b []byte) []byte { return fr.End(b, DirTX, 0xFFFFFFFF, EndShutdown) },
			"03" + "000d" + "01020304" + "02" + "ffffffff" + "04"},
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

func TestFramerAllocatesNothing(t *testing.T) {
	var fr Framer = &TLVFramer{StreamID: 9}
	b := make([]byte, 512)
	md := Metadata{ChannelID: strings.Repeat("é", 40)}
	p := Params{Mix: Stereo, Rate: 8000, Encoding: PCMU, FrameMs: 20}
	now := time.Now()
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		fr.Signaling(b, DirRX, md, now)
		fr.Format(b, DirRX, p)
		fr.Audio(b, DirTX, 7, 160)
		fr.End(b, DirTX, 7, EndStopped)
	}))
}

func TestFramerShortBufferIsABug(t *testing.T) {
	t.Parallel()
	fr := &TLVFramer{StreamID: 9}
	require.Panics(t, func() { fr.End(make([]byte, 12), DirRX, 0, EndHangup) })
	require.Panics(t, func() { fr.Format(make([]byte, 15), DirRX, Params{Encoding: L16}) })
}
