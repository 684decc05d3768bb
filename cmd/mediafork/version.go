package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/mediafork/mediafork/internal/buildinfo"
)

// versionCmd prints what --version prints: version, commit, Go version, OS/arch.
func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version, commit, Go version and platform",
		Example: examples(
			"mediafork version",
			"mediafork --version",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), buildinfo.Get())
			return err
		},
	}
}

// setVersion makes --version print the same line as the version command.
func setVersion(root *cobra.Command) {
	root.Version = buildinfo.Get().Version
	root.SetVersionTemplate(buildinfo.Get().String() + "\n")
}
