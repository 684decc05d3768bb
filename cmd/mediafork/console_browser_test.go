package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/browsertest"
	"github.com/mediafork/mediafork/internal/testport"
	"github.com/mediafork/mediafork/mediafork"
)

// rowJS is the live calls table's row of a call, in the page.
func rowJS(uuid string) string {
	return fmt.Sprintf(`document.querySelector('#live tbody tr[data-uuid="%s"]')`, uuid)
}

// evalJSON evaluates expr, which must return a JSON string, into v.
func evalJSON(t *testing.T, ctx context.Context, expr string, v any) {
	t.Helper()
	var s string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(expr, &s)))
	require.NoError(t, json.Unmarshal([]byte(s), v), s)
}

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
	row := rowJS(call.UUID)
	meters := fmt.Sprintf(`(() => { const tr = %s; if (!tr) return null; const m = tr.querySelectorAll('td.lvl'); return [Number(m[0].dataset.db), Number(m[1].dataset.db)]; })()`, row)
	browsertest.Until(t, ctx, "the fork's row", fmt.Sprintf(`!!%s && %s.dataset.id !== ''`, row, row))
	var cells []string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`Array.from(%s.cells).map(c => c.textContent)`, row), &cells)))
	assert.Equal(t, "+15551234 → 2000"+call.UUID, cells[0], "who, then the uuid")
	assert.Contains(t, cells, "support-2000-spring", "the channel as the rule's template made it")
	assert.Contains(t, cells, "rule · support")
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

	// Stop it from the page: the fork goes (the call stays, not forked), the
	// ended list says why.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`%s.querySelector('button.stop').click()`, row), nil)))
	ended := fmt.Sprintf(`document.querySelector('#ended tr[data-uuid="%s"] td.reason')`, call.UUID)
	browsertest.Until(t, ctx, "the end reason", fmt.Sprintf(`!!%s && %s.textContent === 'not forked' && !!%s && %s.textContent === 'stopped'`,
		row+`.querySelector('.verdict')`, row+`.querySelector('.verdict')`, ended, ended))

	// Start it again from the form, by uuid and profile.
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Evaluate(`document.getElementById('start').open = true`, nil),
		chromedp.SetValue("#start-uuid", call.UUID, chromedp.ByID),
		chromedp.SetValue("#start-profile", "analytics", chromedp.ByID),
		chromedp.Click("#start-btn", chromedp.ByID)))
	browsertest.Until(t, ctx, "the fork started from the page", fmt.Sprintf(`!!%s && %s.textContent.includes('API')`, row, row))
	// A bad request shows the API's refusal.
	require.NoError(t, chromedp.Run(ctx,
		chromedp.SetValue("#start-uuid", "no such call", chromedp.ByID),
		chromedp.Click("#start-btn", chromedp.ByID)))
	browsertest.Until(t, ctx, "the API's refusal", `document.getElementById('start-result').textContent.startsWith('refused (400)')`)

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

