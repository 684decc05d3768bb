package fssim

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const captures = "../testdata/freeswitch/captures/"

func names(block string) []string {
	var out []string
	for _, line := range strings.Split(block, "\n") {
		if n, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(n, "variable_") {
			out = append(out, n)
		}
	}
	return out
}

// The simulator's events carry the recorded headers, in the recorded order.
func TestEventsLookRecorded(t *testing.T) {
	t.Parallel()
	sw := NewSwitch("ClueCon", nil)
	c := &Call{UUID: "u", Name: "loopback/2000-a", sw: sw, opts: CallOptions{Direction: "outbound", Rate: 8000, Dest: "2000", CallerID: "1000", Context: "default"},
		created: time.Now(), answered: time.Now(), vars: map[string]string{}}
	for _, tc := range []struct{ sample, name string }{
		{"CHANNEL_ANSWER.plain.txt", "CHANNEL_ANSWER"},
	} {
		raw, err := os.ReadFile(captures + "samples/" + tc.sample)
		require.NoError(t, err)
		e := sw.coreHeaders(tc.name, "f", "g", 1)
		c.channelHeaders(e, "CS_CONSUME_MEDIA", "DOWN", 7, "")
		assert.Equal(t, names(string(raw)), names(e.plain()))
	}
	raw, err := os.ReadFile(captures + "samples/mod_audio_fork__connect_failed.plain.txt")
	require.NoError(t, err)
	recorded := names(string(raw))
	assert.Equal(t, "Event-Subclass", recorded[0])

	// URL encoding as FreeSWITCH does it, checked on recorded values.
	for plain, enc := range map[string]string{
		"2026-11-22 10:06:09":                     "2026-11-22%2010%3A06%3A09",
		"Sun, 22 Nov 2026 10:06:09 GMT":           "Sun,%2022%20Nov%202026%2010%3A06%3A09%20GMT",
		"fd00::2":                                 "fd00%3A%3A2",
		"[mediafork] start 02c08657 analytics":    "%5Bmediafork%5D%20start%2002c08657%20analytics",
		"+OK\n":                                   "%2BOK%0A",
		"tone_stream://%(2000,0,1000);loops=-1":   "tone_stream%3A//%25(2000,0,1000)%3Bloops%3D-1",
		"{origination_uuid=x}loopback/9200 &park": "%7Borigination_uuid%3Dx%7Dloopback/9200%20%26park",
	} {
		assert.Equal(t, enc, URLEncode(plain))
	}
}

// dialESL connects a raw client and returns a reader.
func dialESL(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c, bufio.NewReader(c)
}

func readN(t *testing.T, r *bufio.Reader, n int) string {
	buf := make([]byte, n)
	_, err := io.ReadFull(r, buf)
	require.NoError(t, err)
	return string(buf)
}

// The wrong password gets exactly the recorded bytes, then the close.
func TestBadPasswordBytes(t *testing.T) {
	t.Parallel()
	sw := NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()
	writes, err := ReadTranscript(captures + "esl/auth_bad_password.txt")
	require.NoError(t, err)
	var want []string
	for _, w := range writes {
		if w.FromServer {
			want = append(want, string(w.Data))
		}
	}
	require.Len(t, want, 3)
	c, r := dialESL(t, sw.Addr())
	assert.Equal(t, want[0], readN(t, r, len(want[0])))
	io.WriteString(c, "auth WrongPass\n\n")
	assert.Equal(t, want[1]+want[2], readN(t, r, len(want[1])+len(want[2])))
	_, err = r.ReadByte()
	assert.Equal(t, io.EOF, err, "closed after the notice")
}

// uuid_audio_fork without a rate crashes FreeSWITCH: every connection drops.
func TestStartWithoutRateCrashes(t *testing.T) {
	t.Parallel()
	sw := NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()
	call := sw.Answer(CallOptions{})
	c, r := dialESL(t, sw.Addr())
	readN(t, r, len("Content-Type: auth/request\n\n"))
	io.WriteString(c, "auth ClueCon\n\n")
	readN(t, r, len("Content-Type: command/reply\nReply-Text: +OK accepted\n\n"))
	io.WriteString(c, "api uuid_audio_fork "+call.UUID+" start ws://127.0.0.1:1/x mono\n\n")
	_, err := r.ReadByte()
	assert.Error(t, err, "the socket just closes")
	assert.Nil(t, sw.Call(call.UUID), "the calls died with it")
}

// mod_audio_fork: the answers of the module, its events and its frames.
func TestAudioForkEmulation(t *testing.T) {
	t.Parallel()
	sw := NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()
	frames := make(chan int, 1000)
	closes := make(chan int, 10)
	var requests []string
	srv := newWSServer(t, func(conn *websocket.Conn, r string) {
		requests = append(requests, r)
		for {
			mt, msg, err := conn.ReadMessage()
			if err != nil {
				if ce, ok := err.(*websocket.CloseError); ok {
					closes <- ce.Code
				}
				return
			}
			if mt == websocket.BinaryMessage {
				frames <- len(msg)
			}
		}
	})
	call := sw.Answer(CallOptions{})
	assert.Equal(t, "-ERR Operation Failed\n", sw.api("uuid_audio_fork", "nosuch start "+srv+" mono 8k", nil))
	assert.Equal(t, "+OK Success\n", sw.api("uuid_audio_fork", call.UUID+" start "+srv+" stereo 8k mybug {\"a\":1}", nil))
	assert.Equal(t, "-ERR Operation Failed\n", sw.api("uuid_audio_fork", call.UUID+" start "+srv+" stereo 8k mybug", nil), "the same bug twice")
	for i := 0; i < 5; i++ {
		assert.Equal(t, 640, <-frames, "stereo 8k: 640 bytes per 20 ms")
	}
	assert.Equal(t, []string{"mybug"}, call.Bugs())
	assert.Equal(t, "+OK Success\n", sw.api("uuid_audio_fork", call.UUID+" stop mybug", nil))
	assert.Equal(t, websocket.CloseNormalClosure, <-closes)
	assert.Equal(t, "-ERR Operation Failed\n", sw.api("uuid_audio_fork", call.UUID+" stop mybug", nil), "a second stop")
	require.Len(t, requests, 1)
	assert.Contains(t, requests[0], "Host: 127.0.0.1\r\n", "Host without the port")
	assert.Contains(t, requests[0], "Origin: http://127.0.0.1\r\n")
	assert.NotContains(t, requests[0], "User-Agent")
}

func newWSServer(t *testing.T, handle func(*websocket.Conn, string)) string {
	up := websocket.Upgrader{Subprotocols: []string{Subprotocol}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dump, _ := httputil.DumpRequest(r, false)
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		handle(conn, string(dump))
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http") + "/fork/x"
}
