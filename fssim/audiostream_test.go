package fssim

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/testport"
)

const streamCaptures = captures + "audio_stream/"

// The upgrade request, byte for byte as recorded (s01, and s14d with
// STREAM_EXTRA_HEADERS: sorted, spaces kept, non-string values dropped).
func TestStreamUpgradeRequestBytes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ dir, url, vars string }{
		{"s01_stereo_8k", "ws://127.0.0.1:18510/s01_stereo_8k?ch=2&rate=8000", ""},
		{"s14d_extra_headers", "ws://127.0.0.1:18538/s14d_extra_headers?ch=1&rate=8000", `{"Authorization":"Bearer x","X-Call-Id":"abc 123","n":5}`},
	} {
		want, err := os.ReadFile(streamCaptures + tc.dir + "/ws/conn01/request.txt")
		require.NoError(t, err)
		key := regexp.MustCompile(`Sec-WebSocket-Key:(\S+)\r\n`).FindSubmatch(want)[1]
		got, err := UpgradeRequest(tc.url, string(key), extraHeaders(tc.vars))
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), tc.dir)
	}
}

// recListener records the first request bytes of each connection.
type recListener struct {
	net.Listener
	mu   sync.Mutex
	reqs [][]byte
}

type recConn struct {
	net.Conn
	l    *recListener
	buf  []byte
	done bool
}

func (l *recListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return &recConn{Conn: c, l: l}, err
}

func (c *recConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if !c.done {
		c.buf = append(c.buf, p[:n]...)
		if i := bytes.Index(c.buf, []byte("\r\n\r\n")); i >= 0 {
			c.done = true
			c.l.mu.Lock()
			c.l.reqs = append(c.l.reqs, c.buf[:i+4])
			c.l.mu.Unlock()
		}
	}
	return n, err
}

// streamServer is a WebSocket server like the recording one: no subprotocol.
// handle gets each connection; delay holds the 101 back.
type streamServer struct {
	url string
	ln  *recListener
}

func newStreamServer(t *testing.T, delay time.Duration, handle func(*websocket.Conn)) *streamServer {
	up := websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if delay > 0 {
			time.Sleep(delay) // the scenario: a slow upgrade
		}
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		handle(conn)
	}))
	rl := &recListener{Listener: srv.Listener}
	srv.Listener = rl
	srv.Start()
	t.Cleanup(srv.Close)
	return &streamServer{url: "ws" + strings.TrimPrefix(srv.URL, "http") + "/stream?ch=2", ln: rl}
}

// streamEvents delivers mod_audio_stream's events as "subclass body".
func streamEvents(t *testing.T, sw *Switch) <-chan string {
	return customEvents(t, sw, "mod_audio_stream::connect", "mod_audio_stream::disconnect", "mod_audio_stream::error",
		"mod_audio_stream::json", "mod_audio_stream::play")
}

func newStreamSwitch(t *testing.T) *Switch {
	sw := NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	t.Cleanup(sw.Close)
	return sw
}

func next(t *testing.T, ch <-chan string) string {
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return ""
	}
}

// The events carry the recorded headers in the recorded order and bodies.
func TestStreamEventsLookRecorded(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(streamCaptures + "samples/mod_audio_stream__connect.plain.txt")
	require.NoError(t, err)
	sw := NewSwitch("ClueCon", nil)
	c := &Call{UUID: "u", Name: "loopback/9000-b", sw: sw, opts: CallOptions{Direction: "inbound", Rate: 8000, Dest: "9000", CallerID: "0000000000", Context: "default"},
		created: time.Now(), answered: time.Now(), vars: map[string]string{}}
	e := sw.coreHeaders("CUSTOM", "mod_audio_stream.c", "responseHandler", 16)
	e.headers = append([]header{{"Event-Subclass", "mod_audio_stream::connect"}}, e.headers...)
	c.channelHeaders(e, "CS_EXECUTE", "ACTIVE", 4, "")
	e.body = `{"status":"connected"}`
	recHead, recBody, _ := strings.Cut(string(raw), "\n\n")
	head, body, _ := strings.Cut(e.plain(), "\n\n")
	assert.Equal(t, names(recHead), names(head))
	assert.Equal(t, recBody, body)
	for _, line := range []string{"Event-Subclass: mod_audio_stream%3A%3Aconnect", "Event-Calling-File: mod_audio_stream.c",
		"Event-Calling-Function: responseHandler", "Event-Calling-Line-Number: 16"} {
		assert.Contains(t, head, line+"\n")
	}
	for sample, body := range map[string]string{
		"mod_audio_stream__error_abnormal_eof.plain.txt":       streamErrorBody(ioError(io.EOF)),
		"mod_audio_stream__error_connection_refused.plain.txt": streamErrorBody(&StreamError{6, systemError(errConnRefused(t))}),
	} {
		raw, err := os.ReadFile(streamCaptures + "samples/" + sample)
		require.NoError(t, err)
		_, rec, _ := strings.Cut(string(raw), "\n\n")
		assert.Equal(t, rec, body, sample)
	}
}

