package tlvcodec

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// vectorsPath is the golden file computed independently from ForkStream's format.
const vectorsPath = "../testdata/tlv/vectors.json"

type vectorFile struct {
	Valid []struct {
		Name   string         `json:"name"`
		Hex    string         `json:"hex"`
		Length int            `json:"length"`
		Fields map[string]any `json:"fields"`
	} `json:"valid"`
	Invalid []struct {
		Name string `json:"name"`
		Hex  string `json:"hex"`
	} `json:"invalid"`
}

func loadVectors(t testing.TB) vectorFile { return loadVectorFile(t, vectorsPath) }

// loadVectorFile reads a file of golden packets, valid and invalid.
func loadVectorFile(t testing.TB, path string) vectorFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	var v vectorFile
	require.NoError(t, json.Unmarshal(raw, &v))
	require.NotEmpty(t, v.Valid)
	require.NotEmpty(t, v.Invalid)
	return v
}

func num(f map[string]any, k string) uint32 { return uint32(f[k].(float64)) }

func TestGoldenVectorsValid(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	var sig Signaling // signaling_tx lists only changed fields: it inherits the rest
	for _, tc := range v.Valid {
		t.Run(tc.Name, func(t *testing.T) {
			want, err := hex.DecodeString(tc.Hex)
			require.NoError(t, err)
			require.Len(t, want, tc.Length)
			f := tc.Fields
			var h Header
			require.NoError(t, h.Unmarshal(want))
			assert.Equal(t, Type(num(f, "type")), h.Type)
			assert.Equal(t, num(f, "stream_id"), h.StreamID)
			assert.Equal(t, Direction(num(f, "direction")), h.Direction)

			switch h.Type {
			case TypeSignaling:
				sig.StreamID, sig.Direction, sig.Timestamp = num(f, "stream_id"), Direction(num(f, "direction")), num(f, "timestamp")
				for k, dst := range map[string]*string{"channel_id": &sig.ChannelID, "exten": &sig.Exten, "caller_id": &sig.CallerID, "called_id": &sig.CalledID} {
					if s, ok := f[k].(string); ok {
						*dst = s
					}
				}
				got, err := sig.Marshal()
				require.NoError(t, err)
				assert.Equal(t, hex.EncodeToString(want), hex.EncodeToString(got))
				var back Signaling
				require.NoError(t, back.Unmarshal(want))
				exp := sig
				exp.ChannelID = exp.ChannelID[:TruncateLen(exp.ChannelID, 63)]
				for _, p := range []*string{&exp.Exten, &exp.CallerID, &exp.CalledID} {
					*p = (*p)[:TruncateLen(*p, 31)]
				}
				assert.Equal(t, exp, back)
			case TypeAudio:
				var a Audio
				require.NoError(t, a.Unmarshal(want))
				assert.Equal(t, num(f, "sequence"), a.Sequence)
				assert.Len(t, a.Payload, int(num(f, "payload_len")))
				got, err := a.Marshal()
				require.NoError(t, err)
				assert.Equal(t, want, got)
			case TypeEnd:
				var e End
				require.NoError(t, e.Unmarshal(want))
				assert.Equal(t, num(f, "last_sequence"), e.LastSequence)
				assert.Equal(t, EndReason(num(f, "reason")), e.Reason)
				got, err := e.Marshal()
				require.NoError(t, err)
				assert.Equal(t, want, got)
			case TypeFormat: // should vectors.json gain format vectors
				var fm Format
				require.NoError(t, fm.Unmarshal(want))
				assert.Equal(t, uint8(num(f, "encoding")), fm.Encoding)
				assert.Equal(t, num(f, "sample_rate"), fm.SampleRate)
				assert.Equal(t, uint8(num(f, "channels")), fm.Channels)
				assert.Equal(t, uint16(num(f, "frame_ms")), fm.FrameMs)
				got, err := fm.Marshal()
				require.NoError(t, err)
				assert.Equal(t, want, got)
			default:
				t.Fatalf("vector of unknown type %d", h.Type)
			}
		})
	}
}

