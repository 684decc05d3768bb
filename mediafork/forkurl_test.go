package mediafork

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A fork whose URL mod_audio_fork cannot take (FreeSWITCH segfaults from about
// 710 bytes) is refused before anything is sent; mod_audio_stream takes it.
func TestForkURLLimitByModule(t *testing.T) {
	var to []string
	for i := range 8 {
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

			// One destination fits either module.
			_, err := r.o.StartCall(ctx, StartRequest{UUID: "u1", To: to[:1]})
			require.NoError(t, err)
			f := sw.lastStart(t, "u1")
			assert.LessOrEqual(t, len(f.URL), MaxAudioForkURL)
			sw.expect(t, "start u1 ")
			require.NoError(t, r.o.Stop(ctx, "u1"))
			sw.expect(t, "stop u1")

			_, err = r.o.StartCall(ctx, StartRequest{UUID: "u1", To: to})
			if tc.ok {
				require.NoError(t, err)
				assert.Greater(t, len(sw.lastStart(t, "u1").URL), MaxAudioForkURL+100)
				sw.expect(t, "start u1 ")
			} else {
				var br *BadRequest
				require.True(t, errors.As(err, &br), "%v", err)
				assert.Regexp(t, `^fork URL of [0-9]+ bytes is over the 690 that audio_fork takes: fewer destinations or shorter metadata$`, err.Error())
			}
			r.settle()
			sw.expectNothing(t)
		})
	}
}
