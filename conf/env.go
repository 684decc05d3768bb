package conf

import (
	"fmt"
	"sort"
	"strings"
)

// Environment rules: MEDIAFORK_<SECTION>_<KEY> overrides each scalar key;
// MEDIAFORK_FREESWITCH_<NAME>_PASSWORD (and _PASSWORD_FILE) a switch's
// password, NAME being its name upper-cased with every other character than
// A-Z and 0-9 made _. Any other MEDIAFORK_* name is an error: a typo must not
// be ignored in silence. MEDIAFORK_TEST_* names are not configuration: they
// are the test suites' (MEDIAFORK_TEST_ESL, ...), which daemons started by
// those tests inherit.

// TestEnvPrefix starts the variables of mediafork's own tests; no key has it.
const TestEnvPrefix = EnvPrefix + "_TEST_"

// envKeys are the keys the environment overrides, sorted: every default but
// the lists of maps (freeswitch, profiles, rules).
func envKeys() []string {
	out := make([]string, 0, len(defaults))
	for k := range defaults {
		switch k {
		case "freeswitch", "profiles", "rules":
			continue
		}
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// EnvName is the environment variable that overrides key (ingest.max_forks:
// MEDIAFORK_INGEST_MAX_FORKS).
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// SwitchEnvName is the variable holding switch name's password (suffix
// "PASSWORD" or "PASSWORD_FILE").
func SwitchEnvName(name, suffix string) string {
	b := []byte(strings.ToUpper(name))
	for i, c := range b {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return EnvPrefix + "_FREESWITCH_" + string(b) + "_" + suffix
}

// switchPasswordsFromEnv sets each switch's password (or password file) from
// its variable: the environment wins over the file, as for every key.
func (c *Config) switchPasswordsFromEnv(lookupEnv func(string) (string, bool), add func(*Error)) {
	owner := map[string]int{}
	for i, fs := range c.FreeSWITCH {
		for _, suffix := range []string{"PASSWORD", "PASSWORD_FILE"} {
			name := SwitchEnvName(fs.Name, suffix)
			val, ok := lookupEnv(name)
			if !ok {
				continue
			}
			if j, taken := owner[name]; taken {
				add(&Error{name, fmt.Sprintf("is ambiguous: switches %q and %q both map to it; rename one", c.FreeSWITCH[j].Name, fs.Name)})
				continue
			}
			owner[name] = i
			if suffix == "PASSWORD" {
				c.FreeSWITCH[i].Password = val
				continue
			}
			c.FreeSWITCH[i].PasswordFile = val
			// The environment wins over the file (and the default ClueCon):
			// a password from there is replaced, unless the environment
			// sets both, which is an error (secrets.go).
			if _, both := lookupEnv(SwitchEnvName(fs.Name, "PASSWORD")); !both {
				c.FreeSWITCH[i].Password = ""
			}
		}
	}
}

// knownEnv is every MEDIAFORK_* name the configuration reads, given its
// switches.
func knownEnv(switches []FreeSWITCH) []string {
	var out []string
	for _, k := range envKeys() {
		out = append(out, EnvName(k))
	}
	for _, fs := range switches {
		out = append(out, SwitchEnvName(fs.Name, "PASSWORD"), SwitchEnvName(fs.Name, "PASSWORD_FILE"))
	}
	return out
}

// checkEnviron refuses every MEDIAFORK_* variable of environ that is not
// known, suggesting the closest known name.
func checkEnviron(environ []string, switches []FreeSWITCH, referenced []string, add func(*Error)) {
	known := append(knownEnv(switches), referenced...) // header values' {env: NAME}
	set := map[string]bool{}
	for _, k := range known {
		set[k] = true
	}
	var unknown []string
	for _, name := range environ {
		if strings.HasPrefix(name, EnvPrefix+"_") && !strings.HasPrefix(name, TestEnvPrefix) && !set[name] {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	for _, name := range unknown {
		msg := "unknown environment variable"
		if s := suggest(name, known); s != "" {
			msg += "; did you mean " + s + "?"
		} else if strings.HasPrefix(name, EnvPrefix+"_FREESWITCH_") {
			names := make([]string, len(switches))
			for i, fs := range switches {
				names[i] = fs.Name
			}
			msg += fmt.Sprintf(" (switch passwords are %s; the switches are %s)",
				SwitchEnvName("<NAME>", "PASSWORD"), strings.Join(names, ", "))
		}
		add(&Error{name, msg})
	}
}

// suggest is the known name closest to name, when close enough to be a typo:
// the same but for underscores, or a few edits away.
func suggest(name string, known []string) string {
	squash := func(s string) string { return strings.ReplaceAll(s, "_", "") }
	best, bestD := "", 4
	for _, k := range known {
		if squash(k) == squash(name) {
			return k
		}
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance (names are short: the simple
// two-row table).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
