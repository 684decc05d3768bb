// Package checkpoint keeps, in a small file beside mediafork (fork.checkpoint),
// where each fork's streams stand (mediafork.Position: its media clock, and
// when its last frame arrived), and, in a second file beside it, a heartbeat:
// when the instance was last alive. A restarted instance reads both
// (mediafork.Saved) and resumes each stream at its place on the media clock:
// a fork that was streaming went on until the last heartbeat, 20 ms (one
// frame) at most before the process died (kill -9 included); one that was
// suspended stood where it was. Both files are written off the media path,
// by one goroutine: the positions once a second and as soon as forks begin,
// end or suspend (a temporary file renamed over the old one: a crash leaves
// the old or the new, never half), the heartbeat every 20 ms (eight bytes
// written in place).
package checkpoint

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/mediafork/mediafork/internal/boundedfile"
	"github.com/mediafork/mediafork/mediafork"
)

// How often each is written.
const (
	DefaultEvery = time.Second
	DefaultBeat  = 20 * time.Millisecond
)

// Bounds of what is read back: a file from elsewhere is not trusted to be
// small.
const (
	maxFile  = 64 << 20
	maxForks = 200000
)

// header is the positions file's first line.
const header = "mediafork checkpoint v1"

// AlivePath is where the heartbeat of the checkpoint at path is kept.
func AlivePath(path string) string { return path + ".alive" }

// Load reads what the last run left at path: its forks' positions and when
// it was last alive (the heartbeat; the positions file's time when there is
// none). No file is no error: nothing to resume.
func Load(path string) (mediafork.Saved, error) {
	var s mediafork.Saved
	b, err := boundedfile.Read(path, maxFile)
	if errors.Is(err, fs.ErrNotExist) || (err != nil && !exists(path)) {
		return s, nil
	}
	if err != nil {
		return s, err
	}
	s.Forks, err = parse(b)
	if err != nil {
		return mediafork.Saved{}, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	if a, err := boundedfile.Read(AlivePath(path), 64); err == nil && len(a) == 8 {
		s.Alive = time.UnixMicro(int64(binary.BigEndian.Uint64(a)))
	} else if st, err := os.Stat(path); err == nil {
		s.Alive = st.ModTime()
	}
	return s, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// parse reads the positions file: the header, then one line per fork:
// uuid bug rate sent clock at_µs why digits paused suspended.
func parse(b []byte) ([]mediafork.Position, error) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 4096), 4096)
	if !sc.Scan() || sc.Text() != header {
		return nil, errors.New("not a checkpoint (no header)")
	}
	var out []mediafork.Position
	for n := 2; sc.Scan(); n++ {
		if len(out) == maxForks {
			return nil, fmt.Errorf("more than %d forks", maxForks)
		}
		p, err := parseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

func parseLine(line string) (mediafork.Position, error) {
	f := strings.Fields(line)
	if len(f) != 10 {
		return mediafork.Position{}, fmt.Errorf("%d fields, not 10", len(f))
	}
	var p mediafork.Position
	var err error
	if p.UUID, err = mediafork.ParseCallID(f[0]); err != nil {
		return p, err
	}
	if p.Bug = f[1]; p.Bug == "-" {
		p.Bug = ""
	}
	nums := make([]int64, 7)
	for i, s := range f[2:9] {
		if nums[i], err = strconv.ParseInt(s, 10, 64); err != nil || nums[i] < 0 {
			return p, fmt.Errorf("field %d: %q is not a count", i+3, s)
		}
	}
	if !mediafork.ValidRate(int(nums[0])) || nums[1] > nums[2] || nums[4] > int64(mediafork.GapDropped) || nums[5] > 1<<32-1 || nums[6] > 1 {
		return p, errors.New("impossible values")
	}
	p.Rate, p.Sent, p.Clock, p.Why, p.Digits, p.Paused = int(nums[0]), nums[1], nums[2], mediafork.GapReason(nums[4]), uint32(nums[5]), nums[6] == 1
	if nums[3] > 0 {
		p.At = time.UnixMicro(nums[3])
	}
	switch f[9] {
	case "0":
	case "1":
		p.Suspended = true
	default:
		return p, errors.New("impossible values")
	}
	return p, nil
}

func format(ps []mediafork.Position) []byte {
	var b bytes.Buffer
	b.WriteString(header + "\n")
	for _, p := range ps {
		bug, at := p.Bug, int64(0)
		if bug == "" {
			bug = "-"
		}
		if !p.At.IsZero() {
			at = p.At.UnixMicro()
		}
		fmt.Fprintf(&b, "%s %s %d %d %d %d %d %d %d %d\n", p.UUID, bug, p.Rate, p.Sent, p.Clock, at, p.Why, p.Digits, b2i(p.Paused), b2i(p.Suspended))
	}
	return b.Bytes()
}

func b2i(v bool) int {
	if v {
		return 1
	}
	return 0
}

// Writer writes one checkpoint.
type Writer struct {
	Path      string
	Positions func() []mediafork.Position // where the forks stand now (Orchestrator.Positions)
	// Changes, when set, moves when forks begin, end or suspend
	// (Orchestrator.Changes): the positions are written at the next
	// heartbeat then, not a second later.
	Changes func() uint64
	Every   time.Duration // positions; 0: DefaultEvery
	Beat    time.Duration // heartbeat; 0: DefaultBeat
	Log     *slog.Logger
}

// Run writes the checkpoint until ctx is done, then once more (the final
// positions: after a handover, the streams as they were handed over), and
// returns. A write that fails is logged (once until one works) and tried
// again at the next turn: the media path never waits for the disk.
func (w *Writer) Run(ctx context.Context) {
	every, beat := w.Every, w.Beat
	if every <= 0 {
		every = DefaultEvery
	}
	if beat <= 0 {
		beat = DefaultBeat
	}
	alive, err := os.OpenFile(AlivePath(w.Path), os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		w.Log.Warn("checkpoint: no heartbeat file", "path", AlivePath(w.Path), "error", err)
	} else {
		defer alive.Close()
	}
	failing := false
	save := func() {
		if err := w.write(); err != nil {
			if !failing {
				w.Log.Warn("checkpoint: cannot write", "path", w.Path, "error", err)
			}
			failing = true
			return
		}
		failing = false
	}
	var buf [8]byte
	tick := func() {
		if alive != nil {
			binary.BigEndian.PutUint64(buf[:], uint64(time.Now().UnixMicro()))
			alive.WriteAt(buf[:], 0)
		}
	}
	changes := func() uint64 {
		if w.Changes == nil {
			return 0
		}
		return w.Changes()
	}
	seen := changes()
	save()
	tick()
	t := time.NewTicker(beat)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			save()
			tick()
			return
		case now := <-t.C:
			tick()
			if c := changes(); now.Sub(last) >= every || c != seen {
				seen = c
				save()
				last = now
			}
		}
	}

}

// write replaces the positions file with the positions now.
func (w *Writer) write() error {
	dir := filepath.Dir(w.Path)
	tmp, err := os.CreateTemp(dir, ".checkpoint-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(format(w.Positions()))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), w.Path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}
