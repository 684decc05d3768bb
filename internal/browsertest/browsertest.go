// Package browsertest runs a headless Chromium for the web console's tests,
// driven over the DevTools protocol by chromedp.
package browsertest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Browsers are the names Chromium goes by, tried in order.
var Browsers = []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"}

// Find returns the Chromium to use: $MEDIAFORK_CHROMIUM, else the first of
// Browsers on PATH; "" when there is none.
func Find() string {
	if p := os.Getenv("MEDIAFORK_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range Browsers {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Start starts a headless Chromium with a fresh profile and returns a tab's
// context, which expires after timeout. The browser is killed when the test
// ends. With no Chromium the test is skipped, except under CI (CI=true),
// where .ci/run installs it: there it fails.
func Start(t *testing.T, timeout time.Duration) context.Context {
	t.Helper()
	path := Find()
	if path == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no chromium on PATH: .ci/run installs Debian's chromium")
		}
		t.Skip("no chromium on PATH (apt-get install chromium): the browser test needs a real browser")
	}
	// The profile is not t.TempDir: Chromium's helpers (crash handler,
	// utility processes) may still write to it for a moment after the
	// browser is killed, and t.TempDir's cleanup fails the test on that.
	profile, err := os.MkdirTemp("", "mediafork-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(profile),
		chromedp.Flag("disable-crash-reporter", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("autoplay-policy", "no-user-gesture-required"),
		chromedp.WindowSize(1600, 1000),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelTab := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, timeout)
	t.Cleanup(func() {
		cancelTimeout()
		cancelTab()
		cancelAlloc() // kills the browser and waits for it
		removeProfile(t, profile)
	})
	if err := chromedp.Run(ctx); err != nil { // start it now
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx
}

// Screenshot saves the whole page as name.png in $MEDIAFORK_ARTIFACTS, else
// in the test's temp dir, and returns the file's path.
func Screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Errorf("screenshot: %v", err)
		return ""
	}
	dir := os.Getenv("MEDIAFORK_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Errorf("screenshot: %v", err)
		return ""
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("screenshot: %v", err)
		return ""
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(png))
	return path
}

// Until evaluates expr in the page until it returns true, or fails the test
// with what after the context's deadline.
func Until(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		var ok bool
		err := chromedp.Run(ctx, chromedp.Evaluate(expr, &ok))
		if err == nil && ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// removeProfile deletes a browser profile, giving the helpers that outlive
// the browser a moment to stop writing to it; what is left is only logged.
func removeProfile(t *testing.T, dir string) {
	var err error
	for range 50 {
		if err = os.RemoveAll(dir); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("browser profile %s not removed: %v", dir, err)
}
