package main

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
)

// One fork by each trigger, and upgrades the ingest refuses: /metrics counts
// each start by its trigger and each refusal by its status code.
func TestMetricsStartsByTriggerAndRefusals(t *testing.T) {
	s := newStack(t, 1, nil)
	sw := s.switches[0]
	sw.Answer(fssim.CallOptions{Dest: "2000"}) // rule
	apiCall := sw.Answer(fssim.CallOptions{Dest: "5001"})
	status, body := s.call("POST", "/v1/forks", "", fmt.Sprintf(`{"uuid":%q,"profile":"analytics"}`, apiCall.UUID))
	require.Equal(t, 201, status, body)
	cliCall := sw.Answer(fssim.CallOptions{Dest: "5002"})
	sw.FsCli("mediafork start " + cliCall.UUID + " analytics")
	sockCall := sw.Answer(fssim.CallOptions{Dest: "5003", Vars: map[string]string{"mediafork": s.sink.Addr().String() + ",sock"}})
	_, err := sw.DialOutbound(t.Context(), s.outbound, sockCall)
	require.NoError(t, err)
	handCall := sw.Answer(fssim.CallOptions{Dest: "5004"})
	sw.FsCli(fmt.Sprintf("uuid_audio_fork %s start ws://%s/fork/%s?profile=analytics mono 8k", handCall.UUID, s.ingest, handCall.UUID))
	s.waitPackets("support-2000-", 2, 3)
	s.waitPackets("loopback/5001-a", 2, 3)
	s.waitPackets("loopback/5002-a", 2, 3)
	s.waitPackets("sock", 2, 3)
	require.Eventually(t, func() bool { return len(s.streamsOf("loopback/5004-a")) > 0 }, 5*time.Second, 10*time.Millisecond)
	for _, trigger := range []string{"rule", "api", "fs_cli", "socket", "ingest"} {
		assert.Equal(t, 1.0, scrape(t, s, fmt.Sprintf(`mediafork_forks_started_total{trigger=%q}`, trigger)), trigger)
	}
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_forks_started_total{trigger="other"}`))
	assert.Equal(t, 5.0, scrape(t, s, "mediafork_forks_active"))

	// Refused upgrades: a forged credential (401), an unknown parameter (404),
	// a destination outside the allow list (403).
	for _, q := range []string{"cred=forged.forged", "bogus=1", "to=8.8.8.8:9"} {
		bad := sw.Answer(fssim.CallOptions{Dest: "5005"}) // a call each: one bug at a time
		sw.FsCli(fmt.Sprintf("uuid_audio_fork %s start ws://%s/fork/%s?%s mono 8k", bad.UUID, s.ingest, bad.UUID, q))
	}
	for code, want := range map[string]float64{"401": 1, "404": 1, "403": 1, "409": 0, "503": 0, "400": 0} {
		require.Eventually(t, func() bool {
			return scrape(t, s, fmt.Sprintf(`mediafork_ingest_refusals_total{code=%q}`, code)) == want
		}, 5*time.Second, 10*time.Millisecond, "code %s", code)
	}
	assert.Equal(t, 0.0, scrape(t, s, "mediafork_ingest_description_refusals_total"))
}

// A genuine token (another instance holding ingest.key signed it) with a
// description that is not the one it signed: closed 1008 after the upgrade,
// counted, nothing streams.
func TestMetricsDescriptionRefusal(t *testing.T) {
	s := newStack(t, 1, func(c *conf.Config) { c.Ingest.Key = "shared-k3y" })
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "5005"})
	other := mediafork.NewSigner([]byte("shared-k3y"))
	spec := mediafork.Spec{UUID: mediafork.CallID(call.UUID), Bug: "mediafork", Targets: mediafork.TLVTargets(s.sink.Addr().AddrPort()),
		Params: mediafork.Params{Mix: mediafork.Mono, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20}}
	spec.Start = other.NewStart()
	c := other.Sign(spec, time.Now().Add(time.Minute))
	spec.Metadata.Exten = "forged"
	forged := other.Sign(spec, time.Now().Add(time.Minute)).Description
	sw.FsCli(fmt.Sprintf(`uuid_audio_fork %s start ws://%s/fork/%s?cred=%s mono 8k mediafork {"mediafork":%q}`, call.UUID, s.ingest, call.UUID, c.Token, forged))
	require.Eventually(t, func() bool {
		return scrape(t, s, "mediafork_ingest_description_refusals_total") == 1
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_ingest_refusals_total{code="401"}`), "the token was good")
	assert.Empty(t, s.streamsOf(call.UUID), "nothing streamed")
}

// A module that never reaches the ingest: retried, then given up, by reason.
func TestMetricsGivenUp(t *testing.T) {
	s := newStack(t, 1, func(c *conf.Config) { c.Fork.Retry.Attempts = 1 })
	sw := s.switches[0]
	sw.FailConnects.Store(100)
	sw.Answer(fssim.CallOptions{Dest: "2000"})
	require.Eventually(t, func() bool {
		return scrape(t, s, `mediafork_forks_given_up_total{reason="connect_failed"}`) == 1
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, 1.0, scrape(t, s, `mediafork_fork_retries_total{reason="connect_failed"}`))
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_forks_started_total{trigger="rule"}`), "it never streamed")
}

// A reload of an invalid file is a failure and leaves the last success's
// time alone; a valid one is a success and moves it.
func TestMetricsConfigReloads(t *testing.T) {
	s, path := startFromFile(t)
	started := scrape(t, s, "mediafork_config_last_reload_success_timestamp_seconds")
	assert.InDelta(t, float64(time.Now().Unix()), started, 600)
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_config_reloads_total{result="success"}`))
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_config_reloads_total{result="failure"}`))

	require.NoError(t, os.WriteFile(path, []byte(reloadYAML(s, "^2000$", "destinations: {allow: [10.0.0.0/33]}\n")), 0o600))
	require.Eventually(t, func() bool { return scrape(t, s, `mediafork_config_reloads_total{result="failure"}`) == 1 },
		5*time.Second, 10*time.Millisecond)
	assert.Equal(t, started, scrape(t, s, "mediafork_config_last_reload_success_timestamp_seconds"))
	assert.Equal(t, 0.0, scrape(t, s, `mediafork_config_reloads_total{result="success"}`))

	require.NoError(t, os.WriteFile(path, []byte(reloadYAML(s, "^3000$", "")), 0o600))
	require.Eventually(t, func() bool { return scrape(t, s, `mediafork_config_reloads_total{result="success"}`) == 1 },
		5*time.Second, 10*time.Millisecond)
	assert.Greater(t, scrape(t, s, "mediafork_config_last_reload_success_timestamp_seconds"), started)
	assert.Equal(t, 1.0, scrape(t, s, `mediafork_config_reloads_total{result="failure"}`))
}
