package conf

import (
	"errors"
	"strings"
)

// Errors is every problem one load found, in the order found, each naming its
// key: an operator fixes a file in one round, not one error per run.
type Errors []*Error

// Error is one line: a log line must not carry a newline in a value.
func (es Errors) Error() string {
	parts := make([]string, len(es))
	for i, e := range es {
		parts[i] = e.Key + ": " + e.Msg
	}
	return "config: " + strings.Join(parts, "; ")
}

// Unwrap lets errors.As find each *Error.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// List is every *Error in err: the one, or each of an Errors; nil for other
// errors.
func List(err error) []*Error {
	var es Errors
	if errors.As(err, &es) {
		return es
	}
	var e *Error
	if errors.As(err, &e) {
		return []*Error{e}
	}
	return nil
}

// add appends e unless an error about the same key, or a key containing it,
// is there already (a value the decoder refused is not reported again by the
// validation of what was left in its place).
func (es *Errors) add(e *Error) {
	for _, have := range *es {
		if have.Key != "" && (e.Key == have.Key || strings.HasPrefix(e.Key, have.Key+".") || strings.HasPrefix(e.Key, have.Key+"[")) {
			return
		}
	}
	*es = append(*es, e)
}

// err is nil, the one *Error, or all of them.
func (es Errors) err() error {
	switch len(es) {
	case 0:
		return nil
	case 1:
		return es[0]
	}
	return es
}
