package mediafork

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/tlvcodec"

	"github.com/mediafork/mediafork/internal/tone"
)

// recorded is what a fake was given, in order, with a wait on it that wakes
// at every addition (no polling).
type recorded[T any] struct {
	mu      sync.Mutex
	items   []T
	changed chan struct{} // closed and replaced at every addition
}

func (r *recorded[T]) add(x T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.items = append(r.items, x)
	if r.changed != nil {
		close(r.changed)
	}
	r.changed = make(chan struct{})
}

func (r *recorded[T]) list() []T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.items)
}

// wait returns the items once cond holds of them.
func (r *recorded[T]) wait(t *testing.T, what string, cond func([]T) bool) []T {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		r.mu.Lock()
		if r.changed == nil {
			r.changed = make(chan struct{})
		}
		items, ch := slices.Clone(r.items), r.changed
		r.mu.Unlock()
		if cond(items) {
			return items
		}
		select {
		case <-ch:
		case <-timeout:
			got := fmt.Sprint(items)
			if len(got) > 400 {
				got = got[:400] + "…"
			}
			t.Fatalf("waited for %s; %d so far: %s", what, len(items), got)
		}
	}
}

// fakeMedia is a fork's media connection in memory: what talk-back writes
// into the module's WebSocket.
type fakeMedia struct{ recorded[mediaMsg] }

type mediaMsg struct {
	text bool
	b    []byte
}

func newFakeMedia() *fakeMedia { return &fakeMedia{} }

func (m *fakeMedia) Send(text bool, b []byte) bool {
	m.add(mediaMsg{text, bytes.Clone(b)})
	return true
}

// binaryBytes is the audio the messages carry.
func binaryBytes(msgs []mediaMsg) int {
	n := 0
	for _, m := range msgs {
		if !m.text {
			n += len(m.b)
		}
	}
	return n
}

// audioBefore is the audio of the messages before the first text one, and
// checks that what follows the first n bytes is silence (the padding that
// takes the module's prebuffer over its threshold before a mark).
func audioBefore(t *testing.T, msgs []mediaMsg, n int) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		if m.text {
			break
		}
		b = append(b, m.b...)
	}
	require.GreaterOrEqual(t, len(b), n)
	pad := b[n:]
	assert.Less(t, len(pad), 2*streamPrebufferFirst, "padding")
	for _, x := range pad {
		require.Zero(t, x, "padding is silence")
	}
	return b[:n]
}

// texts are the text messages.
func texts(msgs []mediaMsg) []string {
	var out []string
	for _, m := range msgs {
		if m.text {
			out = append(out, string(m.b))
		}
	}
	return out
}

// echoes records a source's mark answers.
type echoes struct{ recorded[string] }

func newEchoes() *echoes { return &echoes{} }

func (e *echoes) echo(name string, cleared bool) { e.add(markState(name, cleared)) }

// answered waits for the answer want.
func (e *echoes) answered(t *testing.T, want string) {
	t.Helper()
	e.wait(t, "the mark answer "+want, func(got []string) bool { return slices.Contains(got, want) })
}

// fakeLegs is a switch's legs in memory: every displace and stop.
type fakeLegs struct{ recorded[string] }

func newFakeLegs() *fakeLegs { return &fakeLegs{} }

func (l *fakeLegs) Displace(_ context.Context, leg CallID, file string) error {
	l.add("start " + string(leg) + " " + file)
	return nil
}
func (l *fakeLegs) StopDisplace(_ context.Context, leg CallID, file string) error {
	l.add("stop " + string(leg) + " " + file)
	return nil
}

// BridgedLeg: the call's other party is on c-leg.
func (l *fakeLegs) BridgedLeg(context.Context, CallID) (CallID, error) { return "c-leg", nil }

