package main

import (
	"strings"

	"github.com/spf13/cobra"
)

// Help that teaches: every command's --help ends with examples (help_test.go
// checks that each example names a real command and real flags).

// examples is cobra's Example text: one example a line, a comment above each.
func examples(lines ...string) string {
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n")
}

// tokenHelp is where the fork commands take the API's address and token.
const tokenHelp = `The API's address: --api, else http://<api.listen> of the config.
The Bearer token: --token, else $MEDIAFORK_API_TOKEN, else api.token of the config
(--config FILE, else ./mediafork.yaml if present). With no token anywhere the
request goes without one, which a mediafork with api.token empty (listening on
loopback only) accepts from this machine.`

// newRoot is the mediafork command with every subcommand.
func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:   "mediafork",
		Short: "Fork FreeSWITCH call audio to UDP as ForkStream RX/TX TLV packets",
		Long: `mediafork taps the audio of live FreeSWITCH calls (mod_audio_fork or mod_audio_stream
stream it over a WebSocket) and sends each direction, as it happens, to your
receivers as ForkStream RX/TX TLV packets over UDP.`,
		Example: examples(
			"# See the whole path work on this machine, no FreeSWITCH needed",
			"mediafork demo",
			"# Next to your FreeSWITCH: check the config, then run the daemon",
			"mediafork config check --config /etc/mediafork/mediafork.yaml",
			"mediafork serve --config /etc/mediafork/mediafork.yaml",
		),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(serveCmd(), configCmd(), tlvdumpCmd(), demoCmd(), forkCmd())
	root.AddCommand(versionCmd())
	setVersion(root)
	return root
}
