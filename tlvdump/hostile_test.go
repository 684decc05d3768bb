package tlvdump

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"
)

// The hostile vectors shared with the Python receiver (testdata/tlv/hostile.json).
type hostileFile struct {
	Cases []hostileCase `json:"cases"`
}

type hostileCase struct {
	Name     string `json:"name"`
	Receiver struct {
		MaxStreams    int `json:"max_streams"`
		MaxOpenFiles  int `json:"max_open_files"`
		IdleTimeoutMs int `json:"idle_timeout_ms"`
	} `json:"receiver"`
	Datagrams []hostileDatagram `json:"datagrams"`
	Expect    struct {
		Counts  map[string]int  `json:"counts"`
		Streams []hostileStream `json:"streams"`
		Files   int             `json:"files"`
	} `json:"expect"`
}

type hostileDatagram struct {
	From      string `json:"from"`
	Hex       string `json:"hex"`
	AdvanceMs int    `json:"advance_ms"`
	Signaling *struct {
		Stream  uint32 `json:"stream"`
		Dir     string `json:"dir"`
		Channel string `json:"channel"`
	} `json:"signaling"`
	Format *struct {
		Stream   uint32 `json:"stream"`
		Dir      string `json:"dir"`
		Encoding uint8  `json:"encoding"`
		Rate     uint32 `json:"rate"`
		Channels uint8  `json:"channels"`
		FrameMs  uint16 `json:"frame_ms"`
	} `json:"format"`
	Audio *struct {
		Stream  uint32   `json:"stream"`
		Streams int      `json:"streams"`
		Dir     string   `json:"dir"`
		Seq     uint32   `json:"seq"`
		Count   int      `json:"count"`
		Seqs    []uint32 `json:"seqs"`
		Bytes   int      `json:"bytes"`
		Fill    *byte    `json:"fill"`
	} `json:"audio"`
	End *struct {
		Stream  uint32 `json:"stream"`
		Dir     string `json:"dir"`
		LastSeq uint32 `json:"last_seq"`
		Reason  uint8  `json:"reason"`
	} `json:"end"`
	Raw *struct {
		Type   uint8  `json:"type"`
		Stream uint32 `json:"stream"`
		Dir    uint8  `json:"dir"`
		Bytes  int    `json:"bytes"`
	} `json:"raw"`
	Gap *struct {
		Stream  uint32 `json:"stream"`
		Dir     string `json:"dir"`
		Next    uint32 `json:"next"`
		Missing uint32 `json:"missing"`
		Reason  uint8  `json:"reason"`
	} `json:"gap"`
}

type hostileStream struct {
	Stream      uint32 `json:"stream"`
	Dir         string `json:"dir"`
	From        string `json:"from"`
	Packets     int    `json:"packets"`
	Bytes       int    `json:"bytes"`
	Missing     int    `json:"missing"`
	Reordered   int    `json:"reordered"`
	Duplicates  int    `json:"duplicates"`
	Refused     int    `json:"refused"`
	Foreign     int    `json:"foreign"`
	Undecodable int    `json:"undecodable"`
	Encoding    string `json:"encoding"`
	Rate        int    `json:"rate"`
	Ended       bool   `json:"ended"`
	Closed      string `json:"closed"`
	Gaps        int    `json:"gaps"`
	GapFrames   int    `json:"gap_frames"`
	Moved       int    `json:"moved"`
	Wavs        []struct {
		File    string `json:"file"`
		Rate    int    `json:"rate"`
		Samples int    `json:"samples"`
		Silent  int    `json:"silent"`
	} `json:"wavs"`
}

func loadHostile(t testing.TB) hostileFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "tlv", "hostile.json"))
	require.NoError(t, err)
	var f hostileFile
	require.NoError(t, json.Unmarshal(b, &f))
	require.NotEmpty(t, f.Cases)
	return f
}

