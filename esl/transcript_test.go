package esl

import (
	"bytes"
	"os"
	"regexp"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

const captures = "../../shared/freeswitch/captures/"

// chunk is one recorded write: "===== S->C t=0.001s (54 bytes) =====" and the bytes.
type chunk struct {
	fromServer bool
	data       []byte
}

var chunkHead = regexp.MustCompile(`(?m)^===== (S->C|C->S) t=[0-9.]+s \((\d+) bytes\) =====\n`)

// readTranscript splits a recorded session into its writes, byte for byte.
func readTranscript(t testing.TB, path string) []chunk {
	t.Helper()
	raw, err := os.ReadFile(captures + path)
	require.NoError(t, err)
	var out []chunk
	for {
		loc := chunkHead.FindSubmatchIndex(raw)
		if loc == nil {
			break
		}
		n, _ := strconv.Atoi(string(raw[loc[4]:loc[5]]))
		start := loc[1]
		require.LessOrEqual(t, start+n, len(raw), "%s: chunk runs past the end", path)
		out = append(out, chunk{fromServer: string(raw[loc[2]:loc[3]]) == "S->C", data: raw[start : start+n]})
		raw = raw[start+n:]
	}
	require.NotEmpty(t, out)
	return out
}

// serverStream is everything FreeSWITCH sent in a transcript.
func serverStream(t testing.TB, path string) []byte {
	var b bytes.Buffer
	for _, c := range readTranscript(t, path) {
		if c.fromServer {
			b.Write(c.data)
		}
	}
	return b.Bytes()
}
