package esl

import (
	"context"
	"net"
	"sync"

	"github.com/mediafork/mediafork/mediafork"
)

// Module settings of a switch (conf freeswitch[].module): a media module, or
// ModuleAuto to ask the switch after each connect.
const ModuleAuto = "auto"

// Bridge connects the switches to the orchestrator: it is the Handler of every
// inbound Client and the handler of the outbound listener. It turns ESL events
// into the domain's events and gives the orchestrator, per switch, the Switch
// of the media module that switch forks with.
type Bridge struct {
	O       *mediafork.Orchestrator
	clients []*Client

	mu      sync.Mutex
	modules map[string]string // switch name -> configured module (audio_fork | audio_stream | auto)
	found   map[string]string // switch name -> module in use since its last connect
}

// NewBridge connects switches to o; add the inbound clients with Add.
func NewBridge(o *mediafork.Orchestrator) *Bridge {
	return &Bridge{O: o, modules: map[string]string{}, found: map[string]string{}}
}

// Add registers an inbound client built with this bridge as its handler,
// forking with module (mediafork.ModuleAudioFork, ModuleAudioStream, or
// ModuleAuto; "" is ModuleAuto).
func (b *Bridge) Add(c *Client, module string) {
	b.mu.Lock()
	b.modules[c.Name()] = module
	b.mu.Unlock()
	b.clients = append(b.clients, c)
}

// Clients are the inbound clients.
func (b *Bridge) Clients() []*Client { return b.clients }

// Module is the media module the switch called name forks with: as configured,
// or as found at its last connect; "" while unknown.
func (b *Bridge) Module(name string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if m := b.modules[name]; m != ModuleAuto && m != "" {
		return m
	}
	return b.found[name]
}

// OnConnect implements Handler: install the fs_cli alias, find the module
// (auto: module_exists, preferring mod_audio_fork), then resync.
func (b *Bridge) OnConnect(ctx context.Context, c *Client) {
	cmds := NewCommands(c.Name(), c)
	if err := cmds.InstallAlias(ctx); err != nil {
		c.log.Warn("cannot install the fs_cli alias", "error", err)
	}
	b.mu.Lock()
	configured := b.modules[c.Name()]
	b.mu.Unlock()
	module := DetectModule(ctx, configured, cmds)
	b.mu.Lock()
	b.found[c.Name()] = module
	b.mu.Unlock()
	b.O.SwitchUp(ctx, NewSwitch(module, cmds))
}

// DetectModule is the module to fork with: configured unless it is auto (or
// ""); then mod_audio_fork when the switch has it loaded — jambonz's when
// its usage says so, which streams talk-back —, else mod_audio_stream when it
// has that, else mod_audio_fork (whose start then fails visibly).
func DetectModule(ctx context.Context, configured string, cmds *Commands) string {
	if configured != ModuleAuto && configured != "" {
		return configured
	}
	if ok, err := cmds.ModuleExists(ctx, "mod_audio_fork"); err == nil && ok {
		if cmds.IsJambonzAudioFork(ctx) {
			return mediafork.ModuleAudioForkJambonz
		}
		return mediafork.ModuleAudioFork
	}
	if ok, err := cmds.ModuleExists(ctx, "mod_audio_stream"); err == nil && ok {
		return mediafork.ModuleAudioStream
	}
	return mediafork.ModuleAudioFork
}

// OnEvent implements Handler.
func (b *Bridge) OnEvent(c *Client, e *Event) {
	if ev, ok := CallEvent(e); ok {
		b.O.HandleEvent(context.Background(), c.Name(), ev)
	}
}

// OnDisconnect implements Handler. Forks keep streaming: media does not depend
// on the event socket.
func (b *Bridge) OnDisconnect(c *Client, _ error) { b.O.SwitchDown(c.Name()) }

// HandleOutbound is the outbound listener's handler.
func (b *Bridge) HandleOutbound(ctx context.Context, call *OutboundCall) {
	name := b.serverFor(call.Remote)
	cmds := NewCommands(name, call)
	module := b.Module(name)
	if module == "" { // its inbound connection has not found out yet: ask over this socket
		module = DetectModule(ctx, ModuleAuto, cmds)
	}
	b.O.HandleOutbound(ctx, &outboundSwitch{Switch: NewSwitch(module, cmds), call: call})
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
	mediafork.Switch
	call *OutboundCall
}

func (s *outboundSwitch) Data() mediafork.ChannelData      { return mediafork.NewChannelData(s.call.Data) }
func (s *outboundSwitch) Resume(ctx context.Context) error { return s.call.Resume(ctx) }