func errConnRefused(t *testing.T) error {
	_, err := net.Dial("tcp", testport.Refused(t))
	return err
}

// FreeSWITCH's splitter, on the recorded command lines.
func TestSeparateString(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{`u start ws://h:1/x mono 8k {"a": "b c", "d": [1, 2]}   `, []string{"u", "start", "ws://h:1/x", "mono", "8k", `{"a": "b c", "d": [1, 2]}`}}, // s06b
		{`u start ws://h:1/x mono 8k {"q":"it's","bs":"a\"b","nl":"x\ny","sq":'quoted part'}`,
			[]string{"u", "start", "ws://h:1/x", "mono", "8k", "{\"q\":\"its\",\"bs\":\"a\"b\",\"nl\":\"x\ny\",\"sq\":quoted part'}"}}, // s06c
		{`u stop {"final": "bye now"}`, []string{"u", "stop", `{"final":`, `"bye`, `now"}`}}, // s08b
		{`u send_text '{"a": "b c"}'`, []string{"u", "send_text", `{"a": "b c"}`}},           // s12
		{`u send_text {"a": "b c"}`, []string{"u", "send_text", `{"a":`, `"b`, `c"}`}},       // s12
		{`u start ws://h:1/x mono`, []string{"u", "start", "ws://h:1/x", "mono"}},
	} {
		assert.Equal(t, tc.want, SeparateString(tc.in, 6), tc.in)
	}
}

