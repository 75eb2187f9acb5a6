package consumer

// The stateful stage. With state configured, an ordo replica runs two of
// these loops (see docs/processes.md):
//
//   - stage 1 (ForwardTo) consumes the upstream topics, runs the
//     stateless processors (decode, validate, enrich) and forwards each
//     event to the process log, keyed by its correlation id, inside its
//     transaction;
//   - stage 2 (State) consumes only the process log. Process-log
//     partition p owns store p and changelog partition p. Each event's
//     processors read and write p's state through a per-event overlay; the
//     overlays of the events that succeeded form the transaction's batch,
//     whose changelog records are produced before End, and which is written
//     to the local store only after End committed. So the store never holds
//     an effect of an uncommitted transaction, and a crash, an abort or a
//     lost partition at most discards a batch: the next owner catches its
//     store up from the committed changelog before it processes anything.
//
// Two stages because one consumer group cannot co-locate partition p of
// several topics under the cooperative-sticky balancer; one process-log
// topic makes "partition p ↔ state p" hold by construction.

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/processors"
)

// forward makes a pipeline the first stage of a stateful configuration
// (ForwardTo): every event its chain accepts is forwarded to Topic (the
// process log) with its correlation id as key, besides any commands the
// chain returns.
type forward struct {
	// Topic is the process log.
	Topic string
}

// Store is the stateful stage's store: *state.Manager.
type Store interface {
	Assign(parts []int32)
	Revoke(parts []int32)
	Reset()
	Restored() []int32
	Ready(p int32) bool
	Restoring() int
	Event(p int32) (*state.Overlay, error)
	Apply(p int32, ev *state.Overlay) error
	View(p int32) (state.Reader, error)
	ChangelogRecords() []*kgo.Record
	Finish(committed bool) error
}

// Processes is what the stateful stage needs from the process engine
// beyond its processors (which run in the chain): timer triggers,
// housekeeping and the versioning check. *processes.Engine adapts to it
// (internal/app).
type Processes interface {
	// IsTrigger reports whether a process-log record is a timer trigger.
	IsTrigger(r *kgo.Record) bool
	// TriggerEvent is the event the chain receives for a trigger record.
	TriggerEvent(r *kgo.Record) (*processors.Event, error)
	// DueTriggers returns the trigger records for timers of partition p due
	// at now (at most limit), to be produced to the process log.
	DueTriggers(r state.Reader, now time.Time, p int32, limit int) (ids []string, recs []*kgo.Record, err error)
	// Housekeep removes expired entries (dedupe marks) of a partition.
	Housekeep(tx state.Txn, now time.Time, limit int) (int, error)
	// CheckState refuses a partition's state that the configured
	// definitions cannot continue (a changed or removed version).
	CheckState(r state.Reader) error
}

// Stateful makes a pipeline the stateful stage: its only topic is the
// process log.
type Stateful struct {
	// Changelog is the store's changelog topic (its records name their
	// partition).
	Changelog string
	Store     Store
	Processes Processes
	// Partitions is the process log's partition count. With it, an event
	// found on a partition its correlation id does not hash to (the topic
	// was given more partitions, or someone wrote to it by hand) is
	// dead-lettered instead of being applied to another instance's state.
	// 0: no check.
	Partitions int
	// Admin lists the process log's end offsets: timers fire only on
	// partitions that are caught up, or a backlog would time processes out
	// that have their events waiting.
	Admin *kadm.Client
}

// errStateRefused ends Run: the configured process definitions cannot
// continue the stored instances (fix the config; retrying cannot help).
type errStateRefused struct{ err error }

func (e errStateRefused) Error() string { return e.err.Error() }
func (e errStateRefused) Unwrap() error { return e.err }

