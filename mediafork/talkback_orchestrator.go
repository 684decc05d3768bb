package mediafork

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The orchestrator's part of talk-back: it routes the switch's talk-back
// events to the forks they concern, gives the forks' players the switch's
// legs (LegControl), and starts the bug that streams a fork's talk-back into
// the channel bridged to it when the module streams (jambonz's: one bug
// feeds one channel's TX).

// tbLeg is a bug started on a channel bridged to a fork's.
type tbLeg struct {
	owner    CallID
	server   string
	bug      string
	start    Start
	admitted bool
}

// TalkbackBugSuffix is added to fork.bug_name for the bug that streams a
// fork's talk-back into the channel bridged to it.
const TalkbackBugSuffix = "_tb"

// talkbackEvent hands a switch event to the forks it concerns: a file to
// the fork whose module wrote it, a displace to the fork whose file it plays
// (its name says whose), a bridge to both channels' forks.
func (o *Orchestrator) talkbackEvent(e CallEvent) {
	var uuids []CallID
	switch e := e.(type) {
	case TalkbackFileReady:
		uuids = []CallID{e.UUID}
	case DisplaceStarted:
		uuids = []CallID{FileOwner(e.File)}
	case DisplaceStopped:
		uuids = []CallID{FileOwner(e.File)}
	case LegsBridged:
		uuids = []CallID{e.A, e.B}
	case LegsUnbridged:
		uuids = []CallID{e.A, e.B}
		o.talkbackUnbridged(e)
	}
	for _, u := range uuids {
		if u == "" {
			continue
		}
		for _, f := range o.registry.Get(u) {
			f.TalkbackEvent(e)
		}
	}
}

// legControl is how a fork's players drive its switch (named server):
// through whichever connection the switch has when they ask.
func (o *Orchestrator) legControl(server string) LegControl {
	return switchLegs{o: o, server: server}
}

type switchLegs struct {
	o      *Orchestrator
	server string
}

func (s switchLegs) control() (LegControl, error) {
	sw := s.o.sw(s.server)
	if sw == nil {
		return nil, fmt.Errorf("%w: %s", ErrNoSwitch, s.server)
	}
	lc, ok := sw.(LegControl)
	if !ok {
		return nil, fmt.Errorf("switch %s: its adapter plays nothing", s.server)
	}
	return lc, nil
}

func (s switchLegs) Displace(ctx context.Context, leg CallID, file string) error {
	lc, err := s.control()
	if err != nil {
		return err
	}
	return lc.Displace(ctx, leg, file)
}

func (s switchLegs) StopDisplace(ctx context.Context, leg CallID, file string) error {
	lc, err := s.control()
	if err != nil {
		return err
	}
	return lc.StopDisplace(ctx, leg, file)
}

func (s switchLegs) BridgedLeg(ctx context.Context, uuid CallID) (CallID, error) {
	lc, err := s.control()
	if err != nil {
		return "", err
	}
	return lc.BridgedLeg(ctx, uuid)
}

// startTalkbackLeg starts, on the channel bridged to f's, the bug that
// streams f's talk-back to that party: jambonz's module, mono at the
// talk-back rate, bidirectional; its audio goes nowhere. It returns the
// channel.
func (o *Orchestrator) startTalkbackLeg(ctx context.Context, f *Fork) (CallID, error) {
	info := f.Info()
	sw := o.sw(info.Server)
	if sw == nil {
		return "", fmt.Errorf("%w: %s", ErrNoSwitch, info.Server)
	}
	tb := f.talkback()
	if tb == nil {
		return "", fmt.Errorf("fork %s has no talk-back", f.UUID)
	}
	leg, err := tb.otherChannel(ctx)
	if err != nil {
		return "", err
	}
	if leg == "" {
		return "", fmt.Errorf("call %s is bridged to no channel", f.UUID)
	}
	rate := TalkbackRate(info.Rate)
	spec := Spec{UUID: leg, Bug: info.Bug + TalkbackBugSuffix, Server: info.Server, Trigger: TriggerTalkback, TalkbackFor: f.UUID,
		Injection: InjectStream, Params: Params{Mix: Mono, Rate: rate, Encoding: L16, FrameMs: 20}}
	if strings.TrimSpace(spec.Bug) == TalkbackBugSuffix {
		spec.Bug = "mediafork" + TalkbackBugSuffix
	}
	spec.Start = o.signer.NewStart()
	cred := o.signer.Sign(spec, time.Now().Add(CredentialTTL))
	u := fmt.Sprintf("%s/fork/%s?cred=%s", strings.TrimRight(o.Policy().IngestURL, "/"), leg, cred.Token)
	o.mu.Lock()
	o.tbLegs[leg] = &tbLeg{owner: f.UUID, server: info.Server, bug: spec.Bug, start: spec.Start}
	o.mu.Unlock()
	if cl := o.clusterOf(); cl != nil { // the one start that may connect, as for every fork
		if err = cl.Issue(ctx, info.Server, leg, spec.Bug, spec.Start); err != nil {
			o.mu.Lock()
			delete(o.tbLegs, leg)
			o.mu.Unlock()
			return "", err
		}
	}
	err = sw.StartFork(ctx, ForkStart{UUID: leg, URL: u, Mix: Mono, Rate: rate, Bug: spec.Bug, Description: cred.Description, StreamBack: rate})
	if err != nil {
		o.mu.Lock()
		delete(o.tbLegs, leg)
		o.mu.Unlock()
		return "", err
	}
	o.log.Info("talk-back: streaming to the bridged party", "uuid", f.UUID, "channel", leg, "bug", spec.Bug)
	return leg, nil
}

// talkbackForkEnded stops the talk-back bug of a fork that ended, and
// forgets one that ended itself.
func (o *Orchestrator) talkbackForkEnded(f *Fork) {
	o.mu.Lock()
	var stop []struct {
		leg CallID
		l   *tbLeg
	}
	for leg, l := range o.tbLegs {
		if l.owner == f.UUID || (leg == f.UUID && f.Bug == l.bug) {
			delete(o.tbLegs, leg)
			if l.owner == f.UUID {
				stop = append(stop, struct {
					leg CallID
					l   *tbLeg
				}{leg, l})
			}
		}
	}
	o.mu.Unlock()
	for _, s := range stop {
		if sw := o.sw(s.l.server); sw != nil {
			ctx, cancel := context.WithTimeout(context.Background(), legTimeout)
			sw.StopFork(ctx, s.leg, s.l.bug)
			cancel()
		}
		for _, g := range o.registry.Get(s.leg) {
			if g.Bug == s.l.bug {
				g.Stop(EndStopped)
			}
		}
	}
}

// talkbackUnbridged: the bridge of a channel with a talk-back bug is gone:
// the bug serves no one now.
func (o *Orchestrator) talkbackUnbridged(e LegsUnbridged) {
	o.mu.Lock()
	var legs []CallID
	for leg, l := range o.tbLegs {
		if (leg == e.A && l.owner == e.B) || (leg == e.B && l.owner == e.A) {
			legs = append(legs, leg)
		}
	}
	o.mu.Unlock()
	for _, leg := range legs {
		for _, f := range o.registry.Get(leg) {
			if f.Info().TalkbackFor != "" {
				f.Stop(EndStopped)
			}
		}
	}
}
