package tlvdump

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// wavWriter writes 16-bit mono PCM WAV; the sizes in the header are filled in
// whenever the file is closed. Every encoding is decoded to linear first, so
// any player opens it. Its file may be closed to keep within the open-file
// bound and opened again to go on writing: data goes at its place (44 + n)
// with WriteAt, so no file position has to survive.
type wavWriter struct {
	path string
	f    *os.File
	info os.FileInfo // of the file created: a reopen must find the same file
	rate int
	n    int // data bytes
}

// createWav makes path, which must not exist (O_EXCL: an old recording is
// never overwritten, and no symlink or FIFO planted there is followed).
func createWav(path string, rate int) (*wavWriter, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	w := &wavWriter{path: path, f: f, rate: rate}
	if w.info, err = f.Stat(); err == nil {
		_, err = f.Write(w.header())
	}
	if err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return w, nil
}

// reopen opens the file again, without following a symlink or waiting on a
// FIFO, and only if it is still the file this writer created.
func (w *wavWriter) reopen() error {
	f, err := os.OpenFile(w.path, os.O_WRONLY|reopenFlags, 0)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil || !os.SameFile(fi, w.info) {
		f.Close()
		return fmt.Errorf("%s: no longer the file written", w.path)
	}
	w.f = f
	return nil
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

var errClosed = errors.New("wav file closed")

// write appends silence samples of silence, then pcm.
func (w *wavWriter) write(silence int, pcm []int16) error {
	if w.f == nil {
		return errClosed
	}
	b := make([]byte, 2*(silence+len(pcm)))
	for i, s := range pcm {
		binary.LittleEndian.PutUint16(b[2*(silence+i):], uint16(s))
	}
	n, err := w.f.WriteAt(b, int64(44+w.n))
	w.n += n
	return err
}

// close writes the header's sizes and closes the file; it can be reopened.
func (w *wavWriter) close() {
	if w.f == nil {
		return
	}
	w.f.WriteAt(w.header(), 0)
	w.f.Close()
	w.f = nil
}