// The api's answers (s15, s17, s08c, s07), module_exists per loaded module.
func TestAudioStreamAPI(t *testing.T) {
	t.Parallel()
	sw := newStreamSwitch(t)
	srv := newStreamServer(t, 0, func(c *websocket.Conn) {
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	call := sw.Answer(CallOptions{})
	u := call.UUID
	api := func(args string) string { return sw.api("uuid_audio_stream", args, nil) }
	assert.Equal(t, streamUsage, api(""))
	assert.Equal(t, streamUsage, api(u))
	assert.Equal(t, streamUsage, api(u+" start "+srv.url))
	assert.Equal(t, "-ERR no reply\n", api(u+" start "+srv.url+" Mono 8k"))
	for _, bad := range []string{" start http://127.0.0.1:1/x mono 8k", " start " + srv.url + " mono 11025", " start " + srv.url + " mono 24k", " nosuchcmd"} {
		assert.Equal(t, streamFail, api(u+bad), bad)
	}
	assert.Equal(t, streamFail, api("nosuch start "+srv.url+" mono 8k"))
	assert.Equal(t, streamFail, api(u+" stop"), "nothing attached")
	assert.Equal(t, streamOK, api(u+" START "+srv.url+" mono"), "rate optional, sub-command in any case")
	assert.Equal(t, streamFail, api(u+" start "+srv.url+" mono 8k"), "one stream per channel")
	assert.Equal(t, streamFail, api(u+" graceful-shutdown"))
	assert.Equal(t, streamOK, api(u+" pause"))
	assert.Equal(t, streamOK, api(u+" pause"))
	assert.Equal(t, streamOK, api(u+" resume"))
	assert.Equal(t, streamOK, api(u+" send_text hello"))
	assert.Equal(t, streamOK, api(u+" STOP"))
	assert.Equal(t, streamFail, api(u+" stop"), "a second stop")
	assert.Equal(t, streamFail, api(u+" send_text late"))

	assert.Equal(t, "true", sw.api("module_exists", "mod_audio_stream", nil))
	sw.SetModules(ModAudioStream)
	assert.Equal(t, "true", sw.api("module_exists", "mod_audio_stream", nil))
	assert.Equal(t, "false", sw.api("module_exists", "mod_audio_fork", nil))
	assert.Equal(t, "-ERR uuid_audio_fork Command not found!\n", sw.api("uuid_audio_fork", u+" stop", nil))
	sw.SetModules(ModAudioFork)
	assert.Equal(t, "false", sw.api("module_exists", "mod_audio_stream", nil))
	assert.Equal(t, "-ERR uuid_audio_stream Command not found!\n", sw.api("uuid_audio_stream", u+" stop", nil))
}

type wsMsg struct {
	mt   int
	data []byte
}

// A stereo stream: the recorded request, connect event, metadata first (fast
// upgrade), 640-byte L16 frames with ch0 = READ; stop → text, then close 1000
// "Normal closure"; no event.
func TestAudioStreamStereo(t *testing.T) {
	t.Parallel()
	sw := newStreamSwitch(t)
	events := streamEvents(t, sw)
	msgs := make(chan wsMsg, 1000)
	closes := make(chan *websocket.CloseError, 1)
	srv := newStreamServer(t, 0, func(c *websocket.Conn) {
		assert.Equal(t, "", c.Subprotocol())
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					closes <- ce
				}
				return
			}
			msgs <- wsMsg{mt, p}
		}
	})
	call := sw.Answer(CallOptions{ReadHz: 1000, WriteHz: 440})
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", call.UUID+" start "+srv.url+` stereo 8k {"a": "b c"}`, nil))
	assert.Equal(t, "mod_audio_stream::connect "+`{"status":"connected"}`, next(t, events))
	m := <-msgs
	assert.Equal(t, wsMsg{websocket.TextMessage, []byte(`{"a": "b c"}`)}, m, "metadata first when the upgrade is fast")
	var pcm []byte
	for len(pcm) < 5*640 {
		m = <-msgs
		require.Equal(t, websocket.BinaryMessage, m.mt)
		require.Len(t, m.data, 640)
		pcm = append(pcm, m.data...)
	}
	assert.InDelta(t, 1000, dominant(pcm, 0, 2, 8000), 30, "ch0 = READ")
	assert.InDelta(t, 440, dominant(pcm, 1, 2, 8000), 30, "ch1 = WRITE")

	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", call.UUID+` stop {"final":"bye"}`, nil))
	for m = <-msgs; m.mt == websocket.BinaryMessage; m = <-msgs {
	}
	assert.Equal(t, `{"final":"bye"}`, string(m.data))
	ce := <-closes
	assert.Equal(t, 1000, ce.Code)
	assert.Equal(t, "Normal closure", ce.Text)

	srv.ln.mu.Lock()
	req := string(srv.ln.reqs[0])
	srv.ln.mu.Unlock()
	key := regexp.MustCompile(`Sec-WebSocket-Key:(\S+)\r\n`).FindStringSubmatch(req)[1]
	want, _ := UpgradeRequest(srv.url, key, nil)
	assert.Equal(t, string(want), req, "the recorded request")
	assert.False(t, call.Streaming())
}

// dominant is the strongest of a few candidate frequencies in one channel.
func dominant(pcm []byte, ch, channels, rate int) float64 {
	best, bestP := 0.0, -1.0
	for _, f := range []float64{440, 1000} {
		var re, im float64
		for i := 0; (i+1)*channels*2 <= len(pcm); i++ {
			v := float64(int16(binary.LittleEndian.Uint16(pcm[(i*channels+ch)*2:])))
			a := 2 * math.Pi * f * float64(i) / float64(rate)
			re += v * math.Cos(a)
			im += v * math.Sin(a)
		}
		if p := re*re + im*im; p > bestP {
			best, bestP = f, p
		}
	}
	return best
}

