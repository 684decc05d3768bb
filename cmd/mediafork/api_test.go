package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/wstest"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// call sends one API request and returns status and body.
func (s *stack) call(method, path, token, body string) (int, string) {
	s.t.Helper()
	req, err := http.NewRequest(method, "http://"+s.api+path, strings.NewReader(body))
	require.NoError(s.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(s.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

const apiToken = "api-s3cret-token"

func TestHTTPAPI(t *testing.T) {
	s := newStack(t, 1, func(c *conf.Config) {
		c.API.Token = apiToken
		c.FreeSWITCH = append(c.FreeSWITCH, conf.FreeSWITCH{Name: "down", Address: "127.0.0.1:1", Password: "x", Required: true})
	})
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5000", CallerID: "+100"})

	status, body := s.call("GET", "/healthz", "", "")
	assert.Equal(t, 200, status, body)
	status, body = s.call("GET", "/readyz", "", "")
	assert.Equal(t, 503, status, "a required switch is unreachable: %s", body)
	assert.Contains(t, body, `"name":"down","state":`)
	assert.Contains(t, body, `{"name":"fs1","state":"connected","required":false`)

	status, body = s.call("GET", "/v1/forks", "", "")
	assert.Equal(t, 401, status)
	assert.JSONEq(t, `{"error":"missing or wrong bearer token"}`, body)
	status, _ = s.call("GET", "/v1/forks", "wrong", "")
	assert.Equal(t, 401, status)

	// Start: 201 with the fork, streaming.
	req := fmt.Sprintf(`{"uuid":%q,"freeswitch":"fs1","profile":"analytics","mix":"mono","metadata":{"exten":"777"}}`, call.UUID)
	status, body = s.call("POST", "/v1/forks", apiToken, req)
	require.Equal(t, 201, status, body)
	var in mediafork.Info
	require.NoError(t, json.Unmarshal([]byte(body), &in))
	assert.Equal(t, call.UUID, string(in.UUID))
	assert.Equal(t, mediafork.StateStreaming, in.State)
	assert.NotZero(t, in.StreamID)
	assert.Equal(t, "fs1", in.Server)
	assert.Equal(t, mediafork.Mono, in.Mix)
	assert.Equal(t, []string{s.sink.Addr().String()}, in.Endpoints)
	st := s.waitPackets("loopback/5000-a", 1, 5)[0]
	assert.Equal(t, "777", st.Signaling.Exten)
	assert.Equal(t, "+100", st.Signaling.CallerID)

	// The fork's live counters: the packets above were counted.
	status, body = s.call("GET", "/v1/forks/"+call.UUID, apiToken, "")
	require.Equal(t, 200, status)
	require.NoError(t, json.Unmarshal([]byte(body), &in))
	assert.Greater(t, in.FramesIn, uint64(0))
	assert.Greater(t, in.PacketsOut["RX"], uint64(0))
	assert.False(t, in.StartedAt.IsZero())
	status, body = s.call("GET", "/v1/forks", apiToken, "")
	assert.Equal(t, 200, status)
	assert.Contains(t, body, call.UUID)

	// Errors, each with its status.
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
	}{
		{"bad JSON", "POST", "/v1/forks", `{"uuid":`, 400},
		{"unknown field", "POST", "/v1/forks", `{"uuid":"x","profile":"analytics","bogus":1}`, 400},
		{"no destination", "POST", "/v1/forks", `{"uuid":"x"}`, 400},
		{"unknown profile", "POST", "/v1/forks", `{"uuid":"x","profile":"nope"}`, 400},
		{"bad rate", "POST", "/v1/forks", `{"uuid":"x","profile":"analytics","rate":11025}`, 400},
		{"not allowed", "POST", "/v1/forks", `{"uuid":"x","to":["8.8.8.8:9000"]}`, 400},
		{"unknown call", "POST", "/v1/forks", `{"uuid":"00000000-0000-4000-8000-000000000000","profile":"analytics"}`, 404},
		{"duplicate", "POST", "/v1/forks", req, 409},
		{"switch down", "POST", "/v1/forks", `{"uuid":"x","freeswitch":"down","profile":"analytics"}`, 503},
		{"unknown fork", "GET", "/v1/forks/nope", "", 404},
		{"stop unknown", "DELETE", "/v1/forks/nope", "", 404},
		{"bad level", "PUT", "/v1/log-level", `{"level":"loud"}`, 400},
		{"unknown path", "GET", "/v2/forks", "", 404},
	} {
		status, body = s.call(tc.method, tc.path, apiToken, tc.body)
		assert.Equal(t, tc.status, status, "%s: %s", tc.name, body)
		var e struct{ Error string }
		assert.NoError(t, json.Unmarshal([]byte(body), &e), tc.name)
		assert.NotEmpty(t, e.Error, tc.name)
	}

	status, body = s.call("PUT", "/v1/log-level", apiToken, `{"level":"warn"}`)
	assert.Equal(t, 200, status, body)
	assert.JSONEq(t, `{"level":"warn"}`, body)
	s.call("PUT", "/v1/log-level", apiToken, `{"level":"debug"}`)

	// Stop: 204, end packets with reason 2, the bug stopped on the switch.
	status, _ = s.call("DELETE", "/v1/forks/"+call.UUID, apiToken, "")
	assert.Equal(t, 204, status)
	for _, st := range s.waitEnded("loopback/5000-a", 1) {
		assert.Equal(t, tlvcodec.ReasonStopped, st.End.Reason)
	}
	require.Eventually(t, func() bool {
		_, body := s.call("GET", "/v1/forks/"+call.UUID, apiToken, "")
		return strings.Contains(body, `"state":"ended"`) && strings.Contains(body, `"end_reason":"stopped"`)
	}, 5*time.Second, 20*time.Millisecond)
	assert.Empty(t, sw.Call(call.UUID).Bugs())
}

// scrape returns the value of one series, or -1.
func scrape(t *testing.T, s *stack, series string) float64 {
	_, body := s.call("GET", "/metrics", "", "")
	for _, line := range strings.Split(body, "\n") {
		if name, val, ok := strings.Cut(line, " "); ok && name == series {
			v, err := strconv.ParseFloat(val, 64)
			require.NoError(t, err)
			return v
		}
	}
	return -1
}

func TestMetricsDuringAFork(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	s.waitPackets("support-2000-", 2, 60) // more than 50 frames: a latency sample
	assert.Equal(t, 1.0, scrape(t, s, "mediafork_forks_active"))
	assert.Greater(t, scrape(t, s, "mediafork_frames_in_total"), 50.0)
	assert.Greater(t, scrape(t, s, `mediafork_packets_out_total{direction="rx"}`), 50.0)
	assert.Greater(t, scrape(t, s, `mediafork_packets_out_total{direction="tx"}`), 50.0)
	assert.Greater(t, scrape(t, s, `mediafork_bytes_out_total{direction="rx"}`), 50.0*332)
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_packets_out_total{direction="mixed"}`))
	sink := fmt.Sprintf(`{endpoint=%q,profile="analytics",protocol="tlv"}`, s.sink.Addr().String())
	assert.Equal(t, 0.0, scrape(t, s, "mediafork_send_errors_total"+sink))
	assert.Equal(t, 0.0, scrape(t, s, "mediafork_drops_total"+sink))
	assert.Equal(t, 1.0, scrape(t, s, `mediafork_forks_started_total{trigger="rule"}`))
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_forks_started_total{trigger="api"}`))
	assert.Equal(t, 1.0, scrape(t, s, `mediafork_esl_connected{freeswitch="fs1"}`))
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_esl_reconnects_total{freeswitch="fs1"}`))
	assert.GreaterOrEqual(t, scrape(t, s, `mediafork_esl_event_queue_length{freeswitch="fs1"}`), 0.0)
	assert.GreaterOrEqual(t, scrape(t, s, "mediafork_ingest_to_send_latency_seconds_count"), 1.0)
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_ingest_refusals_total{code="401"}`))
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_fork_retries_total{reason="connect_failed"}`))
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_config_reloads_total{result="failure"}`))
	assert.InDelta(t, float64(time.Now().Unix()), scrape(t, s, "mediafork_config_last_reload_success_timestamp_seconds"), 600, "the start's load")
	sw.Hangup(call.UUID, "NORMAL_CLEARING")
	require.Eventually(t, func() bool { return scrape(t, s, `mediafork_forks_ended_total{outcome="hangup"}`) == 1 }, 5*time.Second, 20*time.Millisecond)
	assert.Equal(t, 0.0, scrape(t, s, "mediafork_forks_active"))
	assert.Greater(t, scrape(t, s, "mediafork_frames_in_total"), 50.0, "ended forks still count")
}

