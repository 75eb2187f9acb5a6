package consumer

import (
	"fmt"
	"sync/atomic"
	"time"
)

// health is what the loop knows about its own progress, for /livez and
// /readyz. The loop writes it; probes read it from other goroutines.
type health struct {
	lastLoop     atomic.Int64 // unix nanos: the loop last came round
	lastCommit   atomic.Int64 // unix nanos of the last committed transaction
	pendingSince atomic.Int64 // unix nanos since polled work waits for a commit; 0 = none
	aborts       atomic.Int64 // aborts since the last commit
	lastAbort    atomic.Pointer[string]
}

func (h *health) loop(now time.Time) { h.lastLoop.Store(now.UnixNano()) }

// work records that records were polled and wait for a commit.
func (h *health) work(now time.Time) { h.pendingSince.CompareAndSwap(0, now.UnixNano()) }

// idle records that no polled work waits.
func (h *health) idle() { h.pendingSince.Store(0) }

func (h *health) committed(now time.Time) {
	h.lastCommit.Store(now.UnixNano())
	h.pendingSince.Store(0)
	h.aborts.Store(0)
}

func (h *health) aborted(why string) {
	h.aborts.Add(1)
	h.lastAbort.Store(&why)
}

// Progress is a snapshot of the loop's progress.
type Progress struct {
	// LastLoop is when the loop last came round (a poll returned, a
	// transaction ended, a backoff finished).
	LastLoop time.Time
	// LastCommit is when a transaction last committed (zero: never).
	LastCommit time.Time
	// PendingSince is when the oldest polled but uncommitted work was
	// polled (zero: nothing waits).
	PendingSince time.Time
	// ConsecutiveAborts counts transaction aborts since the last commit.
	ConsecutiveAborts int
	// LastAbort is why the last transaction aborted.
	LastAbort string
}

// Progress returns the loop's progress (safe from any goroutine).
func (p *Pipeline) Progress() Progress {
	h := &p.health
	pr := Progress{
		LastLoop:          unixNano(h.lastLoop.Load()),
		LastCommit:        unixNano(h.lastCommit.Load()),
		PendingSince:      unixNano(h.pendingSince.Load()),
		ConsecutiveAborts: int(h.aborts.Load()),
	}
	if s := h.lastAbort.Load(); s != nil {
		pr.LastAbort = *s
	}
	return pr
}

func unixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Live reports whether the loop is alive: it came round within
// LivenessTimeout. The loop comes round at least every poll timeout,
// commit interval plus one event, or backoff, so a stale loop means a
// processor or a Kafka call is stuck beyond every timeout; restarting the
// process is the fix.
func (p *Pipeline) Live(now time.Time) (bool, string) {
	last := unixNano(p.health.lastLoop.Load())
	if last.IsZero() {
		return true, "" // not started yet: startup has its own timeouts
	}
	if idle := now.Sub(last); idle > p.cfg.LivenessTimeout {
		return false, fmt.Sprintf("event loop stuck: it last came round %s ago (limit %s)", idle.Round(time.Second), p.cfg.LivenessTimeout)
	}
	return true, ""
}

// Ready reports whether the loop makes progress: it is not ready when polled
// work has waited longer than StallTimeout without a commit.
func (p *Pipeline) Ready(now time.Time) (bool, string) {
	if p.st != nil {
		if n := p.st.st.Store.Restoring(); n > 0 {
			return false, fmt.Sprintf("restoring the state of %d process-log partition(s) from the changelog", n)
		}
	}
	pr := p.Progress()
	if pr.PendingSince.IsZero() {
		return true, ""
	}
	if wait := now.Sub(pr.PendingSince); wait > p.cfg.StallTimeout {
		why := fmt.Sprintf("no progress: input has waited %s without a commit (limit %s), %d aborts in a row", wait.Round(time.Second), p.cfg.StallTimeout, pr.ConsecutiveAborts)
		if pr.LastAbort != "" {
			why += ", last: " + pr.LastAbort
		}
		return false, why
	}
	return true, ""
}
