package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/mediafork/mediafork/conf"
)

// configPath is --config, else ./mediafork.yaml when present, else "" (defaults).
func configPath(flag string) string {
	if flag != "" {
		return flag
	}
	if _, err := os.Stat(conf.DefaultFile); err == nil {
		return conf.DefaultFile
	}
	return ""
}

func loadConfig(flag string) (*conf.Config, string, error) {
	path := configPath(flag)
	c, err := conf.Load(path, nil)
	if err != nil {
		return nil, path, &exitError{code: 2, err: err}
	}
	return c, path, nil
}

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the configuration"}
	var file string
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration and print it as it takes effect (secrets masked)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, path, err := loadConfig(file)
			if err != nil {
				return err
			}
			if path == "" {
				path = "(defaults)"
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "config %s: ok\n", path)
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(c.Masked())
		},
	}
	check.Flags().StringVar(&file, "config", "", "config file (default ./mediafork.yaml if present)")
	cmd.AddCommand(check)
	return cmd
}
