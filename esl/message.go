package esl

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Content types FreeSWITCH sends on the event socket.
const (
	TypeAuthRequest = "auth/request"
	TypeReply       = "command/reply"
	TypeAPIResponse = "api/response"
	TypeEventPlain  = "text/event-plain"
	TypeEventJSON   = "text/event-json"
	TypeDisconnect  = "text/disconnect-notice"
	TypeRejection   = "text/rude-rejection"
)

var knownTypes = map[string]bool{TypeAuthRequest: true, TypeReply: true, TypeAPIResponse: true,
	TypeEventPlain: true, TypeEventJSON: true, TypeDisconnect: true, TypeRejection: true}

// Limits on what a message may be; beyond them the connection is dropped.
// They are the protocol's, not configuration.
const (
	MaxHeaderLine = 64 << 10
	MaxHeaders    = 4096
	// MaxBody bounds one message's Content-Length: room for the biggest api
	// response (`show channels as json` on a busy switch); events are far
	// smaller. A body is read as it arrives, so a Content-Length that is
	// claimed but not sent costs nothing.
	MaxBody = 8 << 20
)

// ErrProtocol wraps every framing error: the connection cannot be trusted after it.
var ErrProtocol = errors.New("esl protocol error")

// Header is one "Name: value" line; Value is as sent (URL-encoded in events).
type Header struct{ Name, Value string }

// Message is one ESL message: a header block and an optional body.
type Message struct {
	Headers []Header
	Body    []byte
	Raw     []byte // the bytes as read (an event's size in the queue)
}

// Get returns the first value of name, as sent.
func (m *Message) Get(name string) string {
	for _, h := range m.Headers {
		if strings.EqualFold(h.Name, name) {
			return h.Value
		}
	}
	return ""
}

// ContentType is the message's Content-Type.
func (m *Message) ContentType() string { return m.Get("Content-Type") }

// ReadMessage reads one message, checking its framing: every header line has a
// colon, Content-Length is a number within MaxBody, Content-Type is one
// FreeSWITCH sends. Its header block is bounded by MaxHeaders lines of
// MaxHeaderLine bytes only; readMessage bounds it in bytes.
func ReadMessage(r *bufio.Reader) (*Message, error) { return readMessage(r, 0) }

// ErrHeaderBlockTooBig is a header block over the connection's bound (the
// outbound listener's MaxHeaderBytes); it wraps ErrProtocol.
var ErrHeaderBlockTooBig = fmt.Errorf("%w: header block too big", ErrProtocol)

// readMessage is ReadMessage with the header block (its lines, their line
// breaks and the blank line ending it; not blank lines before it) bounded to
// maxHeader bytes when maxHeader > 0: no more than that is read into memory
// before it is refused.
func readMessage(r *bufio.Reader, maxHeader int) (*Message, error) {
	m := &Message{}
	var raw bytes.Buffer
	for {
		// The line's bytes and its line break must fit in what is left.
		lineMax, blockBound := MaxHeaderLine, false
		if maxHeader > 0 && maxHeader-raw.Len()-1 < lineMax {
			lineMax, blockBound = maxHeader-raw.Len()-1, true
		}
		line, err := readLine(r, lineMax)
		if errors.Is(err, errLineTooLong) && blockBound {
			return nil, fmt.Errorf("%w: over %d bytes", ErrHeaderBlockTooBig, maxHeader)
		}
		if err != nil {
			if err == io.EOF && raw.Len() > 0 {
				return nil, fmt.Errorf("%w: connection closed inside a message", ErrProtocol)
			}
			return nil, err
		}
		raw.WriteString(line)
		raw.WriteByte('\n')
		line = strings.TrimRight(line, "\r")
		if line == "" {
			if len(m.Headers) == 0 {
				raw.Reset() // blank lines between messages
				continue
			}
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("%w: header line without a name and colon: %q", ErrProtocol, truncate(line, 80))
		}
		if len(m.Headers) >= MaxHeaders {
			return nil, fmt.Errorf("%w: more than %d headers", ErrProtocol, MaxHeaders)
		}
		m.Headers = append(m.Headers, Header{Name: name, Value: strings.TrimLeft(value, " ")})
	}
	ct := m.ContentType()
	if !knownTypes[ct] {
		return nil, fmt.Errorf("%w: unknown Content-Type %q", ErrProtocol, truncate(ct, 80))
	}
	if cl := m.Get("Content-Length"); cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("%w: bad Content-Length %q", ErrProtocol, truncate(cl, 40))
		}
		if n > MaxBody {
			return nil, fmt.Errorf("%w: Content-Length %d is over the %d-byte limit", ErrProtocol, n, MaxBody)
		}
		// Copy as it comes: the length is only a claim until the bytes are here.
		start := raw.Len()
		if got, err := io.CopyN(&raw, r, int64(n)); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, fmt.Errorf("%w: body shorter than its Content-Length %d (got %d): %v", ErrProtocol, n, got, err)
		}
		m.Body = raw.Bytes()[start:]
	}
	m.Raw = raw.Bytes()
	return m, nil
}

