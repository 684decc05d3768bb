package conf

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/mediafork/mediafork/internal/boundedfile"
	"github.com/mediafork/mediafork/mediafork"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// DefaultFile is read when no --config is given and it exists.
const DefaultFile = "mediafork.yaml"

// maxConfigFile bounds the config file: a long one (many profiles and rules)
// is tens of KiB.
const maxConfigFile = 4 << 20

// EnvPrefix starts every environment override: MEDIAFORK_<SECTION>_<KEY>.
const EnvPrefix = "MEDIAFORK"

// defaults are SPEC section 7, key by key.
var defaults = map[string]any{
	"log.level":                      "info",
	"log.format":                     "text",
	"freeswitch":                     []map[string]any{{"name": "fs1", "address": "127.0.0.1:8021", "password": "ClueCon", "module": "auto", "required": false}},
	"outbound.listen":                "127.0.0.1:8084",
	"ingest.listen":                  "127.0.0.1:8090",
	"ingest.url":                     "ws://127.0.0.1:8090",
	"ingest.token":                   "",
	"ingest.key":                     "",
	"ingest.max_forks":               10000,
	"ingest.max_message_bytes":       65536,
	"ingest.max_round_interval":      "2ms",
	"ingest.token_file":              "",
	"ingest.key_file":                "",
	"ingest.tls.cert_file":           "",
	"ingest.tls.key_file":            "",
	"ingest.tls_terminated_by_proxy": false,
	"api.listen":                     "127.0.0.1:8088",
	"api.token":                      "",
	"api.token_file":                 "",
	"api.tls.cert_file":              "",
	"api.tls.key_file":               "",
	"api.listen_in":                  false,
	"fork.mix":                       "stereo",
	"fork.rate":                      8000,
	"fork.encoding":                  "l16",
	"fork.frame_ms":                  20,
	"fork.bug_name":                  "mediafork",
	"fork.end_packet":                true,
	"fork.format_packet":             true,
	"fork.dtmf_packet":               true,
	"fork.gap_packet":                true,
	"fork.checkpoint":                "",
	"fork.retry.attempts":            3,
	"fork.retry.backoff":             "1s",
	"fork.max_destinations":          mediafork.DefaultMaxDestinations,
	"destinations.allow":             []string{"127.0.0.0/8", "::1/128"}, // loopback only: operators widen it
	"profiles":                       map[string]any{},
	"limits.esl_event_queue":         10000,
	"limits.esl_event_queue_bytes":   64 << 20,
	"limits.outbound_connections":    1000,
	"limits.ingest_media_timeout":    "5m",
	"talkback.max_queue":             "30s",
	"rules":                          []any{},
	"ha.etcd_endpoints":              []string{},
	"ha.lease_ttl":                   "5s",
	"ha.prefix":                      "/mediafork/",
	"ha.instance":                    "",
	"ha.advertise_api":               "",
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
// and validates the result. With lookupEnv nil the process environment is
// used and every MEDIAFORK_* variable in it must be one mediafork knows (as
// LoadEnviron); a lookupEnv given (tests) is asked for known names only.
// Errors name the offending key: one *Error, or Errors listing every problem.
func Load(path string, lookupEnv func(string) (string, bool)) (*Config, error) {
	if lookupEnv == nil {
		return LoadEnviron(path, os.Environ())
	}
	return load(path, lookupEnv, nil)
}

// LoadEnviron is Load with the environment given as KEY=value strings
// (os.Environ's form); an unknown MEDIAFORK_* name among them is an error.
func LoadEnviron(path string, environ []string) (*Config, error) {
	m := map[string]string{}
	var names []string
	for _, kv := range environ {
		k, val, _ := strings.Cut(kv, "=")
		if _, dup := m[k]; !dup {
			names = append(names, k)
		}
		m[k] = val
	}
	return load(path, func(k string) (string, bool) { v, ok := m[k]; return v, ok }, names)
}

func load(path string, lookupEnv func(string) (string, bool), environ []string) (*Config, error) {
	var errs Errors
	// viper layers the sources once: the defaults (SPEC section 7), the file
	// over them, the environment over both.
	v := viper.New()
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	var written asWritten
	if path != "" {
		b, err := boundedfile.Read(path, maxConfigFile)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		v.SetConfigType("yaml")
		if err = v.ReadConfig(bytes.NewReader(b)); err != nil {
			var pe viper.ConfigParseError
			if errors.As(err, &pe) {
				err = pe.Unwrap() // YAML's own words, with the line
			}
			return nil, fmt.Errorf("config: %s: %s", path, oneLine(err.Error()))
		}
		if written, err = readAsWritten(b); err != nil {
			return nil, fmt.Errorf("config: %s: %w", path, err)
		}
	}
	// viper's own environment layer (AutomaticEnv, BindEnv) reads the
	// process's environment alone; Load takes the environment as a value
	// (LoadEnviron's list, a test's map), so that the same list is checked for
	// unknown MEDIAFORK_* names and a test need not change the process's. Each
	// value goes into viper's override layer, above the file and the defaults,
	// where its env layer would have put it: every scalar key, lists of maps
	// excluded (a switch's password has a variable of its own, env.go).
	for _, k := range envKeys() {
		if val, ok := lookupEnv(EnvName(k)); ok {
			if _, isList := defaults[k].([]string); isList {
				v.Set(k, splitList(val))
			} else {
				v.Set(k, val)
			}
		}
	}
	// Every key must be one mediafork has (a typo gets a suggestion): those
	// viper holds (lower-cased), then profiles and rules as written.
	settings := v.AllSettings()
	delete(settings, "profiles")
	delete(settings, "rules")
	checkKeys(settings, "", &errs)
	checkAgainst(reflect.TypeOf(map[string]Profile{}), written.profiles, "profiles", &errs)
	checkAgainst(reflect.TypeOf([]Rule{}), written.rules, "rules", &errs)
	unknownKeys := len(errs) > 0

	var c Config
	hooks := mapstructure.ComposeDecodeHookFunc(mapstructure.TextUnmarshallerHookFunc(), mapstructure.StringToSliceHookFunc(","))
	// Profiles and rules are decoded from the file as written, below: viper's
	// lower-cased copy of each is skipped (a profiles section that is no map
	// is still refused here, naming its type).
	skipAsWritten := func(_, to reflect.Type, data any) (any, error) {
		switch to {
		case reflect.TypeOf(Profile{}):
			return Profile{}, nil
		case reflect.TypeOf(Rule{}):
			return Rule{}, nil
		}
		return data, nil
	}
	if err := v.Unmarshal(&c, viper.DecodeHook(mapstructure.ComposeDecodeHookFunc(hooks, skipAsWritten)),
		func(dc *mapstructure.DecoderConfig) { dc.ErrorUnused = true }); err != nil {
		addDecodeErrors(&errs, err, "", unknownKeys)
	}
	c.Profiles, c.brokenProfiles = decodeProfiles(written.profiles, hooks, &errs)
	c.Rules = nil
	if written.rules != nil {
		var in struct {
			Rules []Rule `mapstructure:"rules"` // so that errors name rules[i].key
		}
		d, _ := mapstructure.NewDecoder(&mapstructure.DecoderConfig{DecodeHook: hooks, ErrorUnused: true,
			WeaklyTypedInput: true, Result: &in, ZeroFields: true})
		var refused Errors
		if err := d.Decode(map[string]any{"rules": written.rules}); err != nil {
			addDecodeErrors(&refused, err, "", unknownKeys)
		}
		c.Rules = in.Rules
		for _, e := range refused {
			// Named as validation names a rule, rules[0](support): what the
			// decoder refused is not reported again by the validation.
			if m := ruleKeyRE.FindStringSubmatch(e.Key); m != nil {
				if i, _ := strconv.Atoi(m[1]); i < len(c.Rules) && c.Rules[i].Name != "" {
					e.Key = m[0] + "(" + c.Rules[i].Name + ")" + e.Key[len(m[0]):]
				}
			}
			errs.add(e)
		}
	}
	for i := range c.FreeSWITCH {
		if c.FreeSWITCH[i].Module == "" {
			c.FreeSWITCH[i].Module = ModuleAuto
		}
	}
	if c.Rules == nil {
		c.Rules = []Rule{}
	}
	c.switchPasswordsFromEnv(lookupEnv, errs.add)
	referenced := c.readEndpointSecrets(lookupEnv, errs.add)
	if environ != nil {
		checkEnviron(environ, c.FreeSWITCH, referenced, errs.add)
	}
	c.readSecretFiles(errs.add)
	c.validate(&errs)
	if err := errs.err(); err != nil {
		return nil, err
	}
	return &c, nil
}

// asWritten is what of the file keeps the case it is written in. viper folds
// every key to lower case (it matches keys without case), but profile names
// and the header names of rules' match and metadata are the operator's own,
// where case matters (Caller-Destination-Number): those two sections are
// decoded from the file's bytes as written (the bytes viper read), the rest
// comes from viper alone. Their top-level keys are matched without case, as
// viper matches every other key.
type asWritten struct {
	profiles, rules any // nil when the file has none
}

func readAsWritten(b []byte) (asWritten, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return asWritten{}, errors.New(oneLine(err.Error()))
	}
	if err := stringKeys(&doc, ""); err != nil {
		return asWritten{}, err
	}
	var w asWritten
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return w, nil // empty, or not a mapping (viper has said so)
	}
	top := doc.Content[0].Content
	seen := map[string]string{}
	for i := 0; i+1 < len(top); i += 2 {
		k := keyNode(top[i]).Value
		var dst *any
		switch name := strings.ToLower(k); name {
		case "profiles":
			dst = &w.profiles
		case "rules":
			dst = &w.rules
		default:
			continue
		}
		if other, twice := seen[strings.ToLower(k)]; twice {
			return asWritten{}, &Error{Key: k, Msg: "and " + other + " are the same key (keys are matched without case)"}
		}
		seen[strings.ToLower(k)] = k
		if err := top[i+1].Decode(dst); err != nil {
			return asWritten{}, errors.New(oneLine(err.Error()))
		}
	}
	return w, nil
}

