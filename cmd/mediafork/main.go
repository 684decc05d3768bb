// Command mediafork taps FreeSWITCH calls through mod_audio_fork and forwards
// their audio as ForkStream RX/TX TLV packets over UDP. main only wires: the work
// is in the packages.
package main

import (
	"errors"
	"fmt"
	"os"
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mediafork:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
