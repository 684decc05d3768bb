package mediafork

import (
	"context"
	"fmt"
	"time"
)

// Cluster is what an orchestrator asks of the instances it shares its
// switches with (package ha, over etcd); without one (SetCluster never
// called) it drives every switch it is connected to, alone.
type Cluster interface {
	// Leads reports whether this instance drives the switch called server
	// now: applies its rules, answers its fs_cli commands, resyncs it, and
	// starts, retries and stops the forks on it. The others stay connected
	// and subscribed, ready.
	Leads(server string) bool
	// Issue records st as the one start of the fork of uuid and bug that
	// may connect (the instance its connection reaches claims it, once); it
	// fails once this instance no longer leads server.
	Issue(ctx context.Context, server string, uuid CallID, bug string, st Start) error
	// Served reports whether a live instance serves the fork of uuid and
	// bug, or a start of it is pending: then it is not this instance's to
	// start or stop.
	Served(ctx context.Context, uuid CallID, bug string) (bool, error)
	// WaitUnserved returns once no live instance serves the fork (its claim
	// released, or gone with its instance's lease), or ctx ends. held is
	// where the fork's streams stood when the instance that served it
	// suspended them (a Continuation's text, as it released its claim), ""
	// when unknown (that instance died).
	WaitUnserved(ctx context.Context, uuid CallID, bug string) (held string, err error)
	// TTL bounds how long a dead instance's claims outlive it.
	TTL() time.Duration
}

// SetCluster makes the orchestrator one of a cluster's instances. Set it
// before the switches connect.
func (o *Orchestrator) SetCluster(c Cluster) {
	o.mu.Lock()
	o.cluster = c
	o.mu.Unlock()
}

func (o *Orchestrator) clusterOf() Cluster {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cluster
}

// leads reports whether this instance drives server: always when alone.
func (o *Orchestrator) leads(server string) bool {
	c := o.clusterOf()
	return c == nil || c.Leads(server)
}

// Leads reports whether this instance drives the switch called server (the
// API forwards writes to the leader when not).
func (o *Orchestrator) Leads(server string) bool { return o.leads(server) }

// Lead is told when this instance starts leading server: it resyncs it (the
// previous leader's forks that no live instance serves are started again).
func (o *Orchestrator) Lead(server string) {
	sw := o.sw(server)
	if sw == nil {
		return // resynced when it connects
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	o.resync(ctx, sw)
}

// Unlead is told when this instance no longer leads server: its pending
// retries there are dropped (the new leader decides).
func (o *Orchestrator) Unlead(server string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, c := range o.calls {
		if c.server == server && c.retry != nil && c.retry.Stop() {
			c.retry = nil
			o.timers.Done()
		}
	}
}

// servedElsewhere reports whether, in a cluster, the fork of uuid on the
// call is in another instance's hands (or the cluster cannot say: then it
// is left alone too).
func (o *Orchestrator) servedElsewhere(ctx context.Context, uuid CallID) bool {
	c := o.clusterOf()
	if c == nil {
		return false
	}
	served, err := c.Served(ctx, uuid, o.Policy().BugName)
	if err != nil {
		o.log.Warn("cluster: cannot tell whether the fork is served; left alone", "uuid", uuid, "error", err)
		return true
	}
	return served
}

// takeOver handles, on the leader, a fork whose media connection ended
// somewhere in the cluster (mod_audio_fork::disconnect, connect_failed) on a
// call it did not start: once no live instance serves it (the serving
// instance released it, or died and its lease lapsed), the call is resynced
// as after a (re)connect.
func (o *Orchestrator) takeOver(uuid CallID, server string) {
	c := o.clusterOf()
	if c == nil {
		return
	}
	o.mu.Lock()
	if o.closed {
		o.mu.Unlock()
		return
	}
	o.timers.Add(1)
	o.mu.Unlock()
	go func() {
		defer o.timers.Done()
		ctx, cancel := o.untilClose(c.TTL() + 5*time.Second)
		defer cancel()
		held, err := c.WaitUnserved(ctx, uuid, o.Policy().BugName)
		if err != nil {
			o.log.Warn("cluster: the fork is still served; left alone", "uuid", uuid, "error", err)
			return
		}
		sw := o.sw(server)
		if sw == nil || !o.leads(server) {
			return
		}
		o.log.Info("cluster: the fork is served by no instance; taking it over", "uuid", uuid, "freeswitch", server)
		o.resyncCall(ctx, sw, uuid, held)
	}()
}

// wanted reports whether this orchestrator wants a fork on the call (it
// started it, or took it over).
func (o *Orchestrator) wanted(uuid CallID) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.calls[uuid]
	return c != nil && c.spec != nil
}

// untilClose is a context that ends after d or when the orchestrator
// closes.
func (o *Orchestrator) untilClose(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-o.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// SwitchOf names the switch a call is on: the one this orchestrator knows
// it by, else the first connected switch that knows the uuid (uuid_dump).
func (o *Orchestrator) SwitchOf(ctx context.Context, uuid CallID) (string, error) {
	o.mu.Lock()
	if c := o.calls[uuid]; c != nil {
		o.mu.Unlock()
		return c.server, nil
	}
	sws := make([]Switch, 0, len(o.switches))
	for _, sw := range o.switches {
		sws = append(sws, sw)
	}
	o.mu.Unlock()
	for _, f := range o.registry.Get(uuid) {
		if s := f.Info().Server; s != "" {
			return s, nil
		}
	}
	for _, sw := range sws {
		if _, err := sw.Dump(ctx, uuid); err == nil {
			return sw.Name(), nil
		}
	}
	return "", fmt.Errorf("%w: %s", ErrNoSuchCall, uuid)
}
