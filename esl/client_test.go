package esl

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/syncbuf"
)

// recorder is a Handler that keeps what it was told.
type recorder struct {
	mu       sync.Mutex
	connects int
	events   []*Event
	slow     time.Duration
	onEvent  func(*Event)
}

func (r *recorder) OnConnect(ctx context.Context, c *Client) {
	r.mu.Lock()
	r.connects++
	r.mu.Unlock()
}

func (r *recorder) OnEvent(c *Client, e *Event) {
	time.Sleep(r.slow)
	r.mu.Lock()
	r.events = append(r.events, e)
	fn := r.onEvent
	r.mu.Unlock()
	if fn != nil {
		fn(e)
	}
}

func (r *recorder) OnDisconnect(*Client, error) {}

func (r *recorder) snapshot() (int, []*Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.connects, append([]*Event(nil), r.events...)
}

// fastBackoff reconnects after 50 ms.
func fastBackoff() ClientSettings { return ClientSettings{BackoffMin: 50 * time.Millisecond} }

func startClient(t *testing.T, set ClientSettings, addr, password string, h Handler, w io.Writer) *Client {
	t.Helper()
	if w == nil {
		w = io.Discard
	}
	c, err := NewClient("fs1", addr, password, h, set, slog.New(slog.NewTextHandler(w, nil)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c
}

func TestClientAgainstSimulator(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	sw := fssim.NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()
	rec := &recorder{slow: 2 * time.Millisecond} // a slow consumer
	c := startClient(t, set, sw.Addr(), "ClueCon", rec, nil)
	require.Eventually(t, c.Connected, 5*time.Second, 10*time.Millisecond)

	// Events come in order, even from a slow handler, and commands still work
	// while the handler lags behind.
	var uuids []string
	for i := 0; i < 50; i++ {
		uuids = append(uuids, sw.Answer(fssim.CallOptions{Dest: fmt.Sprint(2000 + i)}).UUID)
	}
	out, err := c.API(context.Background(), "status")
	require.NoError(t, err)
	assert.Contains(t, out, "FreeSWITCH (Version 1.10.12-release")
	var answered []string
	require.Eventually(t, func() bool {
		_, events := rec.snapshot()
		answered = answered[:0]
		for _, e := range events {
			if e.Name == "CHANNEL_ANSWER" {
				answered = append(answered, e.UUID())
			}
		}
		return len(answered) >= 50
	}, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, uuids, answered, "CHANNEL_ANSWER events in the order they happened")

	// api errors come back as errors with FreeSWITCH's text.
	_, err = c.API(context.Background(), "uuid_kill 00000000-0000-0000-0000-000000000000")
	assert.ErrorContains(t, err, "-ERR No such channel!")
	_, err = c.API(context.Background(), "no_such_command")
	assert.ErrorContains(t, err, "-ERR no_such_command Command not found!")

	// The connection drops; the client comes back and says so.
	sw.DropConnections()
	require.Eventually(t, func() bool { n, _ := rec.snapshot(); return n == 2 && c.Connected() }, 5*time.Second, 10*time.Millisecond)
	assert.Equal(t, uint64(1), c.Reconnects.Load())
	_, err = c.API(context.Background(), "status")
	assert.NoError(t, err)
}

func TestClientWrongPassword(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	sw := fssim.NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()
	var logs syncbuf.Buffer
	c := startClient(t, set, sw.Addr(), "WrongPass", &recorder{}, &logs)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "authentication refused") }, 5*time.Second, 10*time.Millisecond)
	assert.False(t, c.Connected())
	assert.NotContains(t, logs.String(), "WrongPass", "the password is never logged")
}

// scripted is a fake FreeSWITCH that authenticates, then answers commands with
// whatever the test says.
type scripted struct {
	ln     net.Listener
	answer func(cmd string, w io.Writer)
	conns  chan net.Conn
}

func newScripted(t *testing.T, answer func(cmd string, w io.Writer)) *scripted {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &scripted{ln: ln, answer: answer, conns: make(chan net.Conn, 100)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.conns <- c
			go s.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		close(s.conns)
		for c := range s.conns {
			c.Close()
		}
	})
	return s
}

func (s *scripted) serve(c net.Conn) {
	defer c.Close()
	io.WriteString(c, "Content-Type: auth/request\n\n")
	r := bufio.NewReader(c)
	for {
		var lines []string
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			lines = append(lines, line)
		}
		if len(lines) == 0 {
			continue
		}
		switch {
		case strings.HasPrefix(lines[0], "auth "):
			io.WriteString(c, "Content-Type: command/reply\nReply-Text: +OK accepted\n\n")
		case strings.HasPrefix(lines[0], "event "):
			io.WriteString(c, "Content-Type: command/reply\nReply-Text: +OK event listener enabled plain\n\n")
		default:
			s.answer(lines[0], c)
		}
	}
}

