package main

import (
	"context"
	le "encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mediafork/mediafork/conf"
	"github.com/mediafork/mediafork/fssim"
	"github.com/mediafork/mediafork/mediafork"

	"github.com/mediafork/mediafork/internal/tone"
)

// The demo's talk-back call (issue 22): a bot answers it. A bridged call
// (extension 5000, as the real switch's 9400: caller ~ B == C ~ callee) is
// forked on B by a rule of its own to a built-in receiver speaking
// mod_audio_fork's protocol with talkback: true. Once its stream is up the bot
// says its greeting — a second of 700 Hz in real-time 20 ms frames, then a
// mark — back into the call; mediafork plays it through the switch's module
// (a file, mixed into what B sends with uuid_displace … mux) and echoes the
// mark when the switch says it has played. Monitor forks on the caller and
// the callee (what each hears) tell who heard it.

const (
	tbGreetingHz = 700.0
	tbGreeting   = time.Second
	tbDest       = "5000"
	tbCaller     = "+15550007"
	tbCallerHz   = 1000.0 // what the caller says
	tbCalleeHz   = 440.0  // what the callee says (the caller hears it)
	tbMark       = "greeting"
)

// demoTalkback is the talk-back call and its three WebSocket servers.
type demoTalkback struct {
	bot, monCaller, monCallee *demoWS
	caller, b, c, callee      *fssim.Call

	mu     sync.Mutex
	sentAt time.Time // the greeting's first frame
	echoAt time.Time // its mark's echo
	echo   string    // the echo's event
	echoed chan struct{}
}

func startDemoTalkback() (*demoTalkback, error) {
	tb := &demoTalkback{echoed: make(chan struct{})}
	var err error
	if tb.bot, err = listenDemoWS(tb.speak); err != nil {
		return nil, err
	}
	if tb.monCaller, err = listenDemoWS(nil); err != nil {
		tb.close()
		return nil, err
	}
	if tb.monCallee, err = listenDemoWS(nil); err != nil {
		tb.close()
		return nil, err
	}
	return tb, nil
}

func (tb *demoTalkback) close() {
	for _, s := range []*demoWS{tb.bot, tb.monCaller, tb.monCallee} {
		if s != nil {
			s.close()
		}
	}
}

// configure adds the bot's profile and the rule that forks B to it.
func (tb *demoTalkback) configure(c *conf.Config) {
	c.Profiles["demo-talkback"] = conf.Profile{Endpoints: []string{tb.bot.url},
		Protocols: []conf.EndpointProtocol{{Protocol: "audiofork", Keys: map[string]any{"talkback": true, "talkback_to": "far"}}},
		Formats:   []conf.EndpointFormat{{Directions: []string{"rx"}, Rate: 8000}}}
	c.Rules = append(c.Rules, conf.Rule{Name: "demo-talkback", Profile: "demo-talkback",
		Match: map[string]string{"Caller-Destination-Number": "^" + tbDest + "$", "Channel-Name": "^loopback/" + tbDest + "-b$"}})
}

// place answers the bridged call and puts the monitors on its parties.
func (tb *demoTalkback) place(sw *fssim.Switch) error {
	tb.b, tb.c, tb.caller, tb.callee = sw.AnswerBridged(fssim.CallOptions{Dest: tbDest, CallerID: tbCaller}, tbCallerHz, tbCalleeHz)
	for _, m := range []struct {
		leg *fssim.Call
		srv *demoWS
	}{{tb.caller, tb.monCaller}, {tb.callee, tb.monCallee}} {
		if r := sw.FsCli("uuid_audio_fork " + m.leg.UUID + " start " + m.srv.url + " mono 8k demo_monitor"); r != "+OK Success\n" {
			return fmt.Errorf("the talk-back call's monitor: %s", r)
		}
	}
	return nil
}

func (tb *demoTalkback) hangup(sw *fssim.Switch) {
	for _, c := range []*fssim.Call{tb.b, tb.c, tb.caller, tb.callee} {
		if c != nil {
			sw.Hangup(c.UUID, "NORMAL_CLEARING")
		}
	}
}

