package consumer

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/processors"
)

// Counts are what one transaction made visible when it committed.
type Counts struct {
	EventsIn     int
	CommandsOut  int
	DeadLettered int
	Skipped      int // filtered by type before decoding
	// Dropped events needed no effect (processors.ErrDrop): duplicates,
	// events for finished processes.
	Dropped int
	// Forwarded events went to the process log (stateful stage 1).
	Forwarded int
	// TimersTriggered counts timer triggers produced (stateful stage).
	TimersTriggered int
	// Marks counts what stateful processors decided (processors.Mark).
	Marks map[processors.Mark]int
	// EventTimes are the record timestamps (event time) of the input
	// events, for end-to-end latency (event time → commit).
	EventTimes []time.Time
	// Rewound counts polled records the transaction did not start before
	// its commit deadline: left uncommitted for the next transaction,
	// which processes them from memory (not fetched again). A steady
	// share of EventsIn means polls larger than what fits in the commit
	// interval (see docs/observability.md).
	Rewound int

	incomplete bool // a partition stopped early (transient failure)
}

func (c *Counts) add(o Counts) {
	c.EventsIn += o.EventsIn
	c.CommandsOut += o.CommandsOut
	c.DeadLettered += o.DeadLettered
	c.Skipped += o.Skipped
	c.Dropped += o.Dropped
	c.Forwarded += o.Forwarded
	c.TimersTriggered += o.TimersTriggered
	c.Rewound += o.Rewound
	for m, n := range o.Marks {
		if c.Marks == nil {
			c.Marks = map[processors.Mark]int{}
		}
		c.Marks[m] += n
	}
	c.EventTimes = append(c.EventTimes, o.EventTimes...)
	c.incomplete = c.incomplete || o.incomplete
}

// Hook is any value implementing one or more of the Hook* interfaces below
// (as franz-go's kgo.Hook): register it with WithHooks and it is called
// for the events it implements, nothing else. Calls may come from several
// goroutines at once and run on the loop's path: keep them cheap (count,
// don't block). Counts passed to OnTxnCommitted are the only exactly-once
// ones: the other hooks also fire for attempts whose transaction aborts.
type Hook any

// HookEventProcessed is called after the chain ran on an event, with the
// number of commands it returned and how long it took (every attempt).
// The event's value may still be in Record form (ev.Value nil, see
// processors.Event.Record): read it with ev.Map(), which builds the map
// (allocating; keep that out of hooks that run for every event).
type HookEventProcessed interface {
	OnEventProcessed(ev *processors.Event, commands int, took time.Duration)
}

// HookDeadLettered is called when a record is sent to the dead-letter topic
// (every attempt; it counts only if the transaction commits).
type HookDeadLettered interface {
	OnDeadLettered(r *kgo.Record, err error)
}

// HookRetried is called for each transient failure that is retried.
type HookRetried interface {
	OnRetried(r *kgo.Record, err error)
}

// HookProcessorDone is called after one run of a named processor.
type HookProcessorDone interface {
	OnProcessorDone(name string, took time.Duration, err error)
}

// HookProduced is called for every command or dead-letter record handed to
// the transactional producer (every attempt; the transaction may abort).
type HookProduced interface {
	OnProduced(r *kgo.Record)
}

// HookTxnCommitted is called when a transaction committed, with what it made
// visible.
type HookTxnCommitted interface {
	OnTxnCommitted(took time.Duration, c Counts)
}

// HookTxnAborted is called when a transaction aborted.
type HookTxnAborted interface {
	OnTxnAborted(took time.Duration, err error)
}

// HookSessionRestarted is called when the transactional session is closed
// and recreated after an error.
type HookSessionRestarted interface {
	OnSessionRestarted(err error)
}

// hooks is the loop's fan-out: each event's hooks, split once by New so the
// hot path pays a slice walk, not a type switch per call.
type hooks struct {
	processed []HookEventProcessed
	dead      []HookDeadLettered
	retried   []HookRetried
	procDone  []HookProcessorDone
	produced  []HookProduced
	committed []HookTxnCommitted
	aborted   []HookTxnAborted
	restarted []HookSessionRestarted
}

