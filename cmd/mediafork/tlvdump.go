package main

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/mediafork/mediafork/mediafork"
	"github.com/mediafork/mediafork/tlvdump"
)

func tlvdumpCmd() *cobra.Command {
	var (
		listen, wavDir, encoding string
		rate, frameMs            int
		maxStreams, maxOpen      int
		duration, idle           time.Duration
		quiet                    bool
	)
	cmd := &cobra.Command{
		Use:   "tlvdump --listen ADDR [--wav DIR]",
		Short: "Receive TLV packets: a line per packet, gaps and reordering, WAV files, a summary on exit",
		Long: `A TLV receiver like ForkStream's tlv_receiver.py, for trying mediafork out and
checking a path: it prints a line per packet, writes a WAV per stream and
direction with --wav, and a summary (packets, gaps, dominant frequency) when it
ends (Ctrl-C, SIGTERM or --duration). A stream is decoded by its format packet;
the flags say what to assume for streams without one.`,
		Example: examples(
			"# Where the example config's profile sends (analytics: 127.0.0.1:9000)",
			"mediafork tlvdump --listen 127.0.0.1:9000 --wav ./wav",
			"# Ten seconds, no line per packet, then the summary",
			"mediafork tlvdump --listen 127.0.0.1:9000 --duration 10s --quiet",
			"# A ForkStream-style sender without format packets, sending G.711 µ-law",
			"mediafork tlvdump --listen 0.0.0.0:9000 --encoding pcmu --rate 8000",
		),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			opts := tlvdump.Options{Encoding: mediafork.Encoding(encoding), Rate: rate, FrameMs: frameMs, WavDir: wavDir,
				MaxStreams: maxStreams, MaxOpenFiles: maxOpen, IdleTimeout: idle}
			if !quiet {
				opts.Out = out
			}
			r, err := tlvdump.Listen(listen, opts)
			if err != nil {
				return err
			}
			// On stderr, apart from the packet lines: the address bound
			// (the port chosen when --listen asks for 0).
			fmt.Fprintf(cmd.ErrOrStderr(), "listening on %s\n", r.Addr())
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
			defer stop()
			if duration > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, duration)
				defer cancel()
			}
			err = r.Run(ctx)
			r.WriteSummary(out)
			return err
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:9000", "UDP address to receive on")
	cmd.Flags().StringVar(&wavDir, "wav", "", "write a WAV file per stream and direction into this directory")
	cmd.Flags().StringVar(&encoding, "encoding", "", fmt.Sprintf(
		"payload encoding of streams without a format packet: %s (default %s; a format packet wins, and a disagreeing one is reported)",
		mediafork.EncodingNames(), tlvdump.DefaultEncoding))
	cmd.Flags().IntVar(&rate, "rate", 0, fmt.Sprintf("sample rate of streams without a format packet (default %d)", tlvdump.DefaultRate))
	cmd.Flags().IntVar(&frameMs, "frame-ms", 0, fmt.Sprintf("audio per packet of streams without a format packet, to check payload sizes against (default %d)", tlvdump.DefaultFrameMs))
	cmd.Flags().IntVar(&maxStreams, "max-streams", tlvdump.DefaultMaxStreams, "streams (stream id and direction) tracked at once; a new one beyond evicts the least recently active")
	cmd.Flags().IntVar(&maxOpen, "max-open-files", 0, "WAV files open at once (default: half the process's descriptor limit, at most 1024); the least recently written is closed and reopened when written again")
	cmd.Flags().DurationVar(&idle, "idle-timeout", tlvdump.DefaultIdleTimeout, "close a stream that sent nothing for this long: its WAV is finalised, a later packet starts a new file")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until SIGINT/SIGTERM)")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "no line per packet, only the summary")
	return cmd
}
