package esl

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/transport/udp"
)

func recordedEvent(t *testing.T, path string) *Event {
	t.Helper()
	raw, err := os.ReadFile(captures + path)
	require.NoError(t, err)
	e, err := ParseEvent(raw)
	require.NoError(t, err)
	return e
}

// Events recorded from a real FreeSWITCH with both modules become the domain's
// events; the ones mediafork does not act on become none.
func TestRecordedEventsAreTyped(t *testing.T) {
	t.Parallel()
	cases := []struct {
		file string
		want mediafork.CallEvent // nil: not acted on
	}{
		{"samples/CHANNEL_HANGUP_COMPLETE.plain.txt", nil}, // checked below: its uuid
		{"samples/mod_audio_fork__connect.plain.txt", mediafork.MediaConnected{}},
		{"samples/mod_audio_fork__connect_failed.plain.txt", mediafork.MediaConnectFailed{Reason: "Unable to connect"}},
		{"samples/mod_audio_fork__disconnect_farend_close.plain.txt", mediafork.MediaDisconnected{Reason: "disconnected"}},
		{"samples/mod_audio_fork__json.plain.txt", nil},
		{"samples/mod_audio_fork__transcription.plain.txt", nil},
		{"audio_stream/samples/mod_audio_stream__connect.plain.txt", mediafork.MediaConnected{}},
		{"audio_stream/samples/mod_audio_stream__error_connection_refused.plain.txt",
			mediafork.MediaConnectFailed{Reason: "error 6: Connection refused (system error 111)"}},
		{"audio_stream/samples/mod_audio_stream__error_abnormal_eof.plain.txt",
			mediafork.MediaDisconnected{Reason: "error 1: Connection closed without WebSocket CLOSE (abnormal EOF)"}},
		{"audio_stream/samples/mod_audio_stream__disconnect_server_close.plain.txt",
			mediafork.MediaDisconnected{Reason: "closed 1000 server closing"}},
		{"audio_stream/samples/mod_audio_stream__json.plain.txt", nil},
		{"audio_stream/samples/mod_audio_stream__play.plain.txt", mediafork.TalkbackFileReady{
			File: "/tmp/2b39df39-bc73-4129-b6cc-c67b417b122c_0.tmp.r8", Rate: 8000}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			e := recordedEvent(t, tc.file)
			got, ok := CallEvent(e)
			if strings.HasSuffix(tc.file, "HANGUP_COMPLETE.plain.txt") {
				require.True(t, ok)
				assert.Equal(t, mediafork.CallHungUp{UUID: mediafork.CallID(e.UUID())}, got)
				return
			}
			if tc.want == nil {
				assert.False(t, ok, "%#v", got)
				return
			}
			require.True(t, ok)
			uuid := mediafork.CallID(e.UUID())
			want := tc.want
			switch w := want.(type) {
			case mediafork.MediaConnected:
				w.UUID = uuid
				want = w
			case mediafork.MediaConnectFailed:
				w.UUID = uuid
				want = w
			case mediafork.MediaDisconnected:
				// When the switch saw the connection end: the recording's
				// own timestamp.
				us, err := strconv.ParseInt(e.Get("Event-Date-Timestamp"), 10, 64)
				require.NoError(t, err)
				w.UUID, w.At = uuid, time.UnixMicro(us)
				require.False(t, w.At.IsZero())
				want = w
			case mediafork.TalkbackFileReady:
				w.UUID = uuid
				want = w
			}
			assert.Equal(t, want, got)
			assert.Contains(t, SubscribedEvents, e.Subclass(), "subscribed to")
		})
	}
	e := recordedEvent(t, "samples/CHANNEL_ANSWER.plain.txt")
	got, ok := CallEvent(e)
	require.True(t, ok)
	assert.Equal(t, mediafork.CallID(e.UUID()), got.(mediafork.CallAnswered).Data.UUID())
	assert.Contains(t, SubscribedEvents, AudioStreamError, "the client subscribes to the authoritative list")
}

