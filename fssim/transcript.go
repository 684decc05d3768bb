package fssim

import (
	"bytes"
	"fmt"
	"os"
	"regexp"
	"strconv"
)

// Write is one write recorded on an event socket: "===== S->C t=0.001s (54
// bytes) =====" and exactly those bytes.
type Write struct {
	FromServer bool
	Data       []byte
}

var writeHead = regexp.MustCompile(`(?m)^===== (S->C|C->S) t=[0-9.]+s \((\d+) bytes\) =====\n`)

// ReadTranscript splits a recorded ESL session (../shared/freeswitch/captures)
// into its writes, byte for byte.
func ReadTranscript(path string) ([]Write, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []Write
	for {
		loc := writeHead.FindSubmatchIndex(raw)
		if loc == nil {
			break
		}
		n, _ := strconv.Atoi(string(raw[loc[4]:loc[5]]))
		start := loc[1]
		if start+n > len(raw) {
			return nil, fmt.Errorf("%s: a write runs past the end", path)
		}
		out = append(out, Write{FromServer: string(raw[loc[2]:loc[3]]) == "S->C", Data: raw[start : start+n]})
		raw = raw[start+n:]
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no recorded writes", path)
	}
	return out, nil
}

// ServerBytes is everything the server side wrote, in order.
func ServerBytes(writes []Write) []byte {
	var b bytes.Buffer
	for _, w := range writes {
		if w.FromServer {
			b.Write(w.Data)
		}
	}
	return b.Bytes()
}
