package tlvcodec

import (
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// extensionsPath holds golden DTMF, gap and talk-back packets computed with
// Python's struct from SPEC sections 1 and 9 (testdata/tlv/extensions.py),
// not by this codec.
const extensionsPath = "../testdata/tlv/extensions.json"

func loadExtensions(t testing.TB) vectorFile { return loadVectorFile(t, extensionsPath) }

func TestExtensionVectorsValid(t *testing.T) {
	t.Parallel()
	v := loadExtensions(t)
	types := map[Type]int{}
	for _, tc := range v.Valid {
		t.Run(tc.Name, func(t *testing.T) {
			want, err := hex.DecodeString(tc.Hex)
			require.NoError(t, err)
			require.Len(t, want, tc.Length)
			f := tc.Fields
			var h Header
			require.NoError(t, h.Unmarshal(want))
			types[h.Type]++
			switch h.Type {
			case TypeDTMF:
				exp := DTMF{StreamID: num(f, "stream_id"), Direction: Direction(num(f, "direction")),
					Digit: f["digit"].(string)[0], DurationMs: uint16(num(f, "duration_ms")), MediaTimeMs: num(f, "media_time_ms")}
				roundTrip(t, want, exp)
			case TypeGap:
				exp := Gap{StreamID: num(f, "stream_id"), Direction: Direction(num(f, "direction")),
					NextSequence: num(f, "next_sequence"), MissingFrames: num(f, "missing_frames"), Reason: GapReason(num(f, "reason"))}
				roundTrip(t, want, exp)
			case TypeTalkbackAudio:
				audio, err := hex.DecodeString(f["audio"].(string))
				require.NoError(t, err)
				exp := TalkbackAudio{StreamID: num(f, "stream_id"), Direction: Direction(num(f, "direction")),
					Sequence: num(f, "sequence"), Payload: audio}
				roundTrip(t, want, exp)
			case TypeTalkbackClear:
				exp := TalkbackClear{StreamID: num(f, "stream_id"), Direction: Direction(num(f, "direction"))}
				roundTrip(t, want, exp)
			case TypeTalkbackMark:
				exp := TalkbackMark{StreamID: num(f, "stream_id"), Direction: Direction(num(f, "direction")),
					MarkID: num(f, "mark_id"), Status: MarkStatus(num(f, "status"))}
				roundTrip(t, want, exp)
			default:
				t.Fatalf("vector of type %s", h.Type)
			}
		})
	}
	assert.Equal(t, 4, types[TypeDTMF])
	assert.Equal(t, 4, types[TypeGap])
	assert.Equal(t, 3, types[TypeTalkbackAudio])
	assert.Equal(t, 2, types[TypeTalkbackClear])
	assert.Equal(t, 3, types[TypeTalkbackMark])
}

// roundTrip checks that wire, a golden packet, unmarshals into exp and
// that exp marshals into wire.
func roundTrip[T any, P interface {
	*T
	Unmarshal([]byte) error
	Marshal() ([]byte, error)
}](t *testing.T, wire []byte, exp T) {
	t.Helper()
	var got T
	require.NoError(t, P(&got).Unmarshal(wire))
	assert.Equal(t, exp, got)
	b, err := P(&exp).Marshal()
	require.NoError(t, err)
	assert.Equal(t, hex.EncodeToString(wire), hex.EncodeToString(b))
}

func TestExtensionVectorsInvalid(t *testing.T) {
	t.Parallel()
	for _, tc := range loadExtensions(t).Invalid {
		t.Run(tc.Name, func(t *testing.T) {
			b, err := hex.DecodeString(tc.Hex)
			require.NoError(t, err)
			var h Header
			if h.Unmarshal(b) == nil {
				require.Contains(t, []Type{TypeDTMF, TypeGap, TypeTalkbackAudio, TypeTalkbackClear, TypeTalkbackMark}, h.Type)
			}
			assert.Error(t, unmarshalAny(b))
		})
	}
}

// The sentinel errors, one per way a DTMF or gap packet is wrong, and the
// byte layout built by hand (digit, duration, media time; next sequence,
// missing frames, reason).
func TestExtensionErrorsAndLayout(t *testing.T) {
	t.Parallel()
	d := DTMF{StreamID: 0x0A0B0C0D, Direction: RX, Digit: '#', DurationMs: 0x0102, MediaTimeMs: 0x03040506}
	b, err := d.Marshal()
	require.NoError(t, err)
	assert.Equal(t, []byte{0x05, 0x00, 0x0F, 0x0A, 0x0B, 0x0C, 0x0D, 0x01, '#', 0x01, 0x02, 0x03, 0x04, 0x05, 0x06}, b)
	g := Gap{StreamID: 0x0A0B0C0D, Direction: TX, NextSequence: 0x11121314, MissingFrames: 0x21222324, Reason: GapPaused}
	gb, err := g.Marshal()
	require.NoError(t, err)
	assert.Equal(t, []byte{0x06, 0x00, 0x11, 0x0A, 0x0B, 0x0C, 0x0D, 0x02, 0x11, 0x12, 0x13, 0x14, 0x21, 0x22, 0x23, 0x24, 0x03}, gb)

	for _, c := range []byte{'a', 'E', 0, ' ', '+', 0x80} {
		_, merr := (&DTMF{StreamID: 1, Direction: RX, Digit: c}).MarshalTo(make([]byte, DTMFSize))
		assert.ErrorIs(t, merr, ErrInvalidDigit, "%q", c)
		bad := append([]byte(nil), b...)
		bad[8] = c
		assert.ErrorIs(t, new(DTMF).Unmarshal(bad), ErrInvalidDigit, "%q", c)
	}
	for _, c := range []byte("0123456789*#ABCD") {
		assert.True(t, ValidDigit(c), "%q", c)
	}
	_, err = d.MarshalTo(make([]byte, DTMFSize-1))
	assert.ErrorIs(t, err, ErrShortBuffer)
	_, err = g.MarshalTo(make([]byte, GapSize-1))
	assert.ErrorIs(t, err, ErrShortBuffer)
	assert.ErrorIs(t, new(DTMF).Unmarshal(gb), ErrWrongType)
	assert.ErrorIs(t, new(Gap).Unmarshal(b), ErrWrongType)
	for _, z := range [][2]uint32{{0, 1}, {1, 0}} {
		zb, _ := (&Gap{StreamID: 1, Direction: RX, NextSequence: z[0], MissingFrames: z[1], Reason: GapMediaLost}).Marshal()
		assert.ErrorIs(t, new(Gap).Unmarshal(zb), ErrInvalidGap)
	}
	unknown := append([]byte(nil), gb...)
	unknown[16] = 99
	var back Gap
	require.NoError(t, back.Unmarshal(unknown), "an unknown reason is reported, not refused")
	assert.Equal(t, "reason(99)", back.Reason.String())
	assert.Equal(t, "dtmf", TypeDTMF.String())
	assert.Equal(t, "gap", TypeGap.String())
	assert.Equal(t, "paused", GapPaused.String())
}

func TestExtensionsMarshalToAllocatesNothing(t *testing.T) {
	buf := make([]byte, 64)
	d := DTMF{StreamID: 1, Direction: RX, Digit: '7', DurationMs: 80, MediaTimeMs: 12345}
	g := Gap{StreamID: 1, Direction: TX, NextSequence: 9, MissingFrames: 3, Reason: GapDropped}
	var dd DTMF
	var gg Gap
	db, _ := d.Marshal()
	gb, _ := g.Marshal()
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		d.MarshalTo(buf)
		g.MarshalTo(buf)
		dd.Unmarshal(db)
		gg.Unmarshal(gb)
	}))
}

