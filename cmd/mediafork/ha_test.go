package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/ha/etcdtest"
	"github.com/mediafork/mediafork/mediafork"
)

// clusterOfTwo runs two instances on two simulated switches, meeting in a
// real etcd, both giving the switch instance B's ingest (any instance
// serves any fork), until each leads one switch.
func clusterOfTwo(t *testing.T) (a, b *stack) {
	etcd := etcdtest.Start(t)
	a, ca := prepareStack(t, 2)
	b = &stack{t: t, switches: a.switches, sink: a.sink, opts: a.opts}
	cb := *ca
	b.ports = a.ports
	b.ingest, b.outbound, b.api = b.ports.bind(), b.ports.bind(), b.ports.bind()
	cb.Ingest.Listen, cb.Outbound.Listen, cb.API.Listen = b.ingest, b.outbound, b.api
	for _, c := range []*conf.Config{ca, &cb} {
		c.Ingest.Key = "the-shared-ingest-key"
		c.Ingest.URL = "ws://" + b.ingest
		c.API.Token = apiToken
		c.HA.EtcdEndpoints = []string{etcd.Endpoint}
		c.HA.LeaseTTL = conf.Duration(2 * time.Second)
	}
	ca.HA.Instance, cb.HA.Instance = "a", "b"
	a.start(ca, "")
	b.start(&cb, "")
	require.Eventually(t, func() bool {
		la, lb := a.d.node.Leading(), b.d.node.Leading()
		return len(la) == 1 && len(lb) == 1 && la[0] != lb[0] && a.d.switchesUp()["fs1"] && b.d.switchesUp()["fs2"] &&
			a.d.switchesUp()["fs2"] && b.d.switchesUp()["fs1"]
	}, 20*time.Second, 10*time.Millisecond, "one switch each")
	return a, b
}

func TestClusterLeadersForkAndStandbysForward(t *testing.T) {
	a, b := clusterOfTwo(t)
	leaderOf := map[string]*stack{}
	standbyOf := map[string]*stack{}
	for _, s := range []*stack{a, b} {
		for _, sw := range []string{"fs1", "fs2"} {
			if s.d.node.Leads(sw) {
				leaderOf[sw] = s
			} else {
				standbyOf[sw] = s
			}
		}
	}
	// A call a rule matches on each switch: forked once, by the switch's
	// leader, served by B's ingest whoever leads.
	for i, sw := range a.switches {
		name := []string{"fs1", "fs2"}[i]
		call := sw.Answer(fssim.CallOptions{Dest: "2000", Vars: map[string]string{"sip_h_X-Campaign": name}})
		a.waitPackets("support-2000-"+name, 2, 5)
		require.Eventually(t, func() bool { return len(call.Bugs()) == 1 }, 5*time.Second, 10*time.Millisecond)
		requested := regexp.MustCompile(`msg="fork requested" component=orchestrator uuid=` + call.UUID)
		assert.Regexp(t, requested, leaderOf[name].logs.String(), "the leader of %s forked it", name)
		assert.NotRegexp(t, requested, standbyOf[name].logs.String(), "the standby did not")
		require.Eventually(t, func() bool { return len(b.d.registry.Get(mediafork.CallID(call.UUID))) == 1 }, 5*time.Second, 10*time.Millisecond, "served by B's ingest")
		sw.Hangup(call.UUID, "NORMAL_CLEARING")
		a.waitEnded("support-2000-"+name, 2)
	}

	// fs_cli: only the leader answers.
	sw1 := a.switches[0]
	before := strings.Count(strings.Join(sw1.Logs(), "\n"), "fork(s) live")
	sw1.FsCli("mediafork status")
	require.Eventually(t, func() bool {
		return strings.Count(strings.Join(sw1.Logs(), "\n"), "fork(s) live") == before+1
	}, 5*time.Second, 10*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // a second answer would have come by now
	assert.Equal(t, before+1, strings.Count(strings.Join(sw1.Logs(), "\n"), "fork(s) live"), "one answer, the leader's")

	// An API write on the standby of fs1 reaches fs1's leader.
	call := sw1.Answer(fssim.CallOptions{Dest: "5000", Name: "loopback/api-ha"})
	standby := standbyOf["fs1"]
	req, _ := http.NewRequest("POST", "http://"+standby.api+"/v1/forks", strings.NewReader(`{"uuid":"`+call.UUID+`","profile":"analytics"}`))
	req.Header.Set("Authorization", "Bearer "+apiToken)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 201, resp.StatusCode)
	assert.Equal(t, leaderOf["fs1"].d.node.Name(), resp.Header.Get("X-Mediafork-Served-By"), "forwarded to the leader")
	a.waitPackets("loopback/api-ha", 2, 3)
	status, _ := standby.call("POST", "/v1/forks", "wrong", `{"uuid":"`+call.UUID+`","profile":"analytics"}`)
	assert.Equal(t, 401, status, "the standby checks the token before forwarding")
	status, body := standby.call("DELETE", "/v1/forks/"+call.UUID, apiToken, "")
	assert.Equal(t, 204, status, body)
	a.waitEnded("loopback/api-ha", 2)

	// /readyz, /v1/cluster and the metrics say who leads what.
	status, body = leaderOf["fs1"].call("GET", "/readyz", "", "")
	assert.Contains(t, body, `"leading":["fs1"]`, "%d %s", status, body)
	status, body = standby.call("GET", "/v1/cluster", apiToken, "")
	assert.Equal(t, 200, status)
	assert.Contains(t, body, `"leaders":{"fs1":"`+leaderOf["fs1"].d.node.Name()+`","fs2":"`+leaderOf["fs2"].d.node.Name()+`"}`)
	_, body = leaderOf["fs1"].call("GET", "/metrics", apiToken, "")
	assert.Contains(t, body, `mediafork_ha_leader{freeswitch="fs1"} 1`)
	assert.Contains(t, body, `mediafork_ha_leader{freeswitch="fs2"} 0`)
	assert.Contains(t, body, `mediafork_ha_leadership_transitions_total{direction="gained",freeswitch="fs1"} 1`)
}
