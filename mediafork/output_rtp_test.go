package mediafork

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/internal/rtptest"
	"github.com/mediafork/mediafork/tlvcodec"
)

// readN reads n datagrams from c, failing after a few seconds without them.
func readN(t *testing.T, c *net.UDPConn, n int) [][]byte {
	t.Helper()
	var out [][]byte
	buf := make([]byte, 65536)
	for len(out) < n {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		k, _, err := c.ReadFromUDP(buf)
		require.NoError(t, err, "got %d of %d datagrams on %s", len(out), n, c.LocalAddr())
		out = append(out, bytes.Clone(buf[:k]))
	}
	return out
}

func noMore(t *testing.T, c *net.UDPConn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	_, _, err := c.ReadFromUDP(make([]byte, 100))
	require.Error(t, err, "unexpected datagram on %s", c.LocalAddr())
}

func parseRTP(t *testing.T, pkts [][]byte) []rtp.Packet {
	t.Helper()
	out := make([]rtp.Packet, len(pkts))
	for i, b := range pkts {
		require.NoError(t, out[i].Unmarshal(b), "packet %d", i)
	}
	return out
}

func parseRTCP(t *testing.T, pkts [][]byte) [][]rtcp.Packet {
	t.Helper()
	out := make([][]rtcp.Packet, len(pkts))
	for i, b := range pkts {
		var err error
		out[i], err = rtcp.Unmarshal(b)
		require.NoError(t, err, "compound %d", i)
	}
	return out
}

func pcmuOf(le []byte) []byte {
	out := make([]byte, len(le)/2)
	PCMU.Codec().Encode(out, le, 2, len(out))
	return out
}

