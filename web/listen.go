package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mediafork/mediafork/mediafork"
)

// listenHello is the first (text) message of a listen-in; binary messages
// of 16-bit little-endian mono PCM at Rate follow, one per frame.
type listenHello struct {
	UUID      string `json:"uuid"`
	Bug       string `json:"bug"`
	Direction string `json:"direction"`
	Rate      int    `json:"rate"`
	Encoding  string `json:"encoding"`
}

// serveListen is GET /v1/console/listen/{uuid}?dir=mixed|rx|tx[&bug=name]
// (a WebSocket; api.listen_in on; the token checked before the upgrade): one
// fork's audio, one direction or everything the bug carries mixed, until the
// fork ends or the client goes. The media path copies each frame into the
// listener's ring and never waits for this connection: a slow client loses
// frames.
func (c *Console) serveListen(w http.ResponseWriter, r *http.Request, who string) {
	if who == "none" {
		httpError(w, http.StatusForbidden, "listen-in needs api.token")
		return
	}
	uuid, ok := pathUUID(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	dirName := q.Get("dir")
	if dirName == "" {
		dirName = "mixed"
	}
	dir, err := mediafork.ParseDirection(dirName)
	if err != nil {
		httpError(w, http.StatusBadRequest, "dir: "+err.Error())
		return
	}
	bug := q.Get("bug")
	if len(bug) > 64 {
		httpError(w, http.StatusBadRequest, "bug: too long")
		return
	}
	var f *mediafork.Fork
	for _, g := range c.reg.Get(uuid) {
		if (bug == "" || g.Bug == bug) && g.State() == mediafork.StateStreaming {
			f = g
			break
		}
	}
	if f == nil {
		httpError(w, http.StatusNotFound, "no streaming fork on "+string(uuid))
		return
	}
	in := f.Info()
	if !mediafork.ListenDirections(in.Mix).Has(dir) {
		httpError(w, http.StatusBadRequest, "a "+string(in.Mix)+" bug has no "+dirName+" direction")
		return
	}
	if n := c.listeners.Add(1); int(n) > c.set.MaxListeners {
		c.listeners.Add(-1)
		httpError(w, http.StatusServiceUnavailable, "too many listen-ins")
		return
	}
	defer c.listeners.Add(-1)
	channels := in.Mix.Channels()
	l := mediafork.NewListener(max(4096, in.Rate*2*channels/10)) // frames of up to 100 ms
	switch lerr := f.Listen(l); {
	case errors.Is(lerr, mediafork.ErrListening):
		httpError(w, http.StatusConflict, lerr.Error())
		return
	case lerr != nil:
		httpError(w, http.StatusNotFound, lerr.Error())
		return
	}
	defer f.Unlisten(l)
	conn, leave, ok := c.upgrade(w, r)
	if !ok {
		return
	}
	defer leave()
	conn.EnableWriteCompression(false) // PCM does not compress; save the CPU
	c.log.Info("listen-in", "remote", r.RemoteAddr, "token_sha256", who, "uuid", uuid, "bug", f.Bug,
		"stream_id", f.StreamID, "direction", dirName)
	hello, _ := json.Marshal(listenHello{UUID: string(uuid), Bug: f.Bug, Direction: dirName, Rate: in.Rate, Encoding: "l16"})
	conn.SetWriteDeadline(time.Now().Add(c.set.FeedWriteTimeout))
	if conn.WriteMessage(websocket.TextMessage, hello) != nil {
		return
	}
	done := c.readUntilClosed(conn)
	ping := time.NewTicker(c.set.FeedPing)
	defer ping.Stop()
	var frame, pcm []byte
	sent := 0
	reason := "client left"
	defer func() {
		c.log.Debug("listen-in ended", "remote", r.RemoteAddr, "uuid", uuid, "bytes", sent, "dropped", l.Dropped.Load(), "reason", reason)
	}()
	drain := func() bool {
		for {
			var ok bool
			if frame, ok = l.Read(frame); !ok {
				return true
			}
			pcm = mediafork.ListenPCM(pcm[:0], frame, in.Mix, dir)
			conn.SetWriteDeadline(time.Now().Add(c.set.FeedWriteTimeout))
			if err := conn.WriteMessage(websocket.BinaryMessage, pcm); err != nil {
				reason = err.Error()
				return false
			}
			sent += len(pcm)
		}
	}
	for {
		if !drain() {
			return
		}
		select {
		case <-l.Ready():
		case <-ping.C:
			if conn.WriteControl(websocket.PingMessage, nil, time.Now().Add(c.set.FeedWriteTimeout)) != nil {
				return
			}
		case <-f.Done():
			reason = "fork ended"
			drain()
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "fork ended"),
				time.Now().Add(time.Second))
			return
		case <-done:
			return
		case <-c.ctx.Done():
			reason = "shutting down"
			conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "shutting down"),
				time.Now().Add(time.Second))
			return
		}
	}
}
