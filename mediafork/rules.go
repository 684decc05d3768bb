package mediafork

import (
	"regexp"
	"strings"

	"github.com/mediafork/mediafork/tlvcodec"
)

// ChannelData is a channel's headers and variables as FreeSWITCH names them
// (Caller-Destination-Number, variable_sip_h_X-Campaign, ...). Names are matched
// without regard to case: events, uuid_dump and the outbound connect reply do
// not all keep it.
type ChannelData map[string]string

// NewChannelData indexes headers by lower-cased name.
func NewChannelData(headers map[string]string) ChannelData {
	d := make(ChannelData, len(headers))
	for k, v := range headers {
		d[strings.ToLower(k)] = v
	}
	return d
}

// Get returns a header or variable ("" when absent).
func (d ChannelData) Get(name string) string { return d[strings.ToLower(name)] }

// UUID is the channel's Unique-ID.
func (d ChannelData) UUID() CallID {
	id, err := ParseCallID(d.Get("Unique-ID"))
	if err != nil {
		return "" // not a channel mediafork can name in a command
	}
	return id
}

// DefaultMetadata is what signaling says when nothing else is set.
func (d ChannelData) DefaultMetadata() Metadata {
	return Metadata{
		ChannelID: d.Get("Channel-Name"),
		Exten:     d.Get("Caller-Destination-Number"),
		CallerID:  d.Get("Caller-Caller-ID-Number"),
		CalledID:  d.Get("Caller-Destination-Number"),
	}
}

// Rule forks answered calls whose channel data all match.
type Rule struct {
	Name     string
	Match    map[string]*regexp.Regexp // header or variable name -> pattern
	Profile  string
	To       []string
	Params   Params            // complete: rule over profile over defaults
	Metadata map[string]string // field -> template with ${name}
}

// Matches reports whether every pattern matches its header.
func (r *Rule) Matches(d ChannelData) bool {
	for name, re := range r.Match {
		v, ok := d[strings.ToLower(name)]
		if !ok || !re.MatchString(v) {
			return false
		}
	}
	return true
}

// FirstMatch returns the first rule that matches, or nil.
func FirstMatch(rules []Rule, d ChannelData) *Rule {
	for i := range rules {
		if rules[i].Matches(d) {
			return &rules[i]
		}
	}
	return nil
}

var templateVar = regexp.MustCompile(`\$\{([^}]+)\}`)

// Expand replaces every ${name} in tmpl with the channel's value.
func (d ChannelData) Expand(tmpl string) string {
	return templateVar.ReplaceAllStringFunc(tmpl, func(m string) string { return d.Get(m[2 : len(m)-1]) })
}

// MetadataFields are the signaling fields a rule's metadata templates can set.
var MetadataFields = []string{"channel_id", "exten", "caller_id", "called_id"}

// metadata is what the rule's templates say about the call's signaling;
// fields without a template are empty.
func (r *Rule) metadata(d ChannelData) Metadata {
	var md Metadata
	for field, tmpl := range r.Metadata {
		v := d.Expand(tmpl)
		switch field {
		case "channel_id":
			md.ChannelID = v
		case "exten":
			md.Exten = v
		case "caller_id":
			md.CallerID = v
		case "called_id":
			md.CalledID = v
		}
	}
	return md
}

// Truncated cuts every field to what the signaling packet holds.
func (m Metadata) Truncated() Metadata {
	cut := func(s string, n int) string { return s[:tlvcodec.TruncateLen(s, n)] }
	return Metadata{ChannelID: cut(m.ChannelID, 63), Exten: cut(m.Exten, 31), CallerID: cut(m.CallerID, 31), CalledID: cut(m.CalledID, 31)}
}