// One stereo 8 kHz bug to an RTP endpoint in pcmu, on real sockets, read with
// an independent parser (pion): RX to the address, TX two ports up, RTCP on
// the next odd ports; headers, sequence and timestamp arithmetic, the marker,
// an RFC 4733 event in the RX stream taking its sequence numbers, the sender
// reports every 5 s of audio and the BYE at the end.
func TestRTPOnTheWire(t *testing.T) {
	t.Parallel()
	base, socks := rtptest.Listen(t, 2)
	rxRTP, rxRTCP, txRTP, txRTCP := socks[0], socks[1], socks[2], socks[3]
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, err := reg.Claim("a1b2c3d4-0000-4000-8000-123456789abc", "mediafork")
	require.NoError(t, err)
	spec := stereoSpec()
	before := time.Now()
	require.NoError(t, f.Begin(spec, []Target{{Protocol: ProtocolRTP, Addr: base, Format: EndpointFormat{Encoding: PCMU}}}))

	const frames, dtmfAfter = 300, 100 // 6 s: sender reports at the first packet and 5 s in
	inter, left, right := pcmStereo(160 * frames)
	batch := reg.NewSharedBatch()
	for i := 0; i < frames; i++ {
		if i == dtmfAfter {
			f.DTMF(DTMFReceived{UUID: f.UUID, Digit: '5', Duration: 100 * time.Millisecond})
		}
		f.Write(batch, inter[i*640:(i+1)*640])
		batch.Flush()
	}
	info := f.Info()
	f.Finish(EndHangup)
	after := time.Now()

	require.Len(t, info.Outputs, 1)
	oi := info.Outputs[0]
	assert.Equal(t, ProtocolRTP, oi.Protocol)
	assert.Zero(t, oi.StreamID, "an RTP output has no TLV stream id")
	assert.Equal(t, EndpointFormat{Directions: DirSetOf(DirRX, DirTX), Encoding: PCMU, Rate: 8000, FrameMs: 20}, oi.Format)
	require.Len(t, oi.Streams, 2)
	assert.Equal(t, "rx", oi.Streams[0].Direction)
	assert.Equal(t, base.String(), oi.Streams[0].Address)
	assert.Equal(t, "tx", oi.Streams[1].Direction)
	assert.Equal(t, netip.AddrPortFrom(base.Addr(), base.Port()+2).String(), oi.Streams[1].Address)
	assert.NotEqual(t, oi.Streams[0].SSRC, oi.Streams[1].SSRC)
	assert.Equal(t, []string{base.String()}, info.Endpoints)
	assert.Equal(t, uint64(1), info.DTMF)

	rx := parseRTP(t, readN(t, rxRTP, frames+4))
	tx := parseRTP(t, readN(t, txRTP, frames))
	rxC := parseRTCP(t, readN(t, rxRTCP, 3))
	txC := parseRTCP(t, readN(t, txRTCP, 3))
	for _, c := range socks {
		noMore(t, c)
	}

	for name, s := range map[string]struct {
		pkts []rtp.Packet
		ssrc uint32
		pcm  []byte
	}{"rx": {rx, oi.Streams[0].SSRC, left}, "tx": {tx, oi.Streams[1].SSRC, right}} {
		var audio []byte
		seq0, ts0 := s.pkts[0].SequenceNumber, s.pkts[0].Timestamp
		n := 0
		for i, p := range s.pkts {
			assert.Equal(t, uint8(2), p.Version)
			assert.Equal(t, s.ssrc, p.SSRC, "%s %d", name, i)
			assert.Equal(t, seq0+uint16(i), p.SequenceNumber, "%s %d: every packet takes the next number", name, i)
			if p.PayloadType == 101 {
				continue
			}
			assert.Equal(t, uint8(0), p.PayloadType, "pcmu")
			assert.Equal(t, ts0+uint32(160*n), p.Timestamp, "%s %d: 160 samples a packet", name, i)
			assert.Equal(t, n == 0, p.Marker, "%s %d: the marker on the first packet only", name, i)
			assert.Len(t, p.Payload, 160)
			audio = append(audio, p.Payload...)
			n++
		}
		assert.Equal(t, frames, n)
		assert.Equal(t, pcmuOf(s.pcm), audio, name)
	}

	// The DTMF event: after the 100th audio packet, four packets with the
	// event's start (1.9 s: 2 s of audio less its 100 ms) as timestamp.
	ts0 := rx[0].Timestamp
	ev := rx[dtmfAfter : dtmfAfter+4]
	for i, p := range ev {
		assert.Equal(t, uint8(101), p.PayloadType)
		assert.Equal(t, i == 0, p.Marker)
		assert.Equal(t, ts0+1900*8, p.Timestamp)
		require.Len(t, p.Payload, 4)
		assert.Equal(t, byte(5), p.Payload[0], "event 5")
		assert.Equal(t, i > 0, p.Payload[1]&0x80 != 0, "E bit on the final packet, sent three times")
		assert.Equal(t, byte(10), p.Payload[1]&0x3f, "volume")
		assert.Equal(t, uint16(800), binary.BigEndian.Uint16(p.Payload[2:]), "100 ms at 8 kHz")
	}
	assert.Equal(t, ts0+uint32(160*dtmfAfter), rx[dtmfAfter+4].Timestamp, "the audio goes on where it was")

	// RTCP: an SR with the first packet, one at 5 s of audio, the last with
	// a BYE; each with the call's CNAME; NTP time of the moment, RTP time at
	// the end of the audio sent.
	for name, c := range map[string]struct {
		compounds [][]rtcp.Packet
		ssrc      uint32
		ts0       uint32
		packets   []uint32
		octets    []uint32
		rtpTime   []uint32
	}{
		"rx": {rxC, oi.Streams[0].SSRC, rx[0].Timestamp, []uint32{1, 255, 304}, []uint32{160, 251*160 + 16, 300*160 + 16}, []uint32{160, 251 * 160, 300 * 160}},
		"tx": {txC, oi.Streams[1].SSRC, tx[0].Timestamp, []uint32{1, 251, 300}, []uint32{160, 251 * 160, 300 * 160}, []uint32{160, 251 * 160, 300 * 160}},
	} {
		var lastNTP uint64
		for i, pk := range c.compounds {
			require.GreaterOrEqual(t, len(pk), 2, name)
			sr, ok := pk[0].(*rtcp.SenderReport)
			require.True(t, ok, "%s %d: %T", name, i, pk[0])
			assert.Equal(t, c.ssrc, sr.SSRC)
			assert.Equal(t, c.packets[i], sr.PacketCount, "%s SR %d packets", name, i)
			assert.Equal(t, c.octets[i], sr.OctetCount, "%s SR %d octets", name, i)
			assert.Equal(t, c.ts0+c.rtpTime[i], sr.RTPTime, "%s SR %d RTP time", name, i)
			ntp := time.Unix(int64(sr.NTPTime>>32)-2208988800, int64((sr.NTPTime&0xFFFFFFFF)*1e9>>32))
			assert.False(t, ntp.Before(before.Truncate(time.Millisecond)) || ntp.After(after.Add(time.Millisecond)), "%s: %s", name, ntp)
			assert.GreaterOrEqual(t, sr.NTPTime, lastNTP)
			lastNTP = sr.NTPTime
			sdes, ok := pk[1].(*rtcp.SourceDescription)
			require.True(t, ok)
			assert.Equal(t, "a1b2c3d4-0000-4000-8000-123456789abc", sdes.Chunks[0].Items[0].Text, "the CNAME names the call")
			if i == len(c.compounds)-1 {
				require.Len(t, pk, 3)
				bye, ok := pk[2].(*rtcp.Goodbye)
				require.True(t, ok)
				assert.Equal(t, []uint32{c.ssrc}, bye.Sources)
			} else {
				assert.Len(t, pk, 2)
			}
		}
	}
	<-f.Done()
	assert.Equal(t, 0, reg.OpenEndpoints())
}

