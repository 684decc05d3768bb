package tlvdump

import (
	"encoding/binary"
	"os"
)

// wavWriter writes 16-bit mono PCM WAV; the sizes in the header are filled in
// on Close. Every encoding is decoded to linear first, so any player opens it.
type wavWriter struct {
	f    *os.File
	rate int
	n    int // data bytes
}

func createWav(path string, rate int) (*wavWriter, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := &wavWriter{f: f, rate: rate}
	if _, err := f.Write(w.header()); err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

func (w *wavWriter) header() []byte {
	h := make([]byte, 44)
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], uint32(36+w.n))
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], 1) // PCM
	binary.LittleEndian.PutUint16(h[22:], 1) // mono
	binary.LittleEndian.PutUint32(h[24:], uint32(w.rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(w.rate*2))
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], uint32(w.n))
	return h
}

func (w *wavWriter) Write(pcm []int16) {
	if w.f == nil {
		return
	}
	b := make([]byte, 2*len(pcm))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
	}
	n, _ := w.f.Write(b)
	w.n += n
}

func (w *wavWriter) Close() {
	if w.f == nil {
		return
	}
	w.f.WriteAt(w.header(), 0)
	w.f.Close()
	w.f = nil
}
