package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Every command's --help teaches by example: two or three examples (a
// group's may be fewer when its subcommands have theirs), each naming a real
// command and only flags that command has; the fork commands say where the
// token comes from.
func TestEveryHelpHasExamples(t *testing.T) {
	root := newRoot()
	var walk func(c *cobra.Command)
	seen := 0
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Name() != "help" && sub.Name() != "completion" {
				walk(sub)
			}
		}
		if c.Name() == "help" || c.Name() == "completion" {
			return
		}
		seen++
		path := c.CommandPath()
		var out bytes.Buffer
		c.SetOut(&out)
		require.NoError(t, c.Help(), path)
		help := out.String()
		require.Contains(t, help, "Examples:\n", "%s --help", path)
		var cmds []string
		for _, line := range strings.Split(c.Example, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			cmds = append(cmds, line)
			checkExample(t, root, path, line)
		}
		min := 2
		if c.HasSubCommands() && c != root {
			min = 1
		}
		assert.GreaterOrEqual(t, len(cmds), min, "%s: examples", path)
		assert.LessOrEqual(t, len(cmds), 3, "%s: examples", path)
		if strings.HasPrefix(path, "mediafork fork") {
			for _, want := range []string{"--token", "$MEDIAFORK_API_TOKEN", "api.token"} {
				assert.Contains(t, help, want, "%s --help says where the token comes from", path)
			}
		}
	}
	walk(root)
	assert.GreaterOrEqual(t, seen, 11, "root, serve, config, config check, tlvdump, demo, fork and its 4, version")
}

// checkExample checks one example line: every `mediafork ...` in it (after
// environment assignments; a line may chain two with &&) names a real
// command, and every --flag is one that command takes.
func checkExample(t *testing.T, root *cobra.Command, path, line string) {
	t.Helper()
	if i := strings.Index(line, " #"); i >= 0 {
		line = line[:i]
	}
	for _, part := range strings.Split(line, "&&") {
		f := strings.Fields(part)
		for len(f) > 0 && strings.Contains(f[0], "=") { // VAR=value
			f = f[1:]
		}
		if len(f) == 0 || f[0] != "mediafork" {
			continue // another program (kill, systemctl)
		}
		cmd, rest, err := root.Find(f[1:])
		require.NoError(t, err, "%s: example %q", path, line)
		for _, a := range rest {
			if !strings.HasPrefix(a, "--") {
				continue
			}
			name := strings.SplitN(strings.TrimPrefix(a, "--"), "=", 2)[0]
			if name == "version" && cmd == root {
				continue
			}
			assert.NotNil(t, cmd.Flags().Lookup(name), "%s: example %q: %s has no --%s", path, line, cmd.CommandPath(), name)
		}
	}
}
