package mediafork

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// nullTransport takes every packet and sends nothing: the cost of the fork's
// own work, without syscalls.
type nullTransport struct{}

type nullEndpoint struct{}

func (nullTransport) Open(netip.AddrPort) (Endpoint, error) { return nullEndpoint{}, nil }
func (nullEndpoint) Send(bufs [][]byte) (int, error)        { return len(bufs), nil }
func (nullEndpoint) BatchSize() int                         { return 64 }
func (nullEndpoint) Close() error                           { return nil }

func streamingFork(t testing.TB, spec Spec) (*Registry, *Fork) {
	reg := NewRegistry(nullTransport{}, 10, true, quiet)
	f, err := reg.Claim("u", "b")
	require.NoError(t, err)
	require.NoError(t, f.Begin(spec, TLVTargets(netip.MustParseAddrPort("127.0.0.1:9"))))
	return reg, f
}

func TestListenerGetsEveryFrameOfItsDirection(t *testing.T) {
	t.Parallel()
	_, f := streamingFork(t, stereoSpec())
	defer f.Finish(EndHangup)
	l := NewListener(4096)
	require.NoError(t, f.Listen(l))
	assert.ErrorIs(t, f.Listen(NewListener(4096)), ErrListening, "one listener per fork")

	var sent, want [3][]byte
	for i := 0; i < 10; i++ {
		frame, left, right := pcmStereo(160 + i)
		f.Write(nil, frame)
		sent[DirRX-1] = append(sent[DirRX-1], left...)
		sent[DirTX-1] = append(sent[DirTX-1], right...)
		for j := 0; j+1 < len(left); j += 2 {
			s := saturate(int32(int16(binary.LittleEndian.Uint16(left[j:]))) + int32(int16(binary.LittleEndian.Uint16(right[j:]))))
			sent[DirMixed-1] = binary.LittleEndian.AppendUint16(sent[DirMixed-1], uint16(s))
		}
	}
	<-l.Ready()
	var buf []byte
	n := 0
	for {
		var ok bool
		if buf, ok = l.Read(buf); !ok {
			break
		}
		n++
		for _, d := range []Direction{DirRX, DirTX, DirMixed} {
			want[d-1] = ListenPCM(want[d-1], buf, Stereo, d)
		}
	}
	assert.Equal(t, 10, n)
	for d := range sent {
		assert.Equal(t, sent[d], want[d], "direction %d", d+1)
	}
	f.Unlisten(l)
	f.Write(nil, make([]byte, 640))
	_, ok := l.Read(buf)
	assert.False(t, ok, "detached: no more frames")
}

func TestListenerDropsWhenTheReaderIsSlow(t *testing.T) {
	t.Parallel()
	_, f := streamingFork(t, stereoSpec())
	defer f.Finish(EndHangup)
	l := NewListener(640)
	require.NoError(t, f.Listen(l))
	frame := make([]byte, 640)
	for i := 0; i < ListenSlots+5; i++ {
		f.Write(nil, frame)
	}
	f.Write(nil, make([]byte, 641)) // larger than a slot
	assert.Equal(t, uint64(6), l.Dropped.Load())
	assert.Equal(t, uint64(ListenSlots+6), f.FramesIn.Load(), "the fork went on")
}

func TestListenNeedsAStreamingFork(t *testing.T) {
	t.Parallel()
	reg := NewRegistry(nullTransport{}, 10, true, quiet)
	f, _ := reg.Claim("u", "b")
	assert.ErrorIs(t, f.Listen(NewListener(640)), ErrNotStreaming)
}

func TestListenDirections(t *testing.T) {
	t.Parallel()
	assert.Equal(t, DirSetOf(DirRX, DirTX, DirMixed), ListenDirections(Stereo))
	assert.Equal(t, DirSetOf(DirRX, DirMixed), ListenDirections(Mono))
	assert.Equal(t, DirSetOf(DirMixed), ListenDirections(Mixed))
}

// A listener attached costs the media path no allocation either.
func TestFanOutWithAListenerAllocatesNothing(t *testing.T) {
	_, f := streamingFork(t, stereoSpec())
	defer f.Finish(EndHangup)
	l := NewListener(640)
	require.NoError(t, f.Listen(l))
	frame, _, _ := pcmStereo(160)
	var buf []byte
	assert.Zero(t, testing.AllocsPerRun(500, func() {
		f.Write(nil, frame)
		buf, _ = l.Read(buf[:0]) // a reader keeping up
	}))
	for i := 0; i < 2*ListenSlots; i++ { // and one that does not
		f.Write(nil, frame)
	}
	assert.Zero(t, testing.AllocsPerRun(500, func() { f.Write(nil, frame) }))
}

// BenchmarkForkWrite is the per-frame path of one stereo 8 kHz fork to one
// endpoint (no syscalls): as it is, with the meter, and with a listener.
func BenchmarkForkWrite(b *testing.B) {
	frame := stereoTone(8000, 4000)
	for _, listen := range []bool{false, true} {
		name := "meter"
		if listen {
			name = "meter+listener"
		}
		b.Run(name, func(b *testing.B) {
			_, f := streamingFork(b, stereoSpec())
			defer f.Finish(EndHangup)
			var l *Listener
			if listen {
				l = NewListener(640)
				require.NoError(b, f.Listen(l))
			}
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				f.Write(nil, frame)
				if l != nil {
					buf, _ = l.Read(buf)
				}
			}
		})
	}
}
