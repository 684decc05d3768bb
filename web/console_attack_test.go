package web

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// request sends method path to the rig with the Host (and Origin, when set)
// a browser would send for a page of that origin.
func (r *consoleRig) request(method, path, host, origin, token, body string) (int, string) {
	r.t.Helper()
	req, err := http.NewRequest(method, r.srv.URL+path, strings.NewReader(body))
	require.NoError(r.t, err)
	req.Host = host
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(r.t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// dialAs opens the feed as a page of origin would, the connection's Host
// header being host.
func (r *consoleRig) dialAs(path, host, origin string) (int, error) {
	h := http.Header{"Host": {host}}
	if origin != "" {
		h.Set("Origin", origin)
	}
	d := websocket.Dialer{Subprotocols: []string{consoleProtocol}}
	conn, res, err := d.Dial(r.ws(path), h)
	if conn != nil {
		conn.Close()
	}
	if res == nil {
		return 0, err
	}
	return res.StatusCode, err
}

// DNS rebinding: with no api.token (the default, on loopback), a web page the
// operator opens on http://rebind.attacker.example:8088 whose name then
// resolves to 127.0.0.1 is same-origin with the API as far as the browser
// knows: its Origin and Host agree, so neither CORS nor the WebSocket origin
// check stops it. It must not read the console's snapshot or feed (callers,
// channels, uuids), list forks, or start and stop them. The Host header is
// what tells it apart: with no token, only loopback names are served.
func TestNoTokenRefusesRebindingHosts(t *testing.T) {
	t.Parallel()
	r := newConsoleRig(t, "", false, 10)
	uuid := "0a1b2c3d-0000-4000-8000-00000000d115"
	r.fork(uuid)
	port := r.srv.Listener.Addr().String()[strings.LastIndex(r.srv.Listener.Addr().String(), ":"):]
	evil := "rebind.attacker.example" + port
	evilOrigin := "http://" + evil

	for _, c := range []struct{ method, path, body string }{
		{"GET", "/v1/console/snapshot", ""},
		{"GET", "/v1/forks", ""},
		{"GET", "/v1/forks/" + uuid, ""},
		{"POST", "/v1/forks", `{"uuid":"` + uuid + `","to":["127.0.0.1:9"]}`},
		{"DELETE", "/v1/forks/" + uuid, ""},
		{"PUT", "/v1/log-level", `{"level":"debug"}`},
	} {
		status, body := r.request(c.method, c.path, evil, evilOrigin, "", c.body)
		assert.Equal(t, http.StatusForbidden, status, "%s %s from a rebound name", c.method, c.path)
		assert.NotContains(t, body, uuid)
	}
	status, err := r.dialAs("/v1/console/feed", evil, evilOrigin)
	assert.Error(t, err)
	assert.Equal(t, http.StatusForbidden, status, "the feed from a rebound name")

	// Loopback names still work without a token: the operator's own page
	// and scripts.
	for _, host := range []string{"127.0.0.1" + port, "localhost" + port, "[::1]" + port, "LOCALHOST" + port, "127.0.0.1"} {
		code, body := r.request("GET", "/v1/console/snapshot", host, "", "", "")
		assert.Equal(t, http.StatusOK, code, host)
		assert.Contains(t, body, uuid, host)
		code, err := r.dialAs("/v1/console/feed", host, "http://"+host)
		assert.NoError(t, err, host)
		assert.Equal(t, http.StatusSwitchingProtocols, code, host)
	}
	// The static page is no secret; health and metrics stay open.
	status, _ = r.request("GET", "/", evil, "", "", "")
	assert.Equal(t, http.StatusOK, status)
	status, _ = r.request("GET", "/healthz", evil, "", "", "")
	assert.Equal(t, http.StatusOK, status)

	// With a token, any name the operator reaches the API by is fine: the
	// rebinding page does not have the token.
	tok := newConsoleRig(t, consoleToken, false, 10)
	tok.fork(uuid)
	status, body := tok.request("GET", "/v1/console/snapshot", "mediafork.internal.example"+port, "", consoleToken, "")
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, uuid)
	status, _ = tok.request("GET", "/v1/console/snapshot", evil, evilOrigin, "", "")
	assert.Equal(t, http.StatusUnauthorized, status)
}

// Cross-site WebSocket hijacking: a page of another origin opening the feed
// of an API with no token is refused by the origin check (it holds; kept as
// a regression test), as is one with no Host-matching Origin at all.
func TestFeedRefusesOtherOrigins(t *testing.T) {
	t.Parallel()
	r := newConsoleRig(t, "", false, 10)
	host := r.srv.Listener.Addr().String()
	for _, origin := range []string{"http://attacker.example", "null", "http://127.0.0.1:1", "file://"} {
		status, err := r.dialAs("/v1/console/feed", host, origin)
		assert.Error(t, err, origin)
		assert.Equal(t, http.StatusForbidden, status, origin)
	}
}

// A feed client that sends a huge message, in one frame or in many
// fragments, is closed with 1009 (messages are capped at 4 KiB) and its slot
// is free again at once; so is the slot of one that never reads, after
// FeedWriteTimeout. Holds; kept as a regression test.
func TestFeedClientFloodFreesItsSlot(t *testing.T) {
	t.Parallel()
	// One slot; the write deadline and the pings far off, so that only the
	// 1009 close frees it within the wait below.
	r := newConsoleRigWith(t, consoleToken, ConsoleSettings{MaxClients: 1, FeedWriteTimeout: time.Minute, FeedPing: time.Minute}, 10)
	r.fork("0a1b2c3d-0000-4000-8000-00000000f100")
	// The server counts the connection out just after its close frame left.
	freed := func() {
		require.Eventually(t, func() bool { return r.console.feeds.Load() == 0 }, 5*time.Second, time.Millisecond, "the slot is free")
	}

	waitClosed := func(c *websocket.Conn) error {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				return err
			}
		}
	}
	// Uncompressed, so that the sizes are the wire's (a compressed message
	// is never decompressed: the server discards what clients send).
	dial := func() (*websocket.Conn, *http.Response, error) {
		d := websocket.Dialer{Subprotocols: []string{consoleProtocol, bearerPrefix + base64.RawURLEncoding.EncodeToString([]byte(consoleToken))}}
		return d.Dial(r.ws("/v1/console/feed"), nil)
	}
	// One huge frame.
	c, _, err := dial()
	require.NoError(t, err)
	c.WriteMessage(websocket.TextMessage, make([]byte, 1<<20))
	err = waitClosed(c)
	c.Close()
	assert.True(t, websocket.IsCloseError(err, websocket.CloseMessageTooBig), "%v", err)
	freed()

	// Many fragments: NextWriter writes a frame each time its buffer fills.
	c, _, err = dial()
	require.NoError(t, err)
	w, err := c.NextWriter(websocket.BinaryMessage)
	require.NoError(t, err)
	for i := 0; i < 64; i++ {
		if _, werr := w.Write(make([]byte, 1024)); werr != nil {
			break
		}
	}
	err = waitClosed(c)
	c.Close()
	assert.True(t, websocket.IsCloseError(err, websocket.CloseMessageTooBig), "%v", err)

	// The slot is free: a third client gets the feed.
	freed()
	c, _, err = dial()
	require.NoError(t, err)
	c.Close()
}
