package web

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/esl"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvdump"
)

// describedSpec is a fork mediafork would start on uuid, to sink.
func describedSpec(uuid string, source string, sink netip.AddrPort) mediafork.Spec {
	return mediafork.Spec{UUID: mediafork.CallID(uuid), Bug: "mediafork", Source: source, Targets: mediafork.TLVTargets(sink),
		Params:   mediafork.Params{Mix: mediafork.Mono, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20},
		Metadata: mediafork.Metadata{ChannelID: uuid, Exten: "9000"}}
}

// frameWith is the metadata of spec's start with desc as its description.
func frameWith(t *testing.T, spec mediafork.Spec, desc string) string {
	t.Helper()
	meta, err := esl.MetadataFrame(mediafork.ModuleAudioFork, spec.Metadata, desc)
	require.NoError(t, err)
	return meta
}

func awaitRefusal(t *testing.T, err error, code int, texts ...string) {
	t.Helper()
	var ce *websocket.CloseError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, code, ce.Code)
	for _, text := range texts {
		assert.Contains(t, ce.Text, text)
	}
}

// A mod_audio_fork connection with a genuine token streams only when its
// first text frame carries the description the token signed: a forged one
// (its endpoints moved), another call's or another start's, an altered one,
// none (no metadata, audio first, or a frame without the key or not JSON) and
// one longer than a module sends are closed 1008 before any audio goes out,
// and counted; a frame over max_message_bytes is closed 1009; a connection
// that sends nothing is cut at the first-message deadline.
func TestDescriptionOnTheWireAudioFork(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, func(s *IngestSettings) {
			s.FirstMessageTimeout = 300 * time.Millisecond
			s.MaxMessageBytes = 16 << 10
		}, 20)
		// Where a forged description would send the audio.
		elsewhere, err := tlvdump.Listen("127.0.0.1:0", tlvdump.Options{Keep: true})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); elsewhere.Run(ctx) }()
		defer func() { cancel(); <-done }()
		sink := r.sink.Addr().AddrPort()

		// The genuine fork streams.
		good := describedSpec("d-good", "", sink)
		path, meta := r.signed(good)
		a := r.dial(path, fssim.AudioForkOptions{Metadata: meta})
		require.NoError(t, a.Send(make([]byte, 320)))
		r.awaitPackets("d-good", 0)
		require.NoError(t, a.Send(nil)) // graceful: the fork ends

		sign := func(spec mediafork.Spec) mediafork.Credential {
			return r.signer.Sign(spec, time.Now().Add(time.Minute))
		}
		refusals := []struct {
			name string
			uuid string
			meta func(spec mediafork.Spec, c mediafork.Credential) string
			text string
		}{
			{"forged endpoints", "d-forged", func(spec mediafork.Spec, c mediafork.Credential) string {
				spec.Targets = mediafork.TLVTargets(elsewhere.Addr().AddrPort())
				return frameWith(t, spec, sign(spec).Description)
			}, "not the one its credential signed"},
			{"another call's", "d-replay", func(spec mediafork.Spec, c mediafork.Credential) string {
				other := describedSpec("d-other", "", sink)
				return frameWith(t, spec, sign(other).Description)
			}, "not the one its credential signed"},
			{"another start's", "d-restart", func(spec mediafork.Spec, c mediafork.Credential) string {
				spec.Metadata.CallerID = "1000" // the next start of the same call asked something else
				return frameWith(t, spec, sign(spec).Description)
			}, "not the one its credential signed"},
			{"altered", "d-altered", func(spec mediafork.Spec, c mediafork.Credential) string {
				d := []byte(c.Description)
				d[30] ^= 1
				return frameWith(t, spec, string(d))
			}, "not the one its credential signed"},
			{"no description key", "d-nokey", func(spec mediafork.Spec, c mediafork.Credential) string {
				return frameWith(t, spec, "")
			}, "none in the first text frame"},
			{"not JSON", "d-notjson", func(spec mediafork.Spec, c mediafork.Credential) string {
				return "mediafork=" + c.Description
			}, "none in the first text frame"},
			{"no metadata: audio first", "d-audio", func(spec mediafork.Spec, c mediafork.Credential) string {
				return ""
			}, "none in the first text frame"},
			{"longer than a module sends", "d-long", func(spec mediafork.Spec, c mediafork.Credential) string {
				return `{"mediafork":"` + c.Description + strings.Repeat("A", mediafork.MaxMetadataFrame) + `"}`
			}, " bytes, over the 8192 a module sends"},
		}
		for _, tc := range refusals {
			spec := describedSpec(tc.uuid, "", sink)
			c := sign(spec)
			conn := r.dial("/fork/"+tc.uuid+"?cred="+c.Token, fssim.AudioForkOptions{Metadata: tc.meta(spec, c)})
			conn.Send(make([]byte, 320)) // never forwarded
			closeErr := conn.AwaitClose(3 * time.Second)
			t.Run(tc.name, func(t *testing.T) {
				awaitRefusal(t, closeErr, websocket.ClosePolicyViolation, "bad fork description: ", tc.text)
			})
			r.awaitGone(tc.uuid)
		}
		assert.Equal(t, uint64(len(refusals)), r.ingest.Stats.Descriptions.Load(), "each refusal counted")

		// Over max_message_bytes: the frame limit, before any description.
		spec := describedSpec("d-huge", "", sink)
		c := sign(spec)
		a = r.dial("/fork/d-huge?cred="+c.Token, fssim.AudioForkOptions{Metadata: `{"x":"` + strings.Repeat("A", 20<<10) + `"}`})
		awaitRefusal(t, a.AwaitClose(3*time.Second), websocket.CloseMessageTooBig)
		r.awaitGone("d-huge")
		assert.Equal(t, uint64(1), r.ingest.Stats.TooBig.Load())

		// Nothing at all: cut by the first-message deadline.
		spec = describedSpec("d-silent", "", sink)
		a = r.dial("/fork/d-silent?cred="+sign(spec).Token, fssim.AudioForkOptions{})
		r.awaitGone("d-silent")
		a.Conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, _, err = a.Conn.ReadMessage()
		assert.Error(t, err, "the server hung up")
		a.Conn.Close()

		ended := r.waitEnded(1)
		require.Len(t, ended, 1, "only the genuine fork streamed")
		assert.Equal(t, "d-good", ended[0].Signaling.ChannelID)
		assert.Empty(t, elsewhere.Streams(), "nothing went where a forged description pointed")
		assert.Equal(t, uint64(len(refusals)), r.ingest.Stats.Descriptions.Load())
	})
}

