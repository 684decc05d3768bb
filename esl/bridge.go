package esl

import (
	"context"
	"net"

	"github.com/mediafork/mediafork/mediafork"
)

// Bridge connects the switches to the orchestrator: it is the Handler of every
// inbound Client and the handler of the outbound listener.
type Bridge struct {
	O       *mediafork.Orchestrator
	clients []*Client
}

// NewBridge connects switches to o; add the inbound clients with Add.
func NewBridge(o *mediafork.Orchestrator) *Bridge { return &Bridge{O: o} }

// Add registers an inbound client built with this bridge as its handler.
func (b *Bridge) Add(c *Client) { b.clients = append(b.clients, c) }

// Clients are the inbound clients.
func (b *Bridge) Clients() []*Client { return b.clients }

// OnConnect implements Handler.
func (b *Bridge) OnConnect(ctx context.Context, c *Client) {
	b.O.SwitchUp(ctx, NewCommands(c.Name(), c))
}

// OnEvent implements Handler.
func (b *Bridge) OnEvent(c *Client, e *Event) {
	b.O.HandleEvent(context.Background(), c.Name(), mediafork.SwitchEvent{
		Name: e.Name, Subclass: e.Subclass(), Data: mediafork.NewChannelData(e.Headers), Body: string(e.Body)})
}

// OnDisconnect implements Handler. Forks keep streaming: media does not depend
// on the event socket.
func (b *Bridge) OnDisconnect(c *Client, _ error) { b.O.SwitchDown(c.Name()) }

// HandleOutbound is the outbound listener's handler.
func (b *Bridge) HandleOutbound(ctx context.Context, call *OutboundCall) {
	b.O.HandleOutbound(ctx, &outboundSwitch{Commands: NewCommands(b.serverFor(call.Remote), call), call: call})
}

// serverFor names the configured switch an outbound socket came from: the one
// whose address has the same host, else the first.
func (b *Bridge) serverFor(remote net.Addr) string {
	host, _, _ := net.SplitHostPort(remote.String())
	for _, c := range b.clients {
		if h, _, _ := net.SplitHostPort(c.addr); h == host {
			return c.Name()
		}
	}
	if len(b.clients) > 0 {
		return b.clients[0].Name()
	}
	return ""
}

type outboundSwitch struct {
	*Commands
	call *OutboundCall
}

func (s *outboundSwitch) Data() mediafork.ChannelData      { return mediafork.NewChannelData(s.call.Data) }
func (s *outboundSwitch) Resume(ctx context.Context) error { return s.call.Resume(ctx) }
