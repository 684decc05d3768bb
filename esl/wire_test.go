package esl

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/third_party/eslgo"
	"github.com/mediafork/mediafork/third_party/eslgo/command"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/internal/settings"
)

// replay plays FreeSWITCH's side of a recorded session on c: each recorded
// server write is written as recorded, each recorded client write is where one
// command (lines up to a blank one) is read from mediafork. After the
// transcript it keeps reading until mediafork closes (after a disconnect
// notice, as FreeSWITCH does, it closes its side first). It returns every byte
// mediafork sent, one entry per command, the bytes after the last command (if
// any) as a last entry.
func replay(c net.Conn, writes []fssim.Write) []string {
	defer c.Close()
	r := bufio.NewReader(c)
	var got []string
	readCommand := func() bool {
		var cmd strings.Builder
		for {
			line, err := r.ReadString('\n')
			cmd.WriteString(line)
			if err != nil {
				if cmd.Len() > 0 {
					got = append(got, cmd.String())
				}
				return false
			}
			if strings.TrimRight(line, "\r\n") == "" && strings.TrimSpace(cmd.String()) != "" {
				got = append(got, cmd.String())
				return true
			}
		}
	}
	for _, w := range writes {
		if w.FromServer {
			if _, err := c.Write(w.Data); err != nil {
				return got
			}
			continue
		}
		if !readCommand() {
			return got
		}
	}
	if last := writes[len(writes)-1]; last.FromServer && bytes.Contains(last.Data, []byte(TypeDisconnect)) {
		// FreeSWITCH closes after its disconnect notice; still read what
		// mediafork sends until it closes too.
		if tcp, ok := c.(*net.TCPConn); ok {
			tcp.CloseWrite()
		}
	}
	rest, _ := io.ReadAll(r)
	if len(rest) > 0 {
		got = append(got, string(rest))
	}
	return got
}

// replayServer plays the server's side of script to the first connection
// on a loopback port; sent delivers what the client wrote (closed without
// a connection).
func replayServer(t *testing.T, script []fssim.Write) (addr string, sent <-chan []string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	out := make(chan []string, 1)
	go func() {
		c, aerr := ln.Accept()
		if aerr != nil {
			close(out)
			return
		}
		out <- replay(c, script)
	}()
	return ln.Addr().String(), out
}

// commandLine is a recorded client write as a command line.
func commandLine(w fssim.Write) string { return strings.TrimSpace(string(w.Data)) }

