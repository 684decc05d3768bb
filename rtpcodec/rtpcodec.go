// Package rtpcodec writes the RTP and RTCP packets mediafork's rtp output sends
// (RFC 3550, RFC 3551, RFC 4733): the fixed RTP header, telephone-event
// payloads, and RTCP compound packets of a sender report, a CNAME and a BYE.
// It is pure (bytes in, bytes out) and writes into the caller's buffers:
// nothing allocates, so a packet costs no garbage on the media path. (The
// pion/rtp and pion/rtcp marshallers allocate; the tests parse what this
// package writes with pion's parsers, which were written independently.)
//
// The RTP header (RFC 3550 §5.1), as PutHeader writes it: version 2, no
// padding, no extension, no CSRC:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|V=2|P|X|  CC   |M|     PT      |       sequence number         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                           timestamp                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                             SSRC                              |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// A telephone event (RFC 4733 §2.3), the whole payload of a DTMF packet:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     event     |E|R| volume    |          duration             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
package rtpcodec

import (
	"encoding/binary"
	"errors"
	"time"
)

// Sizes on the wire.
const (
	HeaderSize       = 12 // the fixed RTP header, no CSRC
	EventSize        = 4  // a telephone-event payload
	SenderReportSize = 28 // an SR with no report blocks
	ByeSize          = 8  // a BYE of one source, no reason
	// MaxCNAME is the longest CNAME an SDES item holds.
	MaxCNAME = 255
	// MaxCompoundSize is the most a compound of PutCompound takes: SR, SDES
	// of the longest CNAME, BYE.
	MaxCompoundSize = SenderReportSize + (4+4+2+MaxCNAME+1+3)&^3 + ByeSize
)

// RTCP packet types.
const (
	TypeSenderReport = 200
	TypeSDES         = 202
	TypeBye          = 203
)

// ErrShortBuffer is returned when a buffer cannot hold the packet.
var ErrShortBuffer = errors.New("rtpcodec: buffer too short")

// PutHeader writes the 12-byte RTP header at b[:HeaderSize]: version 2, no
// padding, extension or CSRC, marker as given, payload type pt (0-127).
func PutHeader(b []byte, marker bool, pt uint8, seq uint16, ts, ssrc uint32) {
	_ = b[HeaderSize-1]
	b[0] = 2 << 6
	b[1] = pt & 0x7f
	if marker {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:4], seq)
	binary.BigEndian.PutUint32(b[4:8], ts)
	binary.BigEndian.PutUint32(b[8:12], ssrc)
}

// EventCode is a DTMF digit's RFC 4733 event code: '0'-'9' are 0-9, '*' 10,
// '#' 11, 'A'-'D' 12-15.
func EventCode(digit byte) (uint8, bool) {
	switch {
	case digit >= '0' && digit <= '9':
		return digit - '0', true
	case digit == '*':
		return 10, true
	case digit == '#':
		return 11, true
	case digit >= 'A' && digit <= 'D':
		return 12 + digit - 'A', true
	}
	return 0, false
}

// PutEvent writes a telephone-event payload at b[:EventSize]: event code,
// end bit, volume in -dBm0 (0-63) and duration in timestamp units.
func PutEvent(b []byte, event uint8, end bool, volume uint8, duration uint16) {
	_ = b[EventSize-1]
	b[0] = event
	b[1] = volume & 0x3f
	if end {
		b[1] |= 0x80
	}
	binary.BigEndian.PutUint16(b[2:4], duration)
}

// ntpEpochOffset is the seconds from 1900-01-01 (NTP's epoch) to 1970-01-01.
const ntpEpochOffset = 2208988800

// NTPTime is t as a 64-bit NTP timestamp: seconds since 1900 in the high 32
// bits, the fraction of a second in the low 32.
func NTPTime(t time.Time) uint64 {
	sec := uint64(t.Unix() + ntpEpochOffset)
	frac := uint64(t.Nanosecond()) << 32 / 1e9
	return sec<<32 | frac
}

// SenderInfo is what a sender report says about one RTP source.
type SenderInfo struct {
	SSRC    uint32
	NTPTime uint64 // when the report was made (NTPTime)
	RTPTime uint32 // the same instant on the stream's RTP clock
	Packets uint32 // RTP packets sent since the stream began
	Octets  uint32 // payload octets sent since the stream began
}

func putRTCPHeader(b []byte, count uint8, pt uint8, size int) {
	b[0] = 2<<6 | count&0x1f
	b[1] = pt
	binary.BigEndian.PutUint16(b[2:4], uint16(size/4-1))
}

// sdesSize is an SDES packet of one chunk holding one CNAME of n bytes: header,
// SSRC, item type and length, the text, and at least one NUL ending the item
// list, padded to 32 bits.
func sdesSize(n int) int { return (4 + 4 + 2 + n + 1 + 3) &^ 3 }

// CompoundSize is the size PutCompound writes for cname, with a BYE or not.
func CompoundSize(cname string, bye bool) int {
	n := SenderReportSize + sdesSize(len(cname))
	if bye {
		n += ByeSize
	}
	return n
}

// PutCompound writes an RTCP compound packet into b: a sender report of s (no
// report blocks: mediafork receives nothing), an SDES with s's CNAME (RFC 3550
// §6.1: every compound carries one), and, with bye, a BYE of s. It returns
// the bytes written. A CNAME longer than MaxCNAME is cut.
func PutCompound(b []byte, s SenderInfo, cname string, bye bool) (int, error) {
	if len(cname) > MaxCNAME {
		cname = cname[:MaxCNAME]
	}
	n := CompoundSize(cname, bye)
	if len(b) < n {
		return 0, ErrShortBuffer
	}
	putRTCPHeader(b, 0, TypeSenderReport, SenderReportSize)
	binary.BigEndian.PutUint32(b[4:8], s.SSRC)
	binary.BigEndian.PutUint64(b[8:16], s.NTPTime)
	binary.BigEndian.PutUint32(b[16:20], s.RTPTime)
	binary.BigEndian.PutUint32(b[20:24], s.Packets)
	binary.BigEndian.PutUint32(b[24:28], s.Octets)

	d := b[SenderReportSize:]
	size := sdesSize(len(cname))
	putRTCPHeader(d, 1, TypeSDES, size)
	binary.BigEndian.PutUint32(d[4:8], s.SSRC)
	d[8] = 1 // CNAME
	d[9] = byte(len(cname))
	copy(d[10:], cname)
	clear(d[10+len(cname) : size])

	if bye {
		y := d[size:]
		putRTCPHeader(y, 1, TypeBye, ByeSize)
		binary.BigEndian.PutUint32(y[4:8], s.SSRC)
	}
	return n, nil
}
