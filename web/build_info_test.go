package web

import (
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mediafork/mediafork/mediafork"
)

func TestBuildInfoGauge(t *testing.T) {
	t.Parallel()
	m := NewMetrics(mediafork.NewRegistry(nil, 10, true, nil), func() map[string]SwitchStat { return nil }, nil)
	m.RegisterBuildInfo("v1.2.3", "0123abcd", "go1.26.0")
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	want := `mediafork_build_info{commit="0123abcd",goversion="go1.26.0",version="v1.2.3"} 1`
	if !strings.Contains(string(body), want+"\n") {
		t.Fatalf("no %q in /metrics:\n%s", want, body)
	}
	if !strings.Contains(string(body), "# TYPE mediafork_build_info gauge\n") {
		t.Fatalf("mediafork_build_info is not a gauge:\n%s", body)
	}
}
