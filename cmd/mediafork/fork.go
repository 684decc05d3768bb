package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/web"
)

// apiClient talks to a running mediafork's HTTP API.
type apiClient struct {
	base, token string
	http        *http.Client
}

func (c *apiClient) do(method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach mediafork at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if resp.StatusCode >= 300 {
		var e struct{ Error string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return fmt.Errorf("%s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

func forkCmd() *cobra.Command {
	var file, apiURL, token string
	client := func() (*apiClient, error) {
		c := &apiClient{base: apiURL, token: token, http: &http.Client{Timeout: 15 * time.Second}}
		if c.token == "" {
			c.token = os.Getenv("MEDIAFORK_API_TOKEN")
		}
		if c.base == "" || c.token == "" {
			cfg, _, err := loadConfig(file)
			if err != nil {
				return nil, err
			}
			if c.base == "" {
				if cfg.API.Listen == "" {
					return nil, fmt.Errorf("api.listen is empty: give --api")
				}
				c.base = "http://" + cfg.API.Listen
			}
			if c.token == "" {
				c.token = cfg.API.Token
			}
		}
		c.base = strings.TrimRight(c.base, "/")
		return c, nil
	}
	cmd := &cobra.Command{Use: "fork", Short: "Start, stop and list forks of a running mediafork (HTTP API client)",
		Long: "Start, stop and list the forks of a running mediafork, and list its live calls, through its HTTP API.\n\n" + tokenHelp,
		Example: examples(
			"# The live calls, forked or not, with their uuids",
			"mediafork fork calls --config /etc/mediafork/mediafork.yaml",
			"# Fork one with a profile of the config",
			"MEDIAFORK_API_TOKEN=s3cret mediafork fork start 0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b --profile analytics",
		)}
	cmd.PersistentFlags().StringVar(&file, "config", "", "config file to read api.listen and api.token from")
	cmd.PersistentFlags().StringVar(&apiURL, "api", "", "API base URL (default http://<api.listen>)")
	cmd.PersistentFlags().StringVar(&token, "token", "", "Bearer token (default $MEDIAFORK_API_TOKEN, else api.token of the config)")

	var req mediafork.StartRequest
	var channelID, exten, callerID, calledID string
	start := &cobra.Command{
		Use:   "start <uuid> [--profile P | --to host:port ...]",
		Short: "Fork a call",
		Long: `Fork a call: to a profile's endpoints, or to ad-hoc destinations (--to, each
inside destinations.allow), with the profile's format unless --mix, --rate or
--encoding say otherwise. "mediafork fork calls" lists the live calls' uuids.

` + tokenHelp,
		Example: examples(
			"mediafork fork start 0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b --profile analytics",
			"# To an ad-hoc receiver, as G.711 µ-law, on a mediafork elsewhere",
			"mediafork fork start 0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b --to 10.0.0.7:9000 --encoding pcmu --api http://10.0.0.5:8088 --token \"$TOKEN\"",
			"# The call is on the switch named fs-east in the config",
			"mediafork fork start 0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b --profile analytics --freeswitch fs-east",
		),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			req.UUID = mediafork.CallID(args[0]) // the API checks it
			req.Metadata = map[string]string{}
			for k, v := range map[string]string{"channel_id": channelID, "exten": exten, "caller_id": callerID, "called_id": calledID} {
				if v != "" {
					req.Metadata[k] = v
				}
			}
			var in mediafork.Info
			if err := c.do("POST", "/v1/forks", req, &in); err != nil {
				return err
			}
			printForks(cmd.OutOrStdout(), []mediafork.Info{in})
			return nil
		},
	}
	start.Flags().StringVar(&req.FreeSWITCH, "freeswitch", "", "the switch the call is on (default: the first connected)")
	start.Flags().StringVar(&req.Profile, "profile", "", "a profile from the config")
	start.Flags().StringSliceVar(&req.To, "to", nil, "host:port destinations (repeatable; inside destinations.allow)")
	start.Flags().StringVar(&req.Mix, "mix", "", "mono|mixed|stereo")
	start.Flags().IntVar(&req.Rate, "rate", 0, "sample rate, a multiple of 8000 up to 48000")
	start.Flags().StringVar(&req.Encoding, "encoding", "", mediafork.EncodingNames())
	start.Flags().StringVar(&channelID, "channel-id", "", "signaling channel_id (default Channel-Name)")
	start.Flags().StringVar(&exten, "exten", "", "signaling exten")
	start.Flags().StringVar(&callerID, "caller-id", "", "signaling caller_id")
	start.Flags().StringVar(&calledID, "called-id", "", "signaling called_id")

	stop := &cobra.Command{
		Use:   "stop <uuid>",
		Short: "Stop a call's fork (end packets with reason 2)",
		Long:  "Stop a call's fork: its receivers get end packets with reason 2 (stopped); the call goes on.\n\n" + tokenHelp,
		Example: examples(
			"mediafork fork stop 0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b",
			"MEDIAFORK_API_TOKEN=s3cret mediafork fork stop 0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b --api http://127.0.0.1:8088",
		),
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			if err := c.do("DELETE", "/v1/forks/"+args[0], nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "fork of %s stopped\n", args[0])
			return nil
		},
	}
	var reason string
	pause := func(verb string) *cobra.Command {
		return &cobra.Command{
			Use:   verb + " <uuid>",
			Short: map[string]string{"pause": "Pause a call's fork: no audio (nor DTMF) leaves mediafork until resumed (PCI)", "resume": "Resume a paused fork: the pause is a gap (reason 3)"}[verb],
			Long: map[string]string{
				"pause":  "Pause a call's fork (PCI: while a card number is read out): from its next frame no audio nor DTMF leaves mediafork — or silent frames, for a profile with pause: silence — until resumed. The pause holds across a lost media connection and a restart; each pause and resume is an audit log line.\n\n" + tokenHelp,
				"resume": "Resume a paused fork: its streams go on with a gap packet of reason 3 (paused) for the frames not sent.\n\n" + tokenHelp,
			}[verb],
			Example: examples(
				"mediafork fork "+verb+" 0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b --reason \"card details\"",
				"MEDIAFORK_API_TOKEN=s3cret mediafork fork "+verb+" 0d1a2b3c-4d5e-4f60-8a9b-0c1d2e3f4a5b --api http://127.0.0.1:8088",
			),
			Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := client()
				if err != nil {
					return err
				}
				var in mediafork.Info
				if err := c.do("POST", "/v1/forks/"+args[0]+"/"+verb, web.PauseRequest{Reason: reason}, &in); err != nil {
					return err
				}
				printForks(cmd.OutOrStdout(), []mediafork.Info{in})
				return nil
			},
		}
	}
	pauseCmd, resumeCmd := pause("pause"), pause("resume")
	for _, c := range []*cobra.Command{pauseCmd, resumeCmd} {
		c.Flags().StringVar(&reason, "reason", "", "why, for the audit log")
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List forks: live, starting, failed and recently ended",
		Long:  "List the forks: live, starting, failed and recently ended, with their stream ids, formats, counters and last errors.\n\n" + tokenHelp,
		Example: examples(
			"mediafork fork list",
			"mediafork fork list --config /etc/mediafork/mediafork.yaml",
			"mediafork fork list --api http://10.0.0.5:8088 --token \"$TOKEN\"",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var out struct{ Forks []mediafork.Info }
			if err := c.do("GET", "/v1/forks", nil, &out); err != nil {
				return err
			}
			printForks(cmd.OutOrStdout(), out.Forks)
			return nil
		},
	}
	calls := &cobra.Command{
		Use:   "calls",
		Short: "List the live calls on every switch, forked or not, with their uuids",
		Long:  "List the live calls mediafork knows of on every switch, forked or not: uuid, switch, caller, callee, and the states of their forks.\n\n" + tokenHelp,
		Example: examples(
			"mediafork fork calls",
			"MEDIAFORK_API_TOKEN=s3cret mediafork fork calls --api http://127.0.0.1:8088",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := client()
			if err != nil {
				return err
			}
			var out struct {
				Calls []struct {
					mediafork.LiveCall
					Forks []string `json:"forks"`
				} `json:"calls"`
			}
			if err := c.do("GET", "/v1/calls", nil, &out); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "UUID\tFREESWITCH\tCALLER\tCALLEE\tANSWERED\tFORKS")
			for _, lc := range out.Calls {
				forks := strings.Join(lc.Forks, ",")
				if forks == "" {
					forks = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", lc.UUID, lc.Server, orDash(lc.Caller), orDash(lc.Callee),
					lc.Answered.Local().Format("15:04:05"), forks)
			}
			tw.Flush()
			if len(out.Calls) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "(no live calls)")
			}
			return nil
		},
	}
	cmd.AddCommand(start, stop, pauseCmd, resumeCmd, list, calls)
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printForks(w io.Writer, forks []mediafork.Info) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UUID\tSTREAM\tSERVER\tSTATE\tFORMAT\tENDPOINTS\tFRAMES IN\tPACKETS OUT\tDROPS\tLAST ERROR")
	for _, f := range forks {
		var out []string
		for _, d := range []string{"RX", "TX", "MIXED"} {
			if n, ok := f.PacketsOut[d]; ok {
				out = append(out, fmt.Sprintf("%s %d", d, n))
			}
		}
		last := f.LastError
		if f.EndReason != "" {
			last = strings.TrimSpace("ended: " + f.EndReason + " " + last)
		}
		state := string(f.State)
		if f.Paused {
			state += "/paused"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s/%d/%s\t%s\t%d\t%s\t%d\t%s\n", f.UUID, f.StreamID, f.Server, state,

			f.Mix, f.Rate, f.Encoding, strings.Join(f.Endpoints, ","), f.FramesIn, strings.Join(out, " "), f.Drops, last)
	}
	tw.Flush()
	if len(forks) == 0 {
		fmt.Fprintln(w, "(no forks)")
	}
}