// tbFork is a fork whose one TLV endpoint may speak to to, talking back
// with inject.
func tbFork(t *testing.T, inject Injection, to TalkbackTo, s TalkbackSettings, legs LegControl) (*Fork, *fakeMedia, *udpSink) {
	t.Helper()
	sink := newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	reg.SetTalkback(s)
	if legs != nil {
		reg.SetLegControl(func(string) LegControl { return legs })
	}
	f, err := reg.Claim("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", "mediafork")
	require.NoError(t, err)
	spec := stereoSpec()
	spec.Injection = inject
	require.NoError(t, f.Begin(spec, []Target{{Addr: sink.addr(), Options: TLVOptions{Talkback: to}}}))
	m := newFakeMedia()
	f.SetMediaConn(m)
	t.Cleanup(func() {
		f.Finish(EndHangup)
		<-f.Done()
	})
	return f, m, sink
}

// l16 is PCM as little-endian bytes.
func l16(pcm []int16) []byte {
	b := make([]byte, 2*len(pcm))
	for i, v := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(v))
	}
	return b
}

// tlvReceiver is a TLV endpoint speaking back (SPEC §9): from its socket
// to the address its stream comes from, for the stream's id.
type tlvReceiver struct {
	sink *udpSink
	id   uint32       // the stream's
	from *net.UDPAddr // where the stream comes from
}

// receiver reads the sink's first packet: the stream's id and where it
// comes from.
func (s *udpSink) receiver(t *testing.T) *tlvReceiver {
	t.Helper()
	buf := make([]byte, 2048)
	s.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := s.conn.ReadFromUDP(buf)
	require.NoError(t, err)
	var h tlvcodec.Header
	require.NoError(t, h.Unmarshal(buf[:n]))
	return &tlvReceiver{sink: s, id: h.StreamID, from: from}
}

// send sends a talk-back packet.
func (r *tlvReceiver) send(t *testing.T, p interface{ Marshal() ([]byte, error) }) {
	t.Helper()
	b, err := p.Marshal()
	require.NoError(t, err)
	_, err = r.sink.conn.WriteToUDP(b, r.from)
	require.NoError(t, err)
}

// speak sends ten 20 ms frames of 700 Hz (sequences 1 to 10) and mark.
func (r *tlvReceiver) speak(t *testing.T, mark uint32) {
	t.Helper()
	for i := 1; i <= 10; i++ {
		r.send(t, &tlvcodec.TalkbackAudio{StreamID: r.id, Direction: tlvcodec.TX, Sequence: uint32(i), Payload: l16(sine(700, 8000, 160, 8000))})
	}
	r.send(t, &tlvcodec.TalkbackMark{StreamID: r.id, Direction: tlvcodec.TX, MarkID: mark})
}

// markAnswer reads the stream's packets until a mark's answer.
func (r *tlvReceiver) markAnswer(t *testing.T) tlvcodec.TalkbackMark {
	t.Helper()
	buf := make([]byte, 2048)
	for {
		r.sink.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := r.sink.conn.ReadFromUDP(buf)
		require.NoError(t, err, "the mark's answer")
		var mk tlvcodec.TalkbackMark
		if mk.Unmarshal(buf[:n]) == nil {
			return mk
		}
	}
}