// mod_audio_stream sends the audio it queued during a slow upgrade before its
// metadata (over wss:// even live audio, measured): a credentialed connection
// holds it until the description comes, then forwards all of it; audio with no
// description past the hold bound, or a forged description after the burst,
// is refused 1008 and nothing is forwarded.
func TestDescriptionOnTheWireAudioStream(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		sink := r.sink.Addr().AddrPort()
		burst := make([][]byte, 5)
		for i := range burst {
			burst[i] = make([]byte, 320)
			burst[i][0] = byte(i + 1)
		}

		good := describedSpec("s-good", mediafork.SourceAudioStream, sink)
		path, meta := r.signed(good)
		a := r.dialStream(path, fssim.AudioStreamOptions{Metadata: meta, Queued: burst})
		require.NoError(t, a.Send(make([]byte, 320)))
		r.awaitPackets("s-good", len(burst))
		a.Stop("")

		// Live audio, 20 ms apart, and no metadata: held (the metadata may come
		// late: wss://), refused once more is held than the bound.
		spec := describedSpec("s-live", mediafork.SourceAudioStream, sink)
		c := r.signer.Sign(spec, time.Now().Add(time.Minute))
		b := r.dialStream("/fork/s-live?cred="+c.Token, fssim.AudioStreamOptions{})
		streamed := make(chan error, 1)
		go func() {
			streamed <- b.Stream(context.Background(), make([]byte, (maxHeldFrames+2)*320), 320, 20*time.Millisecond)
		}()
		awaitRefusal(t, b.AwaitClose(5*time.Second), websocket.ClosePolicyViolation, "bad fork description: none in the first text frame")
		<-streamed // cut short by the close
		r.awaitGone("s-live")

		// A burst, then a description that is not the signed one.
		spec = describedSpec("s-forged", mediafork.SourceAudioStream, sink)
		c = r.signer.Sign(spec, time.Now().Add(time.Minute))
		other := spec
		other.Metadata.Exten = "forged"
		meta, err := esl.MetadataFrame(mediafork.ModuleAudioStream, spec.Metadata, r.signer.Sign(other, time.Now().Add(time.Minute)).Description)
		require.NoError(t, err)
		f := r.dialStream("/fork/s-forged?cred="+c.Token, fssim.AudioStreamOptions{Metadata: meta, Queued: burst})
		awaitRefusal(t, f.AwaitClose(3*time.Second), websocket.ClosePolicyViolation, "bad fork description: not the one its credential signed")
		r.awaitGone("s-forged")

		ended := r.waitEnded(1)
		require.Len(t, ended, 1, "only the genuine fork streamed")
		assert.Equal(t, "s-good", ended[0].Signaling.ChannelID)
		assert.Equal(t, len(burst)+1, ended[0].Packets, "the burst held, then forwarded in order, and the live frame")
		for i, b := range burst {
			assert.Equal(t, b, ended[0].Payload[i*320:(i+1)*320])
		}
		assert.Equal(t, uint64(2), r.ingest.Stats.Descriptions.Load())
	})
}