// keyNode is what a mapping key stands for (an alias's anchor).
func keyNode(k *yaml.Node) *yaml.Node {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		return k.Alias
	}
	return k
}

// stringKeys refuses a mapping whose keys are not all strings (a null or
// numeric key, `{~: x}`, `{1: x}`): YAML allows them, the decoders panic on
// them or make a name up, and no key of mediafork's is anything but a name.
// key is where n is, for the error. Aliases are not followed: their anchor is
// checked where it is written.
func stringKeys(n *yaml.Node, key string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := stringKeys(c, key); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := stringKeys(c, fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := keyNode(n.Content[i])
			if k.Kind != yaml.ScalarNode || (k.ShortTag() != "!!str" && k.ShortTag() != "!!merge") {
				what := k.Value
				switch {
				case k.Kind != yaml.ScalarNode:
					what = "{...}"
					if k.Kind == yaml.SequenceNode {
						what = "[...]"
					}
				case k.ShortTag() == "!!null":
					what = "<nil>"
				}
				return &Error{Key: cmp.Or(key, "(top level)"), Msg: fmt.Sprintf("key %s is not a name: keys must be strings", what)}
			}
			if err := stringKeys(n.Content[i+1], join(key, k.Value)); err != nil {
				return err
			}
		}
	}
	return nil
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' })
}

