package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

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
		return nil, path, &exitError{code: 2, err: configError(err)}
	}
	return c, path, nil
}

// configError puts each problem of a refused config on its own line, so an
// operator sees them all at once.
func configError(err error) error {
	list := conf.List(err)
	if len(list) < 2 {
		return err
	}
	lines := make([]string, len(list))
	for i, e := range list {
		lines[i] = "  " + e.Key + ": " + e.Msg
	}
	return fmt.Errorf("config: %d errors:\n%s", len(list), strings.Join(lines, "\n"))
}

func configCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Work with the configuration",
		Example: examples(
			"mediafork config check --config conf/mediafork.example.yaml",
			"mediafork config check        # ./mediafork.yaml if present, else the defaults",
		)}
	var file string
	check := &cobra.Command{
		Use:   "check",
		Short: "Validate the configuration, reporting every error, and print it as it takes effect (YAML, secrets masked)",
		Long: `Validate the configuration as serve would load it (the file, then MEDIAFORK_*
variables over it) and print it as it takes effect, secrets masked. On errors,
exit 2 listing every one, each naming its key, with "did you mean" for a
misspelt key.`,
		Example: examples(
			"mediafork config check --config conf/mediafork.example.yaml",
			"# With the environment's overrides, as serve would run",
			"MEDIAFORK_DESTINATIONS_ALLOW=10.0.0.0/8 mediafork config check --config /etc/mediafork/mediafork.yaml",
			"# Before a reload",
			"mediafork config check --config /etc/mediafork/mediafork.yaml && systemctl reload mediafork",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, path, err := loadConfig(file)
			if err != nil {
				return err
			}
			out, err := effectiveYAML(c.Masked())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "config %s: ok\n", orDefaults(path))
			_, err = cmd.OutOrStdout().Write(out)
			return err
		},
	}
	check.Flags().StringVar(&file, "config", "", "config file (default ./mediafork.yaml if present)")
	cmd.AddCommand(check)
	return cmd
}

// effectiveYAML is c as YAML with the config's own key names: through JSON
// (the structs' names and Duration's "1s"), read back as a YAML node tree to
// keep the order of the keys, in block style.
func effectiveYAML(c *conf.Config) ([]byte, error) {
	j, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(j, &doc); err != nil {
		return nil, err
	}
	var plain func(n *yaml.Node)
	plain = func(n *yaml.Node) {
		n.Style = 0
		if n.Kind == yaml.ScalarNode && n.Tag == "!!str" && needsQuotes(n.Value) {
			n.Style = yaml.DoubleQuotedStyle
		}
		for _, k := range n.Content {
			plain(k)
		}
	}
	plain(&doc)
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, errors.New("yaml: " + err.Error())
	}
	return []byte(b.String()), nil
}

// needsQuotes: an empty string, or one YAML would read as another type.
func needsQuotes(s string) bool {
	if s == "" {
		return true
	}
	var v any
	if yaml.Unmarshal([]byte(s), &v) != nil {
		return true
	}
	_, isString := v.(string)
	return !isString
}
