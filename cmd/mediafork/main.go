// Command mediafork taps FreeSWITCH calls through mod_audio_fork and forwards
// their audio as ForkStream RX/TX TLV packets over UDP. main only wires: the work
// is in the packages.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// exitError carries a process exit code out of a command.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func main() {
	root := &cobra.Command{
		Use:           "mediafork",
		Short:         "Fork FreeSWITCH call audio to UDP as ForkStream RX/TX TLV packets",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), configCmd(), tlvdumpCmd(), demoCmd(), forkCmd())
	root.AddCommand(versionCmd())
	setVersion(root)
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "mediafork:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}