// What an RTP endpoint can ask: l16 (big-endian on the wire) at its own
// rate with its own payload types, a MIXED stream carrying the DTMF; TX to
// tx_address beside RX.
func TestRTPFormatsAndOptions(t *testing.T) {
	t.Parallel()
	mixedBase, mixedSocks := rtptest.Listen(t, 1)
	splitBase, splitSocks := rtptest.Listen(t, 1)
	txBase, txSocks := rtptest.Listen(t, 1)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, err := reg.Claim("u", "mediafork")
	require.NoError(t, err)
	spec := spec16k()
	targets := []Target{
		{Protocol: ProtocolRTP, Addr: mixedBase, Format: EndpointFormat{Directions: DirSetOf(DirMixed), Encoding: L16},
			Options: RTPOptions{PayloadType: 110, DTMFPayloadType: 120}},
		{Protocol: ProtocolRTP, Addr: splitBase, Format: EndpointFormat{Encoding: PCMA, Rate: 8000}, Options: RTPOptions{Tx: txBase}},
	}
	require.NoError(t, f.Begin(spec, targets))
	l, r := sine(1000, 16000, 320, 8000), sine(440, 16000, 320, 8000)
	f.Write(nil, interleave(l, r))
	f.DTMF(DTMFReceived{UUID: "u", Digit: '#', Duration: 50 * time.Millisecond})
	f.Write(nil, interleave(l, r))
	info := f.Info()
	f.Finish(EndStopped)

	mixed := parseRTP(t, readN(t, mixedSocks[0], 2+4))
	for _, p := range mixed[:1] {
		assert.Equal(t, uint8(110), p.PayloadType)
		require.Len(t, p.Payload, 640, "20 ms of 16 kHz l16")
		for i := range l {
			want := saturate(int32(l[i]) + int32(r[i]))
			assert.Equal(t, want, int16(binary.BigEndian.Uint16(p.Payload[2*i:])), "sample %d: network byte order", i)
		}
	}
	for _, p := range mixed[1:5] {
		assert.Equal(t, uint8(120), p.PayloadType)
		assert.Equal(t, byte(11), p.Payload[0], "#")
		assert.Equal(t, uint16(800), binary.BigEndian.Uint16(p.Payload[2:]), "50 ms at 16 kHz")
		assert.Equal(t, mixed[0].Timestamp, p.Timestamp, "50 ms long after 20 ms of audio: floored at the stream's start")
	}
	assert.Equal(t, uint8(110), mixed[5].PayloadType)
	readN(t, mixedSocks[1], 2) // SR, SR+BYE

	rx := parseRTP(t, readN(t, splitSocks[0], 2+4))
	tx := parseRTP(t, readN(t, txSocks[0], 2))
	assert.Equal(t, uint8(8), rx[0].PayloadType, "pcma")
	assert.Len(t, rx[0].Payload, 160, "8 kHz")
	assert.Equal(t, uint8(8), tx[0].PayloadType)
	assert.NotEqual(t, rx[0].SSRC, tx[0].SSRC)
	readN(t, splitSocks[1], 2)
	readN(t, txSocks[1], 2)
	for _, c := range append(append(mixedSocks, splitSocks...), txSocks...) {
		noMore(t, c)
	}
	require.Len(t, info.Outputs, 2)
	assert.Equal(t, EndpointFormat{Directions: DirSetOf(DirMixed), Encoding: L16BE, Rate: 16000, FrameMs: 20}, info.Outputs[0].Format)
	assert.Equal(t, uint8(110), info.Outputs[0].Streams[0].PayloadType)
	assert.Equal(t, txBase.String(), info.Outputs[1].Streams[1].Address)
}