// reloadYAML is a config file for the stack, with rule and allow list to vary.
func reloadYAML(s *stack, rule, extra string) string {
	return fmt.Sprintf(`
freeswitch: [{name: fs1, address: "%s", password: ClueCon}]
outbound: {listen: "%s"}
ingest: {listen: "%s", url: "ws://%s"}
api: {listen: "%s"}
fork: {retry: {backoff: 100ms}}
profiles:
  analytics: {endpoints: ["%s"]}
rules:
  - {name: r, match: {Caller-Destination-Number: "%s"}, profile: analytics, metadata: {channel_id: "${Caller-Destination-Number}"}}
%s`, s.switches[0].Addr(), s.outbound, s.ingest, s.ingest, s.api, s.sink.Addr(), rule, extra)
}

// startFromFile starts a stack of one switch from its config file (rule
// ^2000$), which it watches; it returns the stack and the file's path.
func startFromFile(t *testing.T) (*stack, string) {
	t.Helper()
	s, _ := prepareStack(t, 1)
	path := filepath.Join(t.TempDir(), "mediafork.yaml")
	require.NoError(t, os.WriteFile(path, []byte(reloadYAML(s, "^2000$", "")), 0o600))
	c, err := conf.Load(path, nil)
	require.NoError(t, err)
	s.start(c, path)
	return s, path
}

