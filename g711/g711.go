// Package g711 is ITU-T G.711 µ-law and A-law: 16-bit linear PCM to one byte a
// sample and back. It has no dependencies, so receivers (tlvdump) and the
// daemon share it on every GOOS.
package g711

import "math/bits"

// G.711 encoding by table: µ-law works on 14 significant bits and A-law on 13,
// so the tables are indexed by the sample shifted right by 2 and 3.
var (
	ulawTable [1 << 14]byte
	alawTable [1 << 13]byte
)

func init() {
	for i := range ulawTable {
		ulawTable[i] = ulawEncode(int16(uint16(i) << 2))
	}
	for i := range alawTable {
		alawTable[i] = alawEncode(int16(uint16(i) << 3))
	}
}

// LinearToULaw encodes one sample as G.711 µ-law (a table lookup).
func LinearToULaw(s int16) byte { return ulawTable[uint16(s)>>2] }

// LinearToALaw encodes one sample as G.711 A-law (a table lookup).
func LinearToALaw(s int16) byte { return alawTable[uint16(s)>>3] }

// ulawEncode is G.711 µ-law: bias 33 on the 14-bit magnitude, the segment is the
// position of the top bit, four mantissa bits below it, everything inverted.
func ulawEncode(s int16) byte {
	v := int(s) >> 2
	mask := byte(0xFF)
	if v < 0 {
		v, mask = -v, 0x7F
	}
	v = min(v, 8159) + 33
	seg := max(bits.Len(uint(v))-6, 0)
	if seg >= 8 {
		return 0x7F ^ mask
	}
	return (byte(seg<<4) | byte(v>>(seg+1))&0x0F) ^ mask
}

// alawEncode is G.711 A-law on the 13-bit magnitude, even bits inverted (0x55).
func alawEncode(s int16) byte {
	v := int(s) >> 3
	mask := byte(0xD5)
	if v < 0 {
		v, mask = -v-1, 0x55
	}
	seg := max(bits.Len(uint(v))-5, 0)
	shift := max(seg, 1)
	return (byte(seg<<4) | byte(v>>shift)&0x0F) ^ mask
}

// ULawToLinear decodes one G.711 µ-law byte.
func ULawToLinear(u byte) int16 {
	u = ^u
	t := (int(u&0x0F) << 3) + 0x84
	t <<= (u & 0x70) >> 4
	if u&0x80 != 0 {
		return int16(0x84 - t)
	}
	return int16(t - 0x84)
}

// ALawToLinear decodes one G.711 A-law byte.
func ALawToLinear(a byte) int16 {
	a ^= 0x55
	t := int(a&0x0F) << 4
	switch seg := (a & 0x70) >> 4; seg {
	case 0:
		t += 8
	case 1:
		t += 0x108
	default:
		t = (t + 0x108) << (seg - 1)
	}
	if a&0x80 != 0 {
		return int16(t)
	}
	return int16(-t)
}
