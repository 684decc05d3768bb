package mediafork

import (
	"strings"
)

// Encoding names the audio encoding of a stream's payload, as configuration,
// the API and credentials spell it ("l16", "pcmu", ...). What an encoding is
// and does lives in its Codec, found in the table below.
type Encoding string

// Codec is one payload encoding: how the Packetizer turns L16 little-endian
// samples (as FreeSWITCH delivers them) into payload bytes, and how a receiver
// turns them back. Implementations are stateless values and allocate nothing.
type Codec interface {
	// Name is the encoding's name in configuration: "l16", "pcmu", ...
	Name() Encoding
	// Code is its value on the wire (the format packet's encoding byte).
	Code() uint8
	// BytesPerSample is the payload size of one sample.
	BytesPerSample() int
	// Encode reads n samples of L16 little-endian from src, one every stride
	// bytes, and writes n*BytesPerSample() bytes to dst.
	Encode(dst, src []byte, stride, n int)
	// Decode writes the len(src)/BytesPerSample() samples of src to dst (which
	// must hold them) and returns how many it wrote; a trailing partial sample
	// is ignored.
	Decode(dst []int16, src []byte) int
}

// encodings is the table: adding an encoding is one file with its Codec and one
// line here. The order is the one help texts and error messages list.
var encodings = [...]Codec{
	l16Codec{},
	l16beCodec{},
	pcmuCodec{},
	pcmaCodec{},
}

// Codecs lists every encoding, in table order.
func Codecs() []Codec { return encodings[:] }

// LookupEncoding returns the codec named e.
func LookupEncoding(e Encoding) (Codec, bool) {
	for _, c := range encodings {
		if c.Name() == e {
			return c, true
		}
	}
	return nil, false
}

// CodecByCode returns the codec whose wire code is code.
func CodecByCode(code uint8) (Codec, bool) {
	for _, c := range encodings {
		if c.Code() == code {
			return c, true
		}
	}
	return nil, false
}

// EncodingNames is every encoding's name joined by "|", for help texts and
// error messages: "l16|l16be|pcmu|pcma".
func EncodingNames() string {
	names := make([]string, len(encodings))
	for i, c := range encodings {
		names[i] = string(c.Name())
	}
	return strings.Join(names, "|")
}

// Codec returns e's codec, or nil when e is not in the table (Params.Validate
// refuses such an encoding).
func (e Encoding) Codec() Codec {
	c, _ := LookupEncoding(e)
	return c
}

// BytesPerSample is the payload size of one sample (0 for an unknown encoding).
func (e Encoding) BytesPerSample() int {
	if c := e.Codec(); c != nil {
		return c.BytesPerSample()
	}
	return 0
}