func TestGoldenVectorsInvalid(t *testing.T) {
	t.Parallel()
	v := loadVectors(t)
	for _, tc := range v.Invalid {
		t.Run(tc.Name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.Hex)
			require.NoError(t, err)
			assert.Error(t, unmarshalAny(b))
		})
	}
}

// unmarshalAny parses b as whatever its type byte says.
func unmarshalAny(b []byte) error {
	var h Header
	if err := h.Unmarshal(b); err != nil {
		return err
	}
	switch h.Type {
	case TypeSignaling:
		return new(Signaling).Unmarshal(b)
	case TypeAudio:
		return new(Audio).Unmarshal(b)
	case TypeEnd:
		return new(End).Unmarshal(b)
	case TypeFormat:
		return new(Format).Unmarshal(b)
	case TypeDTMF:
		return new(DTMF).Unmarshal(b)
	case TypeGap:
		return new(Gap).Unmarshal(b)
	case TypeTalkbackAudio:
		return new(TalkbackAudio).Unmarshal(b)
	case TypeTalkbackClear:
		return new(TalkbackClear).Unmarshal(b)
	case TypeTalkbackMark:
		return new(TalkbackMark).Unmarshal(b)
	}
	return nil
}

// formatVectors are golden format packets (SPEC §1.4), computed by hand from
// the layout, independently of the codec: header, encoding u8, sample_rate u32,
// channels u8, frame_ms u16, big-endian.
var formatVectors = []struct {
	name string
	hex  string
	want Format
}{
	{"pcmu_8k_20ms_rx",
		"04" + "0010" + "499602d2" + "01" + "03" + "00001f40" + "01" + "0014",
		Format{StreamID: 1234567890, Direction: RX, Encoding: 3, SampleRate: 8000, Channels: 1, FrameMs: 20}},
	{"l16_16k_20ms_tx",
		"04" + "0010" + "deadbeef" + "02" + "01" + "00003e80" + "01" + "0014",
		Format{StreamID: 0xDEADBEEF, Direction: TX, Encoding: 1, SampleRate: 16000, Channels: 1, FrameMs: 20}},
	{"l16be_48k_100ms_mixed",
		"04" + "0010" + "00000007" + "03" + "02" + "0000bb80" + "01" + "0064",
		Format{StreamID: 7, Direction: Mixed, Encoding: 2, SampleRate: 48000, Channels: 1, FrameMs: 100}},
	{"pcma_8k_30ms_rx",
		"04" + "0010" + "00000001" + "01" + "04" + "00001f40" + "01" + "001e",
		Format{StreamID: 1, Direction: RX, Encoding: 4, SampleRate: 8000, Channels: 1, FrameMs: 30}},
	{"unknown_encoding_extremes", // codes the codec does not know still parse: receivers report them
		"04" + "0010" + "ffffffff" + "01" + "ff" + "ffffffff" + "02" + "ffff",
		Format{StreamID: 0xFFFFFFFF, Direction: RX, Encoding: 0xFF, SampleRate: 0xFFFFFFFF, Channels: 2, FrameMs: 0xFFFF}},
}

func TestFormatVectors(t *testing.T) {
	t.Parallel()
	for _, tc := range formatVectors {
		t.Run(tc.name, func(t *testing.T) {
			want, err := hex.DecodeString(tc.hex)
			require.NoError(t, err)
			require.Len(t, want, FormatSize)
			require.Equal(t, 16, FormatSize)

			buf := make([]byte, 32)
			n, err := tc.want.MarshalTo(buf)
			require.NoError(t, err)
			assert.Equal(t, FormatSize, n)
			assert.Equal(t, FormatSize, tc.want.MarshalSize())
			assert.Equal(t, tc.hex, hex.EncodeToString(buf[:n]))

			var got Format
			require.NoError(t, got.Unmarshal(want))
			assert.Equal(t, tc.want, got)
			require.NoError(t, unmarshalAny(want))
			assert.Equal(t, "format", TypeFormat.String())
		})
	}
}

