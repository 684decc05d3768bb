// Package settings checks the settings structs components take when they are
// built (esl.ClientSettings, web.IngestSettings, ...): a zero field takes its
// documented default, a negative one is refused, and every problem of a struct
// is reported at once. Settings are values the component keeps: nothing of
// them lives in package variables.
package settings

import (
	"errors"
	"fmt"
)

// Number is what a count or a duration setting is.
type Number interface{ ~int | ~int64 }

// Checker gathers the problems of one settings struct.
type Checker struct {
	what string
	errs []error
}

// New checks the settings of what ("esl client", ...), named in each error.
func New(what string) *Checker { return &Checker{what: what} }

// Default sets *v to def when it is zero; a negative *v is refused.
func Default[T Number](c *Checker, name string, v *T, def T) {
	switch {
	case *v < 0:
		c.Fail(name, fmt.Sprintf("is negative (%v)", *v))
	case *v == 0:
		*v = def
	}
}

// Check refuses name with msg unless ok.
func (c *Checker) Check(ok bool, name, msg string) {
	if !ok {
		c.Fail(name, msg)
	}
}

// Fail refuses name with msg.
func (c *Checker) Fail(name, msg string) {
	c.errs = append(c.errs, fmt.Errorf("%s settings: %s %s", c.what, name, msg))
}

// Err is every problem found, joined; nil when there is none.
func (c *Checker) Err() error { return errors.Join(c.errs...) }
