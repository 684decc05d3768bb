package mediafork

import (
	"errors"
	"fmt"
)

// ErrBadCallID is returned for a call uuid that FreeSWITCH could not have made.
var ErrBadCallID = errors.New("not a call uuid")

// MaxCallIDLen is the longest call uuid accepted. FreeSWITCH makes 36-character
// uuids; an origination_uuid set by a dialplan may be longer, never this long.
const MaxCallIDLen = 64

// CallID is a FreeSWITCH channel uuid that has been checked: 1 to 64 of
// [0-9A-Za-z-]. A call id reaches mediafork from the API, fs_cli, the outbound
// socket, ESL events and the ingest path; every one of them parses it into a
// CallID before it can reach an ESL command line, where a space, a newline or
// a percent sign would be an injection.
type CallID string

// ParseCallID checks s.
func ParseCallID(s string) (CallID, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty", ErrBadCallID)
	}
	if len(s) > MaxCallIDLen {
		return "", fmt.Errorf("%w: %d characters, at most %d", ErrBadCallID, len(s), MaxCallIDLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '-') {
			return "", fmt.Errorf("%w: %q holds a character other than [0-9A-Za-z-]", ErrBadCallID, truncateQuoted(s))
		}
	}
	return CallID(s), nil
}

// String is the uuid.
func (c CallID) String() string { return string(c) }

// UnmarshalText parses a JSON string (API bodies, credentials) as a CallID.
func (c *CallID) UnmarshalText(b []byte) error {
	id, err := ParseCallID(string(b))
	if err != nil {
		return err
	}
	*c = id
	return nil
}

// MarshalText is the uuid.
func (c CallID) MarshalText() ([]byte, error) { return []byte(c), nil }

// truncateQuoted keeps an error message about hostile input short.
func truncateQuoted(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
