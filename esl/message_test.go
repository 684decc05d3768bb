package esl

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var transcripts = []string{
	"esl/inbound_session.txt",
	"esl/auth_bad_password.txt",
	"extra/inbound_alias_api_log_setvar.txt",
	"extra/outbound_connect_resume_fork_exit.txt",
	"outbound/outbound_transcript.txt",
	"t01_stereo_8k/esl_transcript.txt",
	"t16_tcp_drop/esl_transcript.txt",
}

// Every message FreeSWITCH really sent parses, and parses whole.
func TestReadMessageRecordedSessions(t *testing.T) {
	t.Parallel()
	for _, path := range transcripts {
		t.Run(path, func(t *testing.T) {
			stream := serverStream(t, path)
			r := bufio.NewReader(bytes.NewReader(stream))
			var total int
			kinds := map[string]int{}
			for {
				m, err := ReadMessage(r)
				if err == io.EOF {
					break
				}
				require.NoError(t, err, "after %d bytes", total)
				total += len(m.Raw)
				kinds[m.ContentType()]++
				if m.ContentType() == TypeEventPlain {
					e, err := ParseEvent(m.Body)
					require.NoError(t, err)
					assert.NotEmpty(t, e.Name)
				}
			}
			assert.NotEmpty(t, kinds)
			t.Logf("%v", kinds)
		})
	}
}

func TestRecordedEventsDecode(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(captures + "samples/mod_audio_fork__connect_failed.plain.txt")
	require.NoError(t, err)
	e, err := ParseEvent(raw)
	require.NoError(t, err)
	assert.Equal(t, "CUSTOM", e.Name)
	assert.Equal(t, "mod_audio_fork::connect_failed", e.Subclass(), "URL-decoded")
	assert.Equal(t, "fd00::2", e.Get("FreeSWITCH-IPv6"))
	assert.Equal(t, "301f568c-5b18-4bf6-a56b-06a86c11ad22", e.UUID())
	assert.Equal(t, `{"reason":"Unable to connect"}`, string(e.Body))
	assert.Equal(t, "tone_stream://%(2000,0,1000);loops=-1", e.Get("variable_current_application_data"))
	assert.Equal(t, "Event-Subclass", e.Order[0], "the subclass comes first")

	raw, err = os.ReadFile(captures + "samples/CHANNEL_ANSWER.plain.txt")
	require.NoError(t, err)
	e, err = ParseEvent(raw)
	require.NoError(t, err)
	assert.Equal(t, "CHANNEL_ANSWER", e.Name)
	assert.Equal(t, "Outbound Call", e.Get("Caller-Callee-ID-Name"))
	assert.Empty(t, e.Body)
}

// The outbound connect reply: one header block, no Content-Length, the reply
// headers at its end, Reply-Text URL-encoded.
func TestRecordedConnectReply(t *testing.T) {
	t.Parallel()
	chunks := readTranscript(t, "extra/outbound_connect_resume_fork_exit.txt")
	require.False(t, chunks[0].FromServer)
	require.Equal(t, "connect\n\n", string(chunks[0].Data))
	m, err := ReadMessage(bufio.NewReader(bytes.NewReader(chunks[1].Data)))
	require.NoError(t, err)
	assert.Equal(t, TypeReply, m.ContentType())
	assert.Equal(t, "%2BOK%0A", m.Get("Reply-Text"))
	assert.Empty(t, m.Body)
	h := ParseHeaderBlock(string(m.Raw))
	assert.Equal(t, "+OK\n", h["Reply-Text"])
	assert.Equal(t, "04e07857-5dec-4c13-a44c-6ee605e3f343", h["Unique-ID"])
	assert.Equal(t, "loopback/9101-b", h["Channel-Name"])
}

func TestReadMessageRejectsGarbage(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"header without colon":   "Content-Type: api/response\nthis is not a header\n\n",
		"unknown content type":   "Content-Type: text/garbage\n\n",
		"no content type":        "Reply-Text: +OK\n\n",
		"bad content length":     "Content-Type: api/response\nContent-Length: ten\n\n",
		"negative length":        "Content-Type: api/response\nContent-Length: -4\n\n",
		"huge body":              "Content-Type: api/response\nContent-Length: 99999999999\n\n",
		"body shorter than said": "Content-Type: api/response\nContent-Length: 100\n\nshort",
		"closed inside headers":  "Content-Type: api/resp",
		"header line too long":   "Content-Type: api/response\nX: " + strings.Repeat("a", MaxHeaderLine+10) + "\n\n",
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ReadMessage(bufio.NewReader(strings.NewReader(in)))
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrProtocol), "%v", err)
		})
	}
	_, err := ParseEvent([]byte("Event-Name: X\nno colon here\n\n"))
	assert.ErrorIs(t, err, ErrProtocol)
	_, err = ParseEvent([]byte("Core-UUID: x\n\n"))
	assert.ErrorIs(t, err, ErrProtocol, "an event needs a name")
}

