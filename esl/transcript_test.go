package esl

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
)

const captures = "../testdata/freeswitch/captures/"

func readTranscript(t testing.TB, path string) []fssim.Write {
	t.Helper()
	w, err := fssim.ReadTranscript(captures + path)
	require.NoError(t, err)
	return w
}

// serverStream is everything FreeSWITCH sent in a transcript.
func serverStream(t testing.TB, path string) []byte {
	return fssim.ServerBytes(readTranscript(t, path))
}
