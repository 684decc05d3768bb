package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// Pause and resume (PCI) through the API and fs_cli: while paused no audio
// of the call reaches the receiver (and fork list shows it paused), an audit
// line names who; the resume is a gap packet of reason 3 saying exactly how
// many frames were dropped, the sequence jumping by them; the call carries
// the pause (mediafork_paused). A pause needs a JSON body: a web page cannot
// post one without a CORS preflight.
func TestPauseAndResume(t *testing.T) {
	s := newStack(t, 1, func(c *conf.Config) { c.API.Token = apiToken })
	sw := s.switches[0]
	call := sw.Answer(fssim.CallOptions{Dest: "2000"})
	first := s.waitPackets("support-2000-", 2, 5)

	status, body := s.call("POST", "/v1/forks/"+call.UUID+"/pause", apiToken, "")
	assert.Equal(t, 415, status, "no JSON body: %s", body)
	status, body = s.call("POST", "/v1/forks/nosuchcall/pause", apiToken, "{}")
	assert.Equal(t, 404, status, body)
	status, body = s.call("POST", "/v1/forks/"+call.UUID+"/pause", apiToken, `{"reason":"card number"}`)
	require.Equal(t, 200, status, body)
	var in mediafork.Info
	require.NoError(t, json.Unmarshal([]byte(body), &in))
	assert.True(t, in.Paused)
	assert.Equal(t, "true", call.Var("mediafork_paused"))
	assert.Regexp(t, `msg="audit: fork paused" component=orchestrator uuid=`+call.UUID+` by="api \(\\"card number\\"\)" stream_ids=\[[0-9]+\]`, s.logs.String())

	// Nothing more arrives while frames keep coming in and are dropped.
	var paused mediafork.Info
	require.Eventually(t, func() bool {
		paused = s.d.orchestrator.Fork(mediafork.CallID(call.UUID))[0]
		return paused.Dropped >= 10
	}, 10*time.Second, 10*time.Millisecond)
	held := s.streamsOf("support-2000-")
	for i, st := range held {
		assert.Equal(t, first[i].StreamID, st.StreamID)
		assert.LessOrEqual(t, st.Packets, first[i].Packets+3, "at most the frames under way when it paused")
	}
	out, _, code := run(t, nil, "fork", "list", "--api", "http://"+s.api, "--token", apiToken)
	require.Zero(t, code)
	assert.Contains(t, out, "streaming/paused")

	sw.FsCli("mediafork resume " + call.UUID)
	require.Eventually(t, func() bool {
		for _, st := range s.streamsOf("support-2000-") {
			if st.Gaps == 0 || st.LastSeq < st.LastGap.NextSequence+3 {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond)
	after := s.d.orchestrator.Fork(mediafork.CallID(call.UUID))[0]
	assert.False(t, after.Paused)
	for _, st := range s.streamsOf("support-2000-") {
		assert.Equal(t, tlvcodec.GapPaused, st.LastGap.Reason)
		assert.Equal(t, int(after.Dropped), st.GapFrames, "every frame dropped is reported missing")
		assert.Equal(t, st.GapFrames, st.Missing, "and is what is missing")
		assert.Nil(t, st.End)
	}
	assert.Equal(t, "false", call.Var("mediafork_paused"))
	assert.Contains(t, s.logs.String(), `msg="audit: fork resumed" component=orchestrator uuid=`+call.UUID+` by=fs_cli`)
	assert.True(t, strings.Contains(strings.Join(sw.Logs(), "\n"), fmt.Sprintf("mediafork: fork %s resumed by fs_cli", call.UUID)))
}
