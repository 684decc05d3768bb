package tlvdump

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

	// The WAV file: a correct 16-bit mono header and the call's timing: the
	// late packet's place (4) was filled with silence when 5 came, the late
	// packet and the duplicate are left out.
	wav, err := os.ReadFile(filepath.Join(dir, "stream-42-RX.wav"))
	require.NoError(t, err)
	require.Equal(t, 44+25*320, len(wav))
	want := slices.Concat(audio[:3*320], make([]byte, 320), audio[4*320:25*320])
	assert.True(t, bytes.Equal(want, wav[44:]), "the WAV's audio")
	assert.Equal(t, "RIFF", string(wav[0:4]))
	assert.Equal(t, uint32(len(wav)-8), binary.LittleEndian.Uint32(wav[4:]))
	assert.Equal(t, "WAVEfmt ", string(wav[8:16]))
	assert.Equal(t, uint16(1), binary.LittleEndian.Uint16(wav[20:]), "PCM")
	assert.Equal(t, uint16(1), binary.LittleEndian.Uint16(wav[22:]), "mono")
	assert.Equal(t, uint32(8000), binary.LittleEndian.Uint32(wav[24:]))
	assert.Equal(t, uint16(16), binary.LittleEndian.Uint16(wav[34:]))
	assert.Equal(t, uint32(25*320), binary.LittleEndian.Uint32(wav[40:]))
}

func TestDecodeEncodings(t *testing.T) {
	assert.Equal(t, []int16{0x0102}, decode([]byte{0x02, 0x01}, mediafork.L16.Codec()))
	assert.Equal(t, []int16{0x0102}, decode([]byte{0x01, 0x02}, mediafork.L16BE.Codec()))
	assert.Equal(t, []int16{0, -32124}, decode([]byte{0xFF, 0x00}, mediafork.PCMU.Codec()))
	assert.Equal(t, []int16{8}, decode([]byte{0xD5}, mediafork.PCMA.Codec()))
	assert.Equal(t, []int16{0x0102}, decode([]byte{0x02, 0x01, 0x07}, mediafork.L16.Codec()), "a partial sample is dropped")
}

// receiver is a Receiver fed through Handle, without a socket: packets arrive
// in the order given.
func receiver(t *testing.T, opts Options) (*Receiver, *bytes.Buffer) {
	t.Helper()
	var out bytes.Buffer
	opts.Out = &out
	r, err := Listen("127.0.0.1:0", opts)
	require.NoError(t, err)
	t.Cleanup(r.close)
	return r, &out
}

func handle(t *testing.T, r *Receiver, ps ...interface{ Marshal() ([]byte, error) }) {
	t.Helper()
	for _, p := range ps {
		b, err := p.Marshal()
		require.NoError(t, err)
		r.Handle(b, nil)
	}
}

// pcmuTone is a 440 Hz tone at 8 kHz in µ-law, in 20 ms payloads.
func pcmuTone(t *testing.T, id uint32, packets int) []interface{ Marshal() ([]byte, error) } {
	t.Helper()
	lin := tone(160*packets, 440, 8000)
	enc := make([]byte, 160*packets)
	mediafork.PCMU.Codec().Encode(enc, lin, 2, len(enc))
	var out []interface{ Marshal() ([]byte, error) }
	for i := 0; i < packets; i++ {
		out = append(out, &tlvcodec.Audio{StreamID: id, Direction: tlvcodec.RX, Sequence: uint32(i + 1), Payload: enc[160*i : 160*(i+1)]})
	}
	return out
}

func sig(id uint32) *tlvcodec.Signaling {
	return &tlvcodec.Signaling{StreamID: id, Direction: tlvcodec.RX, ChannelID: "c"}
}

