package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvdump"
)

// Attacks on the daemon from the same host, with the default configuration
// (no API token, no ingest token): SECURITY.md, and issue 9's findings.

// forkURL is the URL of the last uuid_audio_fork start mediafork sent for uuid.
func forkURL(t *testing.T, sw *fssim.Switch, uuid string) string {
	t.Helper()
	url := ""
	for _, cmd := range sw.APICommands() {
		if f := strings.Fields(cmd); len(f) > 3 && f[0] == "uuid_audio_fork" && f[1] == uuid && f[2] == "start" {
			url = f[3]
		}
	}
	require.NotEmpty(t, url, "no start for %s", uuid)
	return url
}

// apiFork answers a call to dest and forks it through the API to the
// analytics profile, returning once both directions stream.
func (s *stack) apiFork(dest string) *fssim.Call {
	s.t.Helper()
	call := s.switches[0].Answer(fssim.CallOptions{Dest: dest})
	status, out := s.call("POST", "/v1/forks", "", fmt.Sprintf(`{"uuid":%q,"profile":"analytics"}`, call.UUID))
	require.Equal(s.t, 201, status, out)
	s.waitPackets("loopback/"+dest+"-a", 2, 3)
	return call
}

// Finding 3: a uuid holding newlines reached uuid_dump unescaped, so the
// switch ran `api system id` and a `bgapi originate` as commands of their own.
// Now every entry parses the uuid into a CallID; the switch receives nothing.
func TestAPIRefusesESLInjection(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5000"})
	before := len(sw.APICommands())
	bad := []string{"call-1\n\napi system id\n\nbgapi originate loopback/1 &park", "a b", "a%0Ab", strings.Repeat("a", 65)}
	for _, uuid := range bad {
		body := fmt.Sprintf(`{"uuid":%q,"profile":"analytics"}`, uuid)
		status, out := s.call("POST", "/v1/forks", "", body)
		assert.Equal(t, 400, status, out)
		assert.Contains(t, out, "not a call uuid")
	}
	// What the switch received: no smuggled command, no bad uuid. (The
	// resync's own uuid_dump of the live call may land here too.)
	noneReached := func() {
		t.Helper()
		for _, cmd := range sw.APICommands()[before:] {
			assert.NotContains(t, cmd, "system")
			assert.NotContains(t, cmd, "originate")
			if !strings.HasPrefix(cmd, "uuid_") {
				continue // fs_cli's echo and mediafork's answer in the log
			}
			for _, marker := range []string{"call-1", "%0A", strings.Repeat("a", 65), "uuid_dump a"} {
				assert.NotContains(t, cmd, marker, "a bad uuid reached the switch: %q", cmd)
			}
		}
	}
	noneReached()
	status, out := s.call("GET", "/v1/forks/a%20b", "", "")
	assert.Equal(t, 400, status, out)
	status, out = s.call("DELETE", "/v1/forks/a%0Ab", "", "")
	assert.Equal(t, 400, status, out)
	// fs_cli takes the same type.
	sw.FsCli("mediafork start bad%0Auuid analytics")
	require.Eventually(t, func() bool {
		return countPrefix(sw.Logs(), "[NOTICE] mediafork: start bad%0Auuid failed: not a call uuid") == 1
	},
		5*time.Second, 10*time.Millisecond, "%s", strings.Join(sw.Logs(), "\n"))
	noneReached()
	// A web page cannot post without a preflight: text/plain is refused.
	req, _ := http.NewRequest("POST", "http://"+s.api+"/v1/forks", strings.NewReader(fmt.Sprintf(`{"uuid":%q,"profile":"analytics"}`, call.UUID)))
	req.Header.Set("Content-Type", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnsupportedMediaType, resp.StatusCode)
	assert.Zero(t, countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID), "nothing was started")
	// And the connection still answers the next command with its own reply.
	status, out = s.call("POST", "/v1/forks", "", fmt.Sprintf(`{"uuid":%q,"profile":"analytics"}`, call.UUID))
	require.Equal(t, 201, status, out)
	s.waitPackets("loopback/5000-a", 2, 3)
}