// checkKeys refuses keys the schema does not have, naming each. Maps of
// user-chosen names (profiles, rule match and metadata) are not checked by name.
func checkKeys(settings map[string]any, prefix string, errs *Errors) {
	checkAgainst(reflect.TypeOf(Config{}), settings, prefix, errs)
}

func checkAgainst(t reflect.Type, val any, key string, errs *Errors) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			return // a type mismatch is the decoder's to report
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
				msg := "unknown key"
				if s := suggestKey(k, fields); s != "" {
					msg += "; did you mean " + s + "?"
				}
				errs.add(&Error{Key: full, Msg: msg})
				continue
			}
			checkAgainst(f.Type, m[k], full, errs)
		}
	case reflect.Slice:
		if l, ok := val.([]any); ok {
			for i, e := range l {
				checkAgainst(t.Elem(), e, fmt.Sprintf("%s[%d]", key, i), errs)
			}
		}
	case reflect.Map:
		if m, ok := val.(map[string]any); ok {
			names := make([]string, 0, len(m))
			for k := range m {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				checkAgainst(t.Elem(), m[k], join(key, k), errs)
			}
		}
	}
}

// suggestKey is the field name closest to k, when k looks like a typo of it:
// the same but for underscores, or at most two edits (one for short names).
func suggestKey(k string, fields map[string]reflect.StructField) string {
	known := make([]string, 0, len(fields))
	for name := range fields {
		if name != "" && name != "-" && !strings.HasPrefix(name, ",") {
			known = append(known, name)
		}
	}
	return suggestName(k, known)
}

