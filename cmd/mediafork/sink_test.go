package main

import (
	bin "encoding/binary"
	"errors"
	"net"
	"sync"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/net/ipv4"

	"github.com/mediafork/mediafork/tlvcodec"
)

// countingSink is a UDP receiver for the load tests: per stream and
// direction it keeps only whether signaling came, how many audio packets,
// the highest sequence and the end packet. It reads a header per packet, in
// batches, so it keeps up with hundreds of streams on a busy machine, where a
// full decoder (tlvdump, under -race) falls behind the daemon it is meant to
// observe and the test ends up timing its own receiver.
type countingSink struct {
	conn *net.UDPConn
	mu   sync.Mutex
	byID map[sinkKey]*sinkStream
}

type sinkKey struct {
	id  uint32
	dir tlvcodec.Direction
}

// sinkStream is what came of one stream direction.
type sinkStream struct {
	StreamID  uint32
	Direction tlvcodec.Direction
	Signaled  bool
	Packets   int    // audio packets
	FirstSeq  uint32 // the lowest audio sequence
	LastSeq   uint32 // the highest
	End       *tlvcodec.End
}

// Missing is how many sequence numbers between the first and the last did
// not come (duplicates would hide as many).
func (s sinkStream) Missing() int {
	if s.Packets == 0 {
		return 0
	}
	return int(s.LastSeq-s.FirstSeq+1) - s.Packets
}

func newCountingSink(t *testing.T) *countingSink {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	// A backlog while the test goroutines are descheduled stays in the
	// kernel: 64 MiB when privileged (SO_RCVBUFFORCE), else what rmem_max
	// allows.
	conn.SetReadBuffer(8 << 20)
	if raw, err := conn.SyscallConn(); err == nil {
		raw.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, 64<<20) })
	}
	s := &countingSink{conn: conn, byID: map[sinkKey]*sinkStream{}}
	done := make(chan struct{})
	go func() { defer close(done); s.run() }()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return s
}

func (s *countingSink) Addr() string { return s.conn.LocalAddr().String() }

func (s *countingSink) run() {
	pc := ipv4.NewPacketConn(s.conn)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	for {
		n, err := pc.ReadBatch(msgs, 0)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		s.mu.Lock()
		for _, m := range msgs[:n] {
			s.handle(m.Buffers[0][:m.N])
		}
		s.mu.Unlock()
	}
}

// handle takes one datagram; a malformed one is ignored (the codec's tests
// judge packets; this counts them).
func (s *countingSink) handle(b []byte) {
	var h tlvcodec.Header
	if h.Unmarshal(b) != nil {
		return
	}
	k := sinkKey{h.StreamID, h.Direction}
	st := s.byID[k]
	if st == nil {
		st = &sinkStream{StreamID: h.StreamID, Direction: h.Direction}
		s.byID[k] = st
	}
	switch h.Type {
	case tlvcodec.TypeSignaling:
		st.Signaled = true
	case tlvcodec.TypeAudio:
		if len(b) >= 12 {
			seq := bin.BigEndian.Uint32(b[8:12])
			if st.Packets == 0 || seq < st.FirstSeq {
				st.FirstSeq = seq
			}
			st.Packets++
			st.LastSeq = max(st.LastSeq, seq)
		}
	case tlvcodec.TypeEnd:
		var e tlvcodec.End
		if e.Unmarshal(b) == nil {
			st.End = &e
		}
	}
}

// Streams is a copy of every stream direction seen.
func (s *countingSink) Streams() []sinkStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sinkStream, 0, len(s.byID))
	for _, st := range s.byID {
		out = append(out, *st)
	}
	return out
}