// Finding 11 (API): statuses for what is malformed, misrouted or unanswered.
func TestAPIStatuses(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5000"})
	// Rows that old code would have accepted each get a call of their own, so
	// that one row's fork cannot turn the next into a 409.
	fresh := func() string { return sw.Answer(fssim.CallOptions{Dest: "5001"}).UUID }
	cases := []struct {
		method, path, body string
		status             int
		says               string
	}{
		{"PATCH", "/v1/forks", "", 405, "not allowed"},
		{"PUT", "/v1/forks/" + call.UUID, "", 405, "not allowed"},
		{"GET", "/v1/log-level", "", 405, "not allowed"},
		{"POST", "/healthz", "", 405, "not allowed"},
		{"GET", "/v2/forks", "", 404, "not found"},
		{"POST", "/v1/forks", `{"uuid":"` + fresh() + `","profile":"analytics"} {"uuid":"x"}`, 400, "data after the object"},
		{"POST", "/v1/forks", `{"uuid":"` + call.UUID + `","profile":"analytics","extra":1}`, 400, "unknown field"},
		{"POST", "/v1/forks", `{"profile":"analytics"}`, 400, "uuid is required"},
		{"POST", "/v1/forks", `{"uuid":"` + fresh() + `","to":["127.0.0.1:0"]}`, 400, "port 0"},
		{"POST", "/v1/forks", `{"uuid":"` + fresh() + `","to":[` + strings.TrimSuffix(strings.Repeat(`"127.0.0.1:9",`, 17), ",") + `]}`, 400, "at most 16"},
		{"POST", "/v1/forks", `{"uuid":"` + call.UUID + `","profile":"analytics","metadata":{"channel_id":"` + strings.Repeat("x", 5000) + `"}}`, 201, ""},
		{"PUT", "/v1/log-level", `{"level":"ERROR+100"}`, 400, "want debug"},
		{"PUT", "/v1/log-level", `{"level":"debug-20"}`, 400, "want debug"},
		{"PUT", "/v1/log-level", `{"level":"warn"}`, 200, "warn"},
		{"PUT", "/v1/log-level", `{"level":"debug"} x`, 400, "data after"},
	}
	for _, tc := range cases {
		status, out := s.call(tc.method, tc.path, "", tc.body)
		assert.Equal(t, tc.status, status, "%s %s %.80s: %s", tc.method, tc.path, tc.body, out)
		assert.Contains(t, out, tc.says, "%s %s", tc.method, tc.path)
	}
}

// Finding 4: the allow list held only for the name as it resolved when the
// fork was asked for; the ingest resolved it again, trusted. Now the address
// is resolved once and signed: a DNS change moves nothing, retries included.
func TestDestinationNamePinned(t *testing.T) {
	var mu sync.Mutex
	target := "127.0.0.1"
	lookupHost := func(_ context.Context, host string) ([]netip.Addr, error) {
		if host != "sink.test" {
			return nil, fmt.Errorf("no such host %s", host)
		}
		mu.Lock()
		defer mu.Unlock()
		return []netip.Addr{netip.MustParseAddr(target)}, nil
	}
	s := newStackWith(t, 1, func(o *options) { o.lookupHost = lookupHost },
		func(c *conf.Config) { c.Destinations.Allow = []string{"127.0.0.1/32"} })
	port := s.sink.Addr().Port
	moved, err := tlvdump.Listen(fmt.Sprintf("127.0.0.2:%d", port), tlvdump.Options{Keep: true})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); moved.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5000"})
	status, out := s.call("POST", "/v1/forks", "", fmt.Sprintf(`{"uuid":%q,"to":["sink.test:%d"]}`, call.UUID, port))
	require.Equal(t, 201, status, out)
	s.waitPackets("loopback/5000-a", 2, 5)
	mu.Lock()
	target = "127.0.0.2" // outside the allow list
	mu.Unlock()
	// The WebSocket drops: mediafork retries with the signed, pinned address.
	require.True(t, sw.Call(call.UUID).DropMedia("mediafork"))
	require.Eventually(t, func() bool { return countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID+" start") == 2 },
		5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		if len(moved.Streams()) > 0 {
			return true // fails below
		}
		n := 0
		for _, st := range s.streamsOf("loopback/5000-a") {
			if st.End == nil && st.Gaps > 0 && st.LastSeq > st.LastGap.NextSequence+5 {
				n++ // resumed, and streaming on
			}
		}
		return n == 2
	}, 10*time.Second, 10*time.Millisecond, "the retried fork streams to 127.0.0.1")

	assert.Empty(t, moved.Streams(), "audio reached 127.0.0.2, outside the allow list")
}