// suggestName is the name of known closest to k, when k looks like a typo of
// it (suggestKey's rule).
func suggestName(k string, known []string) string {
	known = append([]string(nil), known...)
	sort.Strings(known) // ties go the same way every run
	k = strings.ToLower(k)
	s := suggest(k, known)
	if s == "" {
		return ""
	}
	if strings.ReplaceAll(s, "_", "") == strings.ReplaceAll(k, "_", "") || editDistance(k, s) <= min(2, max(1, len(k)/3)) {
		return s
	}
	return ""
}

func join(prefix, k string) string {
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

var (
	decodeKeyRE = regexp.MustCompile(`'([^']*)'`)
	ruleKeyRE   = regexp.MustCompile(`^rules\[(\d+)\]`)
)

// addDecodeErrors adds each of mapstructure's errors (one a line) as an
// *Error naming its key under prefix. Its "has invalid keys" lines repeat
// what checkKeys found when it found something, and are left out then.
func addDecodeErrors(errs *Errors, err error, prefix string, unknownKeys bool) {
	for _, line := range strings.Split(err.Error(), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "decoding failed due to") {
			continue
		}
		if unknownKeys && strings.Contains(line, "has invalid keys") {
			continue
		}
		key := ""
		if m := decodeKeyRE.FindStringSubmatch(line); m != nil {
			key = m[1]
			line = strings.TrimSpace(strings.Replace(line, m[0], "", 1))
		}
		if prefix != "" && key != "" {
			key = join(prefix, key)
		} else if prefix != "" {
			key = prefix
		}
		errs.add(&Error{Key: key, Msg: line})
	}
}

