package consumer

import (
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
	for m, n := range o.Marks {
		if c.Marks == nil {
			c.Marks = map[processors.Mark]int{}
		}
		c.Marks[m] += n
	}
	c.EventTimes = append(c.EventTimes, o.EventTimes...)
	c.incomplete = c.incomplete || o.incomplete
}

// Observer receives the loop's events, for metrics and progress output.
// Calls may come from several goroutines at once. Counts passed to
// TxnCommitted are the only ones that are exactly-once: Processed and
// DeadLettered also fire for attempts that later abort.
type Observer interface {
	Processed(ev *processors.Event, commands int, took time.Duration)
	DeadLettered(r *kgo.Record, err error)
	Retried(r *kgo.Record, err error)
	// ProcessorDone reports one run of a named processor (every attempt).
	ProcessorDone(name string, took time.Duration, err error)
	// Produced reports every command or dead-letter record handed to the
	// transactional producer (every attempt; the transaction may abort).
	Produced(r *kgo.Record)
	TxnCommitted(took time.Duration, c Counts)
	TxnAborted(took time.Duration, err error)
	SessionRestarted(err error)
}

// NopObserver ignores everything.
type NopObserver struct{}

func (NopObserver) Processed(*processors.Event, int, time.Duration) {}
func (NopObserver) DeadLettered(*kgo.Record, error)                 {}
func (NopObserver) Retried(*kgo.Record, error)                      {}
func (NopObserver) ProcessorDone(string, time.Duration, error)      {}
func (NopObserver) Produced(*kgo.Record)                            {}
func (NopObserver) TxnCommitted(time.Duration, Counts)              {}
func (NopObserver) TxnAborted(time.Duration, error)                 {}
func (NopObserver) SessionRestarted(error)                          {}

// Stats is an Observer that keeps committed totals, for progress lines and
// the `ordo dev` summary. Embed it in a richer observer or use it alone.
type Stats struct {
	NopObserver
	eventsIn, commandsOut, deadLettered, skipped atomic.Int64
	commits, aborts, restarts, retries           atomic.Int64
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
}

func (s *Stats) Retried(*kgo.Record, error)      { s.retries.Add(1) }
func (s *Stats) TxnAborted(time.Duration, error) { s.aborts.Add(1) }
func (s *Stats) SessionRestarted(error)          { s.restarts.Add(1) }
func (s *Stats) TxnCommitted(_ time.Duration, c Counts) {
	s.commits.Add(1)
	s.eventsIn.Add(int64(c.EventsIn))
	s.commandsOut.Add(int64(c.CommandsOut))
	s.deadLettered.Add(int64(c.DeadLettered))
	s.skipped.Add(int64(c.Skipped))
}

// Snapshot returns the current totals.
func (s *Stats) Snapshot() Snapshot {
	return Snapshot{
		EventsIn: s.eventsIn.Load(), CommandsOut: s.commandsOut.Load(), DeadLettered: s.deadLettered.Load(), Skipped: s.skipped.Load(),
		TxnCommits: s.commits.Load(), TxnAborts: s.aborts.Load(), SessionRestarts: s.restarts.Load(), TransientRetry: s.retries.Load(),
	}
}

// Observers fans every callback out to each observer in order.
type Observers []Observer

func (os Observers) Processed(ev *processors.Event, n int, d time.Duration) {
	for _, o := range os {
		o.Processed(ev, n, d)
	}
}
func (os Observers) DeadLettered(r *kgo.Record, err error) {
	for _, o := range os {
		o.DeadLettered(r, err)
	}
}
func (os Observers) Retried(r *kgo.Record, err error) {
	for _, o := range os {
		o.Retried(r, err)
	}
}
func (os Observers) ProcessorDone(name string, d time.Duration, err error) {
	for _, o := range os {
		o.ProcessorDone(name, d, err)
	}
}
func (os Observers) Produced(r *kgo.Record) {
	for _, o := range os {
		o.Produced(r)
	}
}
func (os Observers) TxnCommitted(d time.Duration, c Counts) {
	for _, o := range os {
		o.TxnCommitted(d, c)
	}
}
func (os Observers) TxnAborted(d time.Duration, err error) {
	for _, o := range os {
		o.TxnAborted(d, err)
	}
}
func (os Observers) SessionRestarted(err error) {
	for _, o := range os {
		o.SessionRestarted(err)
	}
}
