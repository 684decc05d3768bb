package g711

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The reference encoders below follow the ITU-T G.711 reference code (Sun
// Microsystems' g711.c, the one FreeSWITCH and sox descend from) line by line:
// segment search over the segment end tables, written independently of the
// bit-length formulation the package uses.

var segUEnd = [8]int{0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF}
var segAEnd = [8]int{0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF}

func search(v int, table [8]int) int {
	for i, e := range table {
		if v <= e {
			return i
		}
	}
	return 8
}

func refLinearToULaw(pcm int16) byte {
	v := int(pcm) >> 2
	mask := 0xFF
	if v < 0 {
		v = -v
		mask = 0x7F
	}
	if v > 8159 {
		v = 8159
	}
	v += 0x84 >> 2
	seg := search(v, segUEnd)
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	return byte(((seg << 4) | ((v >> (seg + 1)) & 0xF)) ^ mask)
}

func refLinearToALaw(pcm int16) byte {
	v := int(pcm) >> 3
	mask := 0xD5
	if v < 0 {
		mask = 0x55
		v = -v - 1
	}
	seg := search(v, segAEnd)
	if seg >= 8 {
		return byte(0x7F ^ mask)
	}
	a := seg << 4
	if seg < 2 {
		a |= (v >> 1) & 0xF
	} else {
		a |= (v >> seg) & 0xF
	}
	return byte(a ^ mask)
}

func TestG711MatchesReferenceForEverySample(t *testing.T) {
	for i := -32768; i <= 32767; i++ {
		s := int16(i)
		if got, want := LinearToULaw(s), refLinearToULaw(s); got != want {
			t.Fatalf("µ-law(%d) = %#02x, reference %#02x", s, got, want)
		}
		if got, want := LinearToALaw(s), refLinearToALaw(s); got != want {
			t.Fatalf("A-law(%d) = %#02x, reference %#02x", s, got, want)
		}
	}
}

// Values from the G.711 tables themselves.
func TestG711StandardValues(t *testing.T) {
	assert.Equal(t, byte(0xFF), LinearToULaw(0), "µ-law silence")
	assert.Equal(t, byte(0xD5), LinearToALaw(0), "A-law silence")
	assert.Equal(t, byte(0x80), LinearToULaw(32767))
	assert.Equal(t, byte(0x00), LinearToULaw(-32768))
	assert.Equal(t, byte(0xAA), LinearToALaw(32767))
	assert.Equal(t, byte(0x2A), LinearToALaw(-32768))
	assert.Equal(t, int16(-32124), ULawToLinear(0x00))
	assert.Equal(t, int16(32124), ULawToLinear(0x80))
	assert.Equal(t, int16(0), ULawToLinear(0xFF))
	assert.Equal(t, int16(8), ALawToLinear(0xD5))
	assert.Equal(t, int16(-8), ALawToLinear(0x55))
	assert.Equal(t, int16(32256), ALawToLinear(0xAA))
	assert.Equal(t, int16(-32256), ALawToLinear(0x2A))
}

// Every code decodes to a value that encodes back to the same code (µ-law 0x7F,
// negative zero, comes back as 0xFF, positive zero).
func TestG711RoundTrip(t *testing.T) {
	for c := 0; c < 256; c++ {
		want := byte(c)
		if want == 0x7F {
			want = 0xFF
		}
		assert.Equal(t, want, LinearToULaw(ULawToLinear(byte(c))), "µ-law code %#02x", c)
		assert.Equal(t, byte(c), LinearToALaw(ALawToLinear(byte(c))), "A-law code %#02x", c)
	}
}