// What an RTP endpoint cannot be, refused with the key.
func TestRTPRefusals(t *testing.T) {
	t.Parallel()
	p := Params{Mix: Stereo, Rate: 16000, Encoding: L16, FrameMs: 20}
	odd := netip.MustParseAddrPort("127.0.0.1:5001")
	even := netip.MustParseAddrPort("127.0.0.1:5000")
	for _, c := range []struct {
		name string
		t    Target
		err  string
	}{
		{"pcmu at 16k", Target{Protocol: ProtocolRTP, Addr: even, Format: EndpointFormat{Encoding: PCMU}}, "rate: pcmu over RTP is 8000 Hz"},
		{"payload type of pcmu", Target{Protocol: ProtocolRTP, Addr: even, Format: EndpointFormat{Encoding: PCMU, Rate: 8000},
			Options: RTPOptions{PayloadType: 100}}, "payload_type: pcmu has the static payload type 0"},
		{"tx_address with TX alone", Target{Protocol: ProtocolRTP, Addr: even, Format: EndpointFormat{Directions: DirSetOf(DirTX)},
			Options: RTPOptions{Tx: even}}, "tx_address: the endpoint's first stream (tx) goes to address"},
		{"last ports", Target{Protocol: ProtocolRTP, Addr: netip.MustParseAddrPort("127.0.0.1:65534")}, "address: the tx stream would take ports 65536"},
	} {
		_, err := planOutputs(Spec{Params: p}, []Target{c.t})
		assert.ErrorContains(t, err, c.err, c.name)
	}
	_, err := rtpProtocol{}.Pin(context.Background(), odd, nil, nil)
	assert.ErrorContains(t, err, "address: port 5001 is odd")
	d := &Destinations{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	_, err = d.ResolveTargets(context.Background(), "", []string{"rtp://127.0.0.1:5001"}, true)
	assert.ErrorContains(t, err, "port 5001 is odd")
	_, err = d.ResolveTargets(context.Background(), "", []string{"rtp://10.0.0.1:5000"}, true)
	assert.ErrorIs(t, err, ErrNotAllowed)
	ts, err := d.ResolveTargets(context.Background(), "", []string{"rtp://127.0.0.1:5000", "127.0.0.1:9"}, true)
	require.NoError(t, err)
	assert.Equal(t, []Target{{Protocol: ProtocolRTP, Addr: even}, {Addr: netip.MustParseAddrPort("127.0.0.1:9")}}, ts)

	for keys, want := range map[string]map[string]any{
		"payload_type: 95 is not a dynamic payload type (96-127)": {"payload_type": 95},
		"payload_type: x is not a number":                         {"payload_type": "x"},
		"dtmf_payload_type: 128 is not a dynamic":                 {"dtmf_payload_type": 128},
		"dtmf_payload_type: 101 is payload_type too":              {"payload_type": 101},
		"tx_address: 5 is not host:port":                          {"tx_address": 5},
	} {
		_, perr := rtpProtocol{}.ParseOptions(want)
		assert.ErrorContains(t, perr, keys)
	}
	o, err := rtpProtocol{}.ParseOptions(map[string]any{"payload_type": 97, "dtmf_payload_type": 98.0, "tx_address": "rec:5002"})
	require.NoError(t, err)
	assert.Equal(t, RTPOptions{PayloadType: 97, DTMFPayloadType: 98, TxAddress: "rec:5002"}, o)
	o, err = rtpProtocol{}.ParseOptions(map[string]any{})
	require.NoError(t, err)
	assert.Nil(t, o, "no keys, no options")
}

// A credential carries an RTP target whole, the options decoded by the
// protocol; tx_address resolved once (pinned).
func TestRTPTargetInCredential(t *testing.T) {
	t.Parallel()
	d := &Destinations{Profiles: map[string]Profile{"rec": {
		Endpoints: []string{"rec.example:5000"},
		Formats:   []EndpointFormat{{Encoding: PCMU, Rate: 8000}},
		Protocols: []EndpointProtocol{{ProtocolRTP, RTPOptions{TxAddress: "rec.example:6000", DTMFPayloadType: 99}}},
	}}, LookupHost: func(context.Context, string) ([]netip.Addr, error) {
		return []netip.Addr{netip.MustParseAddr("192.0.2.7")}, nil
	}}
	ts, err := d.ResolveTargets(context.Background(), "rec", nil, true)
	require.NoError(t, err)
	want := Target{Protocol: ProtocolRTP, Addr: netip.MustParseAddrPort("192.0.2.7:5000"), Format: EndpointFormat{Encoding: PCMU, Rate: 8000},
		Options: RTPOptions{Tx: netip.MustParseAddrPort("192.0.2.7:6000"), DTMFPayloadType: 99}}
	require.Equal(t, []Target{want}, ts)
	s := NewSigner([]byte("k"))
	spec := stereoSpec()
	spec.UUID, spec.Targets = "u1", ts
	cred := s.Sign(spec, time.Now().Add(time.Minute))
	got := opened(t, s, cred, "u1")
	assert.Equal(t, ts, got.Targets)
	body, _ := b64.DecodeString(cred.Description)
	assert.Contains(t, string(body), `"targets":["rtp 192.0.2.7:5000 /pcmu/8000/ {\"tx\":\"192.0.2.7:6000\",\"dpt\":99}"]`)
	require.NoError(t, CheckPinned(got.Targets))
	var bad Target
	assert.ErrorContains(t, bad.UnmarshalJSON([]byte(`"smtp 1.2.3.4:5 -"`)), `"smtp" is not one of tlv|rtp`)
	assert.ErrorContains(t, bad.UnmarshalJSON([]byte(`"rtp 1.2.3.4:6 - {\"pt\":7}"`)), "not dynamic")
	assert.ErrorContains(t, bad.UnmarshalJSON([]byte(`"tlv 1.2.3.4:6 - {\"pt\":97}"`)), `unknown field "pt"`)
	for _, bad1 := range []string{`{"a":"1.2.3.4:5"}`, `"rtp 1.2.3.4:6"`, `"rtp nowhere -"`, `"1.2.3.4"`, `""`, `7`} {
		assert.Error(t, bad.UnmarshalJSON([]byte(bad1)), bad1)
	}
	for _, f := range []string{"rx", "rx/pcmu/8000", "both/pcmu//", "/pcmu/-8000/", "/pcmu/8000/x"} {
		assert.Error(t, bad.UnmarshalJSON([]byte(`"rtp 1.2.3.4:6 `+f+`"`)), f)
	}
	for _, fm := range []EndpointFormat{{}, {Directions: DirSetOf(DirRX, DirTX, DirMixed), Encoding: L16BE, Rate: 16000, FrameMs: 30},
		{Directions: DirSetOf(DirTX)}, {FrameMs: 10}} {
		want := Target{Protocol: ProtocolRTP, Addr: netip.MustParseAddrPort("10.0.0.1:4000"), Format: fm}
		b, err := want.MarshalJSON()
		require.NoError(t, err)
		var got Target
		require.NoError(t, got.UnmarshalJSON(b), string(b))
		assert.Equal(t, want, got, string(b))
	}
}

// The same identity and spec give the same SSRCs, sequence numbers and
// timestamps (a fork resumed elsewhere keeps them); another identity others;
// two RTP outputs of one fork differ.
func TestIdentityDerivesOutputs(t *testing.T) {
	t.Parallel()
	id := Identity{StreamID: 7, Seed: 0x1234}
	a, b := id.output(1, 0), id.output(1, 0)
	assert.Equal(t, a, b)
	c := id.output(2, 0)
	assert.NotEqual(t, a.RTP[DirRX], c.RTP[DirRX])
	other := Identity{StreamID: 7, Seed: 0x1235}.output(1, 0)
	assert.NotEqual(t, a.RTP[DirRX].SSRC, other.RTP[DirRX].SSRC)
	for i := range 1000 {
		o := Identity{Seed: uint64(i)}.output(0, 0)
		require.NotZero(t, o.RTP[DirRX].SSRC)
		require.NotEqual(t, o.RTP[DirRX].SSRC, o.RTP[DirTX].SSRC)
		require.NotEqual(t, o.RTP[DirTX].SSRC, o.RTP[DirMixed].SSRC)
		require.NotEqual(t, o.RTP[DirRX].SSRC, o.RTP[DirMixed].SSRC)
	}

	base, socks := rtptest.Listen(t, 2)
	first := func(id Identity) (rx, tx rtp.Packet) {
		reg := NewRegistry(newTestTransport(), 10, true, quiet)
		f, err := reg.ClaimWith("u", "b", id)
		require.NoError(t, err)
		require.NoError(t, f.Begin(stereoSpec(), []Target{{Protocol: ProtocolRTP, Addr: base}}))
		f.Write(nil, make([]byte, 640))
		f.Finish(EndHangup)
		p := parseRTP(t, append(readN(t, socks[0], 1), readN(t, socks[2], 1)...))
		readN(t, socks[1], 2)
		readN(t, socks[3], 2)
		return p[0], p[1]
	}
	rx1, tx1 := first(id)
	rx2, tx2 := first(id)
	for _, p := range [][2]rtp.Packet{{rx1, rx2}, {tx1, tx2}} {
		assert.Equal(t, p[0].SSRC, p[1].SSRC)
		assert.Equal(t, p[0].SequenceNumber, p[1].SequenceNumber)
		assert.Equal(t, p[0].Timestamp, p[1].Timestamp)
	}
	assert.Equal(t, id.output(0, 0).RTP[DirRX].SSRC, rx1.SSRC, "the fork's first output")
	rx3, _ := first(Identity{StreamID: 8, Seed: 99})
	assert.NotEqual(t, rx1.SSRC, rx3.SSRC)
}

// The SDP of a fork with a TLV endpoint and two RTP endpoints, read by an
// independent parser: one m= line per RTP stream with its port, address,
// rtpmap, label, sendonly, ssrc and CNAME; telephone-event on the stream
// that carries DTMF.
func TestSDP(t *testing.T) {
	t.Parallel()
	rtpA, _ := rtptest.Listen(t, 2)
	rtpB, _ := rtptest.Listen(t, 1)
	tlv := newUDPSink(t)
	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, err := reg.Claim("call-1", "mediafork")
	require.NoError(t, err)
	_, err = f.SDP()
	assert.ErrorIs(t, err, ErrNoRTP)
	spec := spec16k()
	require.NoError(t, f.Begin(spec, []Target{
		{Addr: tlv.addr()},
		{Protocol: ProtocolRTP, Addr: rtpA, Format: EndpointFormat{Encoding: PCMU, Rate: 8000}},
		{Protocol: ProtocolRTP, Addr: rtpB, Format: EndpointFormat{Directions: DirSetOf(DirMixed)}, Options: RTPOptions{PayloadType: 100}},
	}))
	defer f.Finish(EndHangup)
	text, err := f.SDP()
	require.NoError(t, err)
	var sd sdp.SessionDescription
	require.NoError(t, sd.UnmarshalString(text), text)
	require.Len(t, sd.MediaDescriptions, 3)
	info := f.Info()
	require.Len(t, info.Outputs, 3)
	for i, want := range []struct {
		port   int
		pts    []string
		rtpmap []string
		label  string
		ssrc   uint32
		fmtp   string
	}{
		{int(rtpA.Port()), []string{"0", "101"}, []string{"0 PCMU/8000", "101 telephone-event/8000"}, "rx", info.Outputs[1].Streams[0].SSRC, "101 0-15"},
		{int(rtpA.Port()) + 2, []string{"0"}, []string{"0 PCMU/8000"}, "tx", info.Outputs[1].Streams[1].SSRC, ""},
		{int(rtpB.Port()), []string{"100", "101"}, []string{"100 L16/16000", "101 telephone-event/16000"}, "mixed", info.Outputs[2].Streams[0].SSRC, "101 0-15"},
	} {
		m := sd.MediaDescriptions[i]
		assert.Equal(t, "audio", m.MediaName.Media)
		assert.Equal(t, want.port, m.MediaName.Port.Value)
		assert.Equal(t, []string{"RTP", "AVP"}, m.MediaName.Protos)
		assert.Equal(t, want.pts, m.MediaName.Formats)
		require.NotNil(t, m.ConnectionInformation)
		assert.Equal(t, "127.0.0.1", m.ConnectionInformation.Address.Address)
		var rtpmaps []string
		attrs := map[string]string{}
		for _, a := range m.Attributes {
			if a.Key == "rtpmap" {
				rtpmaps = append(rtpmaps, a.Value)
			} else {
				attrs[a.Key] = a.Value
			}
		}
		assert.Equal(t, want.rtpmap, rtpmaps)
		assert.Equal(t, want.label, attrs["label"])
		assert.Contains(t, attrs, "sendonly")
		assert.Equal(t, "20", attrs["ptime"])
		assert.Equal(t, want.fmtp, attrs["fmtp"])
		assert.Equal(t, strconv.FormatUint(uint64(want.ssrc), 10)+" cname:call-1", attrs["ssrc"])
	}
	again, _ := f.SDP()
	assert.Equal(t, text, again, "the same fork, the same SDP")
}

// DTMF on a TLV stream: a DTMF packet (direction RX) after the audio sent
// before it, placed on the stream's media clock; none with dtmf_packet off;
// digits queued beyond the queue are dropped and counted.
func TestTLVDTMFOnTheWire(t *testing.T) {
	t.Parallel()
	a := newUDPSink(t)
	for _, off := range []bool{false, true} {
		reg := NewRegistry(newTestTransport(), 10, true, quiet)
		reg.SetDTMFPackets(!off)
		f, err := reg.Claim("u", "b")
		require.NoError(t, err)
		spec := stereoSpec()
		spec.Mix = Mono
		require.NoError(t, f.Begin(spec, TLVTargets(a.addr())))
		frame := make([]byte, 320)
		for range 10 {
			f.Write(nil, frame)
		}
		f.DTMF(DTMFReceived{UUID: "u", Digit: '9', Duration: 120 * time.Millisecond})
		f.DTMF(DTMFReceived{UUID: "u", Digit: 'A', Duration: time.Second}) // longer than the stream so far
		f.Write(nil, frame)
		f.Finish(EndHangup)
		n := 2 + 11 + 1
		if !off {
			n += 2
		}
		pkts := a.read(t, n)
		a.none(t)
		if off {
			for _, p := range pkts {
				assert.NotEqual(t, byte(tlvcodec.TypeDTMF), p[0])
			}
			continue
		}
		var d1, d2 tlvcodec.DTMF
		require.NoError(t, d1.Unmarshal(pkts[12]), "after 10 audio packets")
		require.NoError(t, d2.Unmarshal(pkts[13]))
		assert.Equal(t, tlvcodec.DTMF{StreamID: f.StreamID, Direction: tlvcodec.RX, Digit: '9', DurationMs: 120, MediaTimeMs: 80}, d1)
		assert.Equal(t, tlvcodec.DTMF{StreamID: f.StreamID, Direction: tlvcodec.RX, Digit: 'A', DurationMs: 1000, MediaTimeMs: 0}, d2,
			"floored at the stream's start")
		assert.Equal(t, byte(tlvcodec.TypeAudio), pkts[14][0])
	}

	reg := NewRegistry(newTestTransport(), 10, true, quiet)
	f, _ := reg.Claim("u", "b")
	for range dtmfQueueSize + 3 {
		f.DTMF(DTMFReceived{UUID: "u", Digit: '1'})
	}
	assert.Equal(t, uint64(3), f.DTMFDrops.Load(), "bounded: the media path has not drained it")
	assert.Equal(t, uint64(3), f.Info().DTMFDrops)
	f.Finish(EndHangup)
}

func TestParseDigit(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]Digit{"0": '0', "9": '9', "*": '*', "#": '#', "A": 'A', "d": 'D'} {
		got, err := ParseDigit(s)
		require.NoError(t, err, s)
		assert.Equal(t, want, got)
	}
	for _, bad := range []string{"", "E", "12", "%23", " ", "\x00", "e"} {
		_, err := ParseDigit(bad)
		assert.Error(t, err, "%q", bad)
	}
}
