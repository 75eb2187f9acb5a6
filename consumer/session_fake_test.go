package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
)

// fakeKafka scripts the transact sessions of one pipeline: the records
// polls serve, the results of End and of produces. It records every
// lifecycle call in order, and models what the loop relies on of the real
// session: an aborted (or abandoned) transaction's records are served again,
// and a commit of exact offsets (EndCommitting) leaves the polled records
// past them in flight.
type fakeKafka struct {
	mu       sync.Mutex
	calls    []call
	queue    []kgo.Fetches // served by the next polls, one fetch a poll
	inflight []kgo.Fetches // polled by the open transaction
	sessions int
	ends     []endResult // scripted End results, in order; then TryCommit commits
	// produceErr, when set, is the result of each produce.
	produceErr func(r *kgo.Record) error
	// onPoll, when set, runs before a poll that serves records (n counts
	// them from 1), e.g. to shut the pipeline down at that point.
	onPoll   func(n int)
	polls    int
	maxes    []int // the max of every poll, in order
	produced []*kgo.Record
	endCtx   []error // the End context's error at each End
	// afterEnd, when set, runs after each End has taken effect (n counts
	// Ends from 1), e.g. to revoke a partition between two transactions.
	afterEnd func(n int)
	nEnds    int
	// endDelay is how long each End takes (the network round trips).
	endDelay time.Duration
	// commits are the offsets each committed transaction committed and
	// the records it produced since its Begin.
	commits   []fakeCommit
	txnOutput []*kgo.Record
}

// fakeCommit is one committed transaction.
type fakeCommit struct {
	offsets map[int32]int64 // partition → next offset to consume
	outputs []*kgo.Record
}

// revoke takes partition away from this replica: its polled records are
// forgotten (another member fetches them), as the real client drops a
// revoked partition's uncommitted entry.
func (f *fakeKafka) revoke(partition int32) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record0(fmt.Sprintf("revoke %d", partition))
	var keep []kgo.Fetches
	for _, fs := range f.inflight {
		var rest kgo.Fetches
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if ftp.Partition != partition {
				rest = append(rest, fetchOf(ftp.Records...)...)
			}
		})
		if len(rest) > 0 {
			keep = append(keep, rest)
		}
	}
	f.inflight = keep
}

// positions is, per partition, the offset after the last polled record.
func (f *fakeKafka) positions() map[int32]int64 {
	pos := map[int32]int64{}
	for _, fs := range f.inflight {
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if n := ftp.Records[len(ftp.Records)-1].Offset + 1; n > pos[ftp.Partition] {
				pos[ftp.Partition] = n
			}
		})
	}
	return pos
}

// keepFrom leaves in flight only the polled records at or past offsets
// (the next transaction's); the others were committed.
func (f *fakeKafka) keepFrom(offsets map[int32]int64) {
	var keep []kgo.Fetches
	for _, fs := range f.inflight {
		var rest kgo.Fetches
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			var recs []*kgo.Record
			for _, r := range ftp.Records {
				if at, ok := offsets[r.Partition]; !ok || r.Offset >= at {
					recs = append(recs, r)
				}
			}
			if len(recs) > 0 {
				rest = append(rest, fetchOf(recs...)...)
			}
		})
		if len(rest) > 0 {
			keep = append(keep, rest)
		}
	}
	f.inflight = keep
}

type call struct {
	at   time.Time
	what string
}

type endResult struct {
	committed bool
	err       error
}

func (f *fakeKafka) record(what string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record0(what)
}

func (f *fakeKafka) record0(what string) { f.calls = append(f.calls, call{time.Now(), what}) }

// lifecycle is the calls so far, without polls.
func (f *fakeKafka) lifecycle() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if !strings.HasPrefix(c.what, "poll") {
			out = append(out, c.what)
		}
	}
	return out
}

func (f *fakeKafka) all() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, c.what)
	}
	return out
}

func (f *fakeKafka) at(what string, nth int) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.calls {
		if c.what == what {
			if nth == 0 {
				return c.at
			}
			nth--
		}
	}
	return time.Time{}
}

func (f *fakeKafka) count(what string) int {
	n := 0
	for _, c := range f.all() {
		if c == what {
			n++
		}
	}
	return n
}

