package mediafork

import (
	"encoding/json"
	"math"
	"sync/atomic"
	"time"
)

// Level is one direction's audio level as the console and the logger show it.
type Level struct {
	Direction Direction
	// DBFS is the peak of the last measured frame in dB below full scale,
	// MinDBFS for digital silence (JSON has no -Inf).
	DBFS float64 `json:"dbfs"`
	// Silent is true once the direction has stayed below SilenceDBFS for
	// SilentAfter: one-way audio, the classic fault, shows as one side silent.
	Silent bool `json:"silent"`
	// QuietFor is how long the direction has been below SilenceDBFS (0 while
	// audible); measured from the fork's start when it never was audible.
	QuietFor time.Duration `json:"-"`
}

// levelJSON is Level on the wire: the direction by name, dBFS to 0.1 dB,
// QuietFor in milliseconds.
type levelJSON struct {
	Direction string  `json:"direction"`
	DBFS      float64 `json:"dbfs"`
	Silent    bool    `json:"silent"`
	QuietMs   int64   `json:"quiet_ms"`
}

// MarshalJSON implements json.Marshaler.
func (l Level) MarshalJSON() ([]byte, error) {
	return json.Marshal(levelJSON{l.Direction.String(), math.Round(l.DBFS*10) / 10, l.Silent, l.QuietFor.Milliseconds()})
}

// UnmarshalJSON reads what MarshalJSON wrote (the API's clients).
func (l *Level) UnmarshalJSON(b []byte) error {
	var j levelJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	d, err := ParseDirection(j.Direction)
	if err != nil {
		return err
	}
	*l = Level{Direction: d, DBFS: j.DBFS, Silent: j.Silent, QuietFor: time.Duration(j.QuietMs) * time.Millisecond}
	return nil
}

const (
	// MinDBFS is the level reported for digital silence: a 16-bit sample's
	// smallest step is about -90 dBFS.
	MinDBFS = -96.0
	// SilenceDBFS is the floor under which a frame counts as silence
	// (comfort-noise and line hiss sit well above a true dead side's zeros).
	SilenceDBFS = -60.0
	// SilentAfter is how long below the floor before a direction is flagged.
	SilentAfter = 3 * time.Second
	// meterEvery: one frame in this many is measured (every 100 ms at 20 ms).
	meterEvery = 5
)

// silencePeak is SilenceDBFS as a 16-bit peak: 32768·10^(-60/20) ≈ 33.
var silencePeak = uint32(32768 * math.Pow(10, SilenceDBFS/20))

// meter keeps a fork's level per channel of its PCM. The owner of Write
// measures the peak of one frame in meterEvery (a few hundred loads, no lock,
// no allocation); any goroutine reads it.
type meter struct {
	frames  uint32 // owned by the Write goroutine
	peak    [2]atomic.Uint32
	audible [2]atomic.Int64 // unix ns of the last frame above the floor
}

// start counts silence from now for every channel.
func (m *meter) start(now time.Time) {
	for i := range m.audible {
		m.audible[i].Store(now.UnixNano())
	}
}

// observe measures pcm (16-bit little-endian, channels interleaved) when its
// turn comes.
func (m *meter) observe(pcm []byte, channels int) {
	m.frames++
	if m.frames%meterEvery != 1 || channels < 1 || channels > len(m.peak) {
		return
	}
	var peak [2]uint32
	step := 2 * channels
	for c := 0; c < channels; c++ {
		p := uint32(0)
		for i := 2 * c; i+1 < len(pcm); i += step {
			s := int32(int16(uint16(pcm[i]) | uint16(pcm[i+1])<<8))
			if s < 0 {
				s = -s
			}
			if uint32(s) > p {
				p = uint32(s)
			}
		}
		peak[c] = p
	}
	var now int64
	for c := 0; c < channels; c++ {
		m.peak[c].Store(peak[c])
		if peak[c] > silencePeak {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			m.audible[c].Store(now)
		}
	}
}

// level is channel c's level at now.
func (m *meter) level(c int, now time.Time) Level {
	l := Level{DBFS: MinDBFS}
	if p := m.peak[c].Load(); p > 0 {
		l.DBFS = math.Max(MinDBFS, 20*math.Log10(float64(p)/32768))
	}
	if l.DBFS <= SilenceDBFS {
		l.QuietFor = max(0, now.Sub(time.Unix(0, m.audible[c].Load())))
		l.Silent = l.QuietFor >= SilentAfter
	}
	return l
}

// Levels is the fork's level per direction its bug carries (RX and TX for
// stereo; RX for mono; MIXED for mixed), in that order; nil unless it streams.
func (f *Fork) Levels() []Level { return f.AppendLevels(nil) }

// AppendLevels appends Levels to dst (a sampler of every fork reuses one
// slice: nothing allocated per fork).
func (f *Fork) AppendLevels(dst []Level) []Level {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.appendLevels(dst, time.Now())
}

// appendLevels is AppendLevels with f.mu held.
func (f *Fork) appendLevels(dst []Level, now time.Time) []Level {
	mix, state := f.spec.Mix, f.state
	if state != StateStreaming || mix == "" {
		return dst
	}
	for i, d := range mix.Directions() {
		l := f.meter.level(i, now)
		l.Direction = d
		dst = append(dst, l)
	}
	return dst
}
