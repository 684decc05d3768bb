package web

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/browsertest"
	"github.com/mediafork/mediafork/mediafork"
)

// The page at 2,000 live forks whose levels move every frame: it keeps up
// with the feed (~10 messages a second) and a render of the page in view
// stays short. The page measures itself (window.mfStats).
func TestConsoleRendersTwoThousandForks(t *testing.T) {
	ctx := browsertest.Start(t, 90*time.Second)
	r := newConsoleRig(t, consoleToken, false, 3000)
	var forks []*mediafork.Fork
	for i := 0; i < 2000; i++ {
		forks = append(forks, r.fork(fmt.Sprintf("0a1b2c3d-0000-4000-8000-%012d", i)))
	}
	var rx, tx atomic.Int32
	rx.Store(8000)
	tx.Store(8000)
	r.stream(forks, &rx, &tx)

	require.NoError(t, chromedp.Run(ctx, chromedp.Navigate(r.srv.URL+"/"),
		chromedp.SetValue("#token", consoleToken, chromedp.ByID),
		chromedp.Click("#login-btn", chromedp.ByID),
		chromedp.WaitVisible("#app", chromedp.ByID)))
	browsertest.Until(t, ctx, "2,000 forks", `document.getElementById('live-count').textContent === '2000' && document.getElementById('conn').textContent === 'live'`)
	var before map[string]float64
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`({...window.mfStats})`, &before)))
	start := time.Now()
	browsertest.Until(t, ctx, "5 seconds of updates", fmt.Sprintf(`window.mfStats.messages >= %d`, int(before["messages"])+45))
	var after map[string]float64
	var rows int
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`({...window.mfStats})`, &after),
		chromedp.Evaluate(`document.querySelectorAll('#live tbody tr').length`, &rows)))
	secs := time.Since(start).Seconds()
	msgs := after["messages"] - before["messages"]
	renders := after["renders"] - before["renders"]
	avg := (after["renderMs"] - before["renderMs"]) / renders
	t.Logf("2,000 forks in the browser: %.1f messages/s, %.0f KiB/s of feed (decompressed), %.1f renders/s, render %.2f ms avg, %.2f ms max (%d rows in view)",
		msgs/secs, (after["bytes"]-before["bytes"])/1024/secs, renders/secs, avg, after["maxRenderMs"], rows)
	assert.Equal(t, 50, rows, "one page in the DOM")
	assert.Greater(t, msgs/secs, 1.0, "the page keeps taking the feed (its rate is the levels' change rate, CPU-bound here)")
	assert.Less(t, avg, 16.0, "a render fits a frame")

	// Paging and the filter work at that size.
	require.NoError(t, chromedp.Run(ctx, chromedp.SendKeys("#filter", "000000001999", chromedp.ByID)))
	browsertest.Until(t, ctx, "the filter", `document.querySelectorAll('#live tbody tr').length === 1 && document.querySelector('#live tbody tr').dataset.uuid.endsWith('000000001999')`)
	browsertest.Screenshot(t, ctx, "console-2000")
}
