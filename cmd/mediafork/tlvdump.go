package main

import (
	"context"
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
		rate                     int
		duration                 time.Duration
		quiet                    bool
	)
	cmd := &cobra.Command{
		Use:   "tlvdump --listen ADDR [--wav DIR]",
		Short: "Receive TLV packets: a line per packet, gaps and reordering, WAV files, a summary on exit",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			out := cmd.OutOrStdout()
			opts := tlvdump.Options{Encoding: mediafork.Encoding(encoding), Rate: rate, WavDir: wavDir}
			if !quiet {
				opts.Out = out
			}
			r, err := tlvdump.Listen(listen, opts)
			if err != nil {
				return err
			}
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
	cmd.Flags().StringVar(&encoding, "encoding", "l16", "payload encoding: l16|l16be|pcmu|pcma")
	cmd.Flags().IntVar(&rate, "rate", 8000, "sample rate of the audio")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long (default: until SIGINT/SIGTERM)")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "no line per packet, only the summary")
	return cmd
}