// describingLookup knows the descriptions "this instance" signed, as the
// orchestrator does.
type describingLookup struct {
	lookupFunc
	descs map[mediafork.CallID]string
}

func (d describingLookup) SignedDescription(uuid mediafork.CallID, _ mediafork.Start) string {
	return d.descs[uuid]
}

// mod_audio_stream drops its metadata when it connects before its bug is
// attached (seen on a loaded machine: live audio and no text frame at all).
// Past the hold bound, a fork this instance signed begins with the
// description it signed, and every frame held is forwarded; one it did not
// sign (another instance's, a credential replayed to an instance that
// forgot it) is still refused.
func TestDescriptionDroppedByAudioStream(t *testing.T) {
	t.Parallel()
	forEachReader(t, func(t *testing.T, reader string) {
		r := newRigWith(t, reader, nil, 10)
		sink := r.sink.Addr().AddrPort()
		spec := describedSpec("s-dropped", mediafork.SourceAudioStream, sink)
		c := r.signer.Sign(spec, time.Now().Add(time.Minute))
		other := describedSpec("s-unknown", mediafork.SourceAudioStream, sink)
		r.ingest.SetLookup(describingLookup{
			lookupFunc: func(context.Context, string) (mediafork.CallInfo, error) {
				return mediafork.CallInfo{}, errors.New("no such call")
			},
			descs: map[mediafork.CallID]string{"s-dropped": c.Description},
		})
		frames := maxHeldFrames + 2
		pcm := make([]byte, frames*320)
		for i := 0; i < frames; i++ {
			pcm[i*320] = byte(i + 1)
		}
		b := r.dialStream("/fork/s-dropped?cred="+c.Token, fssim.AudioStreamOptions{})
		require.NoError(t, b.Stream(context.Background(), pcm, 320, 20*time.Millisecond))
		r.awaitPackets("s-dropped", frames-1)
		b.Stop("")

		oc := r.signer.Sign(other, time.Now().Add(time.Minute))
		u := r.dialStream("/fork/s-unknown?cred="+oc.Token, fssim.AudioStreamOptions{})
		streamed := make(chan error, 1)
		go func() { streamed <- u.Stream(context.Background(), pcm, 320, 20*time.Millisecond) }()
		awaitRefusal(t, u.AwaitClose(5*time.Second), websocket.ClosePolicyViolation, "bad fork description: none in the first text frame")
		<-streamed
		r.awaitGone("s-unknown")

		ended := r.waitEnded(1)
		require.Len(t, ended, 1)
		assert.Equal(t, "s-dropped", ended[0].Signaling.ChannelID)
		assert.Equal(t, frames, ended[0].Packets, "every frame held, then forwarded in order")
		assert.Equal(t, pcm, ended[0].Payload)
	})
}
