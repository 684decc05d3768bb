package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvdump"
)

// Where a fork's destinations, params and metadata come from, on the wire:
// the orders mediafork/policy_precedence_test.go pins in Policy.Resolve, as
// the ingest and the config reload feed it.

// newSink is a TLV receiver of its own for one destination.
func newSink(t *testing.T) *tlvdump.Receiver {
	t.Helper()
	r, err := tlvdump.Listen("127.0.0.1:0", tlvdump.Options{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

// signaled waits until sink has both directions of channelID signaled and
// streaming, and returns them.
func signaled(t *testing.T, sink *tlvdump.Receiver, channelID string) []*tlvdump.Stream {
	t.Helper()
	var got []*tlvdump.Stream
	require.Eventually(t, func() bool {
		got = got[:0]
		for _, st := range sink.Streams() {
			if st.Signaling != nil && st.Signaling.ChannelID == channelID && st.Packets > 0 {
				got = append(got, st)
			}
		}
		return len(got) == 2
	}, 10*time.Second, 10*time.Millisecond, "channel %q at %s", channelID, sink.Addr())
	return got
}

// forkOf is the API's view of the live fork of uuid.
func (s *stack) forkOf(uuid string) mediafork.Info {
	s.t.Helper()
	status, body := s.call("GET", "/v1/forks/"+uuid, "", "")
	require.Equal(s.t, 200, status, body)
	var in mediafork.Info
	require.NoError(s.t, json.Unmarshal([]byte(body), &in))
	return in
}

// A fork typed by hand: the first text frame over the URL query over the
// call's channel variables (uuid_dump: mediafork_profile, mediafork_to) over
// the defaults, for destinations and metadata; the query's params over the
// chosen profile's. Each row a call of its own; the wire at the chosen
// destination, and the fork's endpoints (no other destination).
func TestIngestPrecedenceOnTheWire(t *testing.T) {
	sinks := map[string]*tlvdump.Receiver{"frame": newSink(t), "query": newSink(t), "chanvar": newSink(t)}
	s := newStack(t, 1, func(c *conf.Config) {
		for name, sink := range sinks {
			c.Profiles[name] = conf.Profile{Endpoints: []string{sink.Addr().String()}, Encoding: "pcma"}
		}
	})
	sw := s.switches[0]
	cases := []struct {
		name     string
		vars     map[string]string // the call's channel variables
		query    string            // the URL's
		frame    string            // the first text frame ("" none)
		channel  string            // the channel_id expected
		sink     string            // the one destination expected
		caller   string            // caller_id expected
		exten    string            // exten expected
		encoding string            // the format packet's
	}{
		{name: "frame over query over channel variable", vars: map[string]string{"mediafork_profile": "chanvar"},
			query: "profile=query", frame: `{"profile":"frame","channel_id":"row1","caller_id":"555"}`,
			channel: "row1", sink: "frame", caller: "555", exten: "7001", encoding: "pcma"},
		{name: "query over channel variable", vars: map[string]string{"mediafork_profile": "chanvar"},
			query: "profile=query", frame: `{"channel_id":"row2"}`,
			channel: "row2", sink: "query", caller: "+1002", exten: "7002", encoding: "pcma"},
		{name: "channel variable when nothing else names one; the channel's metadata", vars: map[string]string{"mediafork_profile": "chanvar"},
			channel: "loopback/7003-a", sink: "chanvar", caller: "+1003", exten: "7003", encoding: "pcma"},
		{name: "frame to over query profile", query: "profile=query", frame: `{"to":"SINK:frame","channel_id":"row4"}`,
			channel: "row4", sink: "frame", caller: "+1004", exten: "7004", encoding: "l16"},
		{name: "query over channel variable mediafork_to", vars: map[string]string{"mediafork_to": "SINK:chanvar"},
			query: "profile=query", frame: `{"channel_id":"row5"}`,
			channel: "row5", sink: "query", caller: "+1005", exten: "7005", encoding: "pcma"},
		{name: "query params over the frame's profile's", query: "profile=query&encoding=pcmu", frame: `{"profile":"frame","channel_id":"row6"}`,
			channel: "row6", sink: "frame", caller: "+1006", exten: "7006", encoding: "pcmu"},
		{name: "query params over the channel variable's profile's", vars: map[string]string{"mediafork_profile": "chanvar"}, query: "encoding=l16",
			frame: `{"channel_id":"row7"}`, channel: "row7", sink: "chanvar", caller: "+1007", exten: "7007", encoding: "l16"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dest := fmt.Sprint(7001 + i)
			vars := map[string]string{}
			for k, v := range tc.vars {
				vars[k] = strings.ReplaceAll(v, "SINK:chanvar", sinks["chanvar"].Addr().String())
			}
			call := sw.Answer(fssim.CallOptions{Dest: dest, CallerID: fmt.Sprintf("+%d", 1001+i), Vars: vars})
			u := fmt.Sprintf("ws://%s/fork/%s", s.ingest, call.UUID)
			if tc.query != "" {
				u += "?" + tc.query
			}
			cmd := fmt.Sprintf("uuid_audio_fork %s start %s stereo 8k", call.UUID, u)
			if tc.frame != "" {
				cmd += " " + strings.ReplaceAll(tc.frame, "SINK:frame", sinks["frame"].Addr().String())
			}
			require.Equal(t, "+OK Success\n", sw.FsCli(cmd))
			streams := signaled(t, sinks[tc.sink], tc.channel)
			for _, st := range streams {
				assert.Equal(t, tc.caller, st.Signaling.CallerID, "caller_id")
				assert.Equal(t, tc.exten, st.Signaling.Exten, "exten")
				require.NotNil(t, st.Format)
				c, ok := mediafork.CodecByCode(st.Format.Encoding)
				require.True(t, ok)
				assert.Equal(t, tc.encoding, string(c.Name()), "encoding")
			}
			assert.Equal(t, []string{sinks[tc.sink].Addr().String()}, s.forkOf(call.UUID).Endpoints, "the one destination chosen")
		})
	}
}

// A fork another mediafork started (its credential, signed with the shared
// ingest.key) is served as signed: its destinations and metadata over its
// first text frame's and its URL query's.
func TestCredentialOverFrameAndQuery(t *testing.T) {
	const key = "shared-ingest-key-0123456789"
	signedTo, frameTo, queryTo := newSink(t), newSink(t), newSink(t)
	s := newStack(t, 1, func(c *conf.Config) {
		c.Ingest.Key = key
		c.Profiles["query"] = conf.Profile{Endpoints: []string{queryTo.Addr().String()}}
	})
	call := s.switches[0].Answer(fssim.CallOptions{Dest: "7100", CallerID: "+1100"})
	other := mediafork.NewSigner([]byte(key)) // the other instance
	spec := mediafork.Spec{UUID: mediafork.CallID(call.UUID), Bug: "mediafork", Trigger: mediafork.TriggerAPI,
		Targets:  mediafork.TLVTargets(netip.MustParseAddrPort(signedTo.Addr().String())),
		Params:   mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.PCMU, FrameMs: 20},
		Metadata: mediafork.Metadata{ChannelID: "signed", CallerID: "777"}, Start: other.NewStart()}
	cred := other.Sign(spec, time.Now().Add(time.Minute))
	a, err := fssim.DialAudioFork(context.Background(), fmt.Sprintf("ws://%s/fork/%s?cred=%s&profile=query&encoding=l16", s.ingest, call.UUID, cred.Token),
		fssim.AudioForkOptions{Metadata: fmt.Sprintf(`{%q:%q,"to":%q,"channel_id":"frame","caller_id":"555"}`,
			mediafork.DescriptionKey, cred.Description, frameTo.Addr())})
	require.NoError(t, err)
	defer a.Conn.Close()
	require.NoError(t, a.Stream(context.Background(), fssim.Tone(8000, 0.2, 8000, 440, 1000), fssim.FrameBytes(8000, 2), 0))
	for _, st := range signaled(t, signedTo, "signed") {
		assert.Equal(t, "777", st.Signaling.CallerID)
		assert.Empty(t, st.Signaling.Exten, "the signed metadata as signed: not filled from the call")
		require.NotNil(t, st.Format)
		assert.Equal(t, uint8(3), st.Format.Encoding, "pcmu as signed, not the query's l16")
	}
	assert.Equal(t, []string{signedTo.Addr().String()}, s.forkOf(call.UUID).Endpoints, "the signed destination only")
}

// Overlapping rules in the config file: the first in file order wins, and
// after the file is rewritten with them swapped, the new first. The rule's
// params over its profile's over the defaults, as the file is compiled.
func TestFirstRuleInFileOrderAcrossReload(t *testing.T) {
	first, second := newSink(t), newSink(t)
	s, _ := prepareStack(t, 1)
	yaml := func(rules string) string {
		return fmt.Sprintf(`
freeswitch: [{name: fs1, address: "%s", password: ClueCon}]
outbound: {listen: "%s"}
ingest: {listen: "%s", url: "ws://%s"}
api: {listen: "%s"}
profiles:
  first: {endpoints: ["%s"]}
  second: {endpoints: ["%s"], encoding: pcma, rate: 16000}
rules:
%s`, s.switches[0].Addr(), s.outbound, s.ingest, s.ingest, s.api, first.Addr(), second.Addr(), rules)
	}
	broad := `  - {name: broad, match: {Caller-Destination-Number: "^7"}, profile: first, metadata: {channel_id: "broad-${Caller-Caller-ID-Number}"}}` + "\n"
	exact := `  - {name: exact, match: {Caller-Destination-Number: "^7200$"}, profile: second, encoding: pcmu, metadata: {channel_id: "exact-${Caller-Caller-ID-Number}"}}` + "\n"
	path := filepath.Join(t.TempDir(), "mediafork.yaml")
	require.NoError(t, os.WriteFile(path, []byte(yaml(broad+exact)), 0o600))
	c, err := conf.Load(path, nil)
	require.NoError(t, err)
	s.start(c, path)
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "resync done") }, 5*time.Second, 10*time.Millisecond)
	sw := s.switches[0]

	one := sw.Answer(fssim.CallOptions{Dest: "7200", CallerID: "1"})
	signaled(t, first, "broad-1")
	assert.Equal(t, "broad", s.forkOf(one.UUID).Rule)

	require.NoError(t, os.WriteFile(path, []byte(yaml(exact+broad)), 0o600))
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "config reloaded") }, 5*time.Second, 10*time.Millisecond)
	two := sw.Answer(fssim.CallOptions{Dest: "7200", CallerID: "2", Name: "loopback/7200-b"})
	for _, st := range signaled(t, second, "exact-2") {
		require.NotNil(t, st.Format)
		assert.Equal(t, uint8(3), st.Format.Encoding, "pcmu: the rule's encoding over its profile's pcma")
		assert.Equal(t, uint32(16000), st.Format.SampleRate, "the profile's rate over the default 8000")
	}
	assert.Equal(t, "exact", s.forkOf(two.UUID).Rule)
	assert.Equal(t, "broad", s.forkOf(one.UUID).Rule, "the fork started before the reload keeps its rule")
	for _, st := range first.Streams() {
		assert.Nil(t, st.End, "and streams on")
	}
}