// Invalid format packets, by hand, each with the sentinel it must produce.
func TestFormatInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, hex string
		want      error
	}{
		{"truncated", "04" + "0010" + "00000001" + "01" + "03" + "00001f40" + "01" + "00", ErrLengthMismatch},
		{"one byte too long", "04" + "0011" + "00000001" + "01" + "03" + "00001f40" + "01" + "0014" + "00", ErrWrongSize},
		{"one byte short", "04" + "000f" + "00000001" + "01" + "03" + "00001f40" + "01" + "00", ErrWrongSize},
		{"zero stream", "04" + "0010" + "00000000" + "01" + "03" + "00001f40" + "01" + "0014", ErrZeroStreamID},
		{"bad direction", "04" + "0010" + "00000001" + "04" + "03" + "00001f40" + "01" + "0014", ErrInvalidDirection},
		{"audio type", "02" + "0010" + "00000001" + "01" + "03" + "00001f40" + "01" + "0014", ErrWrongType},
		{"zero encoding", "04" + "0010" + "00000001" + "01" + "00" + "00001f40" + "01" + "0014", ErrInvalidFormat},
		{"zero rate", "04" + "0010" + "00000001" + "01" + "03" + "00000000" + "01" + "0014", ErrInvalidFormat},
		{"zero channels", "04" + "0010" + "00000001" + "01" + "03" + "00001f40" + "00" + "0014", ErrInvalidFormat},
		{"zero frame_ms", "04" + "0010" + "00000001" + "01" + "03" + "00001f40" + "01" + "0000", ErrInvalidFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.hex)
			require.NoError(t, err)
			assert.ErrorIs(t, new(Format).Unmarshal(b), tc.want)
		})
	}
	_, err := (&Format{}).MarshalTo(make([]byte, FormatSize-1))
	assert.ErrorIs(t, err, ErrShortBuffer)
}

// TestSignalingHandChecked builds the ForkStream README example byte by byte,
// independently of the codec and of vectors.json.
func TestSignalingHandChecked(t *testing.T) {
	t.Parallel()
	want := []byte{0x01, 0x00, 0xAC}            // type, length 172
	want = append(want, 0x49, 0x96, 0x02, 0xD2) // stream 1234567890
	want = append(want, 0x01)                   // RX
	field := func(s string, n int) []byte { b := make([]byte, n); copy(b, s); return b }
	want = append(want, field("TEST-CHANNEL", 64)...)
	want = append(want, field("8888", 32)...)
	want = append(want, field("+1234567890", 32)...)
	want = append(want, field("+0987654321", 32)...)
	want = append(want, 0x65, 0xA5, 0x26, 0x70) // 2024-01-15 12:34:56 UTC
	require.Len(t, want, 172)

	s := Signaling{StreamID: 1234567890, Direction: RX, ChannelID: "TEST-CHANNEL", Exten: "8888",
		CallerID: "+1234567890", CalledID: "+0987654321", Timestamp: 1705322096}
	buf := make([]byte, 200)
	n, err := s.MarshalTo(buf)
	require.NoError(t, err)
	require.Equal(t, 172, n)
	assert.Equal(t, want, buf[:n])
}

func TestSignalingTruncation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, in string
		max      int
	}{
		{"ascii", strings.Repeat("a", 100), 63},
		{"two-byte at boundary", strings.Repeat("é", 40), 63}, // 80 bytes: cut to 62
		{"three-byte", "x" + strings.Repeat("€", 20), 31},     // 61 bytes
		{"four-byte", strings.Repeat("😀", 10), 31},            // 40 bytes: cut to 28
		{"exact fit", strings.Repeat("b", 31), 31},
		{"short", "1000", 31},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := Signaling{StreamID: 1, Direction: TX}
			if tc.max == 63 {
				s.ChannelID = tc.in
			} else {
				s.CallerID = tc.in
			}
			b, err := s.Marshal()
			require.NoError(t, err)
			var back Signaling
			require.NoError(t, back.Unmarshal(b))
			got := back.ChannelID + back.CallerID
			assert.LessOrEqual(t, len(got), tc.max)
			assert.True(t, utf8.ValidString(got), "cut inside a character: %q", got)
			assert.True(t, strings.HasPrefix(tc.in, got))
			if len(tc.in) > tc.max {
				assert.Greater(t, len(got), tc.max-4, "cut more than one character")
			} else {
				assert.Equal(t, tc.in, got)
			}
			off := HeaderSize
			if tc.max == 31 {
				off += 64 + 32
			}
			assert.Equal(t, byte(0), b[off+tc.max], "field not NUL-terminated")
		})
	}
}

