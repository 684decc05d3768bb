package mediafork

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// Test helpers for the orchestrator: an in-memory Switch that records every
// command and answers from a script, and a rig around an Orchestrator. No
// sockets: forks are driven through Registry.Claim / Fork.Begin with no
// destinations, as the ingest would drive them.

var orchLog = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeSwitch is one FreeSWITCH in memory.
type fakeSwitch struct {
	name, module string

	mu       sync.Mutex
	cmds     []string                                // every command, in order: "start u1 stereo 8000 mediafork", "stop u1 mediafork", ...
	starts   []ForkStart                             // every StartFork
	channels map[CallID]map[string]string            // answered calls: Dump and AnsweredChannels
	startErr []error                                 // scripted StartFork answers, in order; then nil
	stopErr  error                                   // StopFork's answer
	listErr  error                                   // AnsweredChannels' answer
	logs     []string                                // Log lines
	vars     map[CallID]map[string]string            // SetVar
	sent     chan string                             // every command, for tests to wait on
	dumpHook func(CallID) (map[string]string, error) // overrides Dump when set
	maxDesc  int                                     // a longer description is refused, as the adapter refuses long metadata (0: none)
}

func newFakeSwitch(name string) *fakeSwitch {
	return &fakeSwitch{name: name, module: ModuleAudioFork, channels: map[CallID]map[string]string{},
		vars: map[CallID]map[string]string{}, sent: make(chan string, 1000)}
}

func (s *fakeSwitch) record(cmd string) {
	s.cmds = append(s.cmds, cmd)
	s.sent <- cmd
}

func (s *fakeSwitch) Name() string   { return s.name }
func (s *fakeSwitch) Module() string { return s.module }

func (s *fakeSwitch) StartFork(_ context.Context, f ForkStart) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.maxDesc > 0 && len(f.Description) > s.maxDesc {
		return &BadRequest{Err: fmt.Errorf("metadata of %d bytes is too long", len(f.Description))}
	}
	s.starts = append(s.starts, f)
	s.record(fmt.Sprintf("start %s %s %d %s", f.UUID, f.Mix, f.Rate, f.Bug))
	if len(s.startErr) > 0 {
		err := s.startErr[0]
		s.startErr = s.startErr[1:]
		return err
	}
	return nil
}

func (s *fakeSwitch) StopFork(_ context.Context, uuid CallID, bug string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record(fmt.Sprintf("stop %s %s", uuid, bug))
	return s.stopErr
}

func (s *fakeSwitch) SetVar(_ context.Context, uuid CallID, name, value string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vars[uuid] == nil {
		s.vars[uuid] = map[string]string{}
	}
	s.vars[uuid][name] = value
	s.record(fmt.Sprintf("setvar %s %s", uuid, name))
	return nil
}

func (s *fakeSwitch) Log(_ context.Context, level, text string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.logs = append(s.logs, "["+level+"] "+text)
	s.record("log " + level + " " + text)
	return nil
}

func (s *fakeSwitch) Dump(_ context.Context, uuid CallID) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dumpHook != nil {
		return s.dumpHook(uuid)
	}
	h, ok := s.channels[uuid]
	if !ok {
		return nil, fmt.Errorf("%w: uuid_dump: -ERR No such channel!", ErrSwitchRefused)
	}
	if len(s.vars[uuid]) == 0 {
		return h, nil
	}
	out := maps.Clone(h) // with what uuid_setvar set, as a switch dumps it
	for k, v := range s.vars[uuid] {
		out["variable_"+k] = v
	}
	return out, nil
}

func (s *fakeSwitch) AnsweredChannels(context.Context) ([]CallID, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []CallID
	for uuid := range s.channels {
		out = append(out, uuid)
	}
	return out, s.listErr
}

// answer adds an answered call and returns its data as the event carries it.
func (s *fakeSwitch) answer(uuid CallID, dest string, vars ...string) ChannelData {
	h := map[string]string{"Unique-ID": string(uuid), "Channel-Name": "loopback/" + dest + "-a",
		"Caller-Destination-Number": dest, "Caller-Caller-ID-Number": "1000"}
	for i := 0; i+1 < len(vars); i += 2 {
		h["variable_"+vars[i]] = vars[i+1]
	}
	s.mu.Lock()
	s.channels[uuid] = h
	s.mu.Unlock()
	return NewChannelData(h)
}

func (s *fakeSwitch) hangup(uuid CallID) {
	s.mu.Lock()
	delete(s.channels, uuid)
	s.mu.Unlock()
}

// commands is a copy of the commands so far.
func (s *fakeSwitch) commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmds...)
}