// fs_cli's alias reaches mediafork as an API event of echo; other API events
// and a channel event with a bad uuid are not acted on.
func TestAliasAndOddEvents(t *testing.T) {
	t.Parallel()
	api := func(cmd, arg string) *Event {
		return &Event{Name: EventAPI, Headers: map[string]string{"API-Command": cmd, "API-Command-Argument": arg}}
	}
	got, ok := CallEvent(api("echo", AliasMarker+" start u1  analytics"))
	require.True(t, ok)
	assert.Equal(t, mediafork.CLICommand{Args: []string{"start", "u1", "analytics"}}, got)
	for _, e := range []*Event{
		api("echo", "hello"), api("status", ""), api("echo", "[other] start"),
		{Name: EventChannelHangupComplete, Headers: map[string]string{"Unique-ID": "a b"}},
		{Name: EventChannelAnswer, Headers: map[string]string{"Unique-ID": "a\nb"}},
		{Name: EventCustom, Headers: map[string]string{"Unique-ID": "a b", "Event-Subclass": AudioForkConnectFailed}},
		{Name: EventBackgroundJob, Headers: map[string]string{}},
		{Name: EventCustom, Headers: map[string]string{"Unique-ID": "u1", "Event-Subclass": AudioStreamError}, Body: []byte("not json")},
	} {
		got, ok := CallEvent(e)
		if e.Subclass() == AudioStreamError {
			assert.Equal(t, mediafork.MediaDisconnected{UUID: "u1", Reason: "error 0: not json"}, got, "an unreadable error is a lost connection")
			continue
		}
		assert.False(t, ok, "%+v: %#v", e, got)
	}
	assert.Equal(t, "echo [mediafork]", AliasCommand)
}

// scriptRunner is a switch's api in memory: it records command lines and
// answers by command prefix (+OK otherwise).
type scriptRunner struct {
	mu      sync.Mutex
	lines   []string
	answers map[string][]string // prefix -> replies in order (the last one repeats)
	sent    chan string
}

func newScriptRunner() *scriptRunner {
	return &scriptRunner{answers: map[string][]string{}, sent: make(chan string, 1000)}
}

// script sets the replies to commands starting with prefix.
func (r *scriptRunner) script(prefix string, replies ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.answers[prefix] = replies
}

func (r *scriptRunner) API(_ context.Context, cmd string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, cmd)
	r.sent <- cmd
	for prefix, replies := range r.answers {
		if strings.HasPrefix(cmd, prefix) {
			reply := replies[0]
			if len(replies) > 1 {
				r.answers[prefix] = replies[1:]
			}
			if strings.HasPrefix(reply, "-") {
				return reply, fmt.Errorf("%s", reply)
			}
			return reply, nil
		}
	}
	return "+OK", nil
}

func (r *scriptRunner) expect(t *testing.T, re string) string {
	t.Helper()
	select {
	case cmd := <-r.sent:
		require.Regexp(t, "^"+re, cmd)
		return cmd
	case <-time.After(5 * time.Second):
		t.Fatalf("no command %s", re)
		return ""
	}
}

