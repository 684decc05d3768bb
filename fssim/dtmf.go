package fssim

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DTMF, as recorded from the real switch (testdata/dtmf): `uuid_send_dtmf
// <uuid> <digits>[@<ms>]` answers "+OK <uuid> sent DTMF <data>.", then the
// channel that receives the digits fires one DTMF event per digit, a media
// frame apart (FreeSWITCH fires it when the channel dequeues the digit),
// with DTMF-Digit (URL-encoded: %23 for #), DTMF-Duration in samples at
// 8 kHz (2000, 250 ms, unless @ms says) and DTMF-Source UNKNOWN. On the real
// switch they fire on the other loopback leg (the one the tests fork); the
// simulator has one channel per call, which receives them itself.

// DefaultDTMFDuration is what a digit lasts when uuid_send_dtmf names no
// duration (FreeSWITCH's default: 2000 samples at 8 kHz).
const DefaultDTMFDuration = 250 * time.Millisecond

// sendDTMF is the uuid_send_dtmf api.
func (s *Switch) sendDTMF(args string) string {
	f := strings.Fields(args)
	if len(f) != 2 {
		return "-USAGE: <uuid> <dtmf_data>\n"
	}
	c := s.Call(f[0])
	if c == nil {
		return "-ERR Cannot locate session!\n"
	}
	digits, dur := f[1], DefaultDTMFDuration
	if d, ms, ok := strings.Cut(f[1], "@"); ok {
		if n, err := strconv.Atoi(ms); err == nil && n > 0 {
			digits, dur = d, time.Duration(n)*time.Millisecond
		}
	}
	c.PressDigits(digits, dur)
	return fmt.Sprintf("+OK %s sent DTMF %s.\n", f[0], f[1])
}

// PressDigits makes the call receive digits from its far end, each lasting
// d: one DTMF event per digit (0-9 * # A-D, any case; anything else is
// skipped, as FreeSWITCH skips it), one media frame apart, from a goroutine
// of the switch.
func (c *Call) PressDigits(digits string, d time.Duration) {
	var keys []string
	for _, r := range strings.ToUpper(digits) {
		if r >= '0' && r <= '9' || r == '*' || r == '#' || r >= 'A' && r <= 'D' {
			keys = append(keys, string(r))
		}
	}
	s := c.sw
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tick := time.NewTicker(s.cadence())
		defer tick.Stop()
		for _, k := range keys {
			select { // dequeued at the channel's next frame, after the api's reply
			case <-tick.C:
			case <-s.ctx.Done():
				return
			}
			e := s.coreHeaders("DTMF", "switch_channel.c", "switch_channel_dequeue_dtmf", 677)
			c.profileHeaders(e, "CS_EXECUTE", "ACTIVE", 4, "")
			e.add("DTMF-Digit", k)
			e.add("DTMF-Duration", strconv.Itoa(int(d/(time.Second/8000))))
			e.add("DTMF-Source", "UNKNOWN")
			s.broadcast(e)
		}
	}()
}