// The stream player (jambonz's module): audio sent faster than real time is
// buffered and paced, never a -1 sample (the module takes it for a mark);
// a mark goes after its audio under a name of mediafork's and is answered
// when the module echoes it; a clear empties the queue and the module's
// buffer (killAudio), answering the pending marks cleared at once.
func TestTalkbackStreamPlayer(t *testing.T) {
	f, m, _ := tbFork(t, InjectStream, TalkbackFar, TalkbackSettings{}, nil)
	e := newEchoes()
	src, err := f.NewTalkbackSource(TalkbackEndpoint{Name: "bot", Allowed: TalkbackFar, Encoding: L16, Rate: 8000, Echo: e.echo})
	require.NoError(t, err)
	require.NotNil(t, src)

	// 2 s at once, with -1 samples in it.
	pcm := sine(700, 8000, 16000, 8000)
	for i := 0; i < len(pcm); i += 97 {
		pcm[i] = -1
	}
	t0 := time.Now()
	for i := 0; i < len(pcm); i += 160 {
		require.NoError(t, src.Audio(TalkbackFar, l16(pcm[i:i+160])))
	}
	require.NoError(t, src.Mark(TalkbackFar, "m1"))
	// Paced: what left by now is the lead, the time that passed since the
	// first frame (however long a busy machine took) and a little more.
	early := binaryBytes(m.list())
	paced := streamLead + 300*time.Millisecond + time.Since(t0)
	assert.Less(t, early, 2*8000*int(paced/time.Millisecond)/1000, "sent at once: %d bytes of 32000 within %v", early, paced)
	msgs := m.wait(t, "the mark after the audio", func(ms []mediaMsg) bool { return len(texts(ms)) >= 1 })
	audioBefore(t, msgs, 32000) // all of it before the mark
	require.Equal(t, `{"type":"mark","data":{"name":"mf1"}}`, texts(msgs)[0])
	for _, x := range msgs {
		if x.text {
			continue
		}
		for i := 0; i+1 < len(x.b); i += 2 {
			require.False(t, x.b[i] == 0xff && x.b[i+1] == 0xff, "a -1 sample reached the module")
		}
	}
	assert.Empty(t, e.list(), "no answer before the module's")
	f.ModuleText([]byte(`{"type": "mark", "data": {"name":"mf1", "event": "playout"}}`))
	e.answered(t, "m1 played")
	in := f.Info().Talkback
	require.NotNil(t, in)
	assert.Equal(t, "stream", in.Injection)
	assert.Equal(t, int64(2000), in.PlayedMs)
	assert.Equal(t, "m1 played", in.LastMark)

	// 5 s more, a mark, then a clear at once: the queue is dropped, the
	// module told (killAudio), the mark answered cleared.
	for i := 0; i < 5*8000; i += 160 {
		require.NoError(t, src.Audio(TalkbackFar, l16(sine(700, 8000, 160, 8000))))
	}
	require.NoError(t, src.Mark(TalkbackFar, "m2"))
	src.Clear()
	e.answered(t, "m2 cleared")
	m.wait(t, "killAudio", func(ms []mediaMsg) bool {
		for _, s := range texts(ms) {
			if s == `{"type":"killAudio"}` {
				return true
			}
		}
		return false
	})
	in = f.Info().Talkback
	assert.Zero(t, in.QueuedMs, "nothing stays queued after a clear")
	assert.Greater(t, in.ClearedMs, int64(4000))
}

// playAudio is what a file player's message holds.
type playAudio struct {
	Type string `json:"type"`
	Data struct {
		AudioContentType string `json:"audioContentType"`
		SampleRate       int    `json:"sampleRate"`
		AudioContent     string `json:"audioContent"`
	} `json:"data"`
}