// The README's pair: mediafork sends pcmu, tlvdump is told nothing. With the
// format packet the WAV is right (440 Hz at 8 kHz, 2 bytes a sample).
func TestFormatPacketDecidesTheDecoding(t *testing.T) {
	dir := t.TempDir()
	r, out := receiver(t, Options{WavDir: dir})
	pkts := append([]interface{ Marshal() ([]byte, error) }{sig(7),
		&tlvcodec.Format{StreamID: 7, Direction: tlvcodec.RX, Encoding: 3, SampleRate: 8000, Channels: 1, FrameMs: 20}},
		pcmuTone(t, 7, 50)...)
	handle(t, r, pkts...)
	handle(t, r, &tlvcodec.End{StreamID: 7, Direction: tlvcodec.RX, LastSequence: 50, Reason: tlvcodec.ReasonHangup})

	s := r.Streams()[0]
	require.NotNil(t, s.Format)
	assert.Equal(t, mediafork.PCMU, s.Encoding)
	assert.Equal(t, 8000, s.Rate)
	assert.False(t, s.FormatBeforeSig)
	assert.False(t, s.AudioBeforeFormat)
	assert.Empty(t, s.Warnings)
	assert.InDelta(t, 440, s.DominantHz(s.Rate), 10)
	assert.Contains(t, out.String(), "FORMAT     stream=7 dir=RX encoding=pcmu rate=8000 channels=1 frame_ms=20")
	assert.NotContains(t, out.String(), "WARNING")

	wav, err := os.ReadFile(s.WavPath)
	require.NoError(t, err)
	assert.Len(t, wav, 44+50*160*2, "decoded to 16-bit: 1 s of audio")
	assert.Equal(t, uint32(8000), binary.LittleEndian.Uint32(wav[24:]))

	var sum bytes.Buffer
	r.WriteSummary(&sum)
	assert.Contains(t, sum.String(), "pcmu/8000Hz (format packet) dominant=440Hz")
}

// A format packet at another rate makes the WAV's rate.
func TestFormatPacketRateMakesTheWav(t *testing.T) {
	dir := t.TempDir()
	r, _ := receiver(t, Options{WavDir: dir})
	handle(t, r, sig(8), &tlvcodec.Format{StreamID: 8, Direction: tlvcodec.RX, Encoding: 2, SampleRate: 16000, Channels: 1, FrameMs: 20},
		&tlvcodec.Audio{StreamID: 8, Direction: tlvcodec.RX, Sequence: 1, Payload: []byte{0x01, 0x02, 0xFF, 0xFE}})
	s := r.Streams()[0]
	r.close()
	wav, err := os.ReadFile(s.WavPath)
	require.NoError(t, err)
	assert.Equal(t, uint32(16000), binary.LittleEndian.Uint32(wav[24:]))
	assert.Equal(t, []byte{0x02, 0x01, 0xFE, 0xFF}, wav[44:], "l16be decoded to little-endian")
}

// Flags that disagree with the stream's format packet are reported, once, and
// the format packet wins; flags that agree say nothing.
func TestFlagsDisagreeingWithFormatPacket(t *testing.T) {
	fm := &tlvcodec.Format{StreamID: 9, Direction: tlvcodec.RX, Encoding: 3, SampleRate: 8000, Channels: 1, FrameMs: 20}
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Encoding: mediafork.L16}, "format packet says pcmu at 8000 Hz, not --encoding l16: decoding as the format packet says"},
		{Options{Rate: 16000}, "format packet says pcmu at 8000 Hz, not --rate 16000"},
		{Options{Encoding: mediafork.PCMA, Rate: 48000}, "not --encoding pcma --rate 48000"},
		{Options{Encoding: mediafork.PCMU, Rate: 8000}, ""},
	} {
		r, out := receiver(t, tc.opts)
		handle(t, r, append([]interface{ Marshal() ([]byte, error) }{sig(9), fm}, pcmuTone(t, 9, 10)...)...)
		s := r.Streams()[0]
		assert.Equal(t, mediafork.PCMU, s.Encoding)
		assert.InDelta(t, 440, s.DominantHz(s.Rate), 10)
		if tc.want == "" {
			assert.Empty(t, s.Warnings)
			assert.NotContains(t, out.String(), "WARNING")
			continue
		}
		require.Len(t, s.Warnings, 1)
		assert.Contains(t, s.Warnings[0], tc.want)
		assert.Contains(t, out.String(), "WARNING    stream=9 dir=RX "+s.Warnings[0])
	}
}