func plainEvent(name, uuid string) string {
	body := fmt.Sprintf("Event-Name: %s\nUnique-ID: %s\n\n", name, uuid)
	return fmt.Sprintf("Content-Length: %d\nContent-Type: text/event-plain\n\n%s", len(body), body)
}

// Events that arrive while a command waits for its reply go to the handler;
// the reply goes to the command.
func TestEventsWhileCommandWaits(t *testing.T) {
	t.Parallel()
	s := newScripted(t, func(cmd string, w io.Writer) {
		if cmd == "api uuid_dump x" {
			io.WriteString(w, plainEvent("CHANNEL_ANSWER", "a"))
			io.WriteString(w, plainEvent("CHANNEL_HANGUP_COMPLETE", "a"))
			body := "Event-Name: CHANNEL_DATA\nUnique-ID: x\n"
			fmt.Fprintf(w, "Content-Type: api/response\nContent-Length: %d\n\n%s", len(body), body)
		}
	})
	rec := &recorder{}
	c := startClient(t, ClientSettings{}, s.ln.Addr().String(), "ClueCon", rec, nil)
	require.Eventually(t, c.Connected, 5*time.Second, 10*time.Millisecond)
	h, err := NewCommands("fs1", c).Dump(context.Background(), "x")
	require.NoError(t, err)
	assert.Equal(t, "x", h["Unique-ID"])
	require.Eventually(t, func() bool { _, ev := rec.snapshot(); return len(ev) == 2 }, 2*time.Second, 10*time.Millisecond)
	_, ev := rec.snapshot()
	assert.Equal(t, "CHANNEL_ANSWER", ev[0].Name)
	assert.Equal(t, "CHANNEL_HANGUP_COMPLETE", ev[1].Name)
}

// Garbage from FreeSWITCH: a clear log line, the connection is dropped and made
// again, nothing panics.
func TestGarbageFromSwitch(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	cases := map[string]string{
		"unknown content type":  "Content-Type: text/garbage\nContent-Length: 3\n\nabc",
		"header without colon":  "Content-Type: api/response\nnonsense line\n\n",
		"wrong content length":  "Content-Type: api/response\nContent-Length: 2\n\n+OK Success\n",
		"huge body":             "Content-Type: api/response\nContent-Length: 1000000000000\n\n",
		"event header no colon": "Content-Length: 20\nContent-Type: text/event-plain\n\nno colon in here!!\n\n",
	}
	for name, garbage := range cases {
		t.Run(name, func(t *testing.T) {
			s := newScripted(t, func(cmd string, w io.Writer) {
				if strings.HasPrefix(cmd, "api garbage") {
					io.WriteString(w, garbage)
				} else {
					io.WriteString(w, "Content-Type: api/response\nContent-Length: 4\n\n+OK\n")
				}
			})
			var logs syncbuf.Buffer
			rec := &recorder{}
			c := startClient(t, set, s.ln.Addr().String(), "ClueCon", rec, &logs)
			require.Eventually(t, c.Connected, 5*time.Second, 10*time.Millisecond)
			c.API(context.Background(), "garbage now")
			require.Eventually(t, func() bool { n, _ := rec.snapshot(); return n >= 2 && c.Connected() }, 10*time.Second, 10*time.Millisecond,
				"no reconnect; log:\n%s", logs.String())
			assert.Contains(t, logs.String(), "lost the connection to FreeSWITCH")
			assert.Contains(t, logs.String(), "esl protocol error")
			out, err := c.API(context.Background(), "status")
			require.NoError(t, err, "the new connection works")
			assert.Equal(t, "+OK", out)
		})
	}
}

// Garbage from one switch leaves the connection to another alone.
func TestGarbageLeavesOtherSwitchesAlone(t *testing.T) {
	t.Parallel()
	set := fastBackoff()
	bad := newScripted(t, func(cmd string, w io.Writer) { io.WriteString(w, "Content-Type: text/garbage\n\n") })
	sw := fssim.NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	defer sw.Close()
	good := startClient(t, set, sw.Addr(), "ClueCon", &recorder{}, nil)
	broken := startClient(t, set, bad.ln.Addr().String(), "ClueCon", &recorder{}, nil)
	require.Eventually(t, func() bool { return good.Connected() && broken.Connected() }, 5*time.Second, 10*time.Millisecond)
	for i := 0; i < 5; i++ {
		broken.API(context.Background(), "anything")
		_, err := good.API(context.Background(), "status")
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { broken.API(context.Background(), "again"); return broken.Reconnects.Load() >= 2 }, 5*time.Second, 10*time.Millisecond)
	assert.Zero(t, good.Reconnects.Load())
	assert.True(t, good.Connected())
}