// stateLoop is the stateful stage's loop-side bookkeeping (loop goroutine
// only, except where noted).
type stateLoop struct {
	st    *Stateful
	topic string
	// touched are the partitions whose events this transaction processed:
	// only they are housekept (a transaction that commits none of a
	// partition's input offsets must not write its state: a zombie that
	// lost the partition would not be fenced, see docs/processes.md).
	mu      sync.Mutex
	touched map[int32]bool
	// sent are trigger ids already produced and when, so a due timer is
	// not triggered again while its trigger travels through the log.
	sent map[string]time.Time
	// caught are the partitions caught up with the process log at the last
	// end-offset check.
	caught map[int32]bool
	// streamTime is the highest record timestamp consumed per partition,
	// and lastRecord when a record last arrived: a timer fires once the
	// partition's stream time has passed its due time, or by wall time once
	// the partition has been idle for idleFire (see fireDue).
	streamTime map[int32]time.Time
	lastRecord map[int32]time.Time
	lastCheck  time.Time
	nextFire   time.Time
	// hash is the forwarding stage's key partitioner (murmur2, as Kafka's).
	hash kgo.TopicPartitioner
}

const (
	// triggerResend is how long a produced trigger is awaited before the
	// timer is triggered again (its transaction may have aborted).
	triggerResend = 10 * time.Second
	// fireEvery is how often due timers are looked for.
	fireEvery = 500 * time.Millisecond
	// firePerPartition bounds the triggers one look produces per partition.
	firePerPartition = 500
	// idleFire is how long a caught-up partition must have had no new
	// record before its timers fire by wall time alone.
	idleFire = 2 * time.Second
	// housekeepLimit bounds the expired entries removed per partition per
	// transaction.
	housekeepLimit = 200
)

func newStateLoop(st *Stateful, topic string) *stateLoop {
	return &stateLoop{st: st, topic: topic, hash: kgo.StickyKeyPartitioner(nil).ForTopic(topic), touched: map[int32]bool{}, sent: map[string]time.Time{}, caught: map[int32]bool{},
		streamTime: map[int32]time.Time{}, lastRecord: map[int32]time.Time{}}
}

func (s *stateLoop) touch(p int32) {
	s.mu.Lock()
	s.touched[p] = true
	s.mu.Unlock()
}

// callbacks are the client options that pause an assigned partition until
// its store is restored. They run inside franz-go's rebalance callbacks:
// they only record and pause, never block on I/O.
func (s *stateLoop) callbacks() []kgo.Opt {
	parts := func(m map[string][]int32) []int32 { return m[s.topic] }
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			if ps := parts(m); len(ps) > 0 {
				cl.PauseFetchPartitions(map[string][]int32{s.topic: ps})
				s.st.Store.Assign(ps)
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			if ps := parts(m); len(ps) > 0 {
				s.st.Store.Revoke(ps)
				// Pauses outlive a revocation (franz-go #507): a partition
				// assigned back later must not stay paused by us.
				cl.ResumeFetchPartitions(map[string][]int32{s.topic: ps})
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			if ps := parts(m); len(ps) > 0 {
				s.st.Store.Revoke(ps)
				cl.ResumeFetchPartitions(map[string][]int32{s.topic: ps})
			}
		}),
		kgo.RecordPartitioner(state.Partitioner(s.st.Changelog, s.topic)),
	}
}

// resumeRestored resumes the fetches of partitions whose restore finished,
// after checking that the definitions can continue their state.
func (s *stateLoop) resumeRestored(cl fetchControl) error {
	ps := s.st.Store.Restored()
	if len(ps) == 0 {
		return nil
	}
	for _, p := range ps {
		v, err := s.st.Store.View(p)
		if err != nil {
			continue // revoked again meanwhile
		}
		if err := s.st.Processes.CheckState(v); err != nil {
			return errStateRefused{fmt.Errorf("process-log partition %d: %w", p, err)}
		}
	}
	cl.ResumeFetchPartitions(map[string][]int32{s.topic: ps})
	return nil
}

// refreshCaughtUp lists the process log's end offsets (at most every 2s)
// and marks the partitions whose consumed position reached them.
func (s *stateLoop) refreshCaughtUp(ctx context.Context, cl fetchControl, now time.Time) {
	if s.st.Admin == nil || now.Sub(s.lastCheck) < 2*time.Second {
		return
	}
	s.lastCheck = now
	lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ends, err := s.st.Admin.ListEndOffsets(lctx, s.topic)
	if err != nil {
		return // keep the previous view; timers wait
	}
	pos := map[int32]int64{}
	for _, ps := range []map[string]map[int32]kgo.EpochOffset{cl.CommittedOffsets(), cl.UncommittedOffsets()} {
		for p, o := range ps[s.topic] {
			if o.Offset > pos[p] {
				pos[p] = o.Offset
			}
		}
	}
	caught := map[int32]bool{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && pos[o.Partition] >= o.Offset {
			caught[o.Partition] = true
		}
	})
	s.caught = caught
}