func (s *fakeSwitch) lastStart(t *testing.T, uuid CallID) ForkStart {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.starts) - 1; i >= 0; i-- {
		if s.starts[i].UUID == uuid {
			return s.starts[i]
		}
	}
	t.Fatalf("no start for %s", uuid)
	return ForkStart{}
}

// expect waits for the next command and checks it starts with prefix. The
// timeout only turns a hang into a failure.
func (s *fakeSwitch) expect(t *testing.T, prefix string) string {
	t.Helper()
	select {
	case cmd := <-s.sent:
		require.True(t, strings.HasPrefix(cmd, prefix), "got %q, want %q...; all: %q", cmd, prefix, s.commands())
		return cmd
	case <-time.After(5 * time.Second):
		t.Fatalf("no command %q...; all: %q", prefix, s.commands())
		return ""
	}
}

// expectNothing checks no command is pending (call once everything that could
// send one has finished: rig.settle).
func (s *fakeSwitch) expectNothing(t *testing.T) {
	t.Helper()
	select {
	case cmd := <-s.sent:
		t.Fatalf("unexpected command %q; all: %q", cmd, s.commands())
	default:
	}
}

// rig is an orchestrator over fake switches.
type rig struct {
	o      *Orchestrator
	reg    *Registry
	signer *Signer
	p      *Policy
}

func newRig(t *testing.T, mod func(*Policy)) *rig {
	p := testPolicy()
	p.IngestURL = "ws://127.0.0.1:8090"
	p.RetryAttempts, p.RetryBackoff = 2, 0
	if mod != nil {
		mod(p)
	}
	reg := NewRegistry(newTestTransport(), 100, true, orchLog)
	signer := NewSigner([]byte("test key"))
	r := &rig{o: NewOrchestrator(reg, signer, p, orchLog), reg: reg, signer: signer, p: p}
	t.Cleanup(func() {
		r.o.Close()
		for _, f := range reg.List() {
			f.Finish(EndShutdown)
		}
		reg.WaitHooks()
	})
	return r
}

// newRigUp is newRig with switch fs1 connected (resynced).
func newRigUp(t *testing.T, mod func(*Policy)) (*rig, *fakeSwitch) {
	r := newRig(t, mod)
	sw := newFakeSwitch("fs1")
	r.up(sw)
	return r, sw
}

// up connects sw: SwitchUp (resync).
func (r *rig) up(sw *fakeSwitch) { r.o.SwitchUp(context.Background(), sw) }

func (r *rig) event(sw *fakeSwitch, e CallEvent) { r.o.HandleEvent(context.Background(), sw.name, e) }

// settle waits until every hook and retry timer under way has run; the
// orchestrator is closed after.
func (r *rig) settle() {
	r.reg.WaitHooks()
	r.o.Close()
	r.reg.WaitHooks()
}

// credential is the spec a start's URL token and description signed, as the
// ingest reads them.
func (r *rig) credential(t *testing.T, f ForkStart) Spec {
	t.Helper()
	u, err := url.Parse(f.URL)
	require.NoError(t, err)
	require.Equal(t, "/fork/"+string(f.UUID), u.Path)
	pass, err := r.signer.Verify(u.Query().Get("cred"), f.UUID, time.Now())
	require.NoError(t, err)
	spec, err := pass.Open(f.Description)
	require.NoError(t, err)
	return spec
}

// connect is the module connecting to the ingest with the last start's URL:
// admitted, claimed, begun (no destinations: nothing is sent). It waits for the
// streaming hook's commands (setvar, log).
func (r *rig) connect(t *testing.T, sw *fakeSwitch, uuid CallID) *Fork {
	t.Helper()
	spec := r.credential(t, sw.lastStart(t, uuid))
	require.NoError(t, r.o.Admit(uuid, "mediafork", spec.Start))
	if spec.Resumed && spec.Resume == nil { // no room in the metadata: the ingest asks the orchestrator
		cont, cerr := r.o.ContinuationOf(context.Background(), uuid, spec.Start)
		require.NoError(t, cerr)
		spec.Resume = &cont
	}
	// As the ingest: claimed before the description is read (a fresh
	// identity); Begin adopts a resumed fork's.
	f, err := r.reg.Claim(uuid, spec.Bug)
	require.NoError(t, err)
	f.OnStop(f.Finish) // as the ingest closes its connection, whose reader ends the fork
	require.NoError(t, f.Begin(spec, spec.Targets))
	sw.expect(t, "setvar "+string(uuid)+" mediafork_stream_id")
	for {
		cmd := sw.expect(t, "")
		if strings.HasPrefix(cmd, "setvar "+string(uuid)+" ") {
			continue // the resume record, the instance
		}
		require.Regexp(t, "^log NOTICE mediafork: fork "+string(uuid)+" (started|resumed)", cmd)
		return f
	}
}
