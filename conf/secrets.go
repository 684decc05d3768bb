package conf

import (
	"fmt"
	"strings"

	"github.com/mediafork/mediafork/internal/boundedfile"
)

// maxSecretFile bounds a secret file: a password or key, not a disk image.
const maxSecretFile = 64 << 10

// readSecretFiles reads every *_file secret once, at load, into its value:
// password_file, token_file, key_file. A value and its file both set is an
// error: which one wins would be a guess.
func (c *Config) readSecretFiles(add func(*Error)) {
	type secret struct {
		key, fileKey string
		val          *string
		file         string
	}
	list := []secret{
		{"ingest.token", "ingest.token_file", &c.Ingest.Token, c.Ingest.TokenFile},
		{"ingest.key", "ingest.key_file", &c.Ingest.Key, c.Ingest.KeyFile},
		{"api.token", "api.token_file", &c.API.Token, c.API.TokenFile},
	}
	for i := range c.FreeSWITCH {
		k := fmt.Sprintf("freeswitch[%d]", i)
		list = append(list, secret{k + ".password", k + ".password_file", &c.FreeSWITCH[i].Password, c.FreeSWITCH[i].PasswordFile})
	}
	for _, s := range list {
		if s.file == "" {
			continue
		}
		if *s.val != "" {
			add(&Error{s.fileKey, fmt.Sprintf("and %s are both set (in the file or the environment); set one", s.key)})
			continue
		}
		v, err := readSecret(s.file)
		if err != nil {
			add(&Error{s.fileKey, err.Error()})
			continue
		}
		*s.val = v
	}
}

// readSecret is a secret file's content without its trailing line break.
func readSecret(path string) (string, error) {
	b, err := boundedfile.Read(path, maxSecretFile)
	if err != nil {
		return "", err
	}
	s := strings.TrimRight(string(b), "\r\n")
	switch {
	case s == "":
		return "", fmt.Errorf("%s is empty", path)
	case strings.ContainsAny(s, "\r\n"):
		return "", fmt.Errorf("%s has more than one line", path)
	}
	return s, nil
}

// A stream endpoint's header values are secrets (a token in Authorization):
// each is written as a string, or read from a file or the environment, as
// the config's other secrets can be:
//
//	headers:
//	  Authorization: {file: /run/secrets/bot-token}   # the file's one line
//	  X-Api-Key: {env: BOT_API_KEY}                    # the variable's value
//
// Both are read once, at load (and at each reload); config check shows such
// a header as written, and a literal value as the mask.

// headerRef is a header value read from elsewhere.
type headerRef struct{ file, env string }

// parseHeaderRef reads {file: path} or {env: NAME}; ok is false for a
// value that is neither (a string, or the protocol's to refuse).
func parseHeaderRef(v any) (headerRef, bool, error) {
	m, isMap := v.(map[string]any)
	if !isMap {
		return headerRef{}, false, nil
	}
	if len(m) != 1 {
		return headerRef{}, true, fmt.Errorf("is {file: path} or {env: NAME}, one of them")
	}
	for k, x := range m {
		s, isStr := x.(string)
		switch {
		case !isStr || s == "":
			return headerRef{}, true, fmt.Errorf("%s: %v is not a name", k, x)
		case strings.EqualFold(k, "file"):
			return headerRef{file: s}, true, nil
		case strings.EqualFold(k, "env"):
			return headerRef{env: s}, true, nil
		}
		return headerRef{}, true, fmt.Errorf("%s: is neither file nor env", k)
	}
	return headerRef{}, true, nil
}

// headersKey is the key of p's keys holding its headers, as written ("" for none).
func (p EndpointProtocol) headersKey() string {
	for k := range p.Keys {
		if strings.EqualFold(k, "headers") {
			return k
		}
	}
	return ""
}

// readEndpointSecrets reads every header value written {file: ...} or
// {env: ...}, and returns the environment variables named (which the
// environment check then knows).
func (c *Config) readEndpointSecrets(lookupEnv func(string) (string, bool), add func(*Error)) []string {
	var referenced []string
	for name, p := range c.Profiles {
		for i, ep := range p.Protocols {
			hk := ep.headersKey()
			headers, ok := ep.Keys[hk].(map[string]any)
			if hk == "" || !ok {
				continue
			}
			resolved := map[string]any{}
			read := false
			for h, v := range headers {
				key := fmt.Sprintf("profiles.%s.endpoints[%d].%s.%s", name, i, hk, h)
				ref, isRef, err := parseHeaderRef(v)
				switch {
				case err != nil:
					add(&Error{key, err.Error()})
					continue
				case !isRef:
					resolved[h] = v
					continue
				case ref.file != "":
					val, err := readSecret(ref.file)
					if err != nil {
						add(&Error{key + ".file", err.Error()})
						continue
					}
					resolved[h] = val
				default:
					referenced = append(referenced, ref.env)
					val, set := lookupEnv(ref.env)
					if !set || val == "" {
						add(&Error{key + ".env", fmt.Sprintf("%s is not set in the environment", ref.env)})
						continue
					}
					resolved[h] = val
				}
				read = true
			}
			if !read {
				continue
			}
			ep.secrets = map[string]any{}
			for k, v := range ep.Keys {
				ep.secrets[k] = v
			}
			ep.secrets[hk] = resolved
			p.Protocols[i] = ep
		}
	}
	return referenced
}