func dirOf(t testing.TB, s string) tlvcodec.Direction {
	switch s {
	case "RX":
		return tlvcodec.RX
	case "TX":
		return tlvcodec.TX
	case "MIXED":
		return tlvcodec.Mixed
	}
	t.Fatalf("direction %q", s)
	return 0
}

// packets builds a vector datagram's bytes (several for audio with a count
// or several streams).
func (d hostileDatagram) packets(t testing.TB) [][]byte {
	t.Helper()
	mustMarshal := func(p interface{ Marshal() ([]byte, error) }) []byte {
		b, err := p.Marshal()
		require.NoError(t, err)
		return b
	}
	switch {
	case d.Hex != "":
		b, err := hex.DecodeString(d.Hex)
		require.NoError(t, err)
		return [][]byte{b}
	case d.Signaling != nil:
		s := d.Signaling
		return [][]byte{mustMarshal(&tlvcodec.Signaling{StreamID: s.Stream, Direction: dirOf(t, s.Dir), ChannelID: s.Channel})}
	case d.Format != nil:
		f := d.Format
		return [][]byte{mustMarshal(&tlvcodec.Format{StreamID: f.Stream, Direction: dirOf(t, f.Dir), Encoding: f.Encoding,
			SampleRate: f.Rate, Channels: f.Channels, FrameMs: f.FrameMs})}
	case d.End != nil:
		e := d.End
		return [][]byte{mustMarshal(&tlvcodec.End{StreamID: e.Stream, Direction: dirOf(t, e.Dir), LastSequence: e.LastSeq, Reason: tlvcodec.EndReason(e.Reason)})}
	case d.Gap != nil:
		g := d.Gap
		return [][]byte{mustMarshal(&tlvcodec.Gap{StreamID: g.Stream, Direction: dirOf(t, g.Dir), NextSequence: g.Next, MissingFrames: g.Missing,
			Reason: tlvcodec.GapReason(g.Reason)})}
	case d.Raw != nil:
		r := d.Raw
		b := make([]byte, tlvcodec.HeaderSize+r.Bytes)
		h := tlvcodec.Header{Type: tlvcodec.Type(r.Type), Length: uint16(len(b)), StreamID: r.Stream, Direction: tlvcodec.Direction(r.Dir)}
		h.MarshalTo(b)
		return [][]byte{b}
	case d.Audio != nil:
		a := d.Audio
		fill := byte(17)
		if a.Fill != nil {
			fill = *a.Fill
		}
		payload := bytes.Repeat([]byte{fill}, a.Bytes)
		seqs := a.Seqs
		if seqs == nil {
			for i := 0; i < max(1, a.Count); i++ {
				seqs = append(seqs, a.Seq+uint32(i))
			}
		}
		var out [][]byte
		for i := 0; i < max(1, a.Streams); i++ {
			for _, seq := range seqs {
				out = append(out, mustMarshal(&tlvcodec.Audio{StreamID: a.Stream + uint32(i), Direction: dirOf(t, a.Dir), Sequence: seq, Payload: payload}))
			}
		}
		return out
	}
	t.Fatalf("datagram with nothing in it: %+v", d)
	return nil
}

// fakeClock is a receiver's clock the test moves.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// wavFacts reads a WAV file as the vectors describe it, checking that it
// was finalised (its header's sizes match its length).
func wavFacts(t testing.TB, path string) (rate, samples, silent int) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(b), 44, path)
	require.Equal(t, "RIFF", string(b[:4]), path)
	require.Equal(t, uint32(len(b)-8), binary.LittleEndian.Uint32(b[4:]), "%s: RIFF size finalised", path)
	require.Equal(t, uint32(len(b)-44), binary.LittleEndian.Uint32(b[40:]), "%s: data size finalised", path)
	for i := 44; i+1 < len(b); i += 2 {
		if b[i] == 0 && b[i+1] == 0 {
			silent++
		}
	}
	return int(binary.LittleEndian.Uint32(b[24:])), (len(b) - 44) / 2, silent
}