func TestReloadOnFileChange(t *testing.T) {
	s2, path := startFromFile(t)
	require.Eventually(t, func() bool { return strings.Contains(s2.logs.String(), "resync done") }, 5*time.Second, 10*time.Millisecond)
	s := s2
	sw := s.switches[0]
	sw.Answer(fssim.CallOptions{Dest: "2000"})
	first := s2.waitPackets("2000", 2, 5)

	// A new rule takes over; the running fork is not disturbed.
	require.NoError(t, os.WriteFile(path, []byte(reloadYAML(s2, "^3000$", "destinations: {allow: [127.0.0.0/8]}\n")), 0o600))
	require.Eventually(t, func() bool { return strings.Contains(s2.logs.String(), "config reloaded") }, 5*time.Second, 10*time.Millisecond)
	sw.Answer(fssim.CallOptions{Dest: "3000"})
	s2.waitPackets("3000", 2, 5)
	sw.Answer(fssim.CallOptions{Dest: "2000", Name: "loopback/2000-b"})
	s2.waitPackets("2000", 2, first[0].Packets+20) // the first fork streams on, untouched
	assert.Len(t, s2.streamsOf("2000"), 2, "the old rule no longer forks")
	for _, st := range s2.streamsOf("2000") {
		assert.Nil(t, st.End)
	}

	// An invalid file is refused with one clear line; the running config stays.
	require.NoError(t, os.WriteFile(path, []byte(reloadYAML(s2, "^4000$", "destinations: {allow: [10.0.0.0/33]}\n")), 0o600))
	require.Eventually(t, func() bool { return strings.Contains(s2.logs.String(), "config reload refused") }, 5*time.Second, 10*time.Millisecond)
	refused := regexp.MustCompile(`(?m)^.*config reload refused.*$`).FindAllString(s2.logs.String(), -1)
	require.Len(t, refused, 1)
	assert.Contains(t, refused[0], "destinations.allow[0]")
	sw.Answer(fssim.CallOptions{Dest: "3000", Name: "loopback/3000-b"})
	require.Eventually(t, func() bool { return len(s2.streamsOf("3000")) == 4 }, 5*time.Second, 10*time.Millisecond, "the valid config still forks 3000")
	// 4000, then a call the valid rule forks: once that one's start has gone
	// out, the answer of 4000, handled before it, has been decided.
	no := sw.Answer(fssim.CallOptions{Dest: "4000"})
	yes := sw.Answer(fssim.CallOptions{Dest: "3000", Name: "loopback/3000-c"})
	require.Eventually(t, func() bool { return countPrefix(sw.APICommands(), "uuid_audio_fork "+yes.UUID+" start") == 1 }, 5*time.Second, 10*time.Millisecond)
	assert.Zero(t, countPrefix(sw.APICommands(), "uuid_audio_fork "+no.UUID), "the refused file's rule forks nothing")
	assert.Empty(t, s2.streamsOf("4000"))
}

