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

// The page at 2,000 live forks whose levels move every frame: what keeps it
// fast is asserted, not its speed (benchmarks measure that): one page of
// rows (50) is in the DOM whatever the number of forks, and the rows follow
// the feed, rendered as its messages come. The page measures itself
// (window.mfStats); the render time is logged.
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
	// The first row's packet counts move only with the feed's messages (its
	// age moves with the clock too).
	const firstPackets = `document.querySelector('#live tbody tr td:nth-child(8)').textContent`
	var before map[string]float64
	var packets string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`({...window.mfStats})`, &before), chromedp.Evaluate(firstPackets, &packets)))
	start := time.Now()
	browsertest.Until(t, ctx, "45 messages of the feed, rendered", fmt.Sprintf(`window.mfStats.messages >= %d && window.mfStats.renders > %d && %s !== %q`,
		int(before["messages"])+45, int(before["renders"]), firstPackets, packets))
	var after map[string]float64
	var rows int
	var page string
	require.NoError(t, chromedp.Run(ctx, chromedp.Evaluate(`({...window.mfStats})`, &after),
		chromedp.Evaluate(`document.querySelectorAll('#live tbody tr').length`, &rows),
		chromedp.Evaluate(`document.getElementById('page').textContent`, &page)))
	secs := time.Since(start).Seconds()
	msgs := after["messages"] - before["messages"]
	renders := after["renders"] - before["renders"]
	t.Logf("2,000 forks in the browser: %.1f messages/s, %.0f KiB/s of feed (decompressed), %.1f renders/s, render %.2f ms avg, %.2f ms max (%d rows in view)",
		msgs/secs, (after["bytes"]-before["bytes"])/1024/secs, renders/secs, (after["renderMs"]-before["renderMs"])/renders, after["maxRenderMs"], rows)
	assert.Equal(t, 50, rows, "one page in the DOM")
	assert.Equal(t, "1 / 40", page, "2,000 forks in pages of 50")

	// Paging and the filter work at that size.
	require.NoError(t, chromedp.Run(ctx, chromedp.SendKeys("#filter", "000000001999", chromedp.ByID)))
	browsertest.Until(t, ctx, "the filter", `document.querySelectorAll('#live tbody tr').length === 1 && document.querySelector('#live tbody tr').dataset.uuid.endsWith('000000001999')`)
	browsertest.Screenshot(t, ctx, "console-2000")
}