// s09c: audio captured during a slow upgrade comes first, in a burst, then the
// metadata, then live audio; nothing is lost.
func TestAudioStreamSlowUpgradeBurst(t *testing.T) {
	t.Parallel()
	sw := newStreamSwitch(t)
	msgs := make(chan wsMsg, 1000)
	srv := newStreamServer(t, 200*time.Millisecond, func(c *websocket.Conn) {
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			msgs <- wsMsg{mt, p}
		}
	})
	call := sw.Answer(CallOptions{})
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", call.UUID+" start "+srv.url+` mono 8k {"meta":"first?"}`, nil))
	burst := 0
	m := <-msgs
	for ; m.mt == websocket.BinaryMessage; m = <-msgs {
		assert.Len(t, m.data, 320)
		burst++
	}
	// How many frames the 200 ms upgrade holds back depends on how often the
	// simulator's clock ticked meanwhile (fewer on a loaded machine): what the
	// capture shows is their place — all before the metadata — not their number.
	assert.GreaterOrEqual(t, burst, 1, "frames queued during the 200 ms upgrade")
	assert.Equal(t, `{"meta":"first?"}`, string(m.data))
	assert.Equal(t, websocket.BinaryMessage, (<-msgs).mt, "then live audio")
}

// s10/s10b: a server close → ::disconnect with its code and reason, the same
// close echoed, no more audio, the bug stays (start → -ERR, stop → +OK), then
// a new start works.
func TestAudioStreamServerClose(t *testing.T) {
	t.Parallel()
	sw := newStreamSwitch(t)
	events := streamEvents(t, sw)
	echoes := make(chan *websocket.CloseError, 2)
	srv := newStreamServer(t, 0, func(c *websocket.Conn) {
		c.ReadMessage()
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(4000, "custom reason"), time.Now().Add(time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					echoes <- ce
				}
				return
			}
		}
	})
	call := sw.Answer(CallOptions{})
	u := call.UUID
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", u+" start "+srv.url+" mono 8k", nil))
	assert.Equal(t, "mod_audio_stream::connect "+`{"status":"connected"}`, next(t, events))
	assert.Equal(t, `mod_audio_stream::disconnect {"status":"disconnected","message":{"code":4000,"reason":"custom reason"}}`, next(t, events))
	ce := <-echoes
	assert.Equal(t, &websocket.CloseError{Code: 4000, Text: "custom reason"}, ce)
	assert.True(t, call.Streaming(), "the bug stays attached")
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", u+" send_text after-close", nil))
	assert.Equal(t, streamFail, sw.api("uuid_audio_stream", u+" start "+srv.url+" mono 8k", nil))
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", u+" stop", nil))
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", u+" start "+srv.url+" mono 8k", nil))
	assert.Equal(t, "mod_audio_stream::connect "+`{"status":"connected"}`, next(t, events))
}

// s11: TCP FIN without a close → ::error code 1, the bug is removed; s09: no
// server → code 6; s09d: no 101 within 1 s → code 10.
func TestAudioStreamFailures(t *testing.T) {
	t.Parallel()
	sw := newStreamSwitch(t)
	events := streamEvents(t, sw)
	srv := newStreamServer(t, 0, func(c *websocket.Conn) {
		c.ReadMessage()
		c.NetConn().Close()
	})
	call := sw.Answer(CallOptions{})
	u := call.UUID
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", u+" start "+srv.url+" mono 8k", nil))
	next(t, events)
	assert.Equal(t, `mod_audio_stream::error {"status":"error","message":{"code":1,"error":"Connection closed without WebSocket CLOSE (abnormal EOF)"}}`, next(t, events))
	assert.Equal(t, streamFail, sw.api("uuid_audio_stream", u+" stop", nil), "bug removed")

	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", u+" start ws://"+testport.Refused(t)+"/x mono 8k", nil))
	assert.Equal(t, `mod_audio_stream::error {"status":"error","message":{"code":6,"error":"Connection refused (system error 111)"}}`, next(t, events))
	assert.Equal(t, streamFail, sw.api("uuid_audio_stream", u+" send_text x", nil))

	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	require.NoError(t, err)
	defer ln.Close()
	t0 := time.Now()
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", u+" start ws://"+ln.Addr().String()+"/x mono 8k", nil))
	assert.Equal(t, `mod_audio_stream::error {"status":"error","message":{"code":10,"error":"Timeout"}}`, next(t, events))
	// Not before libwsc's timeout: a bound that load cannot break (it only
	// makes the event later).
	assert.GreaterOrEqual(t, time.Since(t0), StreamHandshakeTimeout, "the timeout came early")
}