// newHooks sorts hs by the interfaces they implement. A value implementing
// none is an error: it is a mistake (e.g. a method named without "On").
func newHooks(hs []Hook) (*hooks, error) {
	h := &hooks{}
	for i, x := range hs {
		n := 0
		if v, ok := x.(HookEventProcessed); ok {
			h.processed, n = append(h.processed, v), n+1
		}
		if v, ok := x.(HookDeadLettered); ok {
			h.dead, n = append(h.dead, v), n+1
		}
		if v, ok := x.(HookRetried); ok {
			h.retried, n = append(h.retried, v), n+1
		}
		if v, ok := x.(HookProcessorDone); ok {
			h.procDone, n = append(h.procDone, v), n+1
		}
		if v, ok := x.(HookProduced); ok {
			h.produced, n = append(h.produced, v), n+1
		}
		if v, ok := x.(HookTxnCommitted); ok {
			h.committed, n = append(h.committed, v), n+1
		}
		if v, ok := x.(HookTxnAborted); ok {
			h.aborted, n = append(h.aborted, v), n+1
		}
		if v, ok := x.(HookSessionRestarted); ok {
			h.restarted, n = append(h.restarted, v), n+1
		}
		if n == 0 {
			return nil, fmt.Errorf("hooks[%d] (%T) implements none of the consumer.Hook* interfaces (methods OnTxnCommitted, OnDeadLettered, ...)", i, x)
		}
	}
	return h, nil
}

// CheckHooks reports a value of hs that implements none of the Hook*
// interfaces (New reports it too; this lets an embedder fail earlier).
func CheckHooks(hs ...Hook) error {
	_, err := newHooks(hs)
	return err
}

func (h *hooks) Processed(ev *processors.Event, n int, d time.Duration) {
	for _, o := range h.processed {
		o.OnEventProcessed(ev, n, d)
	}
}

func (h *hooks) DeadLettered(r *kgo.Record, err error) {
	for _, o := range h.dead {
		o.OnDeadLettered(r, err)
	}
}

func (h *hooks) Retried(r *kgo.Record, err error) {
	for _, o := range h.retried {
		o.OnRetried(r, err)
	}
}

func (h *hooks) ProcessorDone(name string, d time.Duration, err error) {
	for _, o := range h.procDone {
		o.OnProcessorDone(name, d, err)
	}
}

func (h *hooks) Produced(r *kgo.Record) {
	for _, o := range h.produced {
		o.OnProduced(r)
	}
}

func (h *hooks) TxnCommitted(d time.Duration, c Counts) {
	for _, o := range h.committed {
		o.OnTxnCommitted(d, c)
	}
}

func (h *hooks) TxnAborted(d time.Duration, err error) {
	for _, o := range h.aborted {
		o.OnTxnAborted(d, err)
	}
}

func (h *hooks) SessionRestarted(err error) {
	for _, o := range h.restarted {
		o.OnSessionRestarted(err)
	}
}

// Stats is a hook that keeps committed totals, for progress lines and the
// `ordo dev` summary.
type Stats struct {
	eventsIn, commandsOut, deadLettered, skipped atomic.Int64
	commits, aborts, restarts, retries           atomic.Int64
	rewound                                      atomic.Int64
}

// Snapshot is a point-in-time copy of Stats.
type Snapshot struct {
	EventsIn        int64 `json:"events_in"`
	CommandsOut     int64 `json:"commands_out"`
	DeadLettered    int64 `json:"dead_lettered"`
	Skipped         int64 `json:"skipped"`
	TxnCommits      int64 `json:"txn_commits"`
	TxnAborts       int64 `json:"txn_aborts"`
	SessionRestarts int64 `json:"session_restarts"`
	TransientRetry  int64 `json:"transient_retries"`
	Rewound         int64 `json:"rewound"`
}

// OnRetried implements HookRetried.
func (s *Stats) OnRetried(*kgo.Record, error) { s.retries.Add(1) }

// OnTxnAborted implements HookTxnAborted.
func (s *Stats) OnTxnAborted(time.Duration, error) { s.aborts.Add(1) }

// OnSessionRestarted implements HookSessionRestarted.
func (s *Stats) OnSessionRestarted(error) { s.restarts.Add(1) }

// OnTxnCommitted implements HookTxnCommitted.
func (s *Stats) OnTxnCommitted(_ time.Duration, c Counts) {
	s.commits.Add(1)
	s.eventsIn.Add(int64(c.EventsIn))
	s.commandsOut.Add(int64(c.CommandsOut))
	s.deadLettered.Add(int64(c.DeadLettered))
	s.skipped.Add(int64(c.Skipped))
	s.rewound.Add(int64(c.Rewound))
}

// Snapshot returns the current totals.
func (s *Stats) Snapshot() Snapshot {
	return Snapshot{
		EventsIn: s.eventsIn.Load(), CommandsOut: s.commandsOut.Load(), DeadLettered: s.deadLettered.Load(), Skipped: s.skipped.Load(),
		TxnCommits: s.commits.Load(), TxnAborts: s.aborts.Load(), SessionRestarts: s.restarts.Load(), TransientRetry: s.retries.Load(),
		Rewound: s.rewound.Load(),
	}
}
