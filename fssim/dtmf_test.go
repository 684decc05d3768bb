package fssim

import (
	"bufio"
	"fmt"
	"io"
	"net/textproto"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readMessage reads one ESL message: its headers and body.
func readMessage(t *testing.T, r *bufio.Reader) (textproto.MIMEHeader, string) {
	t.Helper()
	h, err := textproto.NewReader(r).ReadMIMEHeader()
	require.NoError(t, err)
	n, _ := strconv.Atoi(h.Get("Content-Length"))
	body := make([]byte, n)
	_, err = io.ReadFull(r, body)
	require.NoError(t, err)
	return h, string(body)
}

// uuid_send_dtmf: the recorded reply, then one DTMF event per digit with the
// recorded headers in the recorded order, the digit URL-encoded, the
// duration in samples at 8 kHz (@ms or 250 ms).
func TestDTMFLooksRecorded(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../testdata/dtmf/send_dtmf_12hash.plain.txt")
	require.NoError(t, err)
	_, recorded := readMessage(t, bufio.NewReader(strings.NewReader(string(raw))))

	sw := NewSwitch("ClueCon", nil)
	require.NoError(t, sw.Listen("127.0.0.1:0"))
	t.Cleanup(sw.Close)
	c, r := dialESL(t, sw.Addr())
	readMessage(t, r)
	io.WriteString(c, "auth ClueCon\n\nevent plain DTMF\n\n")
	readMessage(t, r)
	readMessage(t, r)
	call := sw.Answer(CallOptions{Name: "loopback/9000-b", Dest: "9000"})
	for _, tc := range []struct {
		data     string
		digits   []string
		duration string
	}{{"12#", []string{"1", "2", "%23"}, "2000"}, {"9ad0@400", []string{"9", "A", "D", "0"}, "3200"}, {"*x", []string{"*"}, "2000"}} {
		fmt.Fprintf(c, "api uuid_send_dtmf %s %s\n\n", call.UUID, tc.data)
		h, body := readMessage(t, r)
		require.Equal(t, "api/response", h.Get("Content-Type"))
		assert.Equal(t, fmt.Sprintf("+OK %s sent DTMF %s.\n", call.UUID, tc.data), body)
		for _, d := range tc.digits {
			h, body := readMessage(t, r)
			require.Equal(t, "text/event-plain", h.Get("Content-Type"))
			assert.Equal(t, names(recorded), names(body))
			ev := map[string]string{}
			for _, line := range strings.Split(body, "\n") {
				if k, v, ok := strings.Cut(line, ": "); ok {
					ev[k] = v
				}
			}
			assert.Equal(t, "DTMF", ev["Event-Name"])
			assert.Equal(t, call.UUID, ev["Unique-ID"])
			assert.Equal(t, d, ev["DTMF-Digit"])
			assert.Equal(t, tc.duration, ev["DTMF-Duration"])
			assert.Equal(t, "UNKNOWN", ev["DTMF-Source"])
		}
	}
	for args, want := range map[string]string{
		"":                                       "-USAGE: <uuid> <dtmf_data>\n",
		"00000000-0000-0000-0000-000000000000 1": "-ERR Cannot locate session!\n",
	} {
		fmt.Fprintf(c, "api uuid_send_dtmf %s\n\n", args)
		_, body := readMessage(t, r)
		assert.Equal(t, want, body)
	}
}
