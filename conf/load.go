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
	"api.listen_in":                false,
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
	// Profiles are decoded from the file as written, below (their endpoints
	// may be maps); viper's lower-cased copy is skipped.
	skipProfiles := func(_, to reflect.Type, data any) (any, error) {
		if to == reflect.TypeOf(Profile{}) {
			return Profile{}, nil
		}
		return data, nil
	}
	if err := v.Unmarshal(&c, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(skipProfiles, hooks)),
		func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true }); err != nil {
		return nil, decodeError(err)
	}
	if val, ok := raw["profiles"]; ok {
		ps, err := decodeProfiles(val, hooks)
		if err != nil {
			return nil, err
		}
		c.Profiles = ps
	}
	if val, ok := raw["rules"]; ok {
		d, _ := mapstructure.NewDecoder(&mapstructure.DecoderConfig{DecodeHook: hooks, ErrorUnused: true,
			WeaklyTypedInput: true, Result: &c.Rules, ZeroFields: true})
		if err := d.Decode(val); err != nil {
			return nil, decodeError(fmt.Errorf("'rules' %w", err))
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

// decodeProfiles decodes the profiles section as written: profile names keep
// their case, and an endpoint is "host:port" or {address, directions,
// encoding, rate, frame_ms}. Errors name the key, down to the endpoint's field.
func decodeProfiles(val any, hooks mapstructure.DecodeHookFunc) (map[string]Profile, error) {
	out := map[string]Profile{}
	if val == nil {
		return out, nil
	}
	m, ok := val.(map[string]any)
	if !ok {
		return nil, &Error{"profiles", "must be a map of name: {endpoints: [...], ...}"}
	}
	decode := func(key string, in, result any) error {
		d, _ := mapstructure.NewDecoder(&mapstructure.DecoderConfig{DecodeHook: hooks, ErrorUnused: true,
			WeaklyTypedInput: true, Result: result})
		if err := d.Decode(in); err != nil {
			e := decodeError(err).(*Error)
			if e.Key != "" {
				key = join(key, e.Key)
			}
			return &Error{key, e.Msg}
		}
		return nil
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names) // the first error is always the same one
	for _, name := range names {
		key := "profiles." + name
		pm, ok := m[name].(map[string]any)
		if !ok && m[name] != nil {
			return nil, &Error{key, "must be a map: {endpoints: [...], ...}"}
		}
		rest := map[string]any{}
		var eps any
		for k, v := range pm {
			if strings.EqualFold(k, "endpoints") {
				eps = v
			} else {
				rest[k] = v
			}
		}
		var p Profile
		if err := decode(key, rest, &p); err != nil {
			return nil, err
		}
		list, ok := eps.([]any)
		if !ok && eps != nil {
			if s, isStr := eps.(string); isStr { // one host:port, or a comma-separated list
				for _, e := range splitList(s) {
					list = append(list, e)
				}
			} else {
				return nil, &Error{key + ".endpoints", "must be a list of host:port or {address: host:port, ...}"}
			}
		}
		structured := false
		for i, e := range list {
			ekey := fmt.Sprintf("%s.endpoints[%d]", key, i)
			switch e := e.(type) {
			case string:
				p.Endpoints = append(p.Endpoints, e)
				p.Formats = append(p.Formats, EndpointFormat{})
			case map[string]any:
				var ep Endpoint
				if err := decode(ekey, e, &ep); err != nil {
					return nil, err
				}
				if ep.Address == "" {
					return nil, &Error{ekey + ".address", "is missing: an endpoint written as a map needs address: host:port"}
				}
				p.Endpoints = append(p.Endpoints, ep.Address)
				p.Formats = append(p.Formats, ep.EndpointFormat)
				structured = structured || !ep.EndpointFormat.IsZero()
			default:
				return nil, &Error{ekey, fmt.Sprintf("%v is neither host:port nor {address: host:port, ...}", e)}
			}
		}
		if !structured {
			p.Formats = nil
		}
		out[name] = p
	}
	return out, nil
}