// errLineTooLong is readLine's for a line over its bound; past
// MaxHeaderLine it wraps ErrProtocol, saying so.
var errLineTooLong = errors.New("line too long")

// readLine reads one line of at most max bytes (without its line break).
func readLine(r *bufio.Reader, max int) (string, error) {
	var b []byte
	for {
		frag, isPrefix, err := r.ReadLine()
		if err != nil {
			return "", err
		}
		if len(b)+len(frag) > max {
			if max >= MaxHeaderLine {
				return "", fmt.Errorf("%w: %w: header line over %d bytes", ErrProtocol, errLineTooLong, MaxHeaderLine)
			}
			return "", errLineTooLong
		}
		b = append(b, frag...)
		if !isPrefix {
			return string(b), nil
		}
	}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// Event is a FreeSWITCH event with its headers decoded.
type Event struct {
	Name    string
	Headers map[string]string // decoded values; first occurrence wins
	Order   []string          // header names as they came
	Body    []byte
	// At is when it was read off the socket (zero for an event made
	// otherwise): talk-back reads the switch's frame clock off displace
	// stops.
	At time.Time
}

// Get returns a header (decoded).
func (e *Event) Get(name string) string { return e.Headers[name] }

// UUID is the channel the event is about.
func (e *Event) UUID() string { return e.Headers["Unique-ID"] }

// Subclass is Event-Subclass, for CUSTOM events.
func (e *Event) Subclass() string { return e.Headers["Event-Subclass"] }

// ParseEvent parses the body of a text/event-plain message: URL-encoded header
// lines, and an inner Content-Length with its body.
func ParseEvent(body []byte) (*Event, error) {
	r := bufio.NewReader(bytes.NewReader(body))
	e := &Event{Headers: map[string]string{}}
	for {
		line, err := readLine(r, MaxHeaderLine)
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		line = strings.TrimRight(line, "\r")
		if line == "" {
			break
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("%w: event header line without a colon: %q", ErrProtocol, truncate(line, 80))
		}
		value = strings.TrimLeft(value, " ")
		if dec, err := url.PathUnescape(value); err == nil {
			value = dec
		}
		if _, dup := e.Headers[name]; !dup {
			e.Headers[name] = value
			e.Order = append(e.Order, name)
		}
	}
	if cl := e.Headers["Content-Length"]; cl != "" {
		n, err := strconv.Atoi(cl)
		if err != nil || n < 0 || n > MaxBody {
			return nil, fmt.Errorf("%w: bad event Content-Length %q", ErrProtocol, cl)
		}
		// What is left of body bounds it: never allocate the claim.
		b, _ := io.ReadAll(io.LimitReader(r, int64(n)))
		if len(b) != n {
			return nil, fmt.Errorf("%w: event body shorter than %d", ErrProtocol, n)
		}
		e.Body = b
	}
	e.Name = e.Headers["Event-Name"]
	if e.Name == "" {
		return nil, fmt.Errorf("%w: event without Event-Name", ErrProtocol)
	}
	return e, nil
}

// parseJSONEvent parses the body of a text/event-json message.
func parseJSONEvent(body []byte) (*Event, error) {
	var raw map[string]any
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: event JSON: %v", ErrProtocol, err)
	}
	e := &Event{Headers: map[string]string{}}
	for k, v := range raw {
		if k == "_body" {
			e.Body = []byte(fmt.Sprint(v))
			continue
		}
		e.Headers[k] = fmt.Sprint(v)
		e.Order = append(e.Order, k)
	}
	e.Name = e.Headers["Event-Name"]
	if e.Name == "" {
		return nil, fmt.Errorf("%w: event without Event-Name", ErrProtocol)
	}
	return e, nil
}

// ParseHeaderBlock parses "Name: value" lines (uuid_dump output, the outbound
// connect reply) into decoded headers.
func ParseHeaderBlock(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		name, value, ok := strings.Cut(strings.TrimRight(line, "\r"), ":")
		if !ok || name == "" {
			continue
		}
		value = strings.TrimLeft(value, " ")
		if dec, err := url.PathUnescape(value); err == nil {
			value = dec
		}
		if _, dup := out[name]; !dup {
			out[name] = value
		}
	}
	return out
}