// Talk-back's layout by hand, its refusals, and no allocation.
func TestTalkbackPackets(t *testing.T) {
	a := TalkbackAudio{StreamID: 0x0A0B0C0D, Direction: TX, Sequence: 0x01020304, Payload: []byte{0xAA, 0xBB}}
	b, err := a.Marshal()
	require.NoError(t, err)
	assert.Equal(t, []byte{0x07, 0x00, 0x0E, 0x0A, 0x0B, 0x0C, 0x0D, 0x02, 0x01, 0x02, 0x03, 0x04, 0xAA, 0xBB}, b)
	m := TalkbackMark{StreamID: 0x0A0B0C0D, Direction: Mixed, MarkID: 7, Status: MarkCleared}
	mb, err := m.Marshal()
	require.NoError(t, err)
	assert.Equal(t, []byte{0x09, 0x00, 0x0D, 0x0A, 0x0B, 0x0C, 0x0D, 0x03, 0, 0, 0, 7, 2}, mb)
	m.Status = MarkPending
	mb, err = m.Marshal()
	require.NoError(t, err)
	assert.Len(t, mb, TalkbackMarkSize)
	_, err = (&TalkbackMark{StreamID: 1, Direction: TX, Status: 3}).Marshal()
	assert.ErrorIs(t, err, ErrInvalidMark)
	_, err = (&TalkbackAudio{StreamID: 1, Direction: TX}).Marshal()
	assert.ErrorIs(t, err, ErrWrongSize)
	_, err = (&TalkbackAudio{StreamID: 1, Direction: TX, Payload: make([]byte, MaxTalkbackPayload+1)}).Marshal()
	assert.ErrorIs(t, err, ErrTooLarge)
	c, err := (&TalkbackClear{StreamID: 1, Direction: RX}).Marshal()
	require.NoError(t, err)
	assert.ErrorIs(t, new(TalkbackMark).Unmarshal(c), ErrWrongType)
	assert.Equal(t, "talkback-audio", TypeTalkbackAudio.String())
	assert.Equal(t, "cleared", MarkCleared.String())

	buf := make([]byte, 64)
	var ga TalkbackAudio
	var gm TalkbackMark
	assert.Zero(t, testing.AllocsPerRun(100, func() {
		a.MarshalTo(buf)
		m.MarshalTo(buf)
		ga.Unmarshal(b)
		gm.Unmarshal(mb)
	}))
}