// The file player (drachtio's mod_audio_fork): the audio goes down as
// playAudio messages at its true rate, each file the module names is mixed
// into the leg with uuid_displace, one after the other; a mark is answered
// when the switch says its chunk's displace ended, never before; a clear
// stops what plays and answers the marks cleared.
func TestTalkbackFilePlayer(t *testing.T) {
	legs := newFakeLegs()
	f, m, _ := tbFork(t, InjectPlayAudio, TalkbackBoth, TalkbackSettings{}, legs)
	e := newEchoes()
	src, err := f.NewTalkbackSource(TalkbackEndpoint{Name: "bot", Allowed: TalkbackBoth, Encoding: L16, Rate: 8000, Echo: e.echo})
	require.NoError(t, err)
	pcm := sine(700, 8000, 4000, 8000) // 500 ms
	for i := 0; i < len(pcm); i += 160 {
		require.NoError(t, src.Audio(TalkbackFar, l16(pcm[i:i+160])))
	}
	require.NoError(t, src.Mark(TalkbackFar, "m1"))
	// The module writes each chunk into a file and says where (its events,
	// in order): 200, 200 and 100 ms.
	var got []int16
	files := 0
	msgs := m.wait(t, "three chunks", func(ms []mediaMsg) bool { return len(texts(ms)) >= 3 })
	for _, s := range texts(msgs) {
		var pa playAudio
		require.NoError(t, json.Unmarshal([]byte(s), &pa))
		require.Equal(t, "playAudio", pa.Type)
		assert.Equal(t, "raw", pa.Data.AudioContentType)
		assert.Equal(t, 8000, pa.Data.SampleRate, "the true rate")
		raw, err := base64.StdEncoding.DecodeString(pa.Data.AudioContent)
		require.NoError(t, err)
		for i := 0; i+1 < len(raw); i += 2 {
			got = append(got, int16(binary.LittleEndian.Uint16(raw[i:])))
		}
		f.TalkbackEvent(TalkbackFileReady{UUID: f.UUID, File: fmt.Sprintf("/tmp/fs/%s_%d.tmp.r8", f.UUID, files), Rate: 8000, At: time.Now()})
		files++
	}
	assert.Equal(t, pcm, got, "the audio, sample for sample")
	file := func(n int) string { return fmt.Sprintf("/tmp/fs/%s_%d.tmp.r8", f.UUID, n) }
	cmds := legs.wait(t, "the first chunk displaced", func(c []string) bool { return len(c) >= 1 })
	assert.Equal(t, "start "+string(f.UUID)+" "+file(0), cmds[0], "the fork's own channel first: far")
	// The switch says when each ends; the next is started before that (on
	// the chain's clock, not on the event: that would lose a frame).
	cmds = legs.wait(t, "the second displaced", func(c []string) bool { return len(c) >= 2 })
	assert.Equal(t, "start "+string(f.UUID)+" "+file(1), cmds[1])
	f.TalkbackEvent(DisplaceStopped{Leg: f.UUID, File: file(0), At: time.Now()})
	legs.wait(t, "the third displaced", func(c []string) bool { return len(c) >= 3 })
	f.TalkbackEvent(DisplaceStopped{Leg: f.UUID, File: file(1), At: time.Now()})
	time.Sleep(50 * time.Millisecond) // room for a wrong early answer (there must be none)
	assert.Empty(t, e.list(), "m1 is answered when its chunk ended, not before")
	f.TalkbackEvent(DisplaceStopped{Leg: f.UUID, File: file(2), At: time.Now()})
	e.answered(t, "m1 played")

	// The other party: the channel bridged to it now.
	require.NoError(t, src.Audio(TalkbackOther, l16(sine(700, 8000, 1600, 8000))))
	m.wait(t, "a fourth chunk", func(ms []mediaMsg) bool { return len(texts(ms)) >= 4 })
	f.TalkbackEvent(TalkbackFileReady{UUID: f.UUID, File: file(3), Rate: 8000, At: time.Now()})
	cmds = legs.wait(t, "displaced on the other leg", func(c []string) bool { return len(c) >= 4 })
	assert.Equal(t, "start c-leg "+file(3), cmds[3])
	// A clear while it plays: stopped, its mark answered cleared at once.
	require.NoError(t, src.Mark(TalkbackOther, "m2"))
	time.Sleep(20 * time.Millisecond) // the mark reaches the player (released after its audio)
	src.Clear()
	legs.wait(t, "the displace stopped", func(c []string) bool { return len(c) >= 5 && c[4] == "stop c-leg "+file(3) })
	e.answered(t, "m2 cleared")
}

// At most one receiver speaks to a party: a second one is refused until the
// first ends; both parties at once need both free.
func TestTalkbackOneSourcePerParty(t *testing.T) {
	f, _, _ := tbFork(t, InjectStream, TalkbackBoth, TalkbackSettings{}, nil)
	a, _ := f.NewTalkbackSource(TalkbackEndpoint{Name: "a", Allowed: TalkbackBoth, Encoding: L16, Rate: 8000})
	b, _ := f.NewTalkbackSource(TalkbackEndpoint{Name: "b", Allowed: TalkbackBoth, Encoding: L16, Rate: 8000})
	frame := l16(make([]int16, 160))
	require.NoError(t, a.Audio(TalkbackFar, frame))
	assert.ErrorIs(t, b.Audio(TalkbackFar, frame), ErrTalkbackBusy)
	assert.ErrorIs(t, b.Audio(TalkbackBoth, frame), ErrTalkbackBusy)
	require.NoError(t, b.Audio(TalkbackOther, frame), "the other party is free")
	assert.ErrorIs(t, a.Mark(TalkbackBoth, "x"), ErrTalkbackBusy)
	a.Close()
	require.NoError(t, b.Mark(TalkbackOther, "y"))
	c, _ := f.NewTalkbackSource(TalkbackEndpoint{Name: "c", Allowed: TalkbackFar, Encoding: L16, Rate: 8000})
	require.NoError(t, c.Audio(TalkbackFar, frame), "far is free again")
	assert.ErrorIs(t, c.Audio(TalkbackOther, frame), ErrTalkbackParty, "not its party")
	in := f.Info().Talkback
	require.Len(t, in.Sources, 2)
	assert.GreaterOrEqual(t, in.Refused, uint64(4))
}

