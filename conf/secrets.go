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
