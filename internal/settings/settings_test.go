package settings

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestDefaultsAndRefusals(t *testing.T) {
	t.Parallel()
	type s struct {
		d    time.Duration
		n, m int
	}
	v := s{n: 3, m: -1}
	c := New("thing")
	Default(c, "D", &v.d, time.Second)
	Default(c, "N", &v.n, 7)
	Default(c, "M", &v.m, 9)
	c.Check(v.n < 2, "N", "must be below 2")
	assert.Equal(t, s{d: time.Second, n: 3, m: -1}, v, "a zero takes the default; a set value stays")
	assert.EqualError(t, c.Err(), "thing settings: M is negative (-1)\nthing settings: N must be below 2", "every problem at once")
	assert.NoError(t, New("other").Err())
}