// speak is the bot: once mediafork's stream is up (its metadata frame), the
// greeting in real time, then the mark; it records the mark's echo.
func (tb *demoTalkback) speak(ctx context.Context, conn *websocket.Conn, text func() <-chan []byte) {
	texts := text()
	select {
	case <-texts: // the metadata
	case <-ctx.Done():
		return
	}
	frame := make([]byte, 320)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := range int(tbGreeting / (20 * time.Millisecond)) {
		for k := range 160 {
			v := int16(8000 * math.Sin(2*math.Pi*tbGreetingHz*float64(i*160+k)/8000))
			le.LittleEndian.PutUint16(frame[2*k:], uint16(v))
		}
		if i == 0 {
			tb.mu.Lock()
			tb.sentAt = time.Now()
			tb.mu.Unlock()
		} else {
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
		conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if conn.WriteMessage(websocket.BinaryMessage, frame) != nil {
			return
		}
	}
	conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if conn.WriteMessage(websocket.TextMessage, []byte(`{"type":"mark","data":{"name":"`+tbMark+`"}}`)) != nil {
		return
	}
	for {
		select {
		case b := <-texts:
			var m struct {
				Type string `json:"type"`
				Data struct {
					Name  string `json:"name"`
					Event string `json:"event"`
				} `json:"data"`
			}
			if json.Unmarshal(b, &m) == nil && m.Type == "mark" && m.Data.Name == tbMark {
				tb.mu.Lock()
				if tb.echoAt.IsZero() {
					tb.echoAt, tb.echo = time.Now(), m.Data.Event
					close(tb.echoed)
				}
				tb.mu.Unlock()
				return
			}
		case <-ctx.Done():
			return
		}
	}
}

// wait waits for the mark's echo, at most d.
func (tb *demoTalkback) wait(d time.Duration) {
	select {
	case <-tb.echoed:
	case <-time.After(d):
	}
}

// report judges the call: the caller heard the greeting (most of its
// length, over the callee), the callee did not, the mark was echoed played
// and not before the greeting was heard. It returns the failures.
func (tb *demoTalkback) report(out io.Writer) int {
	tb.mu.Lock()
	sent, echoAt, echo := tb.sentAt, tb.echoAt, tb.echo
	tb.mu.Unlock()
	fmt.Fprintf(out, "\ntalk-back: %s -> %s (bridged), forked on its b-leg to a bot (audiofork, talkback: true) that says %.0f Hz for %v then mark %q\n",
		tbCaller, tbDest, tbGreetingHz, tbGreeting, tbMark)
	if sent.IsZero() {
		fmt.Fprintln(out, "talk-back: FAIL: mediafork's stream never reached the bot")
		return 1
	}
	callerHeard := tb.monCaller.heard(sent, tbGreetingHz)
	calleeHeard := tb.monCallee.heard(sent, tbGreetingHz)
	calleeVoice := tb.monCaller.heard(sent, tbCalleeHz)
	failures := 0
	verdict := func(ok bool) string {
		if ok {
			return "ok"
		}
		failures++
		return "FAIL"
	}
	fmt.Fprintf(out, "  the caller heard it for %v, from %v after the bot sent it, over the callee's %.0f Hz (heard %v meanwhile): %s\n",
		callerHeard.dur, callerHeard.first.Sub(sent).Round(time.Millisecond), tbCalleeHz, calleeVoice.dur,
		verdict(callerHeard.dur >= tbGreeting*8/10 && calleeVoice.dur >= tbGreeting*8/10))
	fmt.Fprintf(out, "  the callee heard it for %v: %s\n", calleeHeard.dur, verdict(calleeHeard.dur == 0))
	switch {
	case echoAt.IsZero():
		fmt.Fprintf(out, "  mark %q: FAIL: not echoed\n", tbMark)
		failures++
	default:
		fmt.Fprintf(out, "  mark %q echoed %q %v after the last of it was heard: %s\n", tbMark, echo,
			echoAt.Sub(callerHeard.last).Round(time.Millisecond), verdict(echo == "playout" && echoAt.After(callerHeard.last.Add(-60*time.Millisecond))))
	}
	return failures
}

// demoWS is a WebSocket server of mod_audio_fork's protocol on loopback: it
// records the binary frames it gets (what a monitor fork hears), and hands
// each connection to serve when set.
type demoWS struct {
	url string
	srv *http.Server
	wg  sync.WaitGroup

	mu     sync.Mutex
	frames []demoFrame
	conns  map[*websocket.Conn]bool
	closed bool
}

type demoFrame struct {
	at  time.Time
	pcm []int16
}

func listenDemoWS(serve func(ctx context.Context, conn *websocket.Conn, texts func() <-chan []byte)) (*demoWS, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &demoWS{url: "ws://" + ln.Addr().String() + "/", conns: map[*websocket.Conn]bool{}}
	up := websocket.Upgrader{Subprotocols: []string{mediafork.AudioForkSubprotocol}}
	ctx, cancel := context.WithCancel(context.Background())
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer conn.Close()
		// Joined by close, which closes the connections (an upgraded one
		// is not the http.Server's any more).
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		s.conns[conn] = true
		s.wg.Add(1)
		s.mu.Unlock()
		defer s.wg.Done()
		conn.SetReadLimit(1 << 16)
		texts := make(chan []byte, 16)
		done := make(chan struct{})
		if serve != nil {
			go func() { defer close(done); serve(ctx, conn, func() <-chan []byte { return texts }) }()
		} else {
			close(done)
		}
		for {
			mt, b, err := conn.ReadMessage()
			if err != nil {
				break
			}
			if mt == websocket.TextMessage {
				select {
				case texts <- b:
				default:
				}
				continue
			}
			pcm := make([]int16, len(b)/2)
			for i := range pcm {
				pcm[i] = int16(le.LittleEndian.Uint16(b[2*i:]))
			}
			s.mu.Lock()
			s.frames = append(s.frames, demoFrame{time.Now(), pcm})
			s.mu.Unlock()
		}
		conn.Close()
		<-done
	})}
	s.srv.RegisterOnShutdown(cancel)
	s.wg.Add(1)
	go func() { defer s.wg.Done(); s.srv.Serve(ln) }()
	return s, nil
}

func (s *demoWS) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); errors.Is(err, context.DeadlineExceeded) {
		s.srv.Close()
	}
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// heardSpan is where a tone was heard.
type heardSpan struct {
	first, last time.Time
	dur         time.Duration // frames it was heard in, 20 ms each
}

// heard is where the frames received since from hold hz (more than a
// fifth of a frame's energy: a tone heard over another of the same level
// holds half).
func (s *demoWS) heard(from time.Time, hz float64) heardSpan {
	s.mu.Lock()
	defer s.mu.Unlock()
	var h heardSpan
	for _, f := range s.frames {
		if f.at.Before(from) || tone.Share(f.pcm, 8000, hz) < 0.2 {
			continue
		}
		if h.first.IsZero() {
			h.first = f.at
		}
		h.last = f.at
		h.dur += time.Duration(len(f.pcm)) * time.Second / 8000
	}
	return h
}