// What a receiver sends is bounded: talkback.max_queue of audio (a message
// beyond is refused whole), whole samples, mark names, marks pending.
func TestTalkbackBounds(t *testing.T) {
	f, _, _ := tbFork(t, InjectStream, TalkbackFar, TalkbackSettings{MaxQueue: time.Second}, nil)
	src, _ := f.NewTalkbackSource(TalkbackEndpoint{Name: "a", Allowed: TalkbackFar, Encoding: L16, Rate: 8000})
	big := l16(make([]int16, 800)) // 100 ms
	accepted, refused := 0, 0
	for range 30 { // 3 s at once: 1 s (and what the pacing took meanwhile) fits
		switch err := src.Audio(TalkbackFar, big); {
		case err == nil:
			accepted++
		case errors.Is(err, ErrTalkbackFull):
			refused++
		default:
			t.Fatal(err)
		}
	}
	assert.GreaterOrEqual(t, accepted, 10)
	assert.Greater(t, refused, 10)
	in := f.Info().Talkback
	assert.LessOrEqual(t, in.QueuedMs, int64(1000))
	assert.Equal(t, int64(refused*100), in.RefusedMs)
	assert.ErrorIs(t, src.Audio(TalkbackFar, []byte{1, 2, 3}), ErrTalkbackAudio, "half a sample")
	assert.ErrorIs(t, src.Mark(TalkbackFar, strings.Repeat("x", MaxMarkName+1)), ErrTalkbackAudio)
	for i := 0; i < maxPendingMarks; i++ {
		require.NoError(t, src.Mark(TalkbackFar, fmt.Sprint(i)))
	}
	assert.ErrorIs(t, src.Mark(TalkbackFar, "one too many"), ErrTalkbackMarks)
	// A µ-law receiver at 8 kHz into a 16 kHz fork: decoded and resampled.
	_, err := f.NewTalkbackSource(TalkbackEndpoint{Name: "b", Allowed: TalkbackFar, Encoding: "opus", Rate: 8000})
	assert.Error(t, err)
}

// TLV talk-back (SPEC §9): packets from the endpoint's socket to the
// address its stream comes from, for its live stream: audio played, a mark
// answered with its status, a clear; a foreign stream id or a party the
// endpoint may not speak to is refused.
func TestTalkbackTLV(t *testing.T) {
	f, m, sink := tbFork(t, InjectStream, TalkbackFar, TalkbackSettings{}, nil)
	rcv := sink.receiver(t)
	id := rcv.id
	send := func(p interface{ Marshal() ([]byte, error) }) { rcv.send(t, p) }
	frame := l16(sine(700, 8000, 160, 8000))
	rcv.speak(t, 77)
	msgs := m.wait(t, "the audio and the mark", func(ms []mediaMsg) bool { return len(texts(ms)) >= 1 })
	assert.Equal(t, l16(sine(700, 8000, 160, 8000)), audioBefore(t, msgs, 3200)[:320])
	// Refused: another stream's id, a party it may not speak to, a late
	// sequence, a mark's answer from the receiver.
	before := f.registry.TLVTalkbackRefused()
	send(&tlvcodec.TalkbackAudio{StreamID: id + 1, Direction: tlvcodec.TX, Sequence: 11, Payload: frame})
	send(&tlvcodec.TalkbackAudio{StreamID: id, Direction: tlvcodec.RX, Sequence: 12, Payload: frame})
	send(&tlvcodec.TalkbackAudio{StreamID: id, Direction: tlvcodec.TX, Sequence: 5, Payload: frame})
	send(&tlvcodec.TalkbackMark{StreamID: id, Direction: tlvcodec.TX, MarkID: 1, Status: tlvcodec.MarkPlayed})
	waitFor(t, "four refused", func() bool { return f.registry.TLVTalkbackRefused() == before+4 })
	// The module says the mark played: the receiver hears so.
	f.ModuleText([]byte(`{"type": "mark", "data": {"name":"mf1", "event": "playout"}}`))
	assert.Equal(t, tlvcodec.TalkbackMark{StreamID: id, Direction: tlvcodec.TX, MarkID: 77, Status: tlvcodec.MarkPlayed}, rcv.markAnswer(t))
	send(&tlvcodec.TalkbackClear{StreamID: id, Direction: tlvcodec.TX})
	m.wait(t, "killAudio", func(ms []mediaMsg) bool { return strings.Contains(strings.Join(texts(ms), ""), "killAudio") })
}