// requeue puts the open transaction's records back in front of the queue.
func (f *fakeKafka) requeue() {
	var again []kgo.Fetches
	for _, fs := range f.inflight {
		var keep kgo.Fetches
		fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
			if len(ftp.Records) > 0 {
				keep = append(keep, fetchOf(ftp.Records...)...)
			}
		})
		if len(keep) > 0 {
			again = append(again, keep)
		}
	}
	f.queue = append(again, f.queue...)
	f.inflight = nil
}

// newSession is the pipeline's session factory.
func (f *fakeKafka) newSession() (txnSession, error) {
	f.mu.Lock()
	f.sessions++
	f.mu.Unlock()
	f.record("new-session")
	return &fakeSession{f: f}, nil
}

// fakeSession is one scripted session of fakeKafka.
type fakeSession struct {
	f *fakeKafka
}

func (s *fakeSession) PollRecords(ctx context.Context, max int) kgo.Fetches {
	f := s.f
	f.mu.Lock()
	f.maxes = append(f.maxes, max)
	if len(f.queue) == 0 {
		f.mu.Unlock()
		<-ctx.Done()
		return kgo.NewErrFetch(ctx.Err())
	}
	fs := f.queue[0]
	f.queue = f.queue[1:]
	f.inflight = append(f.inflight, fs)
	f.polls++
	n, hook := f.polls, f.onPoll
	f.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	var parts []string
	fs.EachPartition(func(ftp kgo.FetchTopicPartition) {
		parts = append(parts, fmt.Sprintf("%d@%d-%d", ftp.Partition, ftp.Records[0].Offset, ftp.Records[len(ftp.Records)-1].Offset))
	})
	f.record("poll " + strings.Join(parts, ","))
	return fs
}

func (s *fakeSession) Begin() error {
	s.f.record("begin")
	s.f.mu.Lock()
	s.f.txnOutput = nil
	s.f.mu.Unlock()
	return nil
}

func (s *fakeSession) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	f := s.f
	f.record("produce " + r.Topic)
	var err error
	f.mu.Lock()
	if f.produceErr != nil {
		err = f.produceErr(r)
	}
	if err == nil {
		f.produced = append(f.produced, r)
		f.txnOutput = append(f.txnOutput, r)
	}
	f.mu.Unlock()
	promise(r, err)
}

func (s *fakeSession) Flush(context.Context) error { s.f.record("flush"); return nil }

func (s *fakeSession) End(ctx context.Context, try kgo.TransactionEndTry) (bool, error) {
	return s.end(ctx, try, nil)
}

// EndCommitting models the real session's rewritten offset commit: exactly
// offsets are committed, and the polled records past them stay in flight
// (the next transaction's). A partition of offsets that the client no
// longer holds aborts, as restrictTxnCommit makes the real End do.
func (s *fakeSession) EndCommitting(ctx context.Context, try kgo.TransactionEndTry, offsets map[string]map[int32]kgo.EpochOffset) (bool, error) {
	return s.end(ctx, try, offsets)
}

func (s *fakeSession) end(ctx context.Context, try kgo.TransactionEndTry, offsets map[string]map[int32]kgo.EpochOffset) (bool, error) {
	f := s.f
	if try == kgo.TryCommit {
		f.record("end commit")
	} else {
		f.record("end abort")
	}
	f.mu.Lock()
	delay := f.endDelay
	f.mu.Unlock()
	time.Sleep(delay)
	f.mu.Lock()
	f.endCtx = append(f.endCtx, ctx.Err())
	res := endResult{committed: try == kgo.TryCommit}
	if len(f.ends) > 0 {
		res, f.ends = f.ends[0], f.ends[1:]
	}
	var at map[int32]int64
	if res.committed && res.err == nil {
		at = f.positions()
		if offsets != nil {
			held := at
			at = map[int32]int64{}
			for p, eo := range offsets[fakeIn] {
				if _, ok := held[p]; !ok {
					res.committed = false // revoked under the commit: End aborts
				}
				at[p] = eo.Offset
			}
		}
	}
	switch {
	case res.err != nil:
		// Unknown outcome: the loop drops the session; its records are
		// served again when Close abandons them.
	case res.committed:
		f.commits = append(f.commits, fakeCommit{offsets: at, outputs: f.txnOutput})
		if offsets != nil {
			f.keepFrom(at)
		} else {
			f.inflight = nil
		}
	default:
		f.requeue() // aborted: back to the committed offsets
	}
	f.txnOutput = nil
	f.nEnds++
	n, hook := f.nEnds, f.afterEnd
	f.mu.Unlock()
	if hook != nil {
		hook(n)
	}
	return res.committed, res.err
}

