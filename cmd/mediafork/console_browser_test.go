package main

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/browsertest"
)

// The web console as an operator uses it, in a real headless Chromium,
// against the whole daemon and a simulated FreeSWITCH: a wrong token shows
// an error and no data; the right one shows the switch; a call answered
// appears with its trigger and rule, its RX and TX meters moving with the
// tones; one side muted falls to silence and is flagged one-way; listen-in
// plays its audio; Stop ends it and the ended list shows why. No payload
// the page receives holds a credential or a fork URL.
func TestConsoleInABrowser(t *testing.T) {
	ctx := browsertest.Start(t, 90*time.Second)
	s := newStack(t, 1, func(c *conf.Config) { c.API.Token = apiToken; c.API.ListenIn = true })
	sw := s.switches[0]

	var mu sync.Mutex
	var payloads []string
	chromedp.ListenTarget(ctx, func(ev any) {
		if f, ok := ev.(*network.EventWebSocketFrameReceived); ok {
			mu.Lock()
			payloads = append(payloads, f.Response.PayloadData)
			mu.Unlock()
		}
	})
	base := "http://" + s.api + "/"
	require.NoError(t, chromedp.Run(ctx, network.Enable(), chromedp.Navigate(base), chromedp.WaitVisible("#login-form")))

	// A wrong token: an error, and nothing shown.
	require.NoError(t, chromedp.Run(ctx,
		chromedp.SetValue("#token", "not-the-token", chromedp.ByID),
		chromedp.Click("#login-btn", chromedp.ByID),
		chromedp.WaitVisible("#login-error", chromedp.ByID)))
	var errText string
	var appHidden bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Text("#login-error", &errText, chromedp.ByID),
		chromedp.Evaluate(`document.getElementById('app').hidden && document.querySelectorAll('#live tbody tr, #switches li').length === 0`, &appHidden)))
	assert.Contains(t, errText, "Wrong token")
	assert.True(t, appHidden, "no data without the token")

	// The right token: the switch, live.
	require.NoError(t, chromedp.Run(ctx,
		chromedp.SetValue("#token", apiToken, chromedp.ByID),
		chromedp.Click("#login-btn", chromedp.ByID),
		chromedp.WaitVisible("#app", chromedp.ByID)))
	browsertest.Until(t, ctx, "fs1 connected", `!!document.querySelector('#switches li.up[data-name="fs1"]') && document.getElementById('conn').textContent === 'live'`)

	// A call is answered; the rule forks it.
	call := sw.Answer(fssim.CallOptions{Dest: "2000", CallerID: "+15551234", ReadHz: 440, WriteHz: 1000,
		Vars: map[string]string{"sip_h_X-Campaign": "spring"}})
	row := fmt.Sprintf(`document.querySelector('#live tr[data-uuid="%s"]')`, call.UUID)
	meters := fmt.Sprintf(`(() => { const tr = %s; if (!tr) return null; const m = tr.querySelectorAll('td.lvl'); return [Number(m[0].dataset.db), Number(m[1].dataset.db)]; })()`, row)
	browsertest.Until(t, ctx, "the fork's row", "!!"+row)
	var cells []string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`Array.from(%s.cells).map(c => c.textContent)`, row), &cells)))
	assert.Equal(t, call.UUID, cells[0])
	assert.Contains(t, cells, "support-2000-spring", "the channel as the rule's template made it")
	assert.Contains(t, cells, "+15551234 → 2000")
	assert.Contains(t, cells, "rule (support)")
	assert.Contains(t, cells, "analytics")
	assert.Contains(t, cells, s.sink.Addr().String())
	browsertest.Until(t, ctx, "RX and TX meters above -40 dBFS", fmt.Sprintf(`(() => { const m = %s; return !!m && m[0] > -40 && m[1] > -40; })()`, meters))

	// Listen in: the page receives the fork's audio and plays it.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`%s.querySelector('button.listen').click()`, row), nil)))
	browsertest.Until(t, ctx, "listen-in audio", `Number(document.getElementById('listen-bytes').dataset.bytes || 0) > 3200`)
	require.NoError(t, chromedp.Run(ctx, chromedp.Click("#listen-stop", chromedp.ByID)))

	// One-way audio: TX goes silent; the meter falls and the row is flagged.
	call.Mute(false, true)
	browsertest.Until(t, ctx, "TX at silence, RX still audible", fmt.Sprintf(`(() => { const m = %s; return !!m && m[1] <= -96 && m[0] > -40; })()`, meters))
	browsertest.Until(t, ctx, "the one-way flag", fmt.Sprintf(`(() => { const tr = %s; return !!tr && tr.classList.contains('fault') && tr.textContent.includes('one-way: TX silent'); })()`, row))
	browsertest.Screenshot(t, ctx, "console-one-way")

	// Stop it from the page: the row goes, the ended list says why.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`%s.querySelector('button.stop').click()`, row), nil)))
	ended := fmt.Sprintf(`document.querySelector('#ended tr[data-uuid="%s"] td.reason')`, call.UUID)
	browsertest.Until(t, ctx, "the end reason", fmt.Sprintf(`!%s && !!%s && %s.textContent === 'stopped'`, row, ended, ended))

	// Start it again from the page's form, by profile.
	require.NoError(t, chromedp.Run(ctx,
		chromedp.SetValue("#start-uuid", call.UUID, chromedp.ByID),
		chromedp.SetValue("#start-profile", "analytics", chromedp.ByID),
		chromedp.Click("#start-btn", chromedp.ByID)))
	browsertest.Until(t, ctx, "the fork started from the page", fmt.Sprintf(`!!%s && %s.textContent.includes('api')`, row, row))
	// A bad request shows the API's refusal.
	require.NoError(t, chromedp.Run(ctx,
		chromedp.SetValue("#start-uuid", "no such call", chromedp.ByID),
		chromedp.Click("#start-btn", chromedp.ByID)))
	browsertest.Until(t, ctx, "the API's refusal", `document.getElementById('start-result').textContent.startsWith('refused (400)')`)
	browsertest.Screenshot(t, ctx, "console")

	var snapshot string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(
		`fetch('/v1/console/snapshot', {headers: {Authorization: 'Bearer %s'}}).then(r => r.text())`, apiToken), &snapshot,
		func(p *runtime.EvaluateParams) *runtime.EvaluateParams { return p.WithAwaitPromise(true) })))
	require.Contains(t, snapshot, call.UUID)
	assert.Positive(t, countPrefix(sw.APICommands(), "uuid_audio_fork "+call.UUID+" start ws://"), "forks were started with signed URLs")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, payloads)
	for _, p := range append(payloads, snapshot) {
		assert.NotContains(t, p, "cred=")
		assert.NotContains(t, p, "ws://"+s.ingest)
		assert.NotContains(t, p, apiToken)
	}
	t.Logf("%d WebSocket payloads checked", len(payloads))
}
