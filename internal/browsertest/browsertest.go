// Package browsertest runs a headless Chromium for the web console's tests,
// driven over the DevTools protocol by chromedp.
package browsertest

import (
	"context"
	_ "embed"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
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

// Screenshot saves the whole page as name.png in ArtifactDir and returns the
// file's path.
func Screenshot(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.FullScreenshot(&png, 100)); err != nil {
		t.Errorf("screenshot: %v", err)
		return ""
	}
	return save(t, name, png)
}

// ScreenshotViewport saves what the window shows, as a screen would, as
// name.png in ArtifactDir and returns the file's path.
func ScreenshotViewport(t *testing.T, ctx context.Context, name string) string {
	t.Helper()
	var png []byte
	if err := chromedp.Run(ctx, chromedp.CaptureScreenshot(&png)); err != nil {
		t.Errorf("screenshot: %v", err)
		return ""
	}
	return save(t, name, png)
}

func save(t *testing.T, name string, png []byte) string {
	t.Helper()
	path := filepath.Join(ArtifactDir(t), name+".png")
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

//go:embed axe/axe.min.js
var axeSource string

// axeVersion is the version of axeSource (axe/README.md).
const axeVersion = "4.14.1"

// AxeViolation is one rule axe-core found broken, with the elements that
// break it.
type AxeViolation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"` // minor, moderate, serious, critical
	Help    string   `json:"help"`
	Targets []string `json:"targets"` // CSS selectors of the elements
}

// String is the violation in one line.
func (v AxeViolation) String() string {
	return fmt.Sprintf("%s (%s): %s at %s", v.ID, v.Impact, v.Help, strings.Join(v.Targets, ", "))
}

// Axe runs axe-core (embedded: axe/README.md) on the page as it is, against
// the WCAG 2.x A and AA rules and axe's best practices, and returns what it
// found broken. It is injected over the DevTools protocol: the page's own
// CSP, which allows only its own scripts, is not loosened for it.
func Axe(t *testing.T, ctx context.Context) []AxeViolation {
	t.Helper()
	var loaded bool
	if err := chromedp.Run(ctx, chromedp.Evaluate(axeSource+";typeof axe === 'object'", &loaded)); err != nil || !loaded {
		t.Fatalf("injecting axe-core: %v (loaded: %v)", err, loaded)
	}
	var out string
	run := `axe.run(document, {resultTypes: ['violations'], runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}})
	  .then(r => JSON.stringify(r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
	    targets: v.nodes.map(n => n.target.join(' '))}))))`
	if err := chromedp.Run(ctx, chromedp.Evaluate(run, &out, func(p *runtime.EvaluateParams) *runtime.EvaluateParams {
		return p.WithAwaitPromise(true)
	})); err != nil {
		t.Fatalf("running axe-core: %v", err)
	}
	var vs []AxeViolation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		t.Fatalf("axe-core's answer: %v", err)
	}
	t.Logf("axe-core %s: %d violations (any impact)", axeVersion, len(vs))
	for _, v := range vs {
		t.Logf("  axe: %s", v)
	}
	return vs
}

// Serious is the violations whose impact is serious or critical.
func Serious(vs []AxeViolation) []AxeViolation {
	var out []AxeViolation
	for _, v := range vs {
		if v.Impact == "serious" || v.Impact == "critical" {
			out = append(out, v)
		}
	}
	return out
}

// Viewport sizes the tab's window as a screen of w×h CSS pixels would.
func Viewport(t *testing.T, ctx context.Context, w, h int64) {
	t.Helper()
	if err := chromedp.Run(ctx, chromedp.EmulateViewport(w, h)); err != nil {
		t.Fatalf("viewport %dx%d: %v", w, h, err)
	}
}

// ArtifactDir is where screenshots go: $MEDIAFORK_TEST_ARTIFACTS when set (CI
// keeps it), else the test's temp dir.
func ArtifactDir(t *testing.T) string {
	dir := os.Getenv("MEDIAFORK_TEST_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("artifacts: %v", err)
	}
	return dir
}