// TestNoSecretLeaks drives every surface with secrets configured and greps all
// mediafork says: logs at debug level, API answers, metrics, config check.
func TestNoSecretLeaks(t *testing.T) {
	const (
		eslPassword = "esl-pa55-Xq7"
		ingestToken = "ingest-t0ken-Zr4"
		ingestKey   = "ingest-k3y-Hm2"
	)
	const (
		headerSecret = "Bearer hdr-s3cret-Kp9"
		querySecret  = "qry-s3cret-Wn5"
	)
	tw := wstest.New(t, wstest.Options{})
	s := newStack(t, 1, func(c *conf.Config) {
		c.FreeSWITCH[0].Password = eslPassword
		c.Ingest.Token, c.Ingest.Key, c.API.Token = ingestToken, ingestKey, apiToken
		c.Profiles["bots"] = conf.Profile{Endpoints: []string{tw.URL + "?token=" + querySecret},
			Protocols: []conf.EndpointProtocol{{Protocol: "twilio", Keys: map[string]any{"headers": map[string]any{"Authorization": headerSecret}}}}}
	})
	sw := s.switches[0]
	var said bytes.Buffer
	// A fork to a stream endpoint whose header and url query are secrets: its
	// start command (the description in its metadata) carries neither.
	botCall := sw.Answer(fssim.CallOptions{Dest: "5006"})
	_, body0 := s.call("POST", "/v1/forks", apiToken, fmt.Sprintf(`{"uuid":%q,"profile":"bots"}`, botCall.UUID))
	said.WriteString(body0)
	tw.Wait(t, "the bot's media", 10*time.Second, func(cs []wstest.Snapshot) bool { return len(cs) == 1 && len(cs[0].Messages) >= 4 })
	// A rule fork, an API fork, an fs_cli fork, a dialplan socket fork, a
	// hand-typed fork with the token, one with a wrong token.
	sw.Answer(fssim.CallOptions{Dest: "2000"})
	apiCall := sw.Answer(fssim.CallOptions{Dest: "5001"})
	_, body := s.call("POST", "/v1/forks", apiToken, fmt.Sprintf(`{"uuid":%q,"profile":"analytics"}`, apiCall.UUID))
	said.WriteString(body)
	cliCall := sw.Answer(fssim.CallOptions{Dest: "5002"})
	sw.FsCli("mediafork start " + cliCall.UUID + " analytics")
	sockCall := sw.Answer(fssim.CallOptions{Dest: "5003", Vars: map[string]string{"mediafork": s.sink.Addr().String() + ",sock"}})
	_, err := sw.DialOutbound(t.Context(), s.outbound, sockCall)
	require.NoError(t, err)
	handCall := sw.Answer(fssim.CallOptions{Dest: "5004"})
	sw.FsCli(fmt.Sprintf("uuid_audio_fork %s start ws://%s/fork/%s?profile=analytics&token=%s mono 8k", handCall.UUID, s.ingest, handCall.UUID, ingestToken))
	badCall := sw.Answer(fssim.CallOptions{Dest: "5005"})
	sw.FsCli(fmt.Sprintf("uuid_audio_fork %s start ws://%s/fork/%s?profile=analytics&token=wrong mono 8k", badCall.UUID, s.ingest, badCall.UUID))
	s.waitPackets("support-2000-", 2, 3)
	s.waitPackets("loopback/5001-a", 2, 3)
	s.waitPackets("loopback/5002-a", 2, 3)
	s.waitPackets("sock", 2, 3)
	if !assert.Eventually(t, func() bool { return len(s.streamsOf("loopback/5004-a")) > 0 }, 5*time.Second, 10*time.Millisecond) {
		t.Log(s.logs.String())
	}
	sw.FsCli("mediafork status")
	for _, path := range []string{"/v1/forks", "/v1/forks/" + apiCall.UUID, "/metrics", "/readyz", "/healthz"} {
		_, body := s.call("GET", path, apiToken, "")
		said.WriteString(body)
	}
	s.call("DELETE", "/v1/forks/"+apiCall.UUID, apiToken, "")
	s.call("GET", "/v1/forks", "wrong-token", "")

	// config check on the same secrets.
	cfgPath := writeConfig(t, fmt.Sprintf("freeswitch: [{name: fs1, address: '127.0.0.1:8021', password: %s}]\ningest: {token: %s, key: %s}\napi: {token: %s}\n"+
		"profiles: {bots: {endpoints: [{protocol: twilio, url: 'wss://bot.example.com/m?token=%s', headers: {Authorization: '%s'}}]}}\n",
		eslPassword, ingestToken, ingestKey, apiToken, querySecret, headerSecret))
	out, errOut, code := run(t, nil, "config", "check", "--config", cfgPath)
	require.Equal(t, 0, code, errOut)
	said.WriteString(out + errOut)
	said.WriteString(s.logs.String())

	said.WriteString(strings.Join(sw.Logs(), "\n"))                                                // fs_cli's status lines
	told := strings.Join(sw.APICommands(), "\n")                                                   // what FreeSWITCH was told (and may log): credentials, never secrets
	for _, secret := range []string{eslPassword, ingestKey, apiToken, headerSecret, querySecret} { // (the test types the ingest token itself)
		assert.NotContains(t, told, secret)
	}
	secrets := []string{eslPassword, ingestToken, ingestKey, apiToken, headerSecret, querySecret}
	creds := regexp.MustCompile(`cred=([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)`)
	for _, cmd := range sw.APICommands() {
		for _, m := range creds.FindAllStringSubmatch(cmd, -1) {
			secrets = append(secrets, m[1], strings.Split(m[1], ".")[1])
		}
	}
	require.Greater(t, len(secrets), 4, "fork credentials were issued")
	text := said.String()
	require.Contains(t, text, "fork streaming", "the logs were captured")
	for _, secret := range secrets {
		assert.NotContains(t, text, secret)
	}
}

