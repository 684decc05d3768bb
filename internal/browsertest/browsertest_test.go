package browsertest

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// Axe finds what it is there to find: a page with an image without text, a
// button without a name and grey text on white reports them, as serious or
// critical; the same page fixed reports none.
func TestAxeFindsViolations(t *testing.T) {
	ctx := Start(t, 60*time.Second)
	bad := `<!doctype html><html lang="en"><head><title>t</title></head><body><main>
<img src="data:,"><button></button><p style="color:#bbb;background:#fff">faint text</p></main></body></html>`
	good := `<!doctype html><html lang="en"><head><title>t</title></head><body><main>
<img src="data:," alt="a dot"><button>Go</button><p style="color:#333;background:#fff">clear text</p></main></body></html>`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		if r.URL.Path == "/good" {
			w.Write([]byte(good))
			return
		}
		w.Write([]byte(bad))
	}))
	defer srv.Close()
	if err := chromedp.Run(ctx, chromedp.Navigate(srv.URL+"/bad")); err != nil {
		t.Fatal(err)
	}
	found := map[string]string{}
	for _, v := range Serious(Axe(t, ctx)) {
		found[v.ID] = v.Impact
	}
	for _, id := range []string{"image-alt", "button-name", "color-contrast"} {
		if found[id] == "" {
			t.Errorf("axe did not report %s: %v", id, found)
		}
	}
	if err := chromedp.Run(ctx, chromedp.Navigate(srv.URL+"/good")); err != nil {
		t.Fatal(err)
	}
	if v := Serious(Axe(t, ctx)); len(v) != 0 {
		t.Errorf("the fixed page: %v", v)
	}
}
