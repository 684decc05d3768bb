package fssim

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"time"
)

// OutboundResult is what happened on one dialplan `socket` connection.
type OutboundResult struct {
	Commands []string // what the server sent, in order
	// Resumed: resume was sent. The dist 1.10.12 went on with the dialplan
	// after the socket closed with or without it (socket async full or not,
	// after exit or a plain close), although the recorded notes say a channel
	// without it stayed in the socket app; mediafork sends it either way.
	Resumed bool
	Exited  bool // the server sent exit (else it just closed)
}

// DialOutbound plays FreeSWITCH's side of `socket <addr> async full` for call:
// it connects, answers `connect` with the channel data as one header block
// ending in Content-Type: command/reply and Reply-Text: %2BOK%0A, then answers
// resume, linger, myevents, event, api and exit until the server is done.
func (s *Switch) DialOutbound(ctx context.Context, addr string, c *Call) (*OutboundResult, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	ec := &eslConn{sw: s, c: conn, w: bufio.NewWriter(conn), subs: map[string]bool{}}
	ec.authed.Store(true)
	r := bufio.NewReader(conn)
	res := &OutboundResult{}
	c.setVar("socket_host", conn.RemoteAddr().(*net.TCPAddr).IP.String())
	for {
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		lines, err := readCommand(r)
		if err != nil {
			return res, nil // the server closed: the socket app ends
		}
		res.Commands = append(res.Commands, lines[0])
		verb, rest, _ := strings.Cut(lines[0], " ")
		switch verb {
		case "connect":
			ec.send(c.connectReply())
		case "resume":
			res.Resumed = true
			ec.reply("+OK")
		case "linger":
			ec.reply("+OK will linger")
		case "myevents":
			ec.reply("+OK Events Enabled")
		case "event":
			format, _, _ := strings.Cut(rest, " ")
			ec.reply("+OK event listener enabled " + format)
		case "api":
			cmd, args, _ := strings.Cut(rest, " ")
			if cmd == "uuid_audio_fork" && crashes(args) {
				s.crash()
				return res, fmt.Errorf("FreeSWITCH crashed")
			}
			ec.apiResponse(s.api(cmd, strings.TrimSpace(args), ec))
		case "exit":
			res.Exited = true
			ec.reply("+OK bye")
			body := "Disconnected, goodbye.\nSee you at ClueCon! http://www.cluecon.com/\n"
			ec.send(fmt.Sprintf("Content-Type: text/disconnect-notice\nControlled-Session-UUID: %s\nContent-Disposition: disconnect\nContent-Length: %d\n\n%s", c.UUID, len(body), body))
			return res, nil
		default:
			ec.reply("-ERR command not found")
		}
	}
}

// connectReply is the channel data as the socket app sends it: no
// Content-Length, the reply headers last, Reply-Text URL-encoded.
func (c *Call) connectReply() string {
	e := c.sw.coreHeaders("CHANNEL_DATA", "mod_event_socket.c", "parse_command", 2022)
	var ch event
	c.channelHeaders(&ch, "CS_EXECUTE", "ACTIVE", 4, "")
	for _, h := range ch.headers {
		if name, ok := strings.CutPrefix(h.name, "Caller-"); ok {
			e.add("Channel-"+name, h.value)
		}
	}
	e.headers = append(e.headers, ch.headers...)
	return e.headerBlock() + "Content-Type: command/reply\nReply-Text: %2BOK%0A\nSocket-Mode: async\nControl: full\n\n"
}
