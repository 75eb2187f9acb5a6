package consumer

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type commitsOnly struct{ commits, events int }

func (c *commitsOnly) OnTxnCommitted(_ time.Duration, n Counts) { c.commits++; c.events += n.EventsIn }

type deadAndAborts struct{ dead, aborts int }

func (d *deadAndAborts) OnDeadLettered(*kgo.Record, error) { d.dead++ }
func (d *deadAndAborts) OnTxnAborted(time.Duration, error) { d.aborts++ }

// A hook gets exactly the events it implements, and each hook gets them all.
func TestHooksFanOutByInterface(t *testing.T) {
	c, d, s := &commitsOnly{}, &deadAndAborts{}, &Stats{}
	h, err := newHooks([]Hook{c, d, s})
	if err != nil {
		t.Fatal(err)
	}
	h.TxnCommitted(time.Millisecond, Counts{EventsIn: 3})
	h.TxnCommitted(time.Millisecond, Counts{EventsIn: 4})
	h.DeadLettered(&kgo.Record{}, errors.New("bad"))
	h.TxnAborted(time.Millisecond, errors.New("rebalance"))
	h.Retried(&kgo.Record{}, errors.New("slow"))
	h.Produced(&kgo.Record{}) // nobody implements it: no call, no panic
	if c.commits != 2 || c.events != 7 {
		t.Errorf("commit hook saw %d commits / %d events, want 2 / 7", c.commits, c.events)
	}
	if d.dead != 1 || d.aborts != 1 {
		t.Errorf("dead-letter hook saw %d dead / %d aborts, want 1 / 1", d.dead, d.aborts)
	}
	snap := s.Snapshot()
	if snap.TxnCommits != 2 || snap.EventsIn != 7 || snap.TxnAborts != 1 || snap.TransientRetry != 1 {
		t.Errorf("Stats = %+v, want 2 commits, 7 events, 1 abort, 1 retry", snap)
	}
}

type misnamed struct{}

func (misnamed) TxnCommitted(time.Duration, Counts) {} // the old Observer name, without "On"

// A value that implements no hook is a mistake, reported by New.
func TestHooksRefuseAValueImplementingNone(t *testing.T) {
	_, err := newHooks([]Hook{&Stats{}, misnamed{}})
	if err == nil || !strings.Contains(err.Error(), "hooks[1]") || !strings.Contains(err.Error(), "misnamed") {
		t.Fatalf("newHooks with a misnamed hook: %v, want an error naming hooks[1] and its type", err)
	}
}