// mod_audio_stream on the control side, from the recorded events to the exact
// command lines: a rule's fork, a connect error retried (stop first), a TCP
// drop, a start refused because the stream is still attached, fs_cli's start.
func TestAudioStreamControl(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	reg := mediafork.NewRegistry(udp.New(), 10, true, quiet)
	signer := mediafork.NewSigner([]byte("k"))
	p := &mediafork.Policy{IngestURL: "ws://127.0.0.1:8090", BugName: "mediafork", RetryAttempts: 3,
		Defaults: mediafork.Params{Mix: mediafork.Stereo, Rate: 8000, Encoding: mediafork.L16, FrameMs: 20},
		Destinations: &mediafork.Destinations{Allow: nil, Profiles: map[string]mediafork.Profile{
			"analytics": {Endpoints: []string{"127.0.0.1:9000"}, Params: mediafork.Params{Mix: mediafork.Mono, Rate: 16000, Encoding: mediafork.L16, FrameMs: 20}}}},
		Rules: []mediafork.Rule{{Name: "all", Match: map[string]*regexp.Regexp{"Unique-ID": regexp.MustCompile(".")}, Profile: "analytics",
			Params: mediafork.Params{Mix: mediafork.Mono, Rate: 16000, Encoding: mediafork.L16, FrameMs: 20}}}}
	o := mediafork.NewOrchestrator(reg, signer, p, quiet)
	defer o.Close()
	run := newScriptRunner()
	run.script("show channels", `{"row_count":0}`)
	sw := NewSwitch(mediafork.ModuleAudioStream, NewCommands("fs1", run))
	ctx := context.Background()
	o.SwitchUp(ctx, sw)
	run.expect(t, "show channels as json")

	answer := recordedEvent(t, "samples/CHANNEL_ANSWER.plain.txt")
	uuid := answer.UUID()
	ev, _ := CallEvent(answer)
	o.HandleEvent(ctx, "fs1", ev)
	start := `uuid_audio_stream ` + uuid + ` start ws://127\.0\.0\.1:8090/fork/` + uuid + `\?cred=\S+ mono 16000 \{"channel_id":"[^"']+","exten":"\d+","caller_id":"\d+","called_id":"\d+","mediafork":"[A-Za-z0-9_-]+"\}$`
	line := run.expect(t, start)
	f := strings.Fields(line)
	u, err := url.Parse(f[3])
	require.NoError(t, err)
	pass, err := signer.Verify(u.Query().Get("cred"), mediafork.CallID(uuid), time.Now())
	require.NoError(t, err)
	var meta map[string]string
	require.NoError(t, json.Unmarshal([]byte(f[6]), &meta))
	spec, err := pass.Open(meta[mediafork.DescriptionKey])
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:9000", spec.Addrs()[0].String())

	// Recorded events carry the recording's uuid: point them at this call.
	onCall := func(file string) mediafork.CallEvent {
		e := recordedEvent(t, file)
		e.Headers["Unique-ID"] = uuid
		ev, ok := CallEvent(e)
		require.True(t, ok)
		return ev
	}
	o.HandleEvent(ctx, "fs1", onCall("audio_stream/samples/mod_audio_stream__error_connection_refused.plain.txt"))
	run.expect(t, `uuid_audio_stream `+uuid+` stop$`)
	run.expect(t, start)
	o.HandleEvent(ctx, "fs1", onCall("audio_stream/samples/mod_audio_stream__error_abnormal_eof.plain.txt")) // nothing in this registry
	run.expect(t, `uuid_audio_stream `+uuid+` stop$`)
	run.expect(t, start)

	// The stream is still attached (a server close leaves it): stop, start.
	// A refused start stops it only when a mediafork fork streamed on the
	// channel (mediafork_stream_id set): it is asked with uuid_dump.
	run.script("uuid_audio_stream "+uuid+" start", ReplyOperationFailed, "+OK Success")
	run.script("uuid_dump", "Unique-ID: "+uuid+"\nvariable_mediafork_stream_id: 77\n")
	o.HandleEvent(ctx, "fs1", onCall("audio_stream/samples/mod_audio_stream__disconnect_server_close.plain.txt"))
	run.expect(t, `uuid_audio_stream `+uuid+` stop$`)
	run.expect(t, start)
	run.expect(t, "uuid_dump "+uuid+"$")
	run.expect(t, `uuid_audio_stream `+uuid+` stop$`)
	run.expect(t, start)

	// fs_cli, the same way.
	o.HandleEvent(ctx, "fs1", mediafork.CallHungUp{UUID: mediafork.CallID(uuid)})
	run.script("uuid_dump", "Unique-ID: "+uuid+"\nChannel-Name: loopback/9000-b\n")
	o.HandleEvent(ctx, "fs1", mediafork.CLICommand{Args: []string{"start", uuid, "analytics"}})
	run.expect(t, "uuid_dump "+uuid+"$")
	run.expect(t, `uuid_audio_stream `+uuid+` start \S+ mono 16000 \{"channel_id":"loopback/9000-b","mediafork":"[A-Za-z0-9_-]+"\}$`)
	run.expect(t, "log NOTICE mediafork: fork "+uuid+" requested")
	o.HandleEvent(ctx, "fs1", mediafork.CLICommand{Args: []string{"stop", uuid}})
	run.expect(t, `uuid_audio_stream `+uuid+` stop$`)
	run.expect(t, "log NOTICE mediafork: fork "+uuid+" stopped")
}