// The bytes mediafork sends on an inbound connection, against the recorded
// session: auth, the subscription, then the api and bgapi commands the
// recording has, each byte for byte as mediafork has always sent them
// (eslgo's "\r\n\r\n" after each, and "api <name> " with a space when the
// command has no arguments). The recorded events reach the handler in order.
func TestInboundWireBytes(t *testing.T) {
	t.Parallel()
	writes := readTranscript(t, "esl/inbound_session.txt")
	// Up to `noevents`, which mediafork never sends.
	var script []fssim.Write
	for _, w := range writes {
		if !w.FromServer && commandLine(w) == "noevents" {
			break
		}
		script = append(script, w)
	}
	addr, sent := replayServer(t, script)

	rec := &recorder{}
	ctx, cancel := context.WithCancel(context.Background())
	c, err := NewClient("fs1", addr, "ClueCon", rec, ClientSettings{}, discardLog())
	require.NoError(t, err)
	done := make(chan struct{})
	go func() { defer close(done); c.Run(ctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, c.Connected, 5*time.Second, 5*time.Millisecond)

	want := []string{"auth ClueCon\r\n\r\n", "event plain " + strings.Join(SubscribedEvents, " ") + "\r\n\r\n"}
	for _, w := range script[4:] { // after auth and the subscription
		if w.FromServer {
			continue
		}
		line := commandLine(w)
		verb, rest, _ := strings.Cut(line, " ")
		name, args, _ := strings.Cut(rest, " ")
		switch verb {
		case "api":
			c.API(context.Background(), rest) // the answer is FreeSWITCH's; -ERR is fine
		case "bgapi":
			c.mu.Lock()
			conn := c.conn
			c.mu.Unlock()
			_, err := conn.Send(context.Background(), command.API{Command: name, Arguments: args, Background: true})
			require.NoError(t, err)
		default:
			t.Fatalf("unexpected recorded command %q", line)
		}
		want = append(want, verb+" "+name+" "+args+"\r\n\r\n")
	}
	require.Len(t, want, 14, "the recording has auth, event and 12 commands before noevents")
	recorded := serverEvents(t, script)
	require.Len(t, recorded, 7)
	require.Eventually(t, func() bool { _, ev := rec.snapshot(); return len(ev) == len(recorded) }, 5*time.Second, 5*time.Millisecond)
	cancel()
	<-done
	got := <-sent
	assert.Equal(t, want, got)

	_, handled := rec.snapshot()
	assert.Equal(t, byLane(recorded), byLane(handled), "every recorded event, in order in its lane")
}

// byLane lists events as "name uuid", per lane.
func byLane(events []*Event) [lanes][]string {
	var out [lanes][]string
	for _, e := range events {
		out[laneOf(e)] = append(out[laneOf(e)], e.Name+" "+e.UUID())
	}
	return out
}

// serverEvents are the events in a script's server writes, in order.
func serverEvents(t *testing.T, script []fssim.Write) []*Event {
	r := bufio.NewReader(bytes.NewReader(fssim.ServerBytes(script)))
	var out []*Event
	for {
		m, err := ReadMessage(r)
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		if m.ContentType() == TypeEventPlain {
			e, err := ParseEvent(m.Body)
			require.NoError(t, err)
			out = append(out, e)
		}
	}
}

// The bytes mediafork sends on an outbound socket, against the recorded
// connect/resume/fork/exit session: `connect`, `resume`, the api command, `exit`,
// nothing else (no auth, no subscription), each byte for byte as mediafork has
// always sent them; and it closes once FreeSWITCH has said goodbye.
func TestOutboundWireBytes(t *testing.T) {
	t.Parallel()
	writes := readTranscript(t, "extra/outbound_connect_resume_fork_exit.txt")
	fork := commandLine(writes[4])
	require.True(t, strings.HasPrefix(fork, "api uuid_audio_fork "), fork)
	handled := make(chan error, 1)
	var data map[string]string
	o := startOutbound(t, OutboundSettings{}, func(ctx context.Context, call *OutboundCall) {
		data = call.Data
		if err := call.Resume(ctx); err != nil {
			handled <- err
			return
		}
		_, err := call.API(ctx, strings.TrimPrefix(fork, "api "))
		handled <- err
	}, nil)
	c, err := net.Dial("tcp", o.Addr().String())
	require.NoError(t, err)
	got := replay(c, writes)
	require.NoError(t, <-handled)
	assert.Equal(t, []string{"connect\r\n\r\n", "resume\r\n\r\n", fork + "\r\n\r\n", "exit\r\n\r\n"}, got)
	assert.Equal(t, "04e07857-5dec-4c13-a44c-6ee605e3f343", data["Unique-Id"], "header names as eslgo gives them")
	assert.Equal(t, "+OK\n", data["Reply-Text"], "values decoded")
	require.Eventually(t, func() bool { return o.Active() == 0 }, 5*time.Second, 5*time.Millisecond)
}

// A refused password: mediafork sends its auth and gives up with ErrAuth,
// known from eslgo's typed error (not its text). eslgo sends `exit` after the
// refusal, which FreeSWITCH may or may not read before it closes: it is the
// only other thing mediafork may send.
func TestRefusedPasswordWireBytes(t *testing.T) {
	t.Parallel()
	writes := readTranscript(t, "esl/auth_bad_password.txt")
	addr, sent := replayServer(t, writes)
	up, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	_, _, err = open(context.Background(), up, connConfig{settings: resolved(t, ConnSettings{}), password: "WrongPass", log: discardLog()})
	got := <-sent
	require.NotEmpty(t, got)
	assert.Equal(t, "auth WrongPass\r\n\r\n", got[0])
	if len(got) > 1 {
		assert.Equal(t, []string{"exit\r\n\r\n"}, got[1:])
	}
	assert.ErrorIs(t, err, ErrAuth)
	assert.ErrorIs(t, err, eslgo.ErrAuthFailed)
	assert.NotContains(t, err.Error(), "WrongPass")
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// resolved is set with its defaults filled in, as a Client or Outbound gives
// it to open.
func resolved(t *testing.T, set ConnSettings) ConnSettings {
	c := settings.New("test")
	set.resolve(c)
	require.NoError(t, c.Err())
	return set
}
