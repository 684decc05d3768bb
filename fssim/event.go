package fssim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// urlUnsafe is what FreeSWITCH's switch_url_encode escapes (plus control and
// non-ASCII bytes): "2026-11-22%2010%3A06%3A09", "%5Bmediafork%5D", "%2BOK%0A".
const urlUnsafe = "\r\n \"#%&+:;<=>?@[\\]^`{|}"

// URLEncode encodes a header value as FreeSWITCH does in plain events.
func URLEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 32 || c > 126 || strings.IndexByte(urlUnsafe, c) >= 0 {
			fmt.Fprintf(&b, "%%%02X", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// header is one event header, in order.
type header struct{ name, value string }

// event is a FreeSWITCH event under construction.
type event struct {
	headers []header
	body    string
}

func (e *event) add(name, value string) { e.headers = append(e.headers, header{name, value}) }

func (e *event) get(name string) string {
	for _, h := range e.headers {
		if h.name == name {
			return h.value
		}
	}
	return ""
}

// plain is the event as text/event-plain: URL-encoded header lines, a blank
// line, or Content-Length and the body.
func (e *event) plain() string {
	var b strings.Builder
	for _, h := range e.headers {
		b.WriteString(h.name + ": " + URLEncode(h.value) + "\n")
	}
	if e.body != "" {
		b.WriteString("Content-Length: " + strconv.Itoa(len(e.body)) + "\n\n" + e.body)
	} else {
		b.WriteString("\n")
	}
	return b.String()
}

// headerBlock is the event as uuid_dump prints it and the outbound connect
// reply carries it: encoded header lines, no framing.
func (e *event) headerBlock() string {
	var b strings.Builder
	for _, h := range e.headers {
		b.WriteString(h.name + ": " + URLEncode(h.value) + "\n")
	}
	return b.String()
}

// coreHeaders start every event.
func (s *Switch) coreHeaders(name, file, function string, line int) *event {
	now := time.Now()
	e := &event{}
	e.add("Event-Name", name)
	e.add("Core-UUID", s.coreUUID)
	e.add("FreeSWITCH-Hostname", s.Hostname)
	e.add("FreeSWITCH-Switchname", s.Hostname)
	e.add("FreeSWITCH-IPv4", "192.0.2.2")
	e.add("FreeSWITCH-IPv6", "fd00::2")
	e.add("Event-Date-Local", now.Format("2006-01-02 15:04:05"))
	e.add("Event-Date-GMT", now.UTC().Format("Mon, 02 Jan 2006 15:04:05 GMT"))
	e.add("Event-Date-Timestamp", strconv.FormatInt(now.UnixMicro(), 10))
	e.add("Event-Calling-File", file)
	e.add("Event-Calling-Function", function)
	e.add("Event-Calling-Line-Number", strconv.Itoa(line))
	e.add("Event-Sequence", strconv.FormatUint(s.seq.Add(1), 10))
	return e
}

// channelHeaders are the channel's state, caller profile and variables, in the
// order FreeSWITCH 1.10.12 writes them.
func (c *Call) channelHeaders(e *event, state, callState string, stateNumber int, hangupCause string) {
	c.profileHeaders(e, state, callState, stateNumber, hangupCause)
	c.mu.Lock()
	for _, v := range c.varOrder {
		e.add("variable_"+v, c.vars[v])
	}
	c.mu.Unlock()
}

// profileHeaders are the channel's state and caller profile without its
// variables, as events fired outside the state machine carry them (DTMF).
func (c *Call) profileHeaders(e *event, state, callState string, stateNumber int, hangupCause string) {
	if hangupCause != "" {
		e.add("Hangup-Cause", hangupCause)
	}
	e.add("Channel-State", state)
	e.add("Channel-Call-State", callState)
	e.add("Channel-State-Number", strconv.Itoa(stateNumber))
	e.add("Channel-Name", c.Name)
	e.add("Unique-ID", c.UUID)
	e.add("Call-Direction", c.opts.Direction)
	e.add("Presence-Call-Direction", c.opts.Direction)
	e.add("Channel-HIT-Dialplan", "true")
	e.add("Channel-Call-UUID", c.UUID)
	e.add("Answer-State", map[bool]string{true: "answered", false: "hangup"}[hangupCause == ""])
	if hangupCause != "" {
		e.add("Hangup-Cause", hangupCause)
	}
	rate := strconv.Itoa(c.opts.Rate)
	bitRate := strconv.Itoa(c.opts.Rate * 16)
	e.add("Channel-Read-Codec-Name", "L16")
	e.add("Channel-Read-Codec-Rate", rate)
	e.add("Channel-Read-Codec-Bit-Rate", bitRate)
	e.add("Channel-Write-Codec-Name", "L16")
	e.add("Channel-Write-Codec-Rate", rate)
	e.add("Channel-Write-Codec-Bit-Rate", bitRate)
	created := strconv.FormatInt(c.created.UnixMicro(), 10)
	answered := strconv.FormatInt(c.answered.UnixMicro(), 10)
	hangup := "0"
	if hangupCause != "" {
		hangup = strconv.FormatInt(time.Now().UnixMicro(), 10)
	}
	e.headers = append(e.headers, []header{
		{"Caller-Direction", c.opts.Direction}, {"Caller-Logical-Direction", c.opts.Direction},
		{"Caller-Dialplan", "xml"}, {"Caller-Caller-ID-Number", c.opts.CallerID},
		{"Caller-Orig-Caller-ID-Number", c.opts.CallerID}, {"Caller-Callee-ID-Name", "Outbound Call"},
		{"Caller-Callee-ID-Number", c.opts.Dest}, {"Caller-ANI", c.opts.CallerID},
		{"Caller-Destination-Number", c.opts.Dest}, {"Caller-Unique-ID", c.UUID}, {"Caller-Source", "mod_loopback"},
		{"Caller-Context", c.opts.Context}, {"Caller-Channel-Name", c.Name}, {"Caller-Profile-Index", "1"},
		{"Caller-Profile-Created-Time", created}, {"Caller-Channel-Created-Time", created},
		{"Caller-Channel-Answered-Time", answered}, {"Caller-Channel-Progress-Time", "0"},
		{"Caller-Channel-Progress-Media-Time", "0"}, {"Caller-Channel-Hangup-Time", hangup},
		{"Caller-Channel-Transfer-Time", "0"}, {"Caller-Channel-Resurrect-Time", "0"},
		{"Caller-Channel-Bridged-Time", "0"}, {"Caller-Channel-Last-Hold", "0"}, {"Caller-Channel-Hold-Accum", "0"},
		{"Caller-Screen-Bit", "true"}, {"Caller-Privacy-Hide-Name", "false"}, {"Caller-Privacy-Hide-Number", "false"},
	}...)
}
