package web

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/tlvdump"
)

func (r *rig) dialStream(path string, o fssim.AudioStreamOptions) *fssim.AudioStream {
	r.t.Helper()
	if o.TLS == nil {
		o.TLS = r.tls
	}
	a, err := fssim.DialAudioStream(context.Background(), r.url(path), o)
	require.NoError(r.t, err)
	return a
}

// byDirection indexes ended streams.
func byDirection(streams []*tlvdump.Stream) map[tlvcodec.Direction]*tlvdump.Stream {
	m := map[tlvcodec.Direction]*tlvdump.Stream{}
	for _, s := range streams {
		m[s.Direction] = s
	}
	return m
}

// The audio mod_audio_stream really sent (s01: stereo 8k, ch0 = READ), at its
// 20 ms cadence, through the ingest: RX = ch0 and TX = ch1 byte for byte, the
// metadata from its text frame, no subprotocol answered, end reason hangup
// from its close 1000 "Normal closure".
func TestReplayRecordedStream(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		raw, err := os.ReadFile(streamCaptures + "s01_stereo_8k/ws/conn01/audio.raw")
		require.NoError(t, err)
		r := newRigWith(t, reader, nil, 10)
		a := r.dialStream("/fork/s01-stereo?profile=analytics&mix=stereo&rate=8000",
			fssim.AudioStreamOptions{Metadata: `{"exten": "9000", "caller_id": "0000000000"}`})
		assert.NotContains(t, strings.ToLower(string(a.Response)), "sec-websocket-protocol", "none offered, none answered")
		require.NoError(t, a.Stream(context.Background(), raw, 640, 20*time.Millisecond))
		var ce *websocket.CloseError
		require.ErrorAs(t, a.Stop(""), &ce)
		assert.Equal(t, websocket.CloseNormalClosure, ce.Code)

		streams := byDirection(r.waitEnded(2))
		left, right := deinterleave(raw)
		for dir, want := range map[tlvcodec.Direction][]byte{tlvcodec.RX: left, tlvcodec.TX: right} {
			s := streams[dir]
			require.NotNil(t, s, dir.String())
			assert.True(t, bytes.Equal(want, s.Payload), "%s differs from the recorded channel (%d vs %d bytes)", dir, len(s.Payload), len(want))
			require.NotNil(t, s.Signaling)
			assert.False(t, s.AudioBeforeSig)
			assert.Equal(t, "s01-stereo", s.Signaling.ChannelID)
			assert.Equal(t, "9000", s.Signaling.Exten)
			assert.Equal(t, "0000000000", s.Signaling.CallerID)
			assert.Zero(t, s.Missing)
			assert.Equal(t, tlvcodec.ReasonHangup, s.End.Reason)
		}
	})
}

// s09c: the audio queued during a slow upgrade comes first, then the
// metadata: the fork still begins with that metadata and loses nothing.
func TestStreamMetadataAfterBurst(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		frames := recordedFrames(t, "s09c_slow_upgrade_500ms", 320)
		r := newRigWith(t, reader, nil, 10)
		a := r.dialStream("/fork/s09c?profile=analytics&mix=mono&rate=8000",
			fssim.AudioStreamOptions{Metadata: `{"meta":"first?","exten":"burst"}`, Queued: frames[:6]})
		var live []byte
		for _, f := range frames[6:] {
			live = append(live, f...)
		}
		require.NoError(t, a.Stream(context.Background(), live, 320, 20*time.Millisecond))
		a.Stop("")
		s := byDirection(r.waitEnded(1))[tlvcodec.RX]
		require.NotNil(t, s)
		assert.True(t, bytes.Equal(bytes.Join(frames, nil), s.Payload), "burst and live audio, in order")
		require.NotNil(t, s.Signaling)
		assert.Equal(t, "burst", s.Signaling.Exten, "the metadata that followed the burst")
		assert.False(t, s.AudioBeforeSig)
	})
}

// A fork mediafork started (its credential names audio_stream) begins on its
// metadata frame, which carries its description; a TCP drop ends it as media
// lost.
func TestSignedStreamAndDrop(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		spec := mediafork.Spec{UUID: "signed-1", Source: mediafork.SourceAudioStream,
			Targets:  mediafork.TLVTargets(r.sink.Addr().AddrPort()),
			Params:   mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20},
			Metadata: mediafork.Metadata{ChannelID: "signed-1", Exten: "signed"}}
		path, meta := r.signed(spec)
		a := r.dialStream(path, fssim.AudioStreamOptions{Metadata: strings.Replace(meta, `"exten":"signed"`, `"exten":"ignored"`, 1)})
		require.NoError(t, a.Send(make([]byte, 640)))
		r.awaitPackets("signed-1", 0)
		require.NoError(t, a.Drop())
		for _, s := range r.waitEnded(2) {
			assert.Equal(t, tlvcodec.ReasonMediaLost, s.End.Reason)
			assert.Equal(t, "signed", s.Signaling.Exten, "the signed spec wins")
		}
	})
}