// The console an operator keeps open on a second screen, at 1280×800 and
// 1920×1080: every live call on every switch, forked or not (one answered
// before mediafork connected, found by the resync); a switch that is not
// connected says why and when it tries again; nothing is wider than the
// window, and every row's audio verdict and actions are in view; an
// unforked call is forked from its row with a profile chosen from the
// configured ones (by mouse, then by keyboard); a fork's detail shows its
// endpoints, stream ids, metadata, levels over the last minute and what
// started it; axe-core finds no serious or critical violation. The
// screenshots go to $MEDIAFORK_TEST_ARTIFACTS (CI keeps them).
func TestConsoleOperatorView(t *testing.T) {
	ctx := browsertest.Start(t, 150*time.Second)
	s, c := prepareStack(t, 2)
	c.API.Token, c.API.ListenIn = apiToken, true
	c.Profiles["speech"] = conf.Profile{Endpoints: []string{s.sink.Addr().String()}, Encoding: "pcmu"}
	refused := testport.Refused(t) // nothing listens there
	c.FreeSWITCH = append(c.FreeSWITCH, conf.FreeSWITCH{Name: "fs-east", Address: refused, Password: "ClueCon"})
	// Answered before mediafork connects: the resync's list brings it.
	early := s.switches[1].Answer(fssim.CallOptions{Dest: "4000", CallerID: "+15550100", ReadHz: 600, WriteHz: 1500})
	s.start(c, "")
	for _, cl := range s.d.bridge.Clients()[:2] {
		require.Eventually(t, func() bool { return s.d.switchesUp()[cl.Name()] }, 5*time.Second, 10*time.Millisecond)
	}
	ruled := s.switches[0].Answer(fssim.CallOptions{Dest: "2000", CallerID: "+15550101", ReadHz: 440, WriteHz: 1000})
	plain := s.switches[0].Answer(fssim.CallOptions{Dest: "3000", CallerID: "+15550102", ReadHz: 700, WriteHz: 1200})
	for i := 0; i < 4; i++ { // a few more forked calls, one of them one-way
		cl := s.switches[i%2].Answer(fssim.CallOptions{Dest: "2000", CallerID: fmt.Sprintf("+1555020%d", i), ReadHz: 500, WriteHz: 900})
		if i == 1 {
			cl.Mute(false, true)
		}
	}

	browsertest.Viewport(t, ctx, 1280, 800)
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate("http://"+s.api+"/"), chromedp.WaitVisible("#login-form"),
		chromedp.SetValue("#token", apiToken, chromedp.ByID), chromedp.Click("#login-btn", chromedp.ByID),
		chromedp.WaitVisible("#app", chromedp.ByID)))
	browsertest.Until(t, ctx, "7 calls, 5 forked", `document.getElementById('call-count').textContent === '7' && document.getElementById('live-count').textContent === '5'`)
	for _, u := range []string{early.UUID, plain.UUID} {
		browsertest.Until(t, ctx, "an unforked call with its Fork button", fmt.Sprintf(
			`(() => { const tr = %s; return !!tr && tr.querySelector('.verdict').textContent === 'not forked' && !tr.querySelector('button.fork').hidden; })()`, rowJS(u)))
	}
	var earlyCells []string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(fmt.Sprintf(`Array.from(%s.cells).filter(c => c.offsetParent).map(c => c.textContent)`, rowJS(early.UUID)), &earlyCells)))
	assert.Equal(t, "+15550100 → 4000"+early.UUID, earlyCells[0])
	assert.Contains(t, earlyCells, "fs2", "on its switch")

	// The switch nothing listens for: down, why, and when it tries again.
	browsertest.Until(t, ctx, "fs-east's reason", `(() => { const a = document.querySelector('#switch-alerts .alert[data-name="fs-east"]');
		return !!a && a.textContent.includes('connection refused') && /Next try in \d+ s|Trying now/.test(a.textContent); })()`)
	var chips []string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelectorAll('#switches li')).map(l => l.className + ' ' + l.textContent)`, &chips)))
	assert.Equal(t, []string{"down fs-eastdown", "up fs1connected", "up fs2connected"}, chips)
	browsertest.Until(t, ctx, "the one-way call flagged", `document.querySelectorAll('#live tbody tr.fault').length === 1`)

	// At 1280 px: nothing wider than the window, every row's verdict and
	// actions in view.
	type geometry struct {
		ScrollWidth, ClientWidth int
		Rows                     []struct {
			UUID                            string
			Verdict                         string
			VerdictLeft, VerdictRight       float64
			ActionsRight, ActionsVisible    float64
			Buttons                         []string
			HiddenColumns, ShownColumnCount int
		}
	}
	geom := func() geometry {
		var g geometry
		evalJSON(t, ctx, `JSON.stringify({
			ScrollWidth: document.documentElement.scrollWidth, ClientWidth: document.documentElement.clientWidth,
			Rows: Array.from(document.querySelectorAll('#live tbody tr')).map(tr => {
				const v = tr.querySelector('.verdict').getBoundingClientRect();
				const btns = Array.from(tr.querySelectorAll('td.act button')).filter(b => !b.hidden);
				const right = Math.max(...btns.map(b => b.getBoundingClientRect().right));
				return {UUID: tr.dataset.uuid, Verdict: tr.querySelector('.verdict').textContent,
					VerdictLeft: v.left, VerdictRight: v.right, ActionsRight: right,
					ActionsVisible: btns.filter(b => b.getBoundingClientRect().width > 0).length,
					Buttons: btns.map(b => b.textContent),
					ShownColumnCount: Array.from(tr.cells).filter(c => c.offsetParent).length};
			})})`, &g)
		return g
	}
	g := geom()
	assert.LessOrEqual(t, g.ScrollWidth, g.ClientWidth, "nothing wider than the window")
	require.Len(t, g.Rows, 7)
	for _, r := range g.Rows {
		assert.Greater(t, r.VerdictRight-r.VerdictLeft, 20.0, "%s: the verdict has room", r.UUID)
		assert.LessOrEqual(t, r.VerdictRight, float64(g.ClientWidth), "%s: the verdict in view", r.UUID)
		assert.LessOrEqual(t, r.ActionsRight, float64(g.ClientWidth), "%s: the actions in view", r.UUID)
		assert.Equal(t, len(r.Buttons), int(r.ActionsVisible), "%s: every action shown", r.UUID)
		assert.NotEmpty(t, r.Buttons, "%s: an action", r.UUID)
		assert.Equal(t, 9, r.ShownColumnCount, "%s: channel, endpoints, packets and drops moved into the detail", r.UUID)
	}
	shot1280 := browsertest.ScreenshotViewport(t, ctx, "console-1280x800")

	// axe-core on the calls view.
	if v := browsertest.Serious(browsertest.Axe(t, ctx)); len(v) > 0 {
		t.Errorf("axe-core, calls view: %d serious or critical violations:\n%v", len(v), v)
	}

	// Fork the plain call from its row with the profile "speech".
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(rowJS(plain.UUID)+`.querySelector('button.fork').click()`, nil)))
	browsertest.Until(t, ctx, "the profiles menu", `!document.getElementById('fork-menu').hidden && document.querySelectorAll('#fork-menu-list button').length === 2`)
	var menuText string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById('fork-menu').textContent`, &menuText)))
	assert.Contains(t, menuText, "analytics")
	assert.Contains(t, menuText, "tlv "+s.sink.Addr().String()+" (rx+tx pcmu 8000 Hz 20 ms)", "what each profile does")
	browsertest.ScreenshotViewport(t, ctx, "console-1280x800-fork-menu")
	if v := browsertest.Serious(browsertest.Axe(t, ctx)); len(v) > 0 {
		t.Errorf("axe-core, the Fork menu: %v", v)
	}
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector('#fork-menu-list button[data-profile="speech"]').click()`, nil)))
	browsertest.Until(t, ctx, "the plain call forked and streaming", fmt.Sprintf(`(() => { const tr = %s;
		return !!tr && tr.dataset.id !== '' && tr.querySelector('.verdict').textContent === 'ok' && tr.textContent.includes('speech'); })()`, rowJS(plain.UUID)))
	browsertest.Until(t, ctx, "the notice", `document.getElementById('notice').textContent.includes('with the profile speech')`)
	assert.Positive(t, countPrefix(s.switches[0].APICommands(), "uuid_audio_fork "+plain.UUID+" start ws://"), "forked on its switch")
	forks := s.d.orchestrator.Fork(mediafork.CallID(plain.UUID))
	require.NotEmpty(t, forks)
	assert.Equal(t, "speech", forks[len(forks)-1].Profile)
	assert.Equal(t, mediafork.TriggerAPI, forks[len(forks)-1].Trigger)
	assert.Equal(t, mediafork.PCMU, forks[len(forks)-1].Encoding, "the profile's encoding")

	// The same by keyboard on the early call: its Fork button, Enter, the
	// first profile has the focus, Escape gives it back; Enter again, Tab to
	// the second profile, Enter.
	active := `document.activeElement ? (document.activeElement.dataset.profile || document.activeElement.className) : ''`
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(rowJS(early.UUID)+`.querySelector('button.fork').focus()`, nil),
		chromedp.KeyEvent("\r")))
	browsertest.Until(t, ctx, "the menu, focus on the first profile", `document.activeElement && document.activeElement.dataset.profile === 'analytics'`)
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent(kb.Escape)))
	browsertest.Until(t, ctx, "the focus back on the Fork button", `!!document.activeElement && document.activeElement.classList.contains('fork') && document.getElementById('fork-menu').hidden`)
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("\r")))
	browsertest.Until(t, ctx, "the menu again", `document.activeElement && document.activeElement.dataset.profile === 'analytics'`)
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("\t")))
	var focused string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(active, &focused)))
	assert.Equal(t, "speech", focused)
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent("\r")))
	browsertest.Until(t, ctx, "the early call forked by keyboard", fmt.Sprintf(`(() => { const tr = %s; return !!tr && tr.dataset.id !== '' && tr.querySelector('.verdict').textContent === 'ok'; })()`, rowJS(early.UUID)))
	assert.Positive(t, countPrefix(s.switches[1].APICommands(), "uuid_audio_fork "+early.UUID+" start ws://"), "forked on fs2, its switch")

	// The ruled call's detail, opened from its row by keyboard.
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(rowJS(ruled.UUID)+`.querySelector('button.who').focus()`, nil), chromedp.KeyEvent("\r")))
	browsertest.Until(t, ctx, "the detail, filled", `(() => { const d = document.getElementById('detail'); const b = document.getElementById('detail-body');
		return !d.hidden && document.activeElement === document.getElementById('detail-title') && b.querySelectorAll('table.mini tbody tr').length >= 2 && !!b.querySelector('canvas.chart'); })()`)
	browsertest.Until(t, ctx, "three seconds of level history", `/last [3-9]\d* s|last \d\d s/.test(document.querySelector('#detail-body .legend').textContent)`)
	var detail string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById('detail').textContent`, &detail)))
	fi := s.d.orchestrator.Fork(mediafork.CallID(ruled.UUID))
	require.NotEmpty(t, fi)
	for _, want := range []string{"+15550101 → 2000", ruled.UUID, "rule · support", "analytics", "Endpoints", s.sink.Addr().String(),
		"rx+tx l16 8000 Hz 20 ms", fmt.Sprint(fi[0].StreamID), "support-2000-", "channel_id", "caller_id", "+15550101", "stereo", "Levels, last minute",
		"RX ", "TX ", "Packets out", "Last error", "none", "audio_fork, bug mediafork"} {
		assert.Contains(t, detail, want)
	}
	var epCells []string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`Array.from(document.querySelector('#detail-body table.mini tbody tr').cells).map(c => c.textContent)`, &epCells)))
	require.Len(t, epCells, 5, "endpoint, protocol, format, packets, drops")
	assert.Equal(t, []string{s.sink.Addr().String(), "tlv", "rx+tx l16 8000 Hz 20 ms"}, epCells[:3])
	assert.Regexp(t, `^[1-9]\d*$`, epCells[3], "packets sent to the endpoint")
	assert.Equal(t, "0", epCells[4], "no drops")
	var chart string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector('#detail-body canvas.chart').getAttribute('aria-label')`, &chart)))
	assert.Regexp(t, `^Levels over the last minute: RX -?\d+ dBFS \(last \d+ s: -?\d+ to -?\d+\); TX -?\d+ dBFS`, chart)
	assert.NotContains(t, detail, "cred=")
	g = geom()
	assert.LessOrEqual(t, g.ScrollWidth, g.ClientWidth, "the drawer is over the page, not beside it")
	shotDetail := browsertest.ScreenshotViewport(t, ctx, "console-1280x800-detail")
	if v := browsertest.Serious(browsertest.Axe(t, ctx)); len(v) > 0 {
		t.Errorf("axe-core, the detail: %v", v)
	}
	require.NoError(t, chromedp.Run(ctx, chromedp.KeyEvent(kb.Escape)))
	browsertest.Until(t, ctx, "the detail closed, the focus back on its row", fmt.Sprintf(`document.getElementById('detail').hidden && document.activeElement === %s.querySelector('button.who')`, rowJS(ruled.UUID)))

	// An unforked call's detail offers the profiles.
	another := s.switches[0].Answer(fssim.CallOptions{Dest: "3001", CallerID: "+15550103"})
	browsertest.Until(t, ctx, "the new call", fmt.Sprintf(`!!%s`, rowJS(another.UUID)))
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(rowJS(another.UUID)+`.querySelector('button.who').click()`, nil)))
	browsertest.Until(t, ctx, "the call's detail with the profiles", `document.querySelectorAll('#detail-body .profiles button').length === 2 && document.getElementById('detail-body').textContent.includes('Not forked')`)
	require.NoError(t, chromedp.Run(ctx, chromedp.Click("#detail-close", chromedp.ByID)))

	// A hangup takes the call away.
	s.switches[0].Hangup(another.UUID, "NORMAL_CLEARING")
	browsertest.Until(t, ctx, "the hung-up call gone", fmt.Sprintf(`!%s`, rowJS(another.UUID)))

	// At 1920×1080: every column, still nothing wider than the window.
	browsertest.Viewport(t, ctx, 1920, 1080)
	browsertest.Until(t, ctx, "13 columns", `Array.from(document.querySelector('#live tbody tr').cells).filter(c => c.offsetParent).length === 13`)
	g = geom()
	assert.LessOrEqual(t, g.ScrollWidth, g.ClientWidth)
	for _, r := range g.Rows {
		assert.LessOrEqual(t, r.ActionsRight, float64(g.ClientWidth), r.UUID)
	}
	shot1920 := browsertest.ScreenshotViewport(t, ctx, "console-1920x1080")
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(rowJS(ruled.UUID)+`.querySelector('button.who').click()`, nil)))
	browsertest.Until(t, ctx, "the detail at 1920", `document.querySelectorAll('#detail-body table.mini tbody tr').length >= 2`)
	var drawerLeft float64
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById('detail').getBoundingClientRect().left`, &drawerLeft)))
	g = geom()
	assert.LessOrEqual(t, g.ScrollWidth, g.ClientWidth)
	for _, r := range g.Rows { // on a wide screen the detail sits beside the calls: every verdict and action in view
		assert.LessOrEqual(t, r.VerdictRight, drawerLeft, r.UUID)
		assert.LessOrEqual(t, r.ActionsRight, drawerLeft, r.UUID)
	}
	shot1920Detail := browsertest.ScreenshotViewport(t, ctx, "console-1920x1080-detail")
	if v := browsertest.Serious(browsertest.Axe(t, ctx)); len(v) > 0 {
		t.Errorf("axe-core at 1920: %v", v)
	}
	t.Logf("screenshots: %s", strings.Join([]string{shot1280, shotDetail, shot1920, shot1920Detail}, " "))
}

// With no api.token the console is open to loopback and says so: no login
// form, no Log out, the calls at once.
func TestConsoleOpenWithoutToken(t *testing.T) {
	ctx := browsertest.Start(t, 60*time.Second)
	s := newStack(t, 1, nil)
	call := s.switches[0].Answer(fssim.CallOptions{Dest: "3000"})
	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate("http://"+s.api+"/"), chromedp.WaitVisible("#app", chromedp.ByID)))
	browsertest.Until(t, ctx, "the call", "!!"+rowJS(call.UUID))
	var mode string
	var loginShown, logoutShown bool
	require.NoError(t, chromedp.Run(ctx, chromedp.Text("#mode", &mode, chromedp.ByID),
		chromedp.Evaluate(`!document.getElementById('login').hidden`, &loginShown),
		chromedp.Evaluate(`!document.getElementById('logout').hidden`, &logoutShown)))
	assert.Equal(t, "open · no token, loopback only", mode)
	assert.False(t, loginShown, "asks for nothing")
	assert.False(t, logoutShown)
	browsertest.ScreenshotViewport(t, ctx, "console-open")
	if v := browsertest.Serious(browsertest.Axe(t, ctx)); len(v) > 0 {
		t.Errorf("axe-core: %v", v)
	}
}
