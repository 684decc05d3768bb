package mediafork

// A stream output's part in the continuity of a call's streams (issue 23).
// Its protocol has no gap message: a gap shows in its numbering, which
// follows the media clock (twilio's chunk and timestamp jump by the frames
// missing; audiofork, which numbers nothing, shows none). A fork that
// suspends closes its connection without the protocol's end (no stop, close
// 1001): the fork that resumes the call dials again and says hello again
// (twilio: connected and start with the same streamSid), as after a lost
// connection, and its numbering goes on from where the stream stood.

// Gap: no message; the numbering of the packets after it jumps.
func (o *streamOutput) Gap(Emitter, []Direction, uint32, uint32, GapReason) {}

// seek skips the Packetizer to clock (the bug's samples) on the media clock.
func (o *streamOutput) seek(clock int64, _ GapReason) {
	if n := clock/o.ratio - o.pk.Position(); n > 0 {
		o.pk.Skip(n)
		o.kick()
	}
}

// complete sends the packet under way, completed with silence: the stream
// goes on in a later fork.
func (o *streamOutput) complete() {
	if o.sh != nil {
		o.sh.Flush()
	}
	o.pk.Complete()
	o.kick()
}

// suspend has the writer send what is queued and close the connection
// without the protocol's end (idempotent).
func (o *streamOutput) suspend() {
	o.suspended.Store(true)
	o.stop(EndMediaLost)
}

// resumeAt starts the output's numbering after packet last of its stream.
func (o *streamOutput) resumeAt(r *OutputResume) {
	if r != nil {
		o.pk.Resume(r.Last)
	}
}
