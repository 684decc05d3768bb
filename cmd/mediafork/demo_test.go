package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/syncbuf"
	"github.com/mediafork/mediafork/tlvcodec"
	"github.com/mediafork/mediafork/tlvdump"
)

// demo --receiver sends every forked call, both directions, to the given
// address and ends them all before it returns (receivers/python's end-to-end
// test relies on that).
func TestDemoExternalReceiver(t *testing.T) {
	r, err := tlvdump.Listen("127.0.0.1:0", tlvdump.Options{})
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { stop(); <-done }()

	var out strings.Builder
	require.NoError(t, runDemoTo(context.Background(), &out, t.TempDir(), time.Second, false, r.Addr().String()), out.String())
	assert.Contains(t, out.String(), "which does the checking")
	assert.Regexp(t, `(?m)^\+15550001\s+2000\s+440 Hz\s+1000 Hz\s+true$`, out.String())
	assert.Regexp(t, `(?m)^\+15550006\s+2003\s+900 Hz\s+1300 Hz\s+true$`, out.String(), "the mod_audio_stream call, in the table receivers parse")
	assert.Contains(t, out.String(), "(+15550006 went through mod_audio_stream)")
	assert.NotRegexp(t, `cred=[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+`, out.String())

	// The end packets were sent before the demo returned; give the socket a moment to deliver them.
	require.Eventually(t, func() bool {
		n := 0
		for _, s := range r.Streams() {
			if s.End != nil && s.End.Reason == tlvcodec.ReasonHangup {
				n++
			}
		}
		return n == 10
	}, 10*time.Second, 10*time.Millisecond, "5 forked calls, RX and TX each ended")
	for _, s := range r.Streams() {
		assert.Zero(t, s.Missing)
		assert.NotNil(t, s.Signaling)
	}

	for _, bad := range []string{"0.0.0.0:9000", "127.0.0.1:0", "nonsense"} {
		assert.Error(t, runDemoTo(context.Background(), &out, t.TempDir(), time.Second, false, bad), bad)
	}
}

