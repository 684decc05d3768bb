package conf

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// DefaultFile is read when no --config is given and it exists.
const DefaultFile = "mediafork.yaml"

// EnvPrefix starts every environment override: MEDIAFORK_<SECTION>_<KEY>.
const EnvPrefix = "MEDIAFORK"

// defaults are SPEC section 7, key by key.
var defaults = map[string]any{
	"log.level":                    "info",
	"log.format":                   "text",
	"freeswitch":                   []map[string]any{{"name": "fs1", "address": "127.0.0.1:8021", "password": "ClueCon", "module": "auto"}},
	"outbound.listen":              "127.0.0.1:8084",
	"ingest.listen":                "127.0.0.1:8090",
	"ingest.url":                   "ws://127.0.0.1:8090",
	"ingest.token":                 "",
	"ingest.key":                   "",
	"ingest.max_forks":             10000,
	"ingest.max_message_bytes":     65536,
	"api.listen":                   "127.0.0.1:8088",
	"api.token":                    "",
	"fork.mix":                     "stereo",
	"fork.rate":                    8000,
	"fork.encoding":                "l16",
	"fork.frame_ms":                20,
	"fork.bug_name":                "mediafork",
	"fork.end_packet":              true,
	"fork.format_packet":           true,
	"fork.retry.attempts":          3,
	"fork.retry.backoff":           "1s",
	"fork.max_destinations":        mediafork.DefaultMaxDestinations,
	"destinations.allow":           []string{"127.0.0.0/8", "::1/128"}, // loopback only: operators widen it
	"profiles":                     map[string]any{},
	"limits.esl_event_queue":       10000,
	"limits.esl_event_queue_bytes": 64 << 20,
	"limits.outbound_connections":  1000,
	"limits.ingest_media_timeout":  "5m",
	"rules":                        []any{},
}

// Defaults returns the configuration with nothing set.
func Defaults() *Config {
	c, err := Load("", func(string) (string, bool) { return "", false })
	if err != nil {
		panic(err) // the defaults are valid; a test holds them to it
	}
	return c
}

// Load reads path (if not "") over the defaults, applies environment overrides
// found through lookupEnv (os.LookupEnv when nil) and validates the result.
// Errors name the offending key (*Error).
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	if lookupEnv == nil {
		lookupEnv = os.LookupEnv
	}
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	// viper folds every key to lower case; header names in rules and profile
	// names must keep theirs, so the file is also read as it is written.
	var raw map[string]any
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: reading %s: %w", path, err)
		}
		if err := yaml.Unmarshal(b, &raw); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
		if err := checkKeys(raw, ""); err != nil {
			return nil, err
		}
		v.SetConfigType("yaml")
		if err := v.ReadConfig(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	// Environment overrides for every scalar key (lists of maps excluded).
	for k := range defaults {
		env := EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(k, ".", "_"))
		if val, ok := lookupEnv(env); ok {
			if _, isList := defaults[k].([]string); isList {
				v.Set(k, splitList(val))
			} else {
				v.Set(k, val)
			}
		}
	}
	var c Config
	hooks := mapstructure.ComposeDecodeHookFunc(mapstructure.TextUnmarshallerHookFunc(), mapstructure.StringToSliceHookFunc(","))
	if err := v.Unmarshal(&c, viper.DecodeHook(hooks), func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true }); err != nil {
		return nil, decodeError(err)
	}
	for _, section := range []struct {
		key string
		out any
	}{{"profiles", &c.Profiles}, {"rules", &c.Rules}} {
		if val, ok := raw[section.key]; ok {
			d, _ := mapstructure.NewDecoder(&mapstructure.DecoderConfig{DecodeHook: hooks, ErrorUnused: true,
				WeaklyTypedInput: true, Result: section.out, ZeroFields: true})
			if err := d.Decode(val); err != nil {
				return nil, decodeError(fmt.Errorf("'%s' %w", section.key, err))
			}
		}
	}
	for i := range c.FreeSWITCH {
		if c.FreeSWITCH[i].Module == "" {
			c.FreeSWITCH[i].Module = ModuleAuto
		}
	}
	if c.Profiles == nil {
		c.Profiles = map[string]Profile{}
	}
	if c.Rules == nil {
		c.Rules = []Rule{}
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// checkKeys refuses keys the schema does not have, naming the first one. Maps of
// user-chosen names (profiles, rule match and metadata) are not checked by name.
func checkKeys(settings map[string]any, prefix string) error {
	return checkAgainst(reflect.TypeOf(Config{}), settings, prefix)
}

func checkAgainst(t reflect.Type, val any, key string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			return nil // a type mismatch is the decoder's to report
		}
		fields := map[string]reflect.StructField{}
		for i := 0; i < t.NumField(); i++ {
			fields[t.Field(i).Tag.Get("mapstructure")] = t.Field(i)
		}
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			f, ok := fields[strings.ToLower(k)]
			full := join(key, k)
			if !ok {
				return &Error{Key: full, Msg: "unknown key"}
			}
			if err := checkAgainst(f.Type, m[k], full); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if l, ok := val.([]any); ok {
			for i, e := range l {
				if err := checkAgainst(t.Elem(), e, fmt.Sprintf("%s[%d]", key, i)); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if m, ok := val.(map[string]any); ok {
			for k, e := range m {
				if err := checkAgainst(t.Elem(), e, join(key, k)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

var decodeKeyRE = regexp.MustCompile(`'([^']*)'`)

// decodeError turns mapstructure's message into an *Error naming the key.
func decodeError(err error) error {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	msg := strings.TrimSpace(lines[len(lines)-1])
	key := ""
	if m := decodeKeyRE.FindStringSubmatch(msg); m != nil {
		key = m[1]
		msg = strings.TrimSpace(strings.Replace(msg, m[0], "", 1))
	}
	return &Error{Key: key, Msg: strings.TrimSpace(msg)}
}
