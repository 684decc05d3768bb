package tlvdump

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

func tone(n, hz, rate int) []byte {
	var b []byte
	for i := 0; i < n; i++ {
		v := int16(8000 * sinApprox(float64(hz)*float64(i)/float64(rate)))
		b = binary.LittleEndian.AppendUint16(b, uint16(v))
	}
	return b
}

func sinApprox(turns float64) float64 {
	x := turns - float64(int(turns))
	// a triangle wave is enough for a dominant-frequency check
	switch {
	case x < 0.25:
		return 4 * x
	case x < 0.75:
		return 2 - 4*x
	}
	return 4*x - 4
}

func TestReceiverOverUDP(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	r, err := Listen("127.0.0.1:0", Options{WavDir: dir, Out: &out, Keep: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()

	conn, err := net.DialUDP("udp", nil, r.Addr())
	require.NoError(t, err)
	defer conn.Close()
	send := func(p interface{ Marshal() ([]byte, error) }) {
		b, merr := p.Marshal()
		require.NoError(t, merr)
		_, err = conn.Write(b)
		require.NoError(t, err)
		time.Sleep(time.Millisecond) // keep loopback order
	}
	send(&tlvcodec.Signaling{StreamID: 42, Direction: tlvcodec.RX, ChannelID: "TEST-CHANNEL", Exten: "8888", CallerID: "+1", CalledID: "+2", Timestamp: 1705322096})
	audio := tone(8000, 440, 8000)
	seqs := []uint32{1, 2, 3, 5, 4, 6, 6}
	for _, s := range seqs {
		i := int(s-1) * 320
		send(&tlvcodec.Audio{StreamID: 42, Direction: tlvcodec.RX, Sequence: s, Payload: audio[i : i+320]})
	}
	for s := uint32(7); s <= 25; s++ {
		i := int(s-1) * 320
		send(&tlvcodec.Audio{StreamID: 42, Direction: tlvcodec.RX, Sequence: s, Payload: audio[i : i+320]})
	}
	send(&tlvcodec.End{StreamID: 42, Direction: tlvcodec.RX, LastSequence: 25, Reason: tlvcodec.ReasonStopped})
	conn.Write([]byte{1, 2, 3}) // garbage
	require.Eventually(t, func() bool { return r.Invalid() == 1 }, 2*time.Second, 5*time.Millisecond)
	cancel()
	require.NoError(t, <-done)

	streams := r.Streams()
	require.Len(t, streams, 1)
	s := streams[0]
	assert.Equal(t, 26, s.Packets)
	assert.Equal(t, 1, s.Reordered)
	assert.Equal(t, 1, s.Duplicates)
	assert.Equal(t, 0, s.Missing, "the late packet filled the gap")
	assert.Equal(t, uint32(25), s.LastSeq)
	assert.Equal(t, tlvcodec.ReasonStopped, s.End.Reason)
	assert.InDelta(t, 440, s.DominantHz(8000), 10)

	text := out.String()
	assert.Contains(t, text, `SIGNALING  stream=42 dir=RX len=172 channel="TEST-CHANNEL" exten="8888" caller="+1" called="+2" ts=2024-01-15T12:34:56Z`)
	assert.Contains(t, text, "GAP        stream=42 dir=RX expected=4 got=5 missing=1")
	assert.Contains(t, text, "REORDER    stream=42 dir=RX seq=4 after=5")
	assert.Contains(t, text, "DUPLICATE  stream=42 dir=RX seq=6")
	assert.Contains(t, text, "END        stream=42 dir=RX last_seq=25 reason=stopped")
	assert.Contains(t, text, "INVALID")

	var sum bytes.Buffer
	r.WriteSummary(&sum)
	assert.Contains(t, sum.String(), "SUMMARY 1 stream(s), 1 direction(s)")
	assert.Contains(t, sum.String(), "packets=26")
	assert.Contains(t, sum.String(), "dominant=440Hz")
	assert.Contains(t, sum.String(), "TOTAL packets=26 bytes=8320 missing=0 reordered=1 invalid=1")

	// The WAV file: a correct 16-bit mono header and every payload byte.
	wav, err := os.ReadFile(filepath.Join(dir, "stream-42-RX.wav"))
	require.NoError(t, err)
	require.Len(t, wav, 44+26*320)
	assert.Equal(t, "RIFF", string(wav[0:4]))
	assert.Equal(t, uint32(len(wav)-8), binary.LittleEndian.Uint32(wav[4:]))
	assert.Equal(t, "WAVEfmt ", string(wav[8:16]))
	assert.Equal(t, uint16(1), binary.LittleEndian.Uint16(wav[20:]), "PCM")
	assert.Equal(t, uint16(1), binary.LittleEndian.Uint16(wav[22:]), "mono")
	assert.Equal(t, uint32(8000), binary.LittleEndian.Uint32(wav[24:]))
	assert.Equal(t, uint16(16), binary.LittleEndian.Uint16(wav[34:]))
	assert.Equal(t, uint32(26*320), binary.LittleEndian.Uint32(wav[40:]))
	assert.Equal(t, audio[:320], wav[44:44+320])
}

func TestDecodeEncodings(t *testing.T) {
	assert.Equal(t, []int16{0x0102}, decode([]byte{0x02, 0x01}, mediafork.L16.Codec()))
	assert.Equal(t, []int16{0x0102}, decode([]byte{0x01, 0x02}, mediafork.L16BE.Codec()))
	assert.Equal(t, []int16{0, -32124}, decode([]byte{0xFF, 0x00}, mediafork.PCMU.Codec()))
	assert.Equal(t, []int16{8}, decode([]byte{0xD5}, mediafork.PCMA.Codec()))
	assert.Equal(t, []int16{0x0102}, decode([]byte{0x02, 0x01, 0x07}, mediafork.L16.Codec()), "a partial sample is dropped")
}