// The resampler keeps a tone where it is, from and to the rates receivers
// and forks use, across messages of any size.
func TestTalkbackResample(t *testing.T) {
	for _, c := range []struct{ in, out int }{{8000, 16000}, {16000, 8000}, {48000, 16000}, {24000, 8000}, {12000, 8000}} {
		r, err := newResampler(c.in, c.out)
		require.NoError(t, err)
		x := sine(700, c.in, c.in, 8000)
		var y []int16
		for i := 0; i < len(x); i += 333 {
			y = r.process(y, x[i:min(i+333, len(x))])
		}
		assert.InDelta(t, c.out, len(y), 2, "%v: samples", c)
		mid := y[len(y)/4 : 3*len(y)/4]
		share := tone.Share(mid, c.out, 700)
		assert.Greater(t, share, 0.95, "%v: 700 Hz is %.2f of the energy", c, share)
	}
	r, err := newResampler(8000, 8000)
	assert.NoError(t, err)
	assert.Nil(t, r)
	_, err = newResampler(8000, 44100)
	assert.Error(t, err, "a ratio too fine")
}

// What a Twilio or mod_audio_fork server sends back is parsed into
// talk-back, every byte checked (its stream's sid, base64, depth, names),
// and marks are answered in each protocol's words.
func TestTalkbackServerMessages(t *testing.T) {
	tw := &twilioWire{sid: "MZ00112233445566778899aabbccddeeff"}
	payload := base64.StdEncoding.EncodeToString([]byte{0xff, 0x7f, 0x00})
	for _, c := range []struct {
		msg  string
		want talkbackMsg
		err  string
	}{
		{`{"event":"media","streamSid":"` + tw.sid + `","media":{"payload":"` + payload + `"}}`, talkbackMsg{op: talkAudio, audio: []byte{0xff, 0x7f, 0}}, ""},
		{`{"event":"mark","streamSid":"` + tw.sid + `","mark":{"name":"sentence 1"}}`, talkbackMsg{op: talkMark, name: "sentence 1"}, ""},
		{`{"event":"clear","streamSid":"` + tw.sid + `"}`, talkbackMsg{op: talkClear}, ""},
		{`{"event":"media","streamSid":"MZother","media":{"payload":"` + payload + `"}}`, talkbackMsg{}, "not this stream's"},
		{`{"event":"media","streamSid":"` + tw.sid + `","media":{"payload":"@@@"}}`, talkbackMsg{}, "not base64"},
		{`{"event":"media","streamSid":"` + tw.sid + `","media":{}}`, talkbackMsg{}, "without a payload"},
		{`{"event":"mark","streamSid":"` + tw.sid + `","mark":{}}`, talkbackMsg{}, "without a name"},
		{`{"event":"media","streamSid":"` + tw.sid + `","x":` + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `}`, talkbackMsg{}, "too deep"},
	} {
		_, got, err := tw.server(true, []byte(c.msg))
		if c.err != "" {
			assert.ErrorContains(t, err, c.err, c.msg)
			continue
		}
		require.NoError(t, err, c.msg)
		assert.Equal(t, c.want, got, c.msg)
	}
	tw.seq = 4
	assert.JSONEq(t, `{"event":"mark","sequenceNumber":"5","streamSid":"`+tw.sid+`","mark":{"name":"a \"q\""}}`, string(tw.markEcho(`a "q"`, true)))

	af := &audioforkWire{}
	_, got, err := af.server(false, []byte{1, 2})
	require.NoError(t, err)
	assert.Equal(t, talkbackMsg{op: talkAudio, audio: []byte{1, 2}}, got)
	_, got, err = af.server(true, []byte(`{"type":"mark","data":{"name":"m1"}}`))
	require.NoError(t, err)
	assert.Equal(t, talkbackMsg{op: talkMark, name: "m1"}, got)
	_, got, err = af.server(true, []byte(`{"type":"killAudio"}`))
	require.NoError(t, err)
	assert.Equal(t, talkbackMsg{op: talkClear}, got)
	kind, got, err := af.server(true, []byte(`{"type":"transcription","data":{"text":"hi"}}`))
	require.NoError(t, err)
	assert.Equal(t, "transcription", kind)
	assert.Equal(t, talkbackMsg{}, got, "not talk-back")
	_, _, err = af.server(true, []byte(`{"type":"mark","data":{}}`))
	assert.ErrorContains(t, err, "without a name")
	_, _, err = af.server(true, []byte(`{"type":"mark","data":`+strings.Repeat(`{"a":`, 12)+`1`+strings.Repeat(`}`, 12)+`}`))
	assert.ErrorContains(t, err, "too deep")
	assert.JSONEq(t, `{"type":"mark","data":{"name":"m1","event":"playout"}}`, string(af.markEcho("m1", false)))
	assert.JSONEq(t, `{"type":"mark","data":{"name":"m1","event":"cleared"}}`, string(af.markEcho("m1", true)))
}