// Finding 5: a failed connection on a call's uuid (here a hand-typed upgrade
// without Sec-WebSocket-Key, answered 400) was taken for the live fork's
// media being lost: mediafork stopped and restarted that call's healthy fork.
func TestFailedConnectionLeavesLiveForkAlone(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	s.waitPackets("support-2000-", 2, 3)
	for i := 0; i < 3; i++ {
		for _, bug := range []string{"", "&x=1"} {
			c, err := net.Dial("tcp", s.ingest)
			require.NoError(t, err)
			fmt.Fprintf(c, "GET /fork/%s?profile=analytics%s HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n", call.UUID, bug)
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			assert.Contains(t, []int{400, 404}, resp.StatusCode)
			c.Close()
		}
	}
	// Half a second of audio later (event: packets), nothing was restarted.
	before := 0
	for _, st := range s.streamsOf("support-2000-") {
		before = max(before, st.Packets)
	}
	ok := assert.Eventually(t, func() bool {
		if countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID+" stop") > 0 {
			return true // fails below
		}
		for _, st := range s.streamsOf("support-2000-") {
			if st.Packets < before+25 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
	require.True(t, ok)
	assert.Zero(t, countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID+" stop"), "the healthy fork was stopped")
	assert.Equal(t, 1, countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID+" start"))
	for _, st := range s.streamsOf("support-2000-") {
		assert.Nil(t, st.End, "the fork streams on")
		assert.Zero(t, st.Missing)
	}
}

// Finding 7: a credential kept working after its fork was stopped. Now it is
// honoured once, for the start it was issued for, while the call lives.
func TestCredentialSingleUse(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := s.apiFork("5000")
	url := forkURL(t, sw, call.UUID)

	// While it streams, a replay is refused (and would be a duplicate anyway).
	_, err := fssim.DialAudioFork(context.Background(), url, fssim.AudioForkOptions{})
	require.Error(t, err)
	status, _ := s.call("DELETE", "/v1/forks/"+call.UUID, "", "")
	require.Equal(t, 204, status)
	s.waitEnded("loopback/5000-a", 2)

	a, err := fssim.DialAudioFork(context.Background(), url, fssim.AudioForkOptions{})
	if err == nil {
		a.Conn.Close()
	}
	require.Error(t, err, "a stopped fork's credential is refused")
	require.Equal(t, 401, a.Response.StatusCode)
	require.Eventually(t, func() bool {
		return regexp.MustCompile(`fork refused.*status=401.*no longer valid`).MatchString(s.logs.String())
	}, 5*time.Second, 10*time.Millisecond)

	// Started again: the new credential works, the old one still does not;
	// after hangup neither does the new one.
	status, out := s.call("POST", "/v1/forks", "", fmt.Sprintf(`{"uuid":%q,"profile":"analytics"}`, call.UUID))
	require.Equal(t, 201, status, out)
	url2 := forkURL(t, sw, call.UUID)
	require.NotEqual(t, url, url2)
	sw.Hangup(call.UUID, "NORMAL_CLEARING")
	require.Eventually(t, func() bool { return len(s.d.registry.Get(mediafork.CallID(call.UUID))) == 0 }, 5*time.Second, 10*time.Millisecond)
	for _, u := range []string{url, url2} {
		a, err := fssim.DialAudioFork(context.Background(), u, fssim.AudioForkOptions{})
		if err == nil {
			a.Conn.Close()
		}
		assert.Error(t, err, "a gone call's credentials are refused")
		assert.Equal(t, 401, a.Response.StatusCode)
	}
}