// demo --console: the calls stay up with the web console on a printed
// loopback URL behind a printed token, until the context ends (Ctrl-C);
// then the demo ends as usual, every check passing.
func TestDemoConsole(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	type ready struct{ url, token string }
	readyc := make(chan ready, 1)
	var out strings.Builder
	done := make(chan error, 1)
	go func() {
		done <- runDemoWith(ctx, &out, t.TempDir(), time.Second, false, "", &demoConsole{ready: func(url, token string) { readyc <- ready{url, token} }})
	}()
	var rd ready
	select {
	case rd = <-readyc:
	case err := <-done:
		t.Fatalf("demo ended: %v\n%s", err, out.String())
	}
	assert.Regexp(t, `^http://127\.0\.0\.1:\d+/$`, rd.url)
	assert.Len(t, rd.token, 32)
	get := func(token string) (int, string) {
		req, _ := http.NewRequest("GET", rd.url+"v1/console/snapshot", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	status, _ := get("wrong")
	assert.Equal(t, 401, status)
	require.Eventually(t, func() bool {
		_, body := get(rd.token)
		var snap struct {
			Add   []struct{ UUID string } `json:"add"`
			Calls []struct{ UUID string } `json:"cadd"`
		}
		// Six calls and the talk-back call's four channels; five forked
		// and the talk-back call's b-leg.
		return json.Unmarshal([]byte(body), &snap) == nil && len(snap.Add) == 6 && len(snap.Calls) == 10
	}, 10*time.Second, 20*time.Millisecond, "the demo's calls, and their forks, in the console")
	stop() // Ctrl-C
	require.NoError(t, <-done, out.String())
	assert.Contains(t, out.String(), "web console: "+rd.url)
	assert.Contains(t, out.String(), "every forked call arrived whole")
}

// An operator at `demo --console` stops, restarts and starts forks from the
// console (the API) and the CLI while the calls are up: not a demo failure.
// The checks judge the forks the demo started (a stopped one ended with
// reason "stopped", its tones right); the operator's are shown, not judged.
// The demo printed the uuid of its unforked call, which the operator forks.
func TestDemoToleratesAnOperator(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	type ready struct{ url, token string }
	readyc := make(chan ready, 1)
	out := &syncbuf.Buffer{}
	done := make(chan error, 1)
	go func() {
		done <- runDemoWith(ctx, out, t.TempDir(), time.Second, false, "", &demoConsole{ready: func(url, token string) { readyc <- ready{url, token} }})
	}()
	var rd ready
	select {
	case rd = <-readyc:
	case err := <-done:
		t.Fatalf("demo ended: %v\n%s", err, out.String())
	}
	api := strings.TrimSuffix(rd.url, "/")
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, api+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+rd.token)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	uuidOf := func(dest string) string {
		m := regexp.MustCompile(`call \S+ -> ` + dest + `  ([0-9a-f-]{36})  `).FindStringSubmatch(out.String())
		require.NotNil(t, m, "the uuid of the call to %s in:\n%s", dest, out.String())
		return m[1]
	}
	ruled, socket, unforked := uuidOf("2000"), uuidOf("4000"), uuidOf("3000")
	assert.Contains(t, out.String(), "the call to 3000 is not forked: fork it from the console's Fork button, or\n"+
		"  MEDIAFORK_API_TOKEN="+rd.token+" mediafork fork start "+unforked+" --profile demo --api "+api)
	streaming := func(uuid string, minFrames int) func() bool {
		return func() bool {
			_, body := call("GET", "/v1/forks/"+uuid, "")
			var in struct {
				State    string `json:"state"`
				Trigger  string `json:"trigger"`
				FramesIn int    `json:"frames_in"`
			}
			return json.Unmarshal([]byte(body), &in) == nil && in.State == "streaming" && in.FramesIn >= minFrames
		}
	}
	require.Eventually(t, streaming(ruled, 40), 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, streaming(socket, 1), 10*time.Second, 20*time.Millisecond)

	// From the console (its API): stop the rule's fork, start it again; stop
	// the dialplan socket's.
	status, body := call("DELETE", "/v1/forks/"+ruled, "")
	require.Equal(t, 204, status, body)
	require.Eventually(t, func() bool {
		_, b := call("GET", "/v1/forks/"+ruled, "")
		return strings.Contains(b, `"end_reason":"stopped"`)
	}, 5*time.Second, 20*time.Millisecond)
	status, body = call("POST", "/v1/forks", `{"uuid":"`+ruled+`","profile":"demo"}`)
	require.Equal(t, 201, status, body)
	status, body = call("DELETE", "/v1/forks/"+socket, "")
	require.Equal(t, 204, status, body)
	// From the CLI: the live calls, the unforked one with no fork; then fork it.
	var listed bytes.Buffer
	lc := forkCmd()
	lc.SetOut(&listed)
	t.Setenv("MEDIAFORK_API_TOKEN", rd.token) // where the token comes from when --token is not given
	lc.SetArgs([]string{"calls", "--api", api})
	require.NoError(t, lc.Execute(), listed.String())
	assert.Regexp(t, `(?m)^UUID\s+FREESWITCH\s+CALLER\s+CALLEE\s+ANSWERED\s+FORKS$`, listed.String())
	assert.Regexp(t, `(?m)^`+unforked+`\s+sim\s+\+15550004\s+3000\s+\d\d:\d\d:\d\d\s+-$`, listed.String())
	assert.Regexp(t, `(?m)^`+ruled+`\s+sim\s+\+15550001\s+2000\s+\d\d:\d\d:\d\d\s+(streaming|starting)$`, listed.String(), "started again")
	assert.Equal(t, 10, strings.Count(listed.String(), "\n")-1, "six calls, and the talk-back call's four channels")
	var cli bytes.Buffer
	fc := forkCmd()
	fc.SetOut(&cli)
	fc.SetArgs([]string{"start", unforked, "--profile", "demo", "--api", api, "--token", rd.token})
	require.NoError(t, fc.Execute(), cli.String())
	require.Eventually(t, streaming(unforked, 40), 10*time.Second, 20*time.Millisecond)
	require.Eventually(t, streaming(ruled, 40), 10*time.Second, 20*time.Millisecond)

	stop() // Ctrl-C
	err := <-done
	text := out.String()
	require.NoError(t, err, text)
	assert.Contains(t, text, "every forked call arrived whole")
	lines := func(caller string) []string {
		var ls []string
		for _, l := range strings.Split(text, "\n") {
			if strings.HasPrefix(l, caller+" ") {
				ls = append(ls, l)
			}
		}
		return ls
	}
	for _, l := range lines("+15550001") { // the rule's fork, stopped, and the operator's again
		assert.Regexp(t, `ok \(stopped by an operator\)|not judged: started by an operator \(api\), ended: hangup`, l)
	}
	assert.Len(t, lines("+15550001"), 4)
	for _, l := range lines("+15550005") {
		assert.Regexp(t, `ok \(stopped by an operator(\)| before its tone could be judged\))`, l)
	}
	assert.Len(t, lines("+15550005"), 2)
	forkedByOperator := lines("+15550004")
	require.Len(t, forkedByOperator, 3, "not forked by the demo; the operator's two directions")
	assert.Contains(t, forkedByOperator[0], "ok (not forked: no rule)")
	assert.Contains(t, text, fmt.Sprintf("(and %d stream(s) of forks an operator started, not judged)", 4))
}
