//go:build !linux

package gso

import (
	"errors"

	"github.com/mediafork/mediafork/mediafork"
)

// New fails: UDP GSO is Linux's.
func New() (mediafork.Transport, error) {
	return nil, errors.New("UDP GSO is available on Linux only")
}