// decodeProfiles decodes the profiles section as written: profile names keep
// their case, and an endpoint is "host:port" or {address, directions,
// encoding, rate, frame_ms}. Errors name the key, down to the endpoint's field.
func decodeProfiles(val any, hooks mapstructure.DecodeHookFunc, errs *Errors) (map[string]Profile, map[string]bool) {
	out, broken := map[string]Profile{}, map[string]bool{}
	if val == nil {
		return out, broken
	}
	m, ok := val.(map[string]any)
	if !ok {
		errs.add(&Error{"profiles", "must be a map of name: {endpoints: [...], ...}"})
		return out, broken
	}
	// checked: checkKeys has named unknown keys here already.
	decode := func(key string, in, result any, checked bool) bool {
		d, _ := mapstructure.NewDecoder(&mapstructure.DecoderConfig{DecodeHook: hooks, ErrorUnused: true,
			WeaklyTypedInput: true, Result: result})
		if err := d.Decode(in); err != nil {
			addDecodeErrors(errs, err, key, checked)
			return false
		}
		return true
	}
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	sort.Strings(names) // errors always in the same order
	for _, name := range names {
		key := "profiles." + name
		pm, ok := m[name].(map[string]any)
		if !ok && m[name] != nil {
			errs.add(&Error{key, "must be a map: {endpoints: [...], ...}"})
			broken[name] = true
			continue
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
		good := decode(key, rest, &p, true)
		list, ok := eps.([]any)
		if !ok && eps != nil {
			if s, isStr := eps.(string); isStr { // one host:port, or a comma-separated list
				for _, e := range splitList(s) {
					list = append(list, e)
				}
			} else {
				errs.add(&Error{key + ".endpoints", "must be a list of host:port or {address: host:port, ...}"})
				broken[name] = true
				continue
			}
		}
		structured, named := false, false
		for i, e := range list {
			ekey := fmt.Sprintf("%s.endpoints[%d]", key, i)
			switch e := e.(type) {
			case string:
				p.Endpoints = append(p.Endpoints, e)
				p.Formats = append(p.Formats, EndpointFormat{})
				p.Protocols = append(p.Protocols, EndpointProtocol{})
			case map[string]any:
				ep, proto, ok := decodeEndpoint(ekey, e, decode, errs)
				if !ok {
					good = false
					continue
				}
				where, ok := endpointWhere(ekey, ep, errs)
				if !ok {
					good = false
					continue
				}
				p.Endpoints = append(p.Endpoints, where)
				p.Formats = append(p.Formats, ep.EndpointFormat)
				p.Protocols = append(p.Protocols, proto)
				structured = structured || !ep.EndpointFormat.IsZero()
				named = named || !proto.IsZero()
			default:
				errs.add(&Error{ekey, fmt.Sprintf("%v is neither host:port nor {address: host:port, ...}", e)})
				good = false
			}
		}
		if !good {
			broken[name] = true // validating what is left would only repeat these errors
			continue
		}
		if !structured {
			p.Formats = nil
		}
		if !named {
			p.Protocols = nil
		}
		out[name] = p
	}
	return out, broken
}

// decodeEndpoint decodes an endpoint written as a map: the common keys
// (mediafork.CommonEndpointKeys) into an Endpoint, and the rest, which must
// be keys of its protocol, kept as written for the protocol to parse. An
// unknown key is named, with the key it may be a typo of, or the protocol it
// belongs to.
func decodeEndpoint(key string, m map[string]any, decode func(string, any, any, bool) bool, errs *Errors) (Endpoint, EndpointProtocol, bool) {
	var ep Endpoint
	common, own := map[string]any{}, map[string]any{}
	for k, v := range m {
		if slices.Contains(mediafork.CommonEndpointKeys(), strings.ToLower(k)) {
			common[k] = v
		} else {
			own[k] = v
		}
	}
	if !decode(key, common, &ep, false) {
		return ep, EndpointProtocol{}, false
	}
	proto, err := mediafork.ParseProtocol(ep.Protocol)
	if err != nil {
		errs.add(&Error{key + ".protocol", err.Error()})
		return ep, EndpointProtocol{}, false
	}
	op, _ := mediafork.LookupProtocol(proto)
	names := make([]string, 0, len(own))
	for k := range own {
		names = append(names, k)
	}
	sort.Strings(names)
	good := true
	for _, k := range names {
		lk := strings.ToLower(k)
		if slices.Contains(op.Keys(), lk) {
			continue
		}
		msg := "unknown key"
		if s := suggestName(lk, append(mediafork.CommonEndpointKeys(), op.Keys()...)); s != "" {
			msg += "; did you mean " + s + "?"
		} else {
			for _, other := range mediafork.Protocols() {
				if other != op && slices.Contains(other.Keys(), lk) {
					msg = fmt.Sprintf("is a key of protocol %s, not of %s (protocol: %s)", other.Name(), proto, other.Name())
				}
			}
		}
		errs.add(&Error{key + "." + k, msg})
		good = false
	}
	if len(own) == 0 {
		own = nil
	}
	return ep, EndpointProtocol{Protocol: ep.Protocol, Keys: own}, good
}

// endpointWhere is where an endpoint written as a map goes: its address, or
// a stream protocol's url. Each protocol takes its own key only.
func endpointWhere(key string, ep Endpoint, errs *Errors) (string, bool) {
	proto, _ := mediafork.ParseProtocol(ep.Protocol) // checked by decodeEndpoint
	if mediafork.IsStream(proto) {
		switch {
		case ep.Address != "":
			errs.add(&Error{key + ".address", fmt.Sprintf("a %s endpoint dials url: ws://host/path or wss://host/path; address is for tlv and rtp", proto)})
		case ep.URL == "":
			errs.add(&Error{key + ".url", fmt.Sprintf("is missing: a %s endpoint dials url: ws://host/path or wss://host/path", proto)})
		default:
			return ep.URL, true
		}
		return "", false
	}
	switch {
	case ep.URL != "":
		errs.add(&Error{key + ".url", fmt.Sprintf("is for stream protocols (twilio, audiofork); a %s endpoint sends to address: host:port", proto)})
	case ep.Address == "":
		errs.add(&Error{key + ".address", "is missing: an endpoint written as a map needs address: host:port"})
	default:
		return ep.Address, true
	}
	return "", false
}