func (s *fakeSession) Close() {
	s.f.record("close")
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	s.f.requeue() // an abandoned transaction is aborted by the broker
}

func (s *fakeSession) newPromise() *kgo.FirstErrPromise { return &kgo.FirstErrPromise{} }

func (s *fakeSession) PauseFetchTopics(topics ...string) []string { return topics }
func (s *fakeSession) ResumeFetchTopics(...string)                {}
func (s *fakeSession) ResumeFetchPartitions(map[string][]int32)   {}
func (s *fakeSession) CommittedOffsets() map[string]map[int32]kgo.EpochOffset {
	return nil
}
func (s *fakeSession) UncommittedOffsets() map[string]map[int32]kgo.EpochOffset {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	pos := s.f.positions()
	if len(pos) == 0 {
		return nil
	}
	out := map[int32]kgo.EpochOffset{}
	for p, o := range pos {
		out[p] = kgo.EpochOffset{Epoch: 1, Offset: o}
	}
	return map[string]map[int32]kgo.EpochOffset{fakeIn: out}
}

func fetchOf(recs ...*kgo.Record) kgo.Fetches {
	return kgo.Fetches{{Topics: []kgo.FetchTopic{{
		Topic:      recs[0].Topic,
		Partitions: []kgo.FetchPartition{{Partition: recs[0].Partition, Records: recs}},
	}}}}
}

const (
	fakeIn  = "fake-in"
	fakeOut = "fake-out"
	fakeDLQ = "fake-dlq"
)

// fakeWorld is a pipeline on a fakeKafka, with a real schema registry
// (loopback) for decoding and encoding.
type fakeWorld struct {
	t     *testing.T
	f     *fakeKafka
	p     *Pipeline
	pub   *publish.Publisher
	stats *Stats
}

func newFakeWorld(t *testing.T, chain processors.Processor, opts ...Opt) *fakeWorld {
	t.Helper()
	reg := testkit.StartDemoRegistry(t)
	w := &fakeWorld{t: t, f: &fakeKafka{}, pub: publish.New(nil, reg.Serde, "test"), stats: &Stats{}}
	opts = append([]Opt{
		Brokers("127.0.0.1:1"), Group("g"), Topics(fakeIn), TransactionalID("g-a"),
		CommitInterval(50 * time.Millisecond), BatchSize(1000),
		SessionTimeout(45 * time.Second), TransactionTimeout(30 * time.Second), ShutdownTimeout(5 * time.Second),
		RetryBackoff(100*time.Millisecond, 200*time.Millisecond),
		WithLogger(slog.New(slog.DiscardHandler)), WithHooks(w.stats),
	}, opts...)
	if chain == nil {
		chain = echoChain()
	}
	p, err := New(reg.Serde, chain, producer.NewOutput(reg.Serde, fakeDLQ, "g"), opts...)
	if err != nil {
		t.Fatal(err)
	}
	p.newSession = w.f.newSession
	w.p = p
	return w
}

// records builds n encoded OrderPlaced records of partition 0 from offset
// from on.
func (w *fakeWorld) records(from, n int) []*kgo.Record {
	w.t.Helper()
	var out []*kgo.Record
	for i := from; i < from+n; i++ {
		v := map[string]any{
			"envelope": map[string]any{"id": fmt.Sprintf("evt-%d", i)}, "order_id": "ord-1", "customer_id": "cust-1",
			"total": big.NewRat(100, 100), "currency": "EUR",
			"items":            []any{map[string]any{"sku": "SKU-1", "qty": int32(1), "unit_price": big.NewRat(100, 100)}},
			"shipping_country": "DE", "note": nil,
		}
		r, err := w.pub.Record(context.Background(), fakeIn, "com.acme.checkout.OrderPlaced", "ord-1", v)
		if err != nil {
			w.t.Fatal(err)
		}
		r.Partition, r.Offset, r.LeaderEpoch, r.Timestamp = 0, int64(i), 1, time.Now()
		out = append(out, r)
	}
	return out
}