// observe records that partition p's records up to ts were consumed (loop
// goroutine).
func (s *stateLoop) observe(p int32, ts, now time.Time) {
	if ts.After(s.streamTime[p]) {
		s.streamTime[p] = ts
	}
	s.lastRecord[p] = now
}

// fireTime is the time up to which partition p's timers may fire: wall
// time once p has been idle for idleFire, else its stream time. While a
// backlog drains, its events (older than their deadlines' due times) are
// applied before the deadlines fire, so a late leg is not beaten by a
// timeout it arrived in time for.
func (s *stateLoop) fireTime(p int32, now time.Time) time.Time {
	if now.Sub(s.lastRecord[p]) >= idleFire {
		return now
	}
	if st := s.streamTime[p]; st.Before(now) {
		return st
	}
	return now
}

// fireDue produces a trigger for every due timer of the owned, restored,
// caught-up partitions. The trigger goes to the timer's own process-log
// partition: the timer fires when the owner consumes it, inside the
// transaction that commits its offset (the engine applies it only if the
// timer row still exists, so a second trigger does nothing).
func (s *stateLoop) fireDue(now time.Time, produce func(*kgo.Record)) (int, error) {
	if now.Before(s.nextFire) {
		return 0, nil
	}
	s.nextFire = now.Add(fireEvery)
	n := 0
	live := map[string]bool{}
	for p := range s.caught {
		if !s.st.Store.Ready(p) {
			continue
		}
		v, err := s.st.Store.View(p)
		if err != nil {
			continue
		}
		ids, recs, err := s.st.Processes.DueTriggers(v, s.fireTime(p, now), p, firePerPartition)
		if err != nil {
			return n, fmt.Errorf("due timers of partition %d: %w", p, err)
		}
		for i, id := range ids {
			live[id] = true
			if at, ok := s.sent[id]; ok && now.Sub(at) < triggerResend {
				continue
			}
			s.sent[id] = now
			produce(recs[i])
			n++
		}
	}
	for id := range s.sent {
		if !live[id] {
			delete(s.sent, id)
		}
	}
	return n, nil
}

// housekeep removes expired entries of the partitions this transaction
// processed events of, and returns them for the changelog.
func (s *stateLoop) housekeep(now time.Time) error {
	s.mu.Lock()
	parts := s.touched
	s.touched = map[int32]bool{}
	s.mu.Unlock()
	for p := range parts {
		ov, err := s.st.Store.Event(p)
		if err != nil {
			continue // revoked: this transaction aborts anyway
		}
		if _, err := s.st.Processes.Housekeep(ov, now, housekeepLimit); err != nil {
			return fmt.Errorf("housekeeping partition %d: %w", p, err)
		}
		if ov.Len() > 0 {
			if err := s.st.Store.Apply(p, ov); err != nil {
				return err
			}
		}
	}
	return nil
}

// finish tells the store how the transaction ended.
func (s *stateLoop) finish(committed bool) error {
	s.mu.Lock()
	s.touched = map[int32]bool{}
	s.mu.Unlock()
	if !committed {
		s.forgetTriggers()
	}
	return s.st.Store.Finish(committed)
}

// forgetTriggers forgets the triggers sent: the transaction that carried
// them did not commit (or the session ended), so their timers must be
// triggered again at once, not after triggerResend.
func (s *stateLoop) forgetTriggers() { clear(s.sent) }

// misrouted returns an error when r, an event of the process log, is not on
// the partition its key hashes to (the forwarding stage's partitioner).
func (s *stateLoop) misrouted(r *kgo.Record) error {
	if s.st.Partitions <= 0 || len(r.Key) == 0 {
		return nil
	}
	want := int32(s.hash.Partition(&kgo.Record{Key: r.Key}, s.st.Partitions))
	if want == r.Partition {
		return nil
	}
	return fmt.Errorf("process-log record %s/%d@%d has correlation id %q, which belongs on partition %d of %d: applying it here would use another instance's state (did the process log's partition count change? it must stay equal to the changelog's)",
		r.Topic, r.Partition, r.Offset, r.Key, want, s.st.Partitions)
}
