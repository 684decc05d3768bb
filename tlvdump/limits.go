package tlvdump

import (
	"fmt"
	"time"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvcodec"
)

// A receiver treats every datagram as hostile: ForkStream's format has no
// authentication, so anyone who reaches the port can send any packet. These
// bounds are the same in the Python receiver (receivers/python,
// mediafork_tlv/limits.py) and are held to the same vectors
// (testdata/tlv/hostile.json).
const (
	// MaxRate is the highest sample rate a format packet may say: what
	// mediafork sends at most (48 kHz, the highest a FreeSWITCH channel runs
	// at). A valid rate is a positive multiple of 8000 up to it.
	MaxRate = mediafork.MaxRate

	// DefaultMaxStreams is how many streams (stream id and direction) are
	// tracked at once; a new one beyond it evicts the least recently active.
	DefaultMaxStreams = 4096
	// DefaultIdleTimeout closes a stream that has sent nothing for this long:
	// its WAV file is finalised, and a packet after it (from any address)
	// opens it again in a new file.
	DefaultIdleTimeout = 10 * time.Second

	// MaxSeqJump is the largest sequence jump (either way) taken from one
	// packet: a larger one is refused, unless the next packet continues
	// from it (a sender that really skipped ahead, or restarted).
	MaxSeqJump = 3000
	// seqWindow is how many sequence numbers below the highest are
	// remembered, to tell a duplicate from a late packet.
	seqWindow = 4096

	// MaxGapFillSeconds caps the silence written for one sequence gap. The
	// silence is the gap in packets times the stream's own last packet, and
	// never more in all than the audio the file already holds: the stream's
	// own clock explains it, never a rate it claims.
	MaxGapFillSeconds = 3
	// MaxReportedGapSeconds caps the silence written for one gap a gap packet
	// (0x06) announced: more than MaxGapFillSeconds (a pause, a restart), and
	// never more than the time since the stream's last audio on the
	// receiver's clock: a sender cannot make it write faster than real time.
	MaxReportedGapSeconds = 3600
	// MoveQuiet and MoveSlack bound when a gap packet from a new source moves
	// a stream there (a stream resumed by another mediafork instance, or
	// from a new socket): its source has sent nothing for MoveQuiet, and the
	// frames the packet says are missing fit in the time since, plus
	// MoveSlack.
	MoveQuiet = 100 * time.Millisecond
	MoveSlack = time.Second
	// MaxSegments is how many WAV files one stream may make (a file per

	// format change and per return from idle).
	MaxSegments = 16
	// maxWavData keeps a WAV file's sizes inside its 32-bit header; a longer
	// stream continues in a new file.
	maxWavData = 1 << 31

	// MaxAnalysedSamples is the audio per stream kept for the summary's tone
	// analysis, and MaxAnalysedTotal for all streams together: memory and
	// the time to the summary are bounded by samples, not by rate × seconds.
	MaxAnalysedSamples = 8192
	MaxAnalysedTotal   = 1 << 20

	// maxOpenFilesCap bounds the automatic open-file limit (half the
	// process's descriptor limit, at most this).
	maxOpenFilesCap = 1024
	// maxWarnings is how many warnings one stream keeps for its summary.
	maxWarnings = 32
)

// ValidRate reports whether hz is a sample rate a receiver believes.
func ValidRate(hz int) bool { return mediafork.ValidRate(hz) }

func rateProblem(hz int) string {
	return fmt.Sprintf("rate %d Hz is not a positive multiple of 8000 up to %d", hz, MaxRate)
}

// checkFormat returns the codec of a format packet a receiver accepts, or
// why it is refused: an encoding outside the table, more than one channel,
// an impossible rate, or a frame that no datagram can carry.
func checkFormat(f *tlvcodec.Format) (mediafork.Codec, error) {
	c, ok := mediafork.CodecByCode(f.Encoding)
	switch {
	case !ok:
		return nil, fmt.Errorf("encoding code %d is not one of %s", f.Encoding, mediafork.EncodingNames())
	case f.Channels != 1:
		return nil, fmt.Errorf("%d channels: only mono is sent", f.Channels)
	case !ValidRate(int(f.SampleRate)):
		return nil, fmt.Errorf("%s", rateProblem(int(f.SampleRate)))
	case f.FrameMs == 0 || frameBytes(c, int(f.SampleRate), int(f.FrameMs)) > tlvcodec.MaxAudioPayload:
		return nil, fmt.Errorf("frame_ms %d: a frame of it does not fit one packet", f.FrameMs)
	}
	return c, nil
}

func frameBytes(c mediafork.Codec, rate, frameMs int) int {
	return rate * frameMs / 1000 * c.BytesPerSample()
}