// The allow list holds on every path that takes ad-hoc destinations.
func TestAllowListEverywhere(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5000"})
	// API
	status, body := s.call("POST", "/v1/forks", "", fmt.Sprintf(`{"uuid":%q,"to":["8.8.8.8:9000"]}`, call.UUID))
	assert.Equal(t, 400, status, body)
	assert.Contains(t, body, "not allowed")
	// fs_cli
	sw.FsCli("mediafork start " + call.UUID + " 8.8.8.8:9000")
	// channel variables on the dialplan socket
	sock := sw.Answer(fssim.CallOptions{Dest: "5001", Vars: map[string]string{"mediafork": "8.8.8.8:9000,x"}})
	res, err := sw.DialOutbound(t.Context(), s.outbound, sock)
	require.NoError(t, err)
	assert.True(t, res.Resumed, "the dialplan goes on")
	sock2 := sw.Answer(fssim.CallOptions{Dest: "5002", Vars: map[string]string{"mediafork_to": "127.0.0.1:9;8.8.4.4:9"}})
	_, err = sw.DialOutbound(t.Context(), s.outbound, sock2)
	require.NoError(t, err)
	// URL query
	out := sw.FsCli(fmt.Sprintf("uuid_audio_fork %s start ws://%s/fork/%s?to=8.8.8.8:9000 mono 8k", call.UUID, s.ingest, call.UUID))
	assert.Equal(t, "+OK Success\n", out, "the module says yes; the ingest refuses")
	require.Eventually(t, func() bool {
		logs := strings.Join(sw.Logs(), "\n")
		return strings.Count(logs, "destination not allowed") >= 3
	}, 5*time.Second, 10*time.Millisecond, "%s", strings.Join(sw.Logs(), "\n"))
	require.Eventually(t, func() bool { return strings.Contains(s.logs.String(), "status=403") }, 5*time.Second, 10*time.Millisecond)
	assert.Zero(t, countPrefix(sw.APICommands(), "uuid_audio_fork "+sock.UUID+" start"))
	assert.Zero(t, countPrefix(sw.APICommands(), "uuid_audio_fork "+sock2.UUID+" start"))
	assert.Empty(t, s.sink.Streams(), "nothing was sent anywhere")
}

func TestForkCLI(t *testing.T) {
	s := newStack(t, 1, func(c *conf.Config) { c.API.Token = apiToken })
	call := s.switches[0].Answer(fssim.CallOptions{Dest: "5000"})
	api := []string{"--api", "http://" + s.api, "--token", apiToken}
	out, errOut, code := run(t, nil, append([]string{"fork", "start", call.UUID, "--profile", "analytics", "--mix", "mono", "--exten", "42"}, api...)...)
	require.Equal(t, 0, code, errOut)
	assert.Regexp(t, `UUID\s+STREAM\s+SERVER\s+STATE`, out)
	assert.Regexp(t, call.UUID+`\s+\d+\s+fs1\s+streaming\s+mono/8000/l16`, out)
	out, errOut, code = run(t, nil, append([]string{"fork", "list"}, api...)...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, call.UUID)
	out, errOut, code = run(t, nil, append([]string{"fork", "stop", call.UUID}, api...)...)
	require.Equal(t, 0, code, errOut)
	assert.Contains(t, out, "stopped")

	_, errOut, code = run(t, nil, append([]string{"fork", "stop", "nope"}, api...)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "no live fork on nope (HTTP 404)")
	_, errOut, code = run(t, nil, append([]string{"fork", "start", call.UUID, "--to", "8.8.8.8:9"}, api...)...)
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "not allowed")
	_, errOut, code = run(t, nil, "fork", "list", "--api", "http://"+s.api, "--token", "wrong")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "HTTP 401")
	_, errOut, code = run(t, nil, "fork", "list", "--api", "http://127.0.0.1:1", "--token", "x")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "cannot reach mediafork")
}