// s13: streamAudio → ::play naming the file; any other text → ::json verbatim.
func TestAudioStreamServerMessages(t *testing.T) {
	t.Parallel()
	sw := newStreamSwitch(t)
	events := streamEvents(t, sw)
	texts := []string{
		`{"type": "streamAudio", "data": {"audioDataType": "raw", "sampleRate": 8000, "audioData": "AAAA"}}`,
		`{"type":"streamAudio","data":{"audioDataType":"wav","audioData":"UklG","extra":"kept?"}}`,
		`{"foo":"bar","n":1}`,
		`hello, not json`,
		`{"type":"streamAudio","data":{"audioDataType":"raw","sampleRate":11025,"audioData":"AAAA"}}`,
	}
	srv := newStreamServer(t, 0, func(c *websocket.Conn) {
		for _, m := range texts {
			c.WriteMessage(websocket.TextMessage, []byte(m))
		}
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return
			}
		}
	})
	call := sw.Answer(CallOptions{})
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", call.UUID+" start "+srv.url+" stereo 8k", nil))
	next(t, events)
	for _, want := range []string{
		`mod_audio_stream::play {"audioDataType":"raw","sampleRate":8000,"file":"/tmp/` + call.UUID + `_0.tmp.r8"}`,
		`mod_audio_stream::play {"audioDataType":"wav","extra":"kept?","file":"/tmp/` + call.UUID + `_1.tmp.wav"}`,
		`mod_audio_stream::json {"foo":"bar","n":1}`,
		`mod_audio_stream::json hello, not json`,
		"mod_audio_stream::json " + texts[4],
	} {
		assert.Equal(t, want, next(t, events))
	}
}

// s16: hangup → close 1000 "Normal closure", no event.
func TestAudioStreamHangup(t *testing.T) {
	t.Parallel()
	sw := newStreamSwitch(t)
	closes := make(chan *websocket.CloseError, 1)
	frames := make(chan struct{}, 100)
	srv := newStreamServer(t, 0, func(c *websocket.Conn) {
		for {
			_, _, err := c.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					closes <- ce
				}
				return
			}
			frames <- struct{}{}
		}
	})
	call := sw.Answer(CallOptions{})
	assert.Equal(t, streamOK, sw.api("uuid_audio_stream", call.UUID+" start "+srv.url+" mono 16k", nil))
	<-frames
	sw.Hangup(call.UUID, "NORMAL_CLEARING")
	assert.Equal(t, &websocket.CloseError{Code: 1000, Text: "Normal closure"}, <-closes)
}

// DialAudioStream: the helper for tests sends the recorded request, the queued
// burst, then the metadata.
func TestDialAudioStream(t *testing.T) {
	t.Parallel()
	msgs := make(chan wsMsg, 10)
	srv := newStreamServer(t, 0, func(c *websocket.Conn) {
		for {
			mt, p, err := c.ReadMessage()
			if err != nil {
				return
			}
			msgs <- wsMsg{mt, p}
		}
	})
	s, err := DialAudioStream(t.Context(), srv.url, AudioStreamOptions{Metadata: "{}", Queued: [][]byte{{1, 2}, {3, 4}}})
	require.NoError(t, err)
	assert.Equal(t, wsMsg{websocket.BinaryMessage, []byte{1, 2}}, <-msgs)
	assert.Equal(t, wsMsg{websocket.BinaryMessage, []byte{3, 4}}, <-msgs)
	assert.Equal(t, wsMsg{websocket.TextMessage, []byte("{}")}, <-msgs)
	require.NoError(t, s.Send(make([]byte, 320)))
	assert.Len(t, (<-msgs).data, 320)
	assert.Equal(t, &websocket.CloseError{Code: 1000, Text: ""}, s.Stop(""), "the server's answer")
	assert.True(t, strings.HasPrefix(string(s.Response), "HTTP/1.1 101"))
	assert.NotContains(t, string(s.Request), "Sec-WebSocket-Protocol")
}