func FuzzReadMessage(f *testing.F) {
	for _, path := range transcripts {
		f.Add(serverStream(f, path))
	}
	f.Add([]byte("Content-Type: text/event-plain\nContent-Length: 5\n\nX: y\n"))
	f.Add([]byte("Content-Type: api/response\nContent-Length: 8388608\n\nshort"))
	f.Add([]byte("Content-Type: api/response\nContent-Length: 8388609\n\n"))
	f.Add([]byte("Content-Type: api/response\nContent-Length: 99999999999999999999999\n\n"))
	f.Add([]byte("Content-Type: text/event-plain\nContent-Length: 42\n\nEvent-Name: X\nContent-Length: 8388608\n\nab"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := bufio.NewReader(bytes.NewReader(b))
		for i := 0; i < 1000; i++ {
			m, err := ReadMessage(r)
			if err != nil {
				return
			}
			if len(m.Body) > MaxBody {
				t.Fatal("body over the limit")
			}
			if m.ContentType() == TypeEventPlain {
				ParseEvent(m.Body)
			}
		}
	})
}

// With a bound on the header block, a message is read as without one when its
// block fits, and refused as too big when it does not: never anything else.
func FuzzReadMessageBounded(f *testing.F) {
	for _, path := range transcripts {
		f.Add(serverStream(f, path), uint16(4096))
	}
	f.Add([]byte("\n\nContent-Type: command/reply\nReply-Text: +OK\n\n"), uint16(44))
	f.Add([]byte("Content-Type: command/reply\nX: "+strings.Repeat("y", 300)+"\n\n"), uint16(100))
	f.Fuzz(func(t *testing.T, b []byte, bound uint16) {
		max := int(bound)%8192 + 1
		free, limited := bufio.NewReader(bytes.NewReader(b)), bufio.NewReader(bytes.NewReader(b))
		for i := 0; i < 1000; i++ {
			want, werr := ReadMessage(free)
			got, gerr := readMessage(limited, max)
			if errors.Is(gerr, ErrHeaderBlockTooBig) {
				if werr == nil && len(want.Raw)-len(want.Body) <= max {
					t.Fatalf("a %d-byte block refused under a %d-byte bound", len(want.Raw)-len(want.Body), max)
				}
				return
			}
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("bounded: %v; unbounded: %v", gerr, werr)
			}
			if werr != nil {
				return
			}
			if !bytes.Equal(want.Raw, got.Raw) {
				t.Fatalf("bounded read %q, unbounded %q", got.Raw, want.Raw)
			}
			if n := len(got.Raw) - len(got.Body); n > max {
				t.Fatalf("a %d-byte block passed a %d-byte bound", n, max)
			}
		}
	})
}

// A Content-Length is a claim: a peer that announces a big body and sends a few
// bytes must not make us allocate the body (one such message per connection
// from a few hundred peers was hundreds of MiB).
func TestReadMessageDoesNotAllocateTheClaim(t *testing.T) {
	t.Parallel()
	claims := map[string]string{
		"message": fmt.Sprintf("Content-Type: api/response\nContent-Length: %d\n\nonly this", MaxBody),
		"event body": func() string {
			body := fmt.Sprintf("Event-Name: X\nContent-Length: %d\n\nonly this", MaxBody)
			return fmt.Sprintf("Content-Type: text/event-plain\nContent-Length: %d\n\n%s", len(body), body)
		}(),
	}
	for name, in := range claims {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			for i := 0; i < 10; i++ {
				m, err := ReadMessage(bufio.NewReader(strings.NewReader(in)))
				if err == nil && m.ContentType() == TypeEventPlain {
					_, err = ParseEvent(m.Body)
				}
				require.ErrorIs(t, err, ErrProtocol)
			}
			runtime.ReadMemStats(&after)
			allocated := after.TotalAlloc - before.TotalAlloc
			assert.Less(t, allocated, uint64(MaxBody), "10 claims of %d bytes allocated %d bytes", MaxBody, allocated)
		})
	}
	// Over the limit: refused from the header alone.
	_, err := ReadMessage(bufio.NewReader(strings.NewReader(fmt.Sprintf("Content-Type: api/response\nContent-Length: %d\n\n", MaxBody+1))))
	assert.ErrorContains(t, err, "over the")
}
