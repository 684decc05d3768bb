package main

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

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
		return strings.Count(body, `"uuid"`) == 5
	}, 10*time.Second, 20*time.Millisecond, "the demo's five forked calls in the console")
	stop() // Ctrl-C
	require.NoError(t, <-done, out.String())
	assert.Contains(t, out.String(), "web console: "+rd.url)
	assert.Contains(t, out.String(), "every forked call arrived whole")
}
