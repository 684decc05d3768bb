package twiliows

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

const sid = "MZ0123456789abcdef0123456789abcdef"

// The messages as Twilio's documentation shows them (field names, nesting,
// strings against numbers), written out by hand: what this package writes
// must decode into the same values.
func TestMessagesAsDocumented(t *testing.T) {
	payload := []byte{0xff, 0x7f, 0x00, 0x80, 0x01}
	b := AppendHeader(nil, EventMedia, 3)
	b = AppendMediaBody(b, TrackOutbound, 1, 5, payload, sid)
	want := `{"event":"media","sequenceNumber":"3","media":{"track":"outbound","chunk":"1","timestamp":"5","payload":"` +
		base64.StdEncoding.EncodeToString(payload) + `"},"streamSid":"` + sid + `"}`
	if string(b) != want {
		t.Fatalf("media:\n got %s\nwant %s", b, want)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	media := m["media"].(map[string]any)
	for _, k := range []string{"track", "chunk", "timestamp", "payload"} {
		if _, ok := media[k].(string); !ok {
			t.Errorf("media.%s is %T, not a string", k, media[k])
		}
	}
	if _, ok := m["sequenceNumber"].(string); !ok {
		t.Errorf("sequenceNumber is %T, not a string", m["sequenceNumber"])
	}

	b = AppendDTMFBody(AppendHeader(nil, EventDTMF, 5), '#', sid)
	want = `{"event":"dtmf","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"#"},"streamSid":"` + sid + `"}`
	if string(b) != want {
		t.Fatalf("dtmf:\n got %s\nwant %s", b, want)
	}

	if got := string(AppendConnected(nil)); got != `{"event":"connected","protocol":"Call","version":"1.0.0"}` {
		t.Fatalf("connected: %s", got)
	}

	b, err := AppendStart(nil, 1, Start{AccountSid: "", StreamSid: sid, CallSid: "c0ffee", Tracks: []string{TrackInbound, TrackOutbound},
		MediaFormat: MediaFormat{Encoding: EncodingMulaw, SampleRate: 8000, Channels: 1}, CustomParameters: map[string]string{"exten": "2000"}})
	if err != nil {
		t.Fatal(err)
	}
	want = `{"event":"start","sequenceNumber":"1","start":{"accountSid":"","streamSid":"` + sid + `","callSid":"c0ffee",` +
		`"tracks":["inbound","outbound"],"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1},` +
		`"customParameters":{"exten":"2000"}},"streamSid":"` + sid + `"}`
	if string(b) != want {
		t.Fatalf("start:\n got %s\nwant %s", b, want)
	}

	b, err = AppendStop(nil, 10, Stop{CallSid: "c0ffee"}, sid)
	if err != nil {
		t.Fatal(err)
	}
	want = `{"event":"stop","sequenceNumber":"10","stop":{"accountSid":"","callSid":"c0ffee"},"streamSid":"` + sid + `"}`
	if string(b) != want {
		t.Fatalf("stop:\n got %s\nwant %s", b, want)
	}
}

// Every message this package writes parses back to what was written.
func TestRoundTrip(t *testing.T) {
	payload := bytes.Repeat([]byte{0x55, 0xd5}, 80)
	b := AppendMediaBody(AppendHeader(nil, EventMedia, 18446744073709551615), TrackInbound, 18446744073709551615, 18446744073709551615, payload, sid)
	if n := len(b) - len(AppendHeader(nil, EventMedia, 18446744073709551615)); n != MediaBodySize(len(payload), len(sid))-len("outbound")+len("inbound") {
		t.Errorf("a media body of the largest numbers is %d bytes; MediaBodySize says %d", n, MediaBodySize(len(payload), len(sid)))
	}
	m, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.StdEncoding.DecodeString(m.Media.Payload)
	if m.Event != EventMedia || m.SequenceNumber != "18446744073709551615" || m.Media.Track != TrackInbound ||
		m.Media.Chunk != "18446744073709551615" || !bytes.Equal(raw, payload) || m.StreamSid != sid {
		t.Fatalf("parsed %+v %+v", m, m.Media)
	}
	if HeaderRoom < len(AppendHeader(nil, EventConnected, 18446744073709551615)) {
		t.Fatalf("HeaderRoom %d is short", HeaderRoom)
	}
	if n := len(AppendDTMFBody(nil, '1', sid)); n != DTMFBodySize(len(sid)) {
		t.Fatalf("dtmf body %d bytes, DTMFBodySize %d", n, DTMFBodySize(len(sid)))
	}
}

// The media path's builders allocate nothing in a buffer of the right size.
func TestAppendAllocatesNothing(t *testing.T) {
	payload := make([]byte, 160)
	buf := make([]byte, 0, HeaderRoom+MediaBodySize(len(payload), len(sid)))
	allocs := testing.AllocsPerRun(200, func() {
		b := AppendHeader(buf[:0], EventMedia, 123456)
		b = AppendMediaBody(b, TrackInbound, 99, 1980, payload, sid)
		b = AppendDTMFBody(b[:0], '7', sid)
		_ = b
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per message", allocs)
	}
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error
	}{
		{"\xff\xfe", ErrNotUTF8},
		{`{"event":"media"`, ErrNotJSON},
		{`[1,2]`, ErrNotJSON},
		{`{"event":5}`, ErrNotJSON},
		{`{"media":{"payload":"x"}}`, ErrNoEvent},
		{`{"event":"me dia"}`, ErrBadEvent},
		{`{"event":"` + strings.Repeat("a", 33) + `"}`, ErrBadEvent},
		{`{"event":"media","media":"nope"}`, ErrNotJSON},
	} {
		if _, err := Parse([]byte(c.in)); !errors.Is(err, c.want) {
			t.Errorf("Parse(%q) = %v, want %v", c.in, err, c.want)
		}
	}
	m, err := Parse([]byte(`{"event":"mark","streamSid":"MZx","mark":{"name":"greeting"},"extra":1}`))
	if err != nil || m.Mark == nil || m.Mark.Name != "greeting" {
		t.Fatalf("a mark with an unknown field: %+v, %v", m, err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"event":"media","streamSid":"MZ1","media":{"payload":"AAAA"}}`))
	f.Add([]byte(`{"event":"clear"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err == nil && (m.Event == "" || len(m.Event) > maxEventLen) {
			t.Fatalf("accepted %q with event %q", b, m.Event)
		}
	})
}
