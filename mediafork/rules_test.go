package mediafork

import (
	"context"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rule is a rule named name to profile, with the fork defaults, matching
// every header given as name, pattern pairs.
func rule(name, profile string, match ...string) Rule {
	r := Rule{Name: name, Profile: profile, Params: stereo8k, Match: map[string]*regexp.Regexp{}}
	for i := 0; i+1 < len(match); i += 2 {
		r.Match[match[i]] = regexp.MustCompile(match[i+1])
	}
	return r
}

// Overlapping rules: the first that matches wins, in file order, however
// specific a later one is; a rule that matches nothing passes the call on.
func TestFirstMatchingRuleWins(t *testing.T) {
	const dest = "Caller-Destination-Number"
	any2 := rule("any-2xxx", "analytics", dest, `^2`)
	exact := rule("exact-2000", "speech", dest, `^2000$`)
	campaign := rule("campaign", "remote", dest, `^2000$`, "variable_sip_h_X-Campaign", `^spring$`)
	catchAll := rule("catch-all", "analytics")
	cases := []struct {
		name  string
		rules []Rule
		data  ChannelData
		want  string // the rule's name; "" for none
	}{
		{"the broad rule first wins over the exact one", []Rule{any2, exact}, channel("u1", "2000"), "any-2xxx"},
		{"the exact rule first wins over the broad one", []Rule{exact, any2}, channel("u1", "2000"), "exact-2000"},
		{"only the broad one matches", []Rule{exact, any2}, channel("u1", "2001"), "any-2xxx"},
		{"a rule with two conditions, both met, first", []Rule{campaign, exact, any2}, channel("u1", "2000", "sip_h_X-Campaign", "spring"), "campaign"},
		{"a rule with two conditions, one not met, is passed", []Rule{campaign, exact, any2}, channel("u1", "2000", "sip_h_X-Campaign", "fall"), "exact-2000"},
		{"a variable absent is no match", []Rule{campaign, any2}, channel("u1", "2000"), "any-2xxx"},
		{"the second of three", []Rule{rule("x", "speech", dest, `^9`), exact, any2}, channel("u1", "2000"), "exact-2000"},
		{"a catch-all first takes every call", []Rule{catchAll, exact}, channel("u1", "2000"), "catch-all"},
		{"a catch-all last takes what the others leave", []Rule{exact, catchAll}, channel("u1", "2000"), "exact-2000"},
		{"a catch-all last, the others not matching", []Rule{exact, catchAll}, channel("u1", "4000"), "catch-all"},
		{"two identical rules: the first", []Rule{exact, rule("exact-again", "analytics", dest, `^2000$`)}, channel("u1", "2000"), "exact-2000"},
		{"none matches", []Rule{exact, any2}, channel("u1", "4000"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := FirstMatch(tc.rules, tc.data)
			if tc.want == "" {
				assert.Nil(t, got)
			} else if assert.NotNil(t, got) {
				assert.Equal(t, tc.want, got.Name)
			}

			// The same decision where the orchestrator takes it: the
			// rule's name and profile on the fork.
			p := testPolicy()
			p.Rules = tc.rules
			spec, err := p.Resolve(context.Background(), Request{Trigger: TriggerRule, Data: tc.data})
			if tc.want == "" {
				assert.ErrorIs(t, err, ErrNoRule)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tc.want, spec.Rule)
			assert.Equal(t, FirstMatch(tc.rules, tc.data).Profile, spec.Profile)
		})
	}
}

// After a reload (SetPolicy) the new file's order decides for the calls
// answered since; the fork started before keeps what the old order gave it.
func TestFirstMatchingRuleWinsAfterReload(t *testing.T) {
	const dest = "Caller-Destination-Number"
	broad, exact := rule("any-2xxx", "analytics", dest, `^2`), rule("exact-2000", "speech", dest, `^2000$`)
	exact.Params = mono16k
	r, sw := newRigUp(t, func(p *Policy) { p.Rules = []Rule{broad, exact} })

	r.event(sw, CallAnswered{Data: sw.answer("u1", "2000")})
	sw.expect(t, "start u1 stereo 8000 mediafork")
	first := r.credential(t, sw.lastStart(t, "u1"))
	assert.Equal(t, "any-2xxx", first.Rule)
	assert.Equal(t, ap("127.0.0.1:9000"), first.Addrs())

	reloaded := *r.o.Policy()
	reloaded.Rules = []Rule{exact, broad} // the file with the two rules swapped
	r.o.SetPolicy(&reloaded)
	r.event(sw, CallAnswered{Data: sw.answer("u2", "2000")})
	sw.expect(t, "start u2 mono 16000 mediafork")
	second := r.credential(t, sw.lastStart(t, "u2"))
	assert.Equal(t, "exact-2000", second.Rule)
	assert.Equal(t, ap("127.0.0.1:9100"), second.Addrs())

	byUUID := map[CallID]Info{}
	for _, in := range r.o.Forks() {
		byUUID[in.UUID] = in
	}
	assert.Equal(t, "any-2xxx", byUUID["u1"].Rule, "the fork started before the reload is left as it was")
	assert.Equal(t, "exact-2000", byUUID["u2"].Rule)
	r.settle()
}