// Without a format packet, payloads that are not frame_ms of the assumed
// encoding and rate are warned about once per stream, naming what they could be.
func TestPayloadSizeWarning(t *testing.T) {
	r, out := receiver(t, Options{})
	handle(t, r, append([]interface{ Marshal() ([]byte, error) }{sig(10)}, pcmuTone(t, 10, 20)...)...)
	s := r.Streams()[0]
	require.Len(t, s.Warnings, 1, "once per stream")
	assert.Equal(t, "payload 160 bytes, not 20 ms of l16 at 8 kHz (320 bytes): pcmu|pcma at 8 kHz/20 ms or l16 at 8 kHz/10 ms? pass --encoding", s.Warnings[0])
	assert.Equal(t, 1, strings.Count(out.String(), "WARNING"))
	var sum bytes.Buffer
	r.WriteSummary(&sum)
	assert.Contains(t, sum.String(), "l16/8000Hz (assumed)")
	assert.Contains(t, sum.String(), "    warning: payload 160 bytes")

	// Larger than a frame is wrong at once: l16 at 16 kHz.
	r, _ = receiver(t, Options{})
	handle(t, r, sig(11), &tlvcodec.Audio{StreamID: 11, Direction: tlvcodec.RX, Sequence: 1, Payload: make([]byte, 640)})
	require.Len(t, r.Streams()[0].Warnings, 1)
	assert.Contains(t, r.Streams()[0].Warnings[0], "payload 640 bytes, not 20 ms of l16 at 8 kHz (320 bytes): l16|l16be at 16 kHz/20 ms or pcmu|pcma at 32 kHz/20 ms or l16 at 8 kHz/40 ms? pass --encoding")

	// Told the right encoding, or a stream whose only short packet is its
	// last: nothing to say.
	r, _ = receiver(t, Options{Encoding: mediafork.PCMU})
	handle(t, r, append([]interface{ Marshal() ([]byte, error) }{sig(12)}, pcmuTone(t, 12, 5)...)...)
	handle(t, r, &tlvcodec.Audio{StreamID: 12, Direction: tlvcodec.RX, Sequence: 6, Payload: make([]byte, 40)})
	assert.Empty(t, r.Streams()[0].Warnings)

	// Nothing fits: say which flags there are.
	r, _ = receiver(t, Options{})
	handle(t, r, sig(13), &tlvcodec.Audio{StreamID: 13, Direction: tlvcodec.RX, Sequence: 1, Payload: make([]byte, 333)})
	assert.Contains(t, r.Streams()[0].Warnings[0], "pass --encoding, --rate and --frame-ms")
}

// Packets out of the specified order are flagged for the tests that check it.
func TestFormatPacketOrder(t *testing.T) {
	fm := &tlvcodec.Format{StreamID: 14, Direction: tlvcodec.RX, Encoding: 1, SampleRate: 8000, Channels: 1, FrameMs: 20}
	r, _ := receiver(t, Options{})
	handle(t, r, fm, sig(14), &tlvcodec.Audio{StreamID: 14, Direction: tlvcodec.RX, Sequence: 1, Payload: make([]byte, 320)}, fm)
	s := r.Streams()[0]
	assert.True(t, s.FormatBeforeSig)
	assert.True(t, s.AudioBeforeFormat)

	// An encoding code the table does not know is refused: the stream's audio
	// is counted, not decoded.
	r, out := receiver(t, Options{})
	handle(t, r, sig(15), &tlvcodec.Format{StreamID: 15, Direction: tlvcodec.RX, Encoding: 9, SampleRate: 8000, Channels: 1, FrameMs: 20},
		&tlvcodec.Audio{StreamID: 15, Direction: tlvcodec.RX, Sequence: 1, Payload: make([]byte, 320)})
	assert.Contains(t, out.String(), "encoding=code(9)")
	assert.Contains(t, r.Streams()[0].Warnings[0], "format packet refused: encoding code 9 is not one of l16|l16be|pcmu|pcma; the audio is counted, not decoded")
	assert.Equal(t, 1, r.Streams()[0].Refused)
	assert.Equal(t, 1, r.Streams()[0].Undecodable)
	// A bad format packet is invalid.
	r.Handle([]byte{4, 0, 16, 0, 0, 0, 15, 1, 0, 0, 0, 0x1f, 0x40, 1, 0, 20}, nil)
	assert.Equal(t, 1, r.Invalid())
}

func TestListenRefusesUnknownEncoding(t *testing.T) {
	_, err := Listen("127.0.0.1:0", Options{Encoding: "opus"})
	assert.ErrorContains(t, err, "l16|l16be|pcmu|pcma")
}

func TestDominantHz(t *testing.T) {
	pcm := func(b []byte) []int16 { return decode(b, mediafork.L16.Codec()) }
	for _, tc := range []struct{ hz, rate int }{{440, 8000}, {1000, 8000}, {3000, 16000}, {1000, 48000}, {440, 48000}} {
		assert.InDelta(t, tc.hz, dominantHz(pcm(tone(tc.rate, tc.hz, tc.rate)), tc.rate), 5, "%d Hz at %d", tc.hz, tc.rate)
	}
	assert.Zero(t, dominantHz(make([]int16, 8000), 8000), "silence")
	assert.Zero(t, dominantHz(pcm(tone(100, 440, 8000)), 8000), "too little")
	assert.Zero(t, dominantHz(pcm(tone(8000, 440, 8000)), 0))
}
