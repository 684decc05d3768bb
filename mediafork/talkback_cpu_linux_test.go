package mediafork

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkTalkbackCPU is the CPU talk-back costs per 100 forks talking at
// once (issue 22): 100 forks, each with a receiver sending 20 ms of 8 kHz L16
// in real time, paced by each fork's talk-back goroutine into its player.
// One op is one second of real time; cpu-% is the whole process's user +
// system time (getrusage) over the wall time, so 100 % is one core.
//
//   - control: the same 100 forks and the same sender (the frames made, the
//     same ticker), nothing handed to talk-back: what the harness costs.
//   - stream: jambonz's module (frames down the fork's WebSocket; here a
//     connection that counts them).
//   - file: the stock modules (chunks of 200 ms as base64 playAudio
//     messages; a module in memory answers each with its file and each
//     uuid_displace with its start, and its stop when the chunk's time is up).
//
// go test -run '^$' -bench TalkbackCPU -benchtime 10x ./mediafork
func BenchmarkTalkbackCPU(b *testing.B) {
	for _, mode := range []string{"control", "stream", "file"} {
		b.Run(mode, func(b *testing.B) { benchTalkback(b, mode, 100) })
	}
}

func benchTalkback(b *testing.B, mode string, forks int) {
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer sink.Close()
	sinkAddr := sink.LocalAddr().(*net.UDPAddr).AddrPort()
	sw := &memModule{}
	defer sw.wait()
	reg := NewRegistry(newTestTransport(), forks+10, true, quiet)
	reg.SetLegControl(func(string) LegControl { return sw })
	inject := InjectStream
	if mode == "file" {
		inject = InjectPlayAudio
	}
	srcs := make([]*TalkbackSource, 0, forks)
	for i := range forks {
		f, err := reg.Claim(CallID(fmt.Sprintf("00000000-0000-4000-8000-%012d", i)), "mediafork")
		if err != nil {
			b.Fatal(err)
		}
		spec := stereoSpec()
		spec.Injection = inject
		if err = f.Begin(spec, []Target{{Addr: sinkAddr, Options: TLVOptions{Talkback: TalkbackFar}}}); err != nil {
			b.Fatal(err)
		}
		f.SetMediaConn(sw.conn(f))
		defer func() { f.Finish(EndHangup); <-f.Done() }()
		if mode == "control" {
			continue
		}
		src, err := f.NewTalkbackSource(TalkbackEndpoint{Name: "bench", Allowed: TalkbackFar, Encoding: L16, Rate: 8000})
		if err != nil || src == nil {
			b.Fatal("no source", err)
		}
		srcs = append(srcs, src)
	}
	frame := l16(sine(700, 8000, 160, 8000))
	send := make([]byte, len(frame))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	// A second of warm-up: the players' first chunks, the buffers grown.
	run := func(ticks int) {
		for range ticks {
			<-tick.C
			for i := range forks {
				copy(send, frame) // the receiver's frame, read off its connection
				if mode != "control" {
					if err := srcs[i].Audio(TalkbackFar, send); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
	}
	run(50)
	cpu := func() time.Duration {
		var ru unix.Rusage
		if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
			b.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	played0, displaced0 := sw.played.Load(), sw.displaced.Load()
	b.ResetTimer()
	c0, t0 := cpu(), time.Now()
	run(50 * b.N)
	used, wall := cpu()-c0, time.Since(t0)
	b.StopTimer()
	b.ReportMetric(100*used.Seconds()/wall.Seconds(), "cpu-%")
	b.ReportMetric(float64(sw.played.Load()-played0)/wall.Seconds()/float64(forks), "bytes/s/fork")
	if mode == "file" {
		b.ReportMetric(float64(sw.displaced.Load()-displaced0)/wall.Seconds()/float64(forks), "displaces/s/fork")
	}
}

// memModule is a switch's module in memory, as the real one answers
// (../shared/freeswitch/captures/talkback): jambonz's takes the frames;
// drachtio's writes each playAudio into a file and names it, and
// uuid_displace plays it from its start to its length.
type memModule struct {
	played    atomic.Int64 // bytes of audio taken
	displaced atomic.Int64 // files played
	n         atomic.Int64
	wg        sync.WaitGroup
	forks     sync.Map // CallID → *Fork: a displace's leg is its fork's channel
	mu        sync.Mutex
	closed    bool
}

func (m *memModule) wait() {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	m.wg.Wait()
}

type memConn struct {
	m *memModule
	f *Fork
}

func (m *memModule) conn(f *Fork) MediaConn {
	m.forks.Store(f.UUID, f)
	return memConn{m, f}
}

func (c memConn) Send(text bool, b []byte) bool {
	if !text {
		c.m.played.Add(int64(len(b)))
		return true
	}
	if len(b) > 10 && string(b[:10]) == `{"type":"p` { // playAudio: base64 of 200 ms at most
		c.m.played.Add(int64(len(b)-100) * 3 / 4)
		file := fmt.Sprintf("/tmp/fs/%s_%d.tmp.r8", c.f.UUID, c.m.n.Add(1))
		c.f.TalkbackEvent(TalkbackFileReady{UUID: c.f.UUID, File: file, Rate: 8000, At: time.Now()})
	}
	return true
}

// fileLength is what a chunk of 200 ms plays (the bench sends whole ones).
const fileLength = 200 * time.Millisecond

func (m *memModule) Displace(_ context.Context, leg CallID, file string) error {
	f := m.fork(leg)
	m.displaced.Add(1)
	now := time.Now()
	f.TalkbackEvent(DisplaceStarted{Leg: leg, File: file, At: now})
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.wg.Add(1)
	time.AfterFunc(fileLength, func() {
		defer m.wg.Done()
		f.TalkbackEvent(DisplaceStopped{Leg: leg, File: file, At: time.Now()})
	})
	return nil
}

func (m *memModule) StopDisplace(context.Context, CallID, string) error { return nil }

func (m *memModule) BridgedLeg(context.Context, CallID) (CallID, error) { return "", nil }

func (m *memModule) fork(leg CallID) *Fork {
	f, _ := m.forks.Load(leg)
	return f.(*Fork)
}