// A fork suspended (its media connection lost) and resumed keeps its talk-back:
// the resumed fork's TLV stream (the same id, from the same socket) takes the
// receiver's talk-back again and plays it into the new media connection; the
// receiver's mark is answered from there.
func TestTalkbackResumed(t *testing.T) {
	sink := newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	spec := stereoSpec()
	spec.Start, spec.Injection = Start{Issuer: "me", Nonce: "n1"}, InjectStream
	targets := []Target{{Addr: sink.addr(), Options: TLVOptions{Talkback: TalkbackFar}}}
	f, err := reg.Claim("1f2e3d4c-5b6a-4798-8a9b-0c1d2e3f4a5b", "mediafork")
	require.NoError(t, err)
	require.NoError(t, f.Begin(spec, targets))
	m1 := newFakeMedia()
	f.SetMediaConn(m1)
	rcv := sink.receiver(t)
	speak := func(m *fakeMedia, mark uint32) string {
		rcv.speak(t, mark)
		msgs := m.wait(t, "the audio and the mark", func(ms []mediaMsg) bool { return len(texts(ms)) >= 1 })
		assert.GreaterOrEqual(t, binaryBytes(msgs), 3200, "the audio went into the module's connection")
		var mk struct {
			Data struct{ Name string } `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(texts(msgs)[0]), &mk))
		return mk.Data.Name
	}
	speak(m1, 1)

	f.Finish(EndMediaLost)
	cont, ok := f.Continuation()
	require.True(t, ok, "suspended")
	spec.Resume, spec.Start = &cont, Start{Issuer: "me", Nonce: "n2"}
	g, err := reg.ClaimWith(f.UUID, "mediafork", cont.Identity)
	require.NoError(t, err)
	require.NoError(t, g.Begin(spec, targets))
	t.Cleanup(func() { g.Finish(EndHangup); <-g.Done() })
	m2 := newFakeMedia()
	g.SetMediaConn(m2)
	name := speak(m2, 2)
	g.ModuleText([]byte(`{"type": "mark", "data": {"name":"` + name + `", "event": "playout"}}`))
	assert.Equal(t, tlvcodec.TalkbackMark{StreamID: rcv.id, Direction: tlvcodec.TX, MarkID: 2, Status: tlvcodec.MarkPlayed}, rcv.markAnswer(t))
	assert.Equal(t, "2:2 played", g.Info().Talkback.LastMark)
}