// script queues polls.
func (w *fakeWorld) script(polls ...[]*kgo.Record) {
	w.f.mu.Lock()
	defer w.f.mu.Unlock()
	for _, recs := range polls {
		w.f.queue = append(w.f.queue, fetchOf(recs...))
	}
}

// run runs the pipeline until stop, which returns Run's error.
func (w *fakeWorld) run(ctx context.Context, cancel context.CancelFunc) (stop func() error) {
	done := make(chan error, 1)
	go func() { done <- w.p.Run(ctx) }()
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(20 * time.Second):
			w.t.Fatal("Run did not return after cancel")
			return nil
		}
	}
}

// runUntil runs the pipeline until the lifecycle has n calls of what,
// then stops it and fails the test if Run returned an error.
func (w *fakeWorld) runUntil(what string, n int) {
	w.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stop := w.run(ctx, cancel)
	w.waitCalls(what, n)
	if err := stop(); err != nil {
		w.t.Fatal(err)
	}
}

// waitCalls waits until the lifecycle has n calls of what.
func (w *fakeWorld) waitCalls(what string, n int) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.f.count(what) < n {
		if time.Now().After(deadline) {
			w.t.Fatalf("waited for %d × %q; calls: %q", n, what, w.f.all())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// echoChain emits one CancelOrder command per event.
func echoChain() processors.Processor {
	return processors.Func(func(_ context.Context, ev *processors.Event) ([]processors.Command, error) {
		return []processors.Command{{
			Topic: fakeOut, Type: "com.acme.ordo.commands.CancelOrder", Key: []byte("ord-1"),
			Value: map[string]any{
				"envelope": processors.Envelope{
					ID: ev.Envelope.ID + "/cancel", Type: "com.acme.ordo.commands.CancelOrder", Source: "ordo-test",
					Time: time.Now().UTC().Truncate(time.Millisecond), CorrelationID: "ord-1", CausationID: ev.Envelope.ID,
				}.Map(),
				"order_id": "ord-1", "reason": "test",
			},
		}}, nil
	})
}

func expectCalls(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lifecycle calls:\n  got  %q\n  want %q", got, want)
	}
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

func seq(parts ...[]string) []string {
	var out []string
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func one(s ...string) []string { return s }

func producedTo(f *fakeKafka, topic string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.produced {
		if r.Topic == topic {
			n++
		}
	}
	return n
}

// TestFakeCommitAfterProcessing: polled records are processed, their
// commands produced, the producer flushed and then the transaction
// committed; a shutdown with nothing open ends nothing.
func TestFakeCommitAfterProcessing(t *testing.T) {
	w := newFakeWorld(t, nil)
	w.script(w.records(0, 3))
	w.runUntil("end commit", 1)
	expectCalls(t, w.f.lifecycle(), seq(one("new-session", "begin"), repeat("produce "+fakeOut, 3), one("flush", "end commit", "close"))...)
	if s := w.stats.Snapshot(); s.TxnCommits != 1 || s.EventsIn != 3 || s.TxnAborts != 0 {
		t.Errorf("stats %+v, want 1 commit of 3 events", s)
	}
}

// TestFakeProduceErrorAborts: a failed produce turns the commit into an
// abort (no dead letter), the loop backs off, and the records, served again,
// commit in the next transaction of the same session.
func TestFakeProduceErrorAborts(t *testing.T) {
	w := newFakeWorld(t, nil)
	failed := false
	w.f.produceErr = func(r *kgo.Record) error {
		if !failed {
			failed = true
			return errors.New("NOT_ENOUGH_REPLICAS")
		}
		return nil
	}
	w.script(w.records(0, 2))
	w.runUntil("end commit", 1)
	expectCalls(t, w.f.lifecycle(), seq(
		one("new-session", "begin"), repeat("produce "+fakeOut, 2), one("flush", "end abort"),
		one("begin"), repeat("produce "+fakeOut, 2), one("flush", "end commit", "close"))...)
	if gap := w.f.at("begin", 1).Sub(w.f.at("end abort", 0)); gap < w.p.cfg.RetryBackoffMin/2 {
		t.Errorf("next transaction %v after the abort; want a backoff of at least %v", gap, w.p.cfg.RetryBackoffMin/2)
	}
	if n := producedTo(w.f, fakeDLQ); n != 0 {
		t.Errorf("%d dead letters after a produce error", n)
	}
	if s := w.stats.Snapshot(); s.TxnCommits != 1 || s.TxnAborts != 1 || s.EventsIn != 2 {
		t.Errorf("stats %+v", s)
	}
}

// TestFakeTransientFailureAbortsAndRepolls: a transient processor failure
// that outlives its retries aborts (no flush, no dead letter) and the same
// records are polled and processed again.
func TestFakeTransientFailureAbortsAndRepolls(t *testing.T) {
	var mu sync.Mutex
	fails := 4 // the first try and its 3 retries (TransientRetries default)
	echo := echoChain()
	chain := processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		mu.Lock()
		defer mu.Unlock()
		if ev.Offset == 0 && fails > 0 {
			fails--
			return nil, processors.Transient(errors.New("lookup unavailable"))
		}
		return echo.Process(ctx, ev)
	})
	w := newFakeWorld(t, chain)
	w.script(w.records(0, 2))
	w.runUntil("end commit", 1)
	expectCalls(t, w.f.lifecycle(), seq(
		one("new-session", "begin", "end abort", "begin"), repeat("produce "+fakeOut, 2), one("flush", "end commit", "close"))...)
	if n := w.f.count("poll 0@0-1"); n != 2 {
		t.Errorf("records polled %d times, want 2 (again after the abort); calls %q", n, w.f.all())
	}
	if n := producedTo(w.f, fakeDLQ); n != 0 {
		t.Errorf("%d dead letters after a transient failure", n)
	}
}

// TestFakeRebalanceAbortKeepsSession: End (false, nil) — a rebalance aborted
// the transaction — keeps the session: no close, no new session, and the
// records commit in its next transaction.
func TestFakeRebalanceAbortKeepsSession(t *testing.T) {
	w := newFakeWorld(t, nil)
	w.f.ends = []endResult{{committed: false}}
	w.script(w.records(0, 1))
	w.runUntil("end commit", 2)
	expectCalls(t, w.f.lifecycle(),
		"new-session", "begin", "produce "+fakeOut, "flush", "end commit",
		"begin", "produce "+fakeOut, "flush", "end commit", "close")
	if w.f.sessions != 1 {
		t.Errorf("%d sessions, want 1", w.f.sessions)
	}
	if s := w.stats.Snapshot(); s.SessionRestarts != 0 || s.TxnCommits != 1 || s.TxnAborts != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestFakeEndErrorRecreatesSession: an End error leaves the producer in an
// unknown state: the session is closed, a new one is made, and the records
// commit there.
func TestFakeEndErrorRecreatesSession(t *testing.T) {
	w := newFakeWorld(t, nil)
	w.f.ends = []endResult{{err: errors.New("coordinator not available")}}
	w.script(w.records(0, 1))
	w.runUntil("end commit", 2)
	expectCalls(t, w.f.lifecycle(),
		"new-session", "begin", "produce "+fakeOut, "flush", "end commit", "close",
		"new-session", "begin", "produce "+fakeOut, "flush", "end commit", "close")
	if s := w.stats.Snapshot(); s.SessionRestarts != 1 || s.TxnCommits != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestFakeShutdownCommitsProcessedWork: shutting down with processed work
// open commits it, with an End context that the shutdown did not cancel,
// and commits the partitions of records polled but not processed only up
// to the first of them (their next owner processes them).
func TestFakeShutdownCommitsProcessedWork(t *testing.T) {
	w := newFakeWorld(t, nil, CommitInterval(10*time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	w.f.onPoll = func(n int) {
		if n == 2 {
			cancel() // SIGTERM while the second poll returns
		}
	}
	w.script(w.records(0, 3), w.records(3, 2))
	stop := w.run(ctx, cancel)
	w.waitCalls("close", 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	expectCalls(t, w.f.lifecycle(), seq(
		one("new-session", "begin"), repeat("produce "+fakeOut, 3),
		one("flush", "end commit", "close"))...)
	if w.f.endCtx[0] != nil {
		t.Errorf("End ran with a cancelled context (%v): a shutdown must not cut End short", w.f.endCtx[0])
	}
	if offs, _ := committedTxns(w.f); len(offs) != 1 || offs[0][0] != 3 {
		t.Errorf("commits %v, want one at offset 3: the polled records 3-4 were not processed", offs)
	}
	if s := w.stats.Snapshot(); s.TxnCommits != 1 || s.EventsIn != 3 {
		t.Errorf("stats %+v, want the 3 processed events committed", s)
	}
}

// TestFakeShutdownAbortsUnfinishedWork: shutting down while an event's work
// is unfinished aborts the transaction (nothing flushed or committed).
func TestFakeShutdownAbortsUnfinishedWork(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	echo := echoChain()
	chain := processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		if ev.Offset == 2 {
			cancel() // SIGTERM in the middle of this event
			return nil, processors.Transient(errors.New("lookup interrupted"))
		}
		return echo.Process(ctx, ev)
	})
	w := newFakeWorld(t, chain, CommitInterval(10*time.Second))
	w.script(w.records(0, 4))
	stop := w.run(ctx, cancel)
	w.waitCalls("close", 1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	expectCalls(t, w.f.lifecycle(), seq(
		one("new-session", "begin"), repeat("produce "+fakeOut, 2), one("end abort", "close"))...)
	if w.f.endCtx[0] != nil {
		t.Errorf("End ran with a cancelled context: %v", w.f.endCtx[0])
	}
	if s := w.stats.Snapshot(); s.TxnCommits != 0 || s.TxnAborts != 1 {
		t.Errorf("stats %+v, want one abort", s)
	}
}

// TestFakeSerialLoopCarriesCutRecords: in the serial loop too (and so in
// the stateful stage), records the commit deadline left unstarted are not
// rewound (SetOffsets would drop the whole fetch buffer) nor polled again:
// End commits up to the first of them, and the next transaction processes
// them first, in the partition's order. (The pipelined loop:
// TestFakePipelineCarriesCutRecords.)
func TestFakeSerialLoopCarriesCutRecords(t *testing.T) {
	w := newFakeWorld(t, slowFirst(0, 300*time.Millisecond), CommitInterval(100*time.Millisecond), Workers(1), SerialLoop(true))
	w.script(w.records(0, 4))
	w.runUntil("end commit", 2)
	expectCalls(t, w.f.lifecycle(), seq(
		one("new-session", "begin", "produce "+fakeOut, "flush", "end commit"),
		one("begin"), repeat("produce "+fakeOut, 3), one("flush", "end commit", "close"))...)
	if w.f.count("poll 0@1-3") != 0 {
		t.Fatalf("the cut records were polled again: %q", w.f.all())
	}
	offs, outs := committedTxns(w.f)
	if len(offs) != 2 || offs[0][0] != 1 || !slices.Equal(outs[0], keys(0, 0, 1)) || offs[1][0] != 4 || !slices.Equal(outs[1], keys(0, 1, 4)) {
		t.Fatalf("commits %v with outputs %v, want offset 1 with 0/0, then 4 with 0/1..0/3", offs, outs)
	}
	w.f.mu.Lock()
	var order []string
	for _, r := range w.f.commits[1].outputs {
		order = append(order, string(r.Key))
	}
	w.f.mu.Unlock()
	if !slices.Equal(order, []string{"0/1", "0/2", "0/3"}) {
		t.Fatalf("second transaction produced %v, want the partition's order", order)
	}
	checkExactlyOnce(t, w.f)
	if s := w.stats.Snapshot(); s.TxnCommits != 2 || s.EventsIn != 4 || s.Rewound != 3 {
		t.Errorf("stats %+v, want 4 events in 2 commits and the 3 cut records counted as rewound", s)
	}
}

// TestFakeSerialLoopCarryDroppedWhenRevoked: a partition revoked during
// the End that cut it loses its carried records (never produced here; its
// next owner fetches them from the committed cut point); the other
// partition goes on.
func TestFakeSerialLoopCarryDroppedWhenRevoked(t *testing.T) {
	checkCarryDroppedWhenRevoked(t, SerialLoop(true))
}
