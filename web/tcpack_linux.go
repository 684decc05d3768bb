//go:build linux

package web

import "golang.org/x/sys/unix"

// A WebSocket of tapped audio is a one-way stream: the peer writes a frame
// every 20 ms and never waits for an answer. Linux ACKs it as if it were
// interactive: a segment of exactly one MSS with PSH (every frame, here) makes
// the read that empties the queue send an ACK, one per frame — and on
// loopback an ACK sent from our read also runs the peer's receive of it inside
// our read: a third of the epoll reader's CPU at 1,000 calls (BENCHMARKS.md).
// In delayed-ACK ("ping-pong") mode, TCP_QUICKACK 0, a drained queue asks for
// no ACK and the socket ACKs every second segment, as RFC 9293 allows. The
// kernel leaves the mode when a delayed ACK's timer fires (a frame later than
// ~40 ms), so a deadline pass sets it again twice a second (ackPasses).
//
// (A clamped window, so that the arrival path rather than the read sends the
// ACK, was measured too, and gained nothing once the ACKs were halved.)

// delayAcks (re-)enters delayed-ACK mode; a failure only costs CPU.
func delayAcks(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_QUICKACK, 0)
}
