package esl

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"
)

// The metadata frame survives FreeSWITCH's argument splitter (fssim's model of
// switch_separate_string, checked against the real switch by the realswitch
// tests) on both modules' command lines, whatever the signaling fields hold,
// and decodes to them and the description exactly.
func TestMetadataFrameSurvivesTheSplitter(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	desc := strings.Repeat("eyJ1dWlkIjoi-_", 40)
	for _, m := range []mediafork.Metadata{
		{ChannelID: "sofia/internal/1000@x", Exten: "2000", CallerID: "1000", CalledID: "2000"},
		{ChannelID: `O'Brien's "phone" \ line`, Exten: `\n\t\s\\\'`, CallerID: "Zoë <1000> & co\n\r\x00\x7f", CalledID: "名前 ' ' \u2028"},
		{CallerID: "  leading and trailing  "},
		{CalledID: "bad utf-8 \xff\xfe here"},
		{},
	} {
		frame, err := MetadataFrame(mediafork.ModuleAudioFork, m, desc)
		require.NoError(t, err)
		assert.False(t, strings.ContainsAny(frame, " '\t\r\n\x7f"), frame)

		var got map[string]string
		require.NoError(t, json.Unmarshal([]byte(frame), &got), frame)
		want := map[string]string{mediafork.DescriptionKey: desc}
		for k, v := range map[string]string{"channel_id": m.ChannelID, "exten": m.Exten, "caller_id": m.CallerID, "called_id": m.CalledID} {
			if v != "" {
				want[k] = strings.ToValidUTF8(v, "\uFFFD")
			}
		}
		assert.Equal(t, want, got)

		r := &runner{}
		f := forkStart("ws://x/fork/u1?cred=a.b", "mediafork")
		f.Metadata, f.Description = m, desc
		require.NoError(t, AudioFork{NewCommands("fs1", r)}.StartFork(ctx, f))
		require.NoError(t, AudioStream{NewCommands("fs1", r)}.StartFork(ctx, f))
		require.Len(t, r.lines, 2)
		// mod_audio_fork: argv[10], the metadata the 7th; mod_audio_stream: at
		// most 6 fields, the metadata the rest of the line.
		fork := fssim.SeparateString(strings.TrimPrefix(r.lines[0], "uuid_audio_fork "), 10)
		require.Len(t, fork, 7)
		assert.Equal(t, frame, fork[6], "mod_audio_fork's metadata")
		stream := fssim.SeparateString(strings.TrimPrefix(r.lines[1], "uuid_audio_stream "), 6)
		require.Len(t, stream, 6)
		assert.Equal(t, frame, stream[5], "mod_audio_stream's metadata")
	}
	frame, err := MetadataFrame(mediafork.ModuleAudioFork, mediafork.Metadata{}, "")
	assert.NoError(t, err)
	assert.Empty(t, frame, "no metadata, no description: no argument")
}

// Both modules send at most 8192 bytes of metadata and cut the rest: a start
// whose frame would be longer is refused before anything is sent, as a bad
// request that says why.
func TestMetadataFrameBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	m := mediafork.Metadata{ChannelID: "loopback/9000-b"}
	overhead := len(`{"channel_id":"loopback/9000-b","mediafork":""}`)
	fits := strings.Repeat("A", mediafork.MaxMetadataFrame-overhead)
	frame, err := MetadataFrame(mediafork.ModuleAudioFork, m, fits)
	require.NoError(t, err)
	assert.Len(t, frame, mediafork.MaxMetadataFrame)

	// One byte more; or a field whose escapes make it longer.
	for _, f := range []mediafork.ForkStart{
		{Metadata: m, Description: fits + "A"},
		{Metadata: mediafork.Metadata{ChannelID: strings.Repeat(" ", 1400)}, Description: strings.Repeat("A", 1000)},
	} {
		f.UUID, f.URL, f.Mix, f.Rate, f.Bug = "u1", "ws://x/fork/u1?cred=a.b", mediafork.Mono, 8000, "mediafork"
		r := &runner{}
		for _, sw := range []mediafork.Switch{AudioFork{NewCommands("fs1", r)}, AudioStream{NewCommands("fs1", r)}} {
			err := sw.StartFork(ctx, f)
			var br *mediafork.BadRequest
			require.True(t, errors.As(err, &br), "%v", err)
			assert.Regexp(t, `^metadata of [0-9]+ bytes is over the 8192 that `+sw.Module()+` sends: fewer endpoints or shorter metadata$`, err.Error())
		}
		assert.Empty(t, r.lines, "nothing was sent")
	}
}