// TestHostileVectors sends each case's datagrams over real UDP sockets, one
// per source label, to a running receiver, and checks what it kept and wrote.
func TestHostileVectors(t *testing.T) {
	for _, tc := range loadHostile(t).Cases {
		t.Run(tc.Name, func(t *testing.T) { runHostile(t, tc) })
	}
}

func runHostile(t *testing.T, tc hostileCase) {
	dir := t.TempDir()
	clock := &fakeClock{t: time.Unix(1_700_000_000, 0)}
	r, err := Listen("127.0.0.1:0", Options{WavDir: dir, MaxStreams: tc.Receiver.MaxStreams, MaxOpenFiles: tc.Receiver.MaxOpenFiles,
		IdleTimeout: time.Duration(tc.Receiver.IdleTimeoutMs) * time.Millisecond, now: clock.now})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() { cancel(); <-done }()

	sources := map[string]*net.UDPConn{}
	addrs := map[string]string{}
	sent := 0
	for _, d := range tc.Datagrams {
		if d.AdvanceMs > 0 {
			clock.advance(time.Duration(d.AdvanceMs) * time.Millisecond)
			r.sweep()
			continue
		}
		c := sources[d.From]
		if c == nil {
			c, err = net.DialUDP("udp", nil, r.Addr())
			require.NoError(t, err)
			defer c.Close()
			sources[d.From], addrs[d.From] = c, c.LocalAddr().String()
		}
		for _, p := range d.packets(t) {
			_, werr := c.Write(p)
			require.NoError(t, werr)
			sent++
			// One at a time: each is handled before the next goes, so the
			// order across sources is the vector's.
			require.Eventually(t, func() bool { return r.Counts().Datagrams == sent }, 60*time.Second, time.Millisecond)
		}
	}
	cancel()
	require.NoError(t, <-done)
	done <- nil

	c := r.Counts()
	assert.Equal(t, tc.Expect.Counts, map[string]int{"invalid": c.Invalid, "unknown": c.Unknown, "refused": c.Refused, "foreign": c.Foreign, "evicted": c.Evicted}, "counts")
	streams := r.Streams()
	require.Len(t, streams, len(tc.Expect.Streams))
	for i, want := range tc.Expect.Streams {
		s := streams[i]
		label := want.From
		got := hostileStream{Stream: s.StreamID, Dir: s.Direction.String(), From: label, Packets: s.Packets, Bytes: s.Bytes,
			Missing: s.Missing, Reordered: s.Reordered, Duplicates: s.Duplicates, Refused: s.Refused, Foreign: s.Foreign,
			Undecodable: s.Undecodable, Encoding: string(s.Encoding), Rate: s.Rate, Ended: s.End != nil, Closed: s.Closed,
			Gaps: s.Gaps, GapFrames: s.GapFrames, Moved: s.Moved}

		assert.Equal(t, addrs[want.From], s.Source, "stream %d %s pinned to %s", want.Stream, want.Dir, want.From)
		for _, p := range s.WavPaths {
			rate, samples, silent := wavFacts(t, p)
			got.Wavs = append(got.Wavs, struct {
				File    string `json:"file"`
				Rate    int    `json:"rate"`
				Samples int    `json:"samples"`
				Silent  int    `json:"silent"`
			}{filepath.Base(p), rate, samples, silent})
		}
		if len(want.Wavs) == 0 {
			want.Wavs = nil
		}
		assert.Equal(t, want, got, "stream %d %s", want.Stream, want.Dir)
	}
	files, err := filepath.Glob(filepath.Join(dir, "*.wav"))
	require.NoError(t, err)
	assert.Len(t, files, tc.Expect.Files, "WAV files: %s", strings.Join(files, " "))
	for _, f := range files {
		wavFacts(t, f) // every one finalised, the evicted ones' too
	}
}