func TestUnmarshalErrors(t *testing.T) {
	t.Parallel()
	audio := func(n int) []byte {
		b, _ := (&Audio{StreamID: 5, Direction: RX, Sequence: 1, Payload: make([]byte, n)}).Marshal()
		return b
	}
	sig, _ := (&Signaling{StreamID: 5, Direction: RX}).Marshal()
	end, _ := (&End{StreamID: 5, Direction: TX, Reason: ReasonHangup}).Marshal()
	withLen := func(b []byte, n uint16) []byte {
		c := bytes.Clone(b)
		binary.BigEndian.PutUint16(c[1:3], n)
		return c
	}
	cases := []struct {
		name string
		b    []byte
		into interface{ Unmarshal([]byte) error }
		want error
	}{
		{"empty", nil, &Audio{}, ErrShortPacket},
		{"short header", []byte{2, 0, 12, 0}, &Audio{}, ErrShortPacket},
		{"truncated audio", audio(320)[:200], &Audio{}, ErrLengthMismatch},
		{"length too big", withLen(audio(10), 500), &Audio{}, ErrLengthMismatch},
		{"oversize datagram", make([]byte, 70000), &Audio{}, ErrTooLarge},
		{"audio without sequence", withLen(audio(0)[:10], 10), &Audio{}, ErrWrongSize},
		{"signaling too short", withLen(sig[:100], 100), &Signaling{}, ErrWrongSize},
		{"signaling too long", withLen(append(bytes.Clone(sig), 0), 173), &Signaling{}, ErrWrongSize},
		{"end too long", withLen(append(bytes.Clone(end), 0), 14), &End{}, ErrWrongSize},
		{"wrong type", sig, &Audio{}, ErrWrongType},
		{"zero stream", append([]byte{2, 0, 12, 0, 0, 0, 0, 1}, 0, 0, 0, 1), &Audio{}, ErrZeroStreamID},
		{"bad direction", append([]byte{2, 0, 12, 0, 0, 0, 9, 7}, 0, 0, 0, 1), &Audio{}, ErrInvalidDirection},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.into.Unmarshal(tc.b)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func TestMarshalErrors(t *testing.T) {
	t.Parallel()
	_, err := (&Signaling{}).MarshalTo(make([]byte, 171))
	assert.ErrorIs(t, err, ErrShortBuffer)
	_, err = (&End{}).MarshalTo(make([]byte, 12))
	assert.ErrorIs(t, err, ErrShortBuffer)
	_, err = (&Audio{Payload: make([]byte, 10)}).MarshalTo(make([]byte, 21))
	assert.ErrorIs(t, err, ErrShortBuffer)
	_, err = (&Audio{Payload: make([]byte, MaxAudioPayload+1)}).Marshal()
	assert.ErrorIs(t, err, ErrTooLarge)
	b, err := (&Audio{StreamID: 1, Direction: RX, Payload: make([]byte, MaxAudioPayload)}).Marshal()
	require.NoError(t, err)
	assert.Len(t, b, MaxPacketSize)
}

func TestMarshalToAllocatesNothing(t *testing.T) {
	buf := make([]byte, MaxPacketSize)
	s := Signaling{StreamID: 1, Direction: RX, ChannelID: strings.Repeat("é", 50), Exten: "1", CallerID: "2", CalledID: "3"}
	a := Audio{StreamID: 1, Direction: TX, Sequence: 9, Payload: make([]byte, 320)}
	e := End{StreamID: 1, Direction: TX, LastSequence: 9, Reason: ReasonStopped}
	fm := Format{StreamID: 1, Direction: RX, Encoding: 3, SampleRate: 8000, Channels: 1, FrameMs: 20}
	allocs := testing.AllocsPerRun(100, func() {
		s.MarshalTo(buf)
		a.MarshalTo(buf)
		e.MarshalTo(buf)
		fm.MarshalTo(buf)
		PutAudioHeader(buf, 1, RX, 2, 320)
	})
	assert.Zero(t, allocs)
}

func FuzzUnmarshal(f *testing.F) {
	v := loadVectors(f)
	for _, tc := range v.Valid {
		b, _ := hex.DecodeString(tc.Hex)
		f.Add(b)
	}
	for _, tc := range v.Invalid {
		b, _ := hex.DecodeString(tc.Hex)
		f.Add(b)
	}
	for _, tc := range formatVectors {
		b, _ := hex.DecodeString(tc.hex)
		f.Add(b)
	}
	ext := loadExtensions(f)
	for _, tc := range ext.Valid {
		b, _ := hex.DecodeString(tc.Hex)
		f.Add(b)
	}
	for _, tc := range ext.Invalid {
		b, _ := hex.DecodeString(tc.Hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Header
		if h.Unmarshal(b) != nil {
			return
		}
		// Whatever parses must marshal back to the same bytes (strings are NUL-cut,
		// so signaling is compared after a second round).
		switch h.Type {
		case TypeAudio:
			var a Audio
			if a.Unmarshal(b) == nil {
				out, err := a.Marshal()
				if err != nil || !bytes.Equal(out, b) {
					t.Fatalf("audio round trip: %v\n%x\n%x", err, b, out)
				}
			}
		case TypeEnd:
			var e End
			if e.Unmarshal(b) == nil {
				out, err := e.Marshal()
				if err != nil || !bytes.Equal(out, b) {
					t.Fatalf("end round trip: %v", err)
				}
			}
		case TypeFormat:
			var fm Format
			if fm.Unmarshal(b) == nil {
				out, err := fm.Marshal()
				if err != nil || !bytes.Equal(out, b) {
					t.Fatalf("format round trip: %v\n%x\n%x", err, b, out)
				}
			}
		case TypeDTMF:
			var d DTMF
			if d.Unmarshal(b) == nil {
				out, err := d.Marshal()
				if err != nil || !bytes.Equal(out, b) {
					t.Fatalf("dtmf round trip: %v\n%x\n%x", err, b, out)
				}
			}
		case TypeGap:
			var g Gap
			if g.Unmarshal(b) == nil {
				out, err := g.Marshal()
				if err != nil || !bytes.Equal(out, b) {
					t.Fatalf("gap round trip: %v\n%x\n%x", err, b, out)
				}
			}
		case TypeSignaling:
			var s Signaling
			if s.Unmarshal(b) == nil {
				out, err := s.Marshal()
				if err != nil {
					t.Fatal(err)
				}
				var s2 Signaling
				if err := s2.Unmarshal(out); err != nil || s2.StreamID != s.StreamID || s2.Timestamp != s.Timestamp {
					t.Fatalf("signaling round trip: %v", err)
				}
			}
		}
	})
}

func BenchmarkAudioMarshalTo(b *testing.B) {
	buf := make([]byte, 2048)
	a := Audio{StreamID: 1, Direction: RX, Payload: make([]byte, 320)}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		a.Sequence = uint32(i)
		a.MarshalTo(buf)
	}
}

func BenchmarkSignalingMarshalTo(b *testing.B) {
	buf := make([]byte, SignalingSize)
	s := Signaling{StreamID: 1, Direction: RX, ChannelID: "sofia/internal/1000@example.com", Exten: "2000", CallerID: "1000", CalledID: "2000"}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		s.MarshalTo(buf)
	}
}

func BenchmarkAudioUnmarshal(b *testing.B) {
	pkt, _ := (&Audio{StreamID: 1, Direction: RX, Sequence: 1, Payload: make([]byte, 320)}).Marshal()
	var a Audio
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := a.Unmarshal(pkt); err != nil {
			b.Fatal(err)
		}
	}
}
