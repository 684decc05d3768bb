package mediafork

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNoRTP is SDP's answer for a fork with no RTP output.
var ErrNoRTP = errors.New("the fork has no rtp endpoint")

// SDP describes the fork's RTP streams for a receiver (RFC 4566): one m=
// line per stream with its destination (c=), its payload type's rtpmap (and
// telephone-event's, with its fmtp, on the stream that carries DTMF),
// a=sendonly (mediafork only sends), a=label:rx|tx|mixed (RFC 4574), the
// frame length as ptime and the stream's SSRC with the call's CNAME (RFC
// 5576). RTCP goes to each stream's port + 1, the default. ffmpeg
// (-protocol_whitelist file,udp,rtp -i fork.sdp) and GStreamer (sdpdemux)
// read it as it is.
func (f *Fork) SDP() (string, error) {
	f.mu.Lock()
	outs, eps, spec, started := f.outs, f.eps, f.spec, f.started
	f.mu.Unlock()
	var b strings.Builder
	n := 0
	for _, fo := range outs {
		o, ok := fo.(*output)
		if !ok {
			continue
		}
		r, ok := o.fr.(*rtpFramer)
		if !ok {
			continue
		}
		for _, d := range o.dirs {
			a := eps[o.media[d][0]].addr
			fmt.Fprintf(&b, "m=audio %d RTP/AVP %d", a.Port(), r.pt)
			if d == r.dtmfDir {
				fmt.Fprintf(&b, " %d", r.dtmfPT)
			}
			b.WriteString("\r\n")
			fmt.Fprintf(&b, "c=IN %s %s\r\n", ipVersion(a.Addr().Is4()), a.Addr())
			fmt.Fprintf(&b, "a=rtpmap:%d %s/%d\r\n", r.pt, rtpEncodingName(o.format.Encoding), o.format.Rate)
			if d == r.dtmfDir {
				fmt.Fprintf(&b, "a=rtpmap:%d telephone-event/%d\r\n", r.dtmfPT, o.format.Rate)
				fmt.Fprintf(&b, "a=fmtp:%d 0-15\r\n", r.dtmfPT)
			}
			fmt.Fprintf(&b, "a=ptime:%d\r\n", o.format.FrameMs)
			b.WriteString("a=sendonly\r\n")
			fmt.Fprintf(&b, "a=label:%s\r\n", dirName(d))
			fmt.Fprintf(&b, "a=ssrc:%d cname:%s\r\n", r.dirs[d].ssrc, r.cname)
			n++
		}
	}
	if n == 0 {
		return "", ErrNoRTP
	}
	// The session: its id and version from the fork's identity and start, so
	// the same fork gives the same SDP; the origin address is unknown to the
	// domain (the kernel picks the source), which RFC 4566 allows as 0.0.0.0.
	head := fmt.Sprintf("v=0\r\no=mediafork %d %d IN IP4 0.0.0.0\r\ns=mediafork %s\r\nt=0 0\r\na=tool:mediafork\r\n",
		f.Identity.Seed>>1, started.Unix(), sdpText(string(spec.UUID)))
	return head + b.String(), nil
}

func ipVersion(v4 bool) string {
	if v4 {
		return "IP4"
	}
	return "IP6"
}

// rtpEncodingName is an encoding's name in an rtpmap (RFC 3551).
func rtpEncodingName(e Encoding) string {
	switch e {
	case PCMU:
		return "PCMU"
	case PCMA:
		return "PCMA"
	}
	return "L16"
}

// sdpText keeps a value on its line: no CR or LF.
func sdpText(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, s)
}
