package esl

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/syncbuf"
)

// Issue 20 finding 8: the outbound socket took header blocks of any size in
// the `connect` reply (4,096 lines of 64 KiB each): 8 peers answering with
// 8 MB of headers each grew the daemon by 152 MB. A real reply is a few KB
// (3,580 bytes recorded; 3,630 from the real switch, 110 lines): past
// MaxHeaderBytes (64 KiB) the socket is closed, logged and counted, never
// handed to the handler, and what it cost is about the bound, not the block:
// the 8 connections here allocate a few MB in all.
//
// Not parallel: it counts the bytes the whole process allocates.
func TestOutboundConnectReplyHeaderBlockIsBounded(t *testing.T) {
	const peers, lineBytes, lines = 8, 2048, 4000 // 8 MB a peer, under the 4,096-line cap
	var block strings.Builder
	block.WriteString("Content-Type: command/reply\nReply-Text: +OK\n")
	value := strings.Repeat("x", lineBytes-24)
	for i := range lines {
		fmt.Fprintf(&block, "Variable-H%07d: %s\n", i, value)
	}
	block.WriteString("\n")
	reply := []byte(block.String())
	require.Greater(t, len(reply), 8_000_000)

	var logs syncbuf.Buffer
	called := make(chan struct{}, peers)
	o := startOutbound(t, OutboundSettings{}, func(context.Context, *OutboundCall) { called <- struct{}{} }, &logs)
	conns := make([]net.Conn, peers)
	for i := range conns {
		c, r := dialOutbound(t, o)
		r.ReadString('\n') // the blank line ending `connect`
		conns[i] = c
	}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			c.Write(reply) // cut short when mediafork closes
		}()
	}
	for _, c := range conns {
		// Closed by mediafork, with our bytes unread: a reset. The deadline
		// only bounds a failure.
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if !errors.Is(err, syscall.ECONNRESET) {
			require.NoError(t, err, "not closed")
		}
	}
	wg.Wait()
	runtime.ReadMemStats(&after)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated while %d peers sent %d-byte header blocks: %d bytes", peers, len(reply), allocated)
	assert.Less(t, allocated, uint64(16<<20), "the process allocated for the blocks")
	assert.Empty(t, called, "no such socket reaches the handler")
	require.Eventually(t, func() bool { return o.Active() == 0 }, 5*time.Second, time.Millisecond)
	assert.Equal(t, uint64(peers), o.HeadersTooBig.Load())
	assert.Equal(t, peers, strings.Count(logs.String(), "header block too big: over 65536 bytes"), logs.String())

	// A real connect reply, recorded from FreeSWITCH, is served.
	c, r := dialOutbound(t, o)
	r.ReadString('\n')
	_, err := c.Write(readTranscript(t, "extra/outbound_connect_resume_fork_exit.txt")[1].Data)
	require.NoError(t, err)
	select {
	case <-called:
	case <-time.After(5 * time.Second):
		t.Fatal("a real connect reply did not reach the handler")
	}
	assert.Equal(t, uint64(peers), o.HeadersTooBig.Load())
}

// The bound is on the block's bytes: its lines, their line breaks and the
// blank line ending it, up to MaxHeaderBytes exactly; blank lines before a
// message are not its.
func TestHeaderBlockBoundIsExact(t *testing.T) {
	t.Parallel()
	block := "Content-Type: command/reply\nReply-Text: +OK\nX: " + strings.Repeat("y", 100) + "\n\n"
	n := len(block) // the blank line ending it included
	for _, tc := range []struct {
		max int
		ok  bool
	}{{n, true}, {n + 1, true}, {n - 1, false}, {10, false}, {0, true}} {
		_, err := readMessage(bufio.NewReader(strings.NewReader("\n\n"+block)), tc.max)
		if tc.ok {
			assert.NoError(t, err, "bound %d", tc.max)
		} else {
			assert.ErrorIs(t, err, ErrHeaderBlockTooBig, "bound %d", tc.max)
			assert.ErrorIs(t, err, ErrProtocol)
		}
	}
}
