package web

import (
	"net/netip"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/browsertest"
	"github.com/mediafork/mediafork/mediafork"
)

// Call metadata is hostile (caller id, channel name: channel variables any
// caller or dialplan sets): the page shows it as text, live and ended, and
// runs none of it. Holds (the page assigns textContent only, and its CSP
// allows no inline script); kept as a regression test.
func TestConsoleShowsHostileMetadataAsText(t *testing.T) {
	ctx := browsertest.Start(t, 60*time.Second)
	r := newConsoleRig(t, consoleToken, false, 10)
	const payload = `<img src=x onerror="window.pwned=1">`
	mk := func(uuid string) *mediafork.Fork {
		f, err := r.reg.Claim(mediafork.CallID(uuid), "mediafork")
		require.NoError(t, err)
		spec := mediafork.Spec{Profile: "p" + payload, Trigger: mediafork.TriggerRule, Rule: "r" + payload,
			Params:   mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20},
			Metadata: mediafork.Metadata{ChannelID: "sofia/" + payload, CallerID: payload, CalledID: `<script>window.pwned=2</script>`}}
		require.NoError(t, f.Begin(spec, mediafork.TLVTargets(netip.MustParseAddrPort("127.0.0.1:9999"))))
		return f
	}
	mk("0a1b2c3d-0000-4000-8000-0000000000a1")
	ended := mk("0a1b2c3d-0000-4000-8000-0000000000a2")
	ended.Finish(mediafork.EndHangup)
	// A call not forked, whose channel data is the switch's headers.
	r.console.calls = fixedCalls{{UUID: "0a1b2c3d-0000-4000-8000-0000000000a3", Server: "fs1" + payload, Channel: "sofia/" + payload,
		Caller: payload, Callee: `<script>window.pwned=3</script>`, Direction: payload, Answered: time.Now()}}

	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(r.srv.URL+"/"),
		chromedp.SetValue("#token", consoleToken, chromedp.ByID),
		chromedp.Click("#login-btn", chromedp.ByID),
		chromedp.WaitVisible("#app", chromedp.ByID)))
	browsertest.Until(t, ctx, "the live fork, the call and the ended fork", `document.querySelectorAll('#live tbody tr').length === 2 && document.querySelectorAll('#ended tbody tr').length === 1`)
	// Both details: the fork's and the call's.
	for _, uuid := range []string{"0a1b2c3d-0000-4000-8000-0000000000a1", "0a1b2c3d-0000-4000-8000-0000000000a3"} {
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelector('#live tr[data-uuid="`+uuid+`"] button.who').click()`, nil)))
		browsertest.Until(t, ctx, "the detail of "+uuid, `document.getElementById('detail-body').textContent.includes('`+uuid+`') && document.getElementById('detail-body').textContent.includes('<img')`)
		var inDetail int
		require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`document.querySelectorAll('#detail img, #detail script').length`, &inDetail)))
		assert.Zero(t, inDetail, uuid)
	}
	var injected int
	var pwned bool
	var caller string
	require.NoError(t, chromedp.Run(ctx,
		chromedp.Evaluate(`document.querySelectorAll('#live img, #ended img, #live script, #ended script, #switches img, #detail img').length`, &injected),
		chromedp.Evaluate(`window.pwned !== undefined`, &pwned),
		chromedp.Evaluate(`document.querySelector('#live tbody tr').textContent`, &caller)))
	assert.Zero(t, injected, "no element made from metadata")
	assert.False(t, pwned)
	assert.Contains(t, caller, payload, "shown as text")
}

// fixedCalls is a CallSource of the same calls.
type fixedCalls []mediafork.LiveCall

func (c fixedCalls) Calls() []mediafork.LiveCall { return c }
func (fixedCalls) CallsVersion() uint64          { return 1 }
