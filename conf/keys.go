package conf

import (
	"reflect"
	"sort"
	"strings"

	"github.com/mediafork/mediafork/mediafork"
)

// Keys lists every key the loader knows, written as the configuration
// reference (docs/configuration.md) writes them: "ingest.max_forks";
// "freeswitch[].name" for a key of each entry of a list; "profiles.<name>.rate"
// for a key under a name the operator chooses; "rules[].match" for a map
// whose keys are the operator's. A profile's endpoint written as a map has
// the common keys (mediafork.CommonEndpointKeys) and its protocol's own
// (OutputProtocol.Keys): "profiles.<name>.endpoints[].address",
// "profiles.<name>.endpoints[].tx_address". It walks the schema the loader
// checks keys against (checkKeys), so a key added to the schema is listed
// here without anyone writing it down.
func Keys() []string {
	var out []string
	schemaKeys(reflect.TypeOf(Config{}), "", &out)
	ep := "profiles.<name>.endpoints[]."
	for _, k := range mediafork.CommonEndpointKeys() {
		out = append(out, ep+k)
	}
	for _, p := range mediafork.Protocols() {
		for _, k := range p.Keys() {
			out = append(out, ep+k)
		}
	}
	sort.Strings(out)
	return slicesCompact(out)
}

func schemaKeys(t reflect.Type, prefix string, out *[]string) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t == reflect.TypeOf(Duration(0)) {
			*out = append(*out, prefix)
			return
		}
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("mapstructure")
			switch {
			case tag == "" || tag == "-":
				continue
			case strings.HasPrefix(tag, ","): // squash: its keys are the parent's
				schemaKeys(f.Type, prefix, out)
				continue
			}
			schemaKeys(f.Type, join(prefix, strings.Split(tag, ",")[0]), out)
		}
	case reflect.Slice:
		if e := t.Elem(); e.Kind() == reflect.Struct && e != reflect.TypeOf(Duration(0)) {
			schemaKeys(e, prefix+"[]", out)
			return
		}
		*out = append(*out, prefix)
	case reflect.Map:
		if e := t.Elem(); e.Kind() == reflect.Struct {
			schemaKeys(e, prefix+".<name>", out)
			return
		}
		*out = append(*out, prefix) // a map of the operator's names: the key itself
	default:
		*out = append(*out, prefix)
	}
}

func slicesCompact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}
