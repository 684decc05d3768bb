package mediafork

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A fork's URL carries only its credential's token, whatever its endpoints:
// a fork of DefaultMaxDestinations endpoints fits mod_audio_fork's URL
// (FreeSWITCH segfaults from about 710 bytes), its description travelling in
// the metadata. Only an absurd ingest.url still crosses the bound, and such a
// start is refused before anything is sent; mod_audio_stream takes it.
func TestForkURLLimitByModule(t *testing.T) {
	var to []string
	for i := range DefaultMaxDestinations {
		to = append(to, fmt.Sprintf("127.0.0.1:%d", 10000+i))
	}
	for _, tc := range []struct {
		module string
		ok     bool
	}{{ModuleAudioFork, false}, {ModuleAudioStream, true}} {
		t.Run(tc.module, func(t *testing.T) {
			r := newRig(t, nil)
			sw := newFakeSwitch("fs1")
			sw.module = tc.module
			r.up(sw)
			sw.answer("u1", "2000")
			ctx := context.Background()

			var urls []int
			for _, n := range []int{1, len(to)} {
				_, err := r.o.StartCall(ctx, StartRequest{UUID: "u1", To: to[:n]})
				require.NoError(t, err)
				f := sw.lastStart(t, "u1")
				urls = append(urls, len(f.URL))
				assert.Less(t, len(f.URL), 300)
				assert.Len(t, r.credential(t, f).Targets, n, "the description carries every endpoint")
				sw.expect(t, "start u1 ")
				require.NoError(t, r.o.Stop(ctx, "u1"))
				sw.expect(t, "stop u1")
			}
			assert.Equal(t, urls[0], urls[1], "the URL does not grow with the endpoints")

			long := "ws://" + strings.Repeat("a", 500) + ".example:8090"
			r.o.SetPolicy(func() *Policy { p := *r.p; p.IngestURL = long; return &p }())
			_, err := r.o.StartCall(ctx, StartRequest{UUID: "u1", To: to[:1]})
			if tc.ok {
				require.NoError(t, err)
				assert.Greater(t, len(sw.lastStart(t, "u1").URL), MaxAudioForkURL)
				sw.expect(t, "start u1 ")
			} else {
				var br *BadRequest
				require.True(t, errors.As(err, &br), "%v", err)
				assert.Regexp(t, `^fork URL of [0-9]+ bytes is over the 690 that audio_fork takes: ingest.url \(518 bytes\) is too long$`, err.Error())
			}
			r.settle()
			sw.expectNothing(t)
		})
	}
}
