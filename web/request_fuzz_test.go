package web

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/transport/udp"
)

// fuzzDestinations resolves every name to an address outside the allow list
// (and never touches the network), so that a name that slipped past the
// check would show.
func fuzzDestinations() *mediafork.Destinations {
	return &mediafork.Destinations{
		Profiles: map[string]mediafork.Profile{"analytics": {Endpoints: []string{"192.0.2.1:9000"}}},
		Allow:    []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		LookupHost: func(_ context.Context, host string) ([]netip.Addr, error) {
			if host == "localhost" {
				return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
			}
			return []netip.Addr{netip.MustParseAddr("198.51.100.7")}, nil
		},
	}
}

// checkAddrs fails unless every address is the profile's or allowed.
func checkAddrs(t *testing.T, d *mediafork.Destinations, profile string, addrs []netip.AddrPort) {
	if len(addrs) == 0 || len(addrs) > mediafork.DefaultMaxDestinations+1 {
		t.Fatalf("%d destinations", len(addrs))
	}
	for _, a := range addrs {
		if a.Port() == 0 {
			t.Fatalf("port 0 accepted: %v", a)
		}
		if !d.Allowed(a.Addr()) && !(profile == "analytics" && a == netip.MustParseAddrPort("192.0.2.1:9000")) {
			t.Fatalf("%v is outside the allow list", a)
		}
	}
}

// FuzzStartRequest: whatever the body of POST /v1/forks, decoding either
// refuses it or yields a valid call id, and its destinations resolve only
// inside the allow list.
func FuzzStartRequest(f *testing.F) {
	for _, s := range []string{
		`{"uuid":"18621868-c3fe-47c1-a9a0-e6eabc8413ae","profile":"analytics"}`,
		`{"uuid":"call-1\n\napi system id\n\nbgapi originate loopback/1 &park","profile":"analytics"}`,
		`{"uuid":"a","to":["127.0.0.1:9","localhost:9","name:9","127.0.0.1:0","[::ffff:8.8.8.8]:1"]}`,
		`{"uuid":"a","to":["127.0.0.1:9"]} {"uuid":"b"}`,
		`{"uuid":"a b","mix":"quad","rate":-1,"metadata":{"channel_id":"\u0000"}}`,
		`{"uuid":"` + strings.Repeat("a", 65) + `"}`, `[]`, `null`, `{"uuid":1}`,
	} {
		f.Add(s, "application/json")
	}
	f.Add(`{"uuid":"a","profile":"analytics"}`, "text/plain")
	f.Add(`{"uuid":"a","profile":"analytics"}`, "application/json; charset=utf-8")
	d := fuzzDestinations()
	f.Fuzz(func(t *testing.T, body, contentType string) {
		r := httptest.NewRequest("POST", "/v1/forks", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		req, status, err := DecodeStartRequest(httptest.NewRecorder(), r)
		if err != nil {
			if status < 400 || status > 499 {
				t.Fatalf("status %d for %v", status, err)
			}
			return
		}
		if _, err = mediafork.ParseCallID(string(req.UUID)); err != nil {
			t.Fatalf("accepted uuid %q: %v", req.UUID, err)
		}
		if len(req.To) == 0 && req.Profile == "" {
			return
		}
		addrs, err := d.Resolve(context.Background(), req.Profile, req.To, true)
		if err == nil {
			checkAddrs(t, d, req.Profile, addrs)
		}
	})
}

// FuzzIngestRequest: whatever the path, query and first text frame of a
// connection, the ingest refuses it with a 4xx or yields a valid call id and
// destinations inside the allow list.
func FuzzIngestRequest(f *testing.F) {
	f.Add("u1", "profile=analytics", `{"channel_id":"x"}`)
	f.Add("u1", "to=127.0.0.1:9&to=localhost:9&mix=mono&rate=16k&encoding=pcmu", ``)
	f.Add("u1", "to=name:9", `{"to":["name:9","127.0.0.1:0"]}`)
	f.Add("u1", "", `{"to":"127.0.0.1:9","profile":"nope"}`)
	f.Add("a%0Ab", "profile=analytics&token=x", `{`)
	f.Add("t01_stereo_8k", "ch=2&rate=8000", ``)
	f.Add("u1", "cred=abc.def", ``)
	f.Add("u1", "to=%5B::ffff:8.8.8.8%5D:1", ``)
	d := fuzzDestinations()
	set := IngestSettings{MaxMessageBytes: 65536, Destinations: d,
		Defaults: mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20}}
	in, err := NewIngest(mediafork.NewRegistry(udp.New(), 10, true, quiet), mediafork.NewSigner([]byte("k")), nil, set, quiet)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, uuid, query, first string) {
		r, err := http.NewRequest("GET", "http://x/fork/x?"+query, nil)
		if err != nil {
			return
		}
		r.SetPathValue("uuid", uuid)
		req, status, err := in.parseRequest(r, &set)
		if err != nil {
			if status < 400 || status > 499 {
				t.Fatalf("status %d for %v", status, err)
			}
			return
		}
		if _, err = mediafork.ParseCallID(string(req.uuid)); err != nil {
			t.Fatalf("accepted uuid %q", req.uuid)
		}
		if err = req.spec.Params.Validate(); err != nil {
			t.Fatalf("accepted params: %v", err)
		}
		var msg firstMessage // as the session reads it: bad JSON is ignored
		if json.Unmarshal([]byte(first), &msg) != nil {
			msg = firstMessage{}
		}
		spec, targets, err := in.resolve(req, msg, &set)
		if err != nil {
			return
		}
		checkAddrs(t, d, spec.Profile, spec.Addrs())
		if len(targets) != len(spec.Targets) {
			t.Fatalf("resolve returned %d targets of %d", len(targets), len(spec.Targets))
		}
		if spec.Metadata.ChannelID == "" {
			t.Fatal("no channel_id")
		}
	})
}