// Finding 11: a fork that ended normally (the module closed its WebSocket)
// while the call is up showed "starting" for ever and POST answered 409.
func TestEndedForkCanBeStartedAgain(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := s.apiFork("5000")
	assert.Equal(t, "+OK Success\n", sw.FsCli("uuid_audio_fork "+call.UUID+" stop mediafork"))
	s.waitEnded("loopback/5000-a", 2)
	require.Eventually(t, func() bool {
		_, body := s.call("GET", "/v1/forks/"+call.UUID, "", "")
		return strings.Contains(body, `"state":"ended"`)
	}, 5*time.Second, 10*time.Millisecond)
	status, out := s.call("POST", "/v1/forks", "", fmt.Sprintf(`{"uuid":%q,"profile":"analytics"}`, call.UUID))
	assert.Equal(t, 201, status, out)
}

// Every bound hit on outside input is counted in /metrics.
func TestLimitsAreCounted(t *testing.T) {
	s := newStack(t, 1, func(c *conf.Config) { c.Ingest.MaxForks = 1 })
	sw := s.switches[0]
	a := sw.Answer(fssim.CallOptions{Dest: "5000"})
	b := sw.Answer(fssim.CallOptions{Dest: "5001"})
	first, err := fssim.DialAudioFork(context.Background(), fmt.Sprintf("ws://%s/fork/%s?profile=analytics", s.ingest, a.UUID), fssim.AudioForkOptions{})
	require.NoError(t, err)
	defer first.Conn.Close()
	full, err := fssim.DialAudioFork(context.Background(), fmt.Sprintf("ws://%s/fork/%s?profile=analytics", s.ingest, b.UUID), fssim.AudioForkOptions{})
	require.Error(t, err)
	assert.Equal(t, 503, full.Response.StatusCode)
	// A message over max_message_bytes: close 1009.
	require.NoError(t, first.Conn.WriteMessage(2, make([]byte, 320)))
	require.NoError(t, first.Conn.WriteMessage(2, make([]byte, s.cfg.Ingest.MaxMessageBytes+1)))
	_, _, err = first.Conn.ReadMessage()
	assert.Contains(t, fmt.Sprint(err), "1009")
	require.Eventually(t, func() bool {
		_, body := s.call("GET", "/metrics", "", "")
		return strings.Contains(body, `mediafork_limit_hits_total{limit="ingest_max_forks"} 1`) &&
			strings.Contains(body, `mediafork_limit_hits_total{limit="ingest_max_message_bytes"} 1`) &&
			strings.Contains(body, `mediafork_recovered_panics_total{where="ingest"} 0`)
	}, 5*time.Second, 10*time.Millisecond)
}

// A dialplan socket answering `connect` with a header block over the bound
// (issue 20 finding 8: 8 MB were taken) is closed and counted in /metrics.
func TestOutboundHeaderBlockBoundIsCounted(t *testing.T) {
	s := newStack(t, 1, nil)
	c, err := net.Dial("tcp", s.outbound)
	require.NoError(t, err)
	defer c.Close()
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "connect", strings.TrimSpace(line))
	go func() { // cut short when mediafork closes
		io.WriteString(c, "Content-Type: command/reply\nReply-Text: +OK\n"+strings.Repeat("Variable-X: "+strings.Repeat("x", 1000)+"\n", 100)+"\n")
	}()
	require.Eventually(t, func() bool {
		_, body := s.call("GET", "/metrics", "", "")
		return strings.Contains(body, `mediafork_limit_hits_total{limit="outbound_header_bytes"} 1`)
	}, 5*time.Second, 10*time.Millisecond)
}

// Keep-alive connections that stay unused are closed (API and ingest).
func TestIdleKeepAliveClosed(t *testing.T) {
	s := newStackWith(t, 1, func(o *options) { o.idleTimeout = 300 * time.Millisecond }, nil)
	for _, addr := range []string{s.api, s.ingest} {
		c, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		resp.Body.Close()
		// The server hangs up by itself: the next read ends (EOF), well before
		// this deadline.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err = br.ReadByte()
		assert.ErrorIs(t, err, io.EOF, addr)
		c.Close()
	}
}