// The simulated switch's mod_audio_stream, end to end: uuid_audio_stream
// start streams the call (RX = what the channel hears), stop ends it as a
// hangup; a stop from mediafork closes it and the module reports the close.
func TestSwitchAudioStreamThroughIngest(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		sw := fssim.NewSwitch("ClueCon", nil)
		sw.TLS = r.tls
		require.NoError(t, sw.Listen("127.0.0.1:0"))
		defer sw.Close()
		sw.SetModules(fssim.ModAudioStream)
		// mod_audio_stream checks the host against DNS names only: an
		// operator on an IP address turns that off (SPEC 2.2).
		vars := map[string]string{fssim.VarStreamDisableHostname: "true"}
		call := sw.Answer(fssim.CallOptions{ReadHz: 1000, WriteHz: 440, Vars: vars})
		url := r.url("/fork/" + call.UUID + "?profile=analytics")
		assert.Equal(t, "+OK Success\n", sw.FsCli("uuid_audio_stream "+call.UUID+" start "+url+` stereo 8k {"exten":"fs"}`))
		r.awaitPackets(call.UUID, 10)
		assert.Equal(t, "+OK Success\n", sw.FsCli("uuid_audio_stream "+call.UUID+" stop"))
		for _, s := range r.waitEnded(2) {
			assert.Equal(t, tlvcodec.ReasonHangup, s.End.Reason)
			assert.Equal(t, "fs", s.Signaling.Exten)
			assert.Zero(t, s.Missing)
		}

		// mediafork stops it: close 1000 "stopped", echoed; the bug stays
		// attached until uuid_audio_stream stop (s10).
		call2 := sw.Answer(fssim.CallOptions{Vars: vars})
		assert.Equal(t, "+OK Success\n", sw.FsCli("uuid_audio_stream "+call2.UUID+" start "+r.url("/fork/"+call2.UUID+"?profile=analytics")+" mono"))
		r.awaitPackets(call2.UUID, 0)
		for _, f := range r.registry.Get(mediafork.CallID(call2.UUID)) {
			f.Stop(mediafork.EndStopped)
		}
		r.awaitGone(call2.UUID)
		assert.True(t, call2.Streaming(), "the module keeps its bug after a server close")
		assert.Equal(t, "+OK Success\n", sw.FsCli("uuid_audio_stream "+call2.UUID+" stop"))
	})
}

// A stream typed by hand that ends while its audio is held (a burst queued
// before the 101, no metadata, then the module's close or a TCP drop): the
// fork begins without metadata, the held audio goes out, then the end
// packets with the reason of how the connection ended.
func TestHeldStreamEndsWhole(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		frames := recordedFrames(t, "s09c_slow_upgrade_500ms", 320)[:3]
		for _, tc := range []struct {
			name   string
			end    func(a *fssim.AudioStream) error
			reason tlvcodec.EndReason
		}{
			{"close", func(a *fssim.AudioStream) error { a.Stop(""); return nil }, tlvcodec.ReasonHangup},
			{"drop", func(a *fssim.AudioStream) error { return a.Drop() }, tlvcodec.ReasonMediaLost},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := newRigWith(t, reader, nil, 10)
				a := r.dialStream("/fork/held-"+tc.name+"?profile=analytics&mix=mono", fssim.AudioStreamOptions{Queued: frames})
				require.NoError(t, tc.end(a))
				s := byDirection(r.waitEnded(1))[tlvcodec.RX]
				require.NotNil(t, s)
				require.NotNil(t, s.Signaling)
				assert.Equal(t, "held-"+tc.name, s.Signaling.ChannelID)
				assert.False(t, s.AudioBeforeSig)
				assert.True(t, bytes.Equal(bytes.Join(frames, nil), s.Payload), "the held audio, in order (%d bytes)", len(s.Payload))
				assert.Equal(t, tc.reason, s.End.Reason)
				r.awaitGone("held-" + tc.name)
			})
		}
	})
}

// blockingLookup blocks LookupCall of one uuid until released, as a slow
// uuid_dump would.
type blockingLookup struct {
	uuid    mediafork.CallID
	entered chan struct{}
	release chan struct{}
}

func (l *blockingLookup) LookupCall(_ context.Context, uuid mediafork.CallID) (mediafork.CallInfo, error) {
	if uuid == l.uuid {
		close(l.entered)
		<-l.release
		return mediafork.CallInfo{Metadata: mediafork.Metadata{Exten: "looked-up"}}, nil
	}
	return mediafork.CallInfo{}, errors.New("unknown call")
}

func (l *blockingLookup) Admit(mediafork.CallID, string, mediafork.Start) error { return nil }

// A held stream begins on a later message (its live audio after the burst);
// resolving it may wait on a call lookup: that happens on the connection's
// own goroutine, never on an epoll reader, so other forks keep flowing.
func TestHeldStreamLookupBlocksNoOne(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		l := &blockingLookup{uuid: "held-slow", entered: make(chan struct{}), release: make(chan struct{})}
		released := false
		release := func() {
			if !released {
				released = true
				close(l.release)
			}
		}
		defer release()
		r.ingest.SetLookup(l)
		var others []*streamer
		for i := range 2 { // the epoll rig has two readers: one of them would take the held stream
			others = append(others, r.startStreamer(fmt.Sprintf("other-%d", i)))
		}
		frames := recordedFrames(t, "s09c_slow_upgrade_500ms", 320)
		a := r.dialStream("/fork/held-slow?profile=analytics&mix=mono", fssim.AudioStreamOptions{Queued: frames[:3]})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		streamed := make(chan error, 1)
		go func() { streamed <- a.Stream(ctx, bytes.Join(frames[3:], nil), 320, 20*time.Millisecond) }()
		<-l.entered // live audio came: the fork is resolving

		for i := range others {
			id := fmt.Sprintf("other-%d", i)
			r.awaitPackets(id, r.packets(id)+10)
		}
		release()
		r.awaitPackets("held-slow", 0)
		cancel()
		<-streamed
		a.Stop("")
		for _, o := range others {
			o.end()
		}
		for _, s := range r.waitEnded(2 + 2 + 1) {
			if s.Signaling.ChannelID == "held-slow" {
				assert.Equal(t, "looked-up", s.Signaling.Exten)
				assert.Equal(t, tlvcodec.ReasonHangup, s.End.Reason)
				assert.True(t, bytes.HasPrefix(s.Payload, bytes.Join(frames[:3], nil)), "the burst first")
			}
		}
	})
}
