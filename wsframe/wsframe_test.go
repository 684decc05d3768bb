package wsframe

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Every length encoding, byte for byte (RFC 6455 §5.2).
func TestAppendClientHeader(t *testing.T) {
	const key = 0x44332211
	for _, c := range []struct {
		op   byte
		n    int
		want []byte
	}{
		{0x2, 0, []byte{0x82, 0x80, 0x11, 0x22, 0x33, 0x44}},
		{0x1, 125, []byte{0x81, 0xfd, 0x11, 0x22, 0x33, 0x44}},
		{0x2, 126, []byte{0x82, 0xfe, 0x00, 0x7e, 0x11, 0x22, 0x33, 0x44}},
		{0x2, 0xffff, []byte{0x82, 0xfe, 0xff, 0xff, 0x11, 0x22, 0x33, 0x44}},
		{0x2, 0x10000, []byte{0x82, 0xff, 0, 0, 0, 0, 0, 0x01, 0, 0, 0x11, 0x22, 0x33, 0x44}},
	} {
		got := AppendClientHeader([]byte{0xaa}, c.op, c.n, key)
		assert.Equal(t, append([]byte{0xaa}, c.want...), got, "n=%d", c.n)
		assert.LessOrEqual(t, len(got)-1, MaxClientHeader)
	}
}

// Mask XORs byte i with the key's byte i mod 4, whatever the length and
// however the eight-byte steps fall; twice gives the payload back.
func TestMask(t *testing.T) {
	const key = 0xa1b2c3d4
	kb := []byte{0xd4, 0xc3, 0xb2, 0xa1}
	for n := 0; n <= 37; n++ {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(i*13 + 5)
		}
		orig := bytes.Clone(p)
		Mask(p, key)
		for i := range p {
			if p[i] != orig[i]^kb[i%4] {
				t.Fatalf("n=%d byte %d: %#x, want %#x", n, i, p[i], orig[i]^kb[i%4])
			}
		}
		Mask(p, key)
		assert.Equal(t, orig, p, "n=%d: masked twice", n)
	}
}
