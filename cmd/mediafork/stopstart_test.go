package main

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/tlvcodec"
)

// controlPacket is one non-audio packet as a receiver saw it.
type controlPacket struct {
	typ    tlvcodec.Type
	stream uint32
	dir    tlvcodec.Direction
	reason tlvcodec.EndReason // end packets
}

// orderReceiver is a UDP receiver that keeps the signaling, format and end
// packets in the order they arrived (tlvdump keeps them per stream only).
type orderReceiver struct {
	conn *net.UDPConn
	mu   sync.Mutex
	got  []controlPacket
}

func newOrderReceiver(t *testing.T) *orderReceiver {
	t.Helper()
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	require.NoError(t, err)
	r := &orderReceiver{conn: conn}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, tlvcodec.MaxPacketSize)
		for {
			n, err := conn.Read(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var h tlvcodec.Header
			if err != nil || h.Unmarshal(buf[:n]) != nil || h.Type == tlvcodec.TypeAudio {
				continue
			}
			p := controlPacket{typ: h.Type, stream: h.StreamID, dir: h.Direction}
			if h.Type == tlvcodec.TypeEnd {
				var e tlvcodec.End
				if e.Unmarshal(buf[:n]) == nil {
					p.reason = e.Reason
				}
			}
			r.mu.Lock()
			r.got = append(r.got, p)
			r.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	return r
}

func (r *orderReceiver) packets() []controlPacket {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]controlPacket(nil), r.got...)
}

// has reports whether a packet of typ has come for stream, dirs times.
func (r *orderReceiver) has(typ tlvcodec.Type, stream uint32, dirs int) bool {
	n := 0
	for _, p := range r.packets() {
		if p.typ == typ && p.stream == stream {
			n++
		}
	}
	return n >= dirs
}

// When DELETE /v1/forks/{uuid} has answered, the fork has left the registry:
// a POST for the same uuid right after it is accepted (it was refused with 409
// while the ingest still finished the old fork), and at the receiver each
// fork's end packets come before the next one's signaling. Several rounds on
// each module, every POST sent the moment the DELETE answered.
func TestStopThenStartAgainAtOnce(t *testing.T) {
	for _, module := range []string{conf.ModuleAudioFork, conf.ModuleAudioStream} {
		t.Run(module, func(t *testing.T) {
			rcv := newOrderReceiver(t)
			s := newModuleStack(t, module, []string{fssim.ModAudioFork, fssim.ModAudioStream}, func(c *conf.Config) {
				c.Profiles["order"] = conf.Profile{Endpoints: []string{rcv.conn.LocalAddr().String()}}
			})
			call := s.switches[0].Answer(fssim.CallOptions{Dest: "5000"})
			req := fmt.Sprintf(`{"uuid":%q,"profile":"order","mix":"stereo"}`, call.UUID)
			const rounds = 40
			var streams []uint32
			status, body := s.call("POST", "/v1/forks", "", req)
			require.Equal(t, 201, status, body)
			for i := 0; ; i++ {
				// The fork of this round streams: both its directions signaled.
				var id uint32
				require.Eventually(t, func() bool {
					for _, p := range rcv.packets() {
						if p.typ == tlvcodec.TypeSignaling && !contains(streams, p.stream) {
							id = p.stream
						}
					}
					return id != 0 && rcv.has(tlvcodec.TypeSignaling, id, 2)
				}, 10*time.Second, 5*time.Millisecond, "round %d: no signaling of a new stream", i)
				streams = append(streams, id)

				status, body = s.call("DELETE", "/v1/forks/"+call.UUID, "", "")
				require.Equal(t, 204, status, body)
				if i == rounds {
					break
				}
				status, body = s.call("POST", "/v1/forks", "", req)
				require.Equal(t, 201, status, "round %d: started again the moment DELETE answered: %s", i, body)
			}
			require.Eventually(t, func() bool { return rcv.has(tlvcodec.TypeEnd, streams[rounds], 2) }, 10*time.Second, 5*time.Millisecond)

			// On the wire: each stream's two end packets (stopped), then the
			// next stream's signaling.
			pos := map[[2]uint32]int{} // (type, stream) → index of its last packet, or first for signaling
			for i, p := range rcv.packets() {
				k := [2]uint32{uint32(p.typ), p.stream}
				if _, seen := pos[k]; !seen || p.typ == tlvcodec.TypeEnd {
					pos[k] = i
				}
				if p.typ == tlvcodec.TypeEnd {
					assert.Equal(t, tlvcodec.ReasonStopped, p.reason, "stream %d", p.stream)
				}
			}
			for i, id := range streams {
				assert.True(t, rcv.has(tlvcodec.TypeEnd, id, 2), "stream %d: both end packets", id)
				if i+1 < len(streams) {
					next := streams[i+1]
					assert.Less(t, pos[[2]uint32{uint32(tlvcodec.TypeEnd), id}], pos[[2]uint32{uint32(tlvcodec.TypeSignaling), next}],
						"stream %d ended before stream %d signaled", id, next)
				}
			}
			assert.Len(t, distinctSignaled(rcv.packets()), rounds+1)
		})
	}
}

func contains(ids []uint32, id uint32) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

func distinctSignaled(ps []controlPacket) map[uint32]bool {
	out := map[uint32]bool{}
	for _, p := range ps {
		if p.typ == tlvcodec.TypeSignaling {
			out[p.stream] = true
		}
	}
	return out
}
