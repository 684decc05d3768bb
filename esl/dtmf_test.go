package esl

import (
	"bufio"
	"bytes"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
)

// recordedMessages reads every event message of a recording made byte for
// byte from the event socket (testdata/dtmf).
func recordedMessages(t *testing.T, path string) []*Event {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	r := bufio.NewReader(bytes.NewReader(raw))
	var out []*Event
	for {
		m, err := ReadMessage(r)
		if err != nil {
			break
		}
		require.Equal(t, TypeEventPlain, m.ContentType())
		e, err := ParseEvent(m.Body)
		require.NoError(t, err)
		out = append(out, e)
	}
	return out
}

// FreeSWITCH's DTMF events, as the real switch sent them for uuid_send_dtmf,
// become the domain's DTMFReceived: the receiving channel, the digit decoded
// (%23 is #), the duration from samples at 8 kHz.
func TestRecordedDTMFEvents(t *testing.T) {
	t.Parallel()
	for file, want := range map[string][]mediafork.DTMFReceived{
		"send_dtmf_12hash.plain.txt": {
			{UUID: "569abeb1-258b-4cf8-859a-cebdeffbf92b", Digit: '1', Duration: 250 * time.Millisecond},
			{UUID: "569abeb1-258b-4cf8-859a-cebdeffbf92b", Digit: '2', Duration: 250 * time.Millisecond},
			{UUID: "569abeb1-258b-4cf8-859a-cebdeffbf92b", Digit: '#', Duration: 250 * time.Millisecond},
		},
		"send_dtmf_9AD0_at400.plain.txt": {
			{UUID: "c8018d90-00e3-4d8f-acfd-e8761af7387c", Digit: '9', Duration: 400 * time.Millisecond},
			{UUID: "c8018d90-00e3-4d8f-acfd-e8761af7387c", Digit: 'A', Duration: 400 * time.Millisecond},
			{UUID: "c8018d90-00e3-4d8f-acfd-e8761af7387c", Digit: 'D', Duration: 400 * time.Millisecond},
			{UUID: "c8018d90-00e3-4d8f-acfd-e8761af7387c", Digit: '0', Duration: 400 * time.Millisecond},
		},
		"send_dtmf_star.plain.txt": {{UUID: "4d5a51cc-fb14-4cea-b6c0-5a8b19898702", Digit: '*', Duration: 250 * time.Millisecond}},
	} {
		var got []mediafork.DTMFReceived
		for _, e := range recordedMessages(t, "../testdata/dtmf/"+file) {
			assert.Equal(t, "loopback/9000-b", e.Get("Channel-Name"), "the leg that received the digits")
			ce, ok := CallEvent(e)
			require.True(t, ok, file)
			got = append(got, ce.(mediafork.DTMFReceived))
		}
		assert.Equal(t, want, got, file)
	}
	assert.Contains(t, SubscribedEvents, EventDTMF)
}

// A DTMF event that is not one is dropped at the boundary.
func TestHostileDTMFEvents(t *testing.T) {
	t.Parallel()
	base := map[string]string{"Event-Name": "DTMF", "Unique-ID": "u-1", "DTMF-Digit": "5", "DTMF-Duration": "800"}
	ev := func(k, v string) *Event {
		e := &Event{Name: "DTMF", Headers: map[string]string{}}
		for hk, hv := range base {
			e.Headers[hk] = hv
		}
		if k != "" {
			e.Headers[k] = v
		}
		return e
	}
	got, ok := CallEvent(ev("", ""))
	require.True(t, ok)
	assert.Equal(t, mediafork.DTMFReceived{UUID: "u-1", Digit: '5', Duration: 100 * time.Millisecond}, got)
	for _, bad := range [][2]string{{"DTMF-Digit", "E"}, {"DTMF-Digit", "55"}, {"DTMF-Digit", ""}, {"DTMF-Digit", "%23"},
		{"Unique-ID", "bad uuid"}, {"Unique-ID", ""}} {
		_, accepted := CallEvent(ev(bad[0], bad[1]))
		assert.False(t, accepted, "%s=%q", bad[0], bad[1])
	}
	got, ok = CallEvent(ev("DTMF-Duration", "99999999999999999999999"))
	require.True(t, ok, "an unreadable duration is 0, the digit kept")
	assert.Zero(t, got.(mediafork.DTMFReceived).Duration)
	got, ok = CallEvent(ev("DTMF-Duration", "9999999999"))
	require.True(t, ok)
	assert.Equal(t, mediafork.MaxDTMFDuration, got.(mediafork.DTMFReceived).Duration, "bounded")
	got, ok = CallEvent(ev("DTMF-Digit", "b"))
	require.True(t, ok)
	assert.Equal(t, mediafork.Digit('B'), got.(mediafork.DTMFReceived).Digit)
}
