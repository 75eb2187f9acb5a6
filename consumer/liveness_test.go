package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/publish"
)

// txnLog records every transaction end the loop reports, with the time.
type txnLog struct {
	mu       sync.Mutex
	commits  []time.Time
	events   []int
	aborts   atomic.Int64
	restarts atomic.Int64
}

func (l *txnLog) OnTxnCommitted(_ time.Duration, c consumer.Counts) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.commits = append(l.commits, time.Now())
	l.events = append(l.events, c.EventsIn)
}
func (l *txnLog) OnTxnAborted(time.Duration, error) { l.aborts.Add(1) }
func (l *txnLog) OnSessionRestarted(error)          { l.restarts.Add(1) }

// gaps describes the commits that carried events: how long the first took
// from start (group join, producer id and first fetch included), and the
// longest time between two of them after it, with when it ended.
type gaps struct {
	first   time.Duration // start to the first commit with events
	steady  time.Duration // longest time between two commits with events
	at      time.Duration // when (since start) the longest one ended
	commits int
}

func (g gaps) String() string {
	return fmt.Sprintf("first commit after %v, longest gap after it %v (ending %v after start)",
		g.first.Round(time.Millisecond), g.steady.Round(time.Millisecond), g.at.Round(time.Millisecond))
}

// gaps measures the commits with events since start.
func (l *txnLog) gaps(start time.Time) gaps {
	l.mu.Lock()
	defer l.mu.Unlock()
	var g gaps
	var prev time.Time
	for i, at := range l.commits {
		if l.events[i] == 0 {
			continue
		}
		g.commits++
		if prev.IsZero() {
			g.first = at.Sub(start)
		} else if d := at.Sub(prev); d > g.steady {
			g.steady, g.at = d, at.Sub(start)
		}
		prev = at
	}
	return g
}

// maxGap is the longest time between two commits that carried events (or
// between start and the first one).
func (l *txnLog) maxGap(start time.Time) (time.Duration, int) {
	g := l.gaps(start)
	return max(g.first, g.steady), g.commits
}

// slow is the echo chain behind a dependency that takes d per event.
func (e *env) slow(d time.Duration, calls *atomic.Int64) processors.Processor {
	echo := e.echo()
	return processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		calls.Add(1)
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return echo.Process(ctx, ev)
	})
}

// TestSlowChainCommitsSteadily is the 120 ms-per-lookup backlog that never
// committed: the first poll took a whole batch, the transaction outlived its
// timeout, was fenced and re-run forever. Now records that do not start
// before the commit deadline wait for the next transaction, so commits come
// every commit interval plus one event, and nothing is lost or doubled.
func TestSlowChainCommitsSteadily(t *testing.T) {
	const perEvent = 120 * time.Millisecond
	e := newEnv(t, 3)
	ids := e.publish(150, nil) // 50 events per partition: 6 s of work per partition
	var calls atomic.Int64
	log := &txnLog{}
	start := time.Now()
	run(t, e.pipeline("a", e.slow(perEvent, &calls),
		consumer.CommitInterval(100*time.Millisecond),
		consumer.BatchSize(10000), // the default: a poll could hold the whole backlog
		consumer.TransactionTimeout(5*time.Second),
		consumer.WithHooks(log),
	))
	e.waitCommitted(90 * time.Second)
	took := time.Since(start)
	e.checkExactlyOnce(ids)
	g := log.gaps(start)
	t.Logf("150 events at %v each on 3 partitions: %v, %d commits with events, %v, %d chain calls, %d aborts, %d session restarts",
		perEvent, took.Round(time.Millisecond), g.commits, g, calls.Load(), log.aborts.Load(), log.restarts.Load())
	if log.restarts.Load() != 0 {
		t.Errorf("%d session restarts: the transactions must not time out", log.restarts.Load())
	}
	// A commit every ~(100 ms + one event) per round; the loose bound
	// absorbs a loaded CI machine but not a transaction holding a batch
	// (50 events, 6 s). The first commit also waits for the group join and
	// the producer id, which the broker may delay (coordinator loading), so
	// it has a bound of its own.
	if g.steady > 2*time.Second {
		t.Errorf("longest time between commits %v; want about commit interval + one event (%v)", g.steady, 100*time.Millisecond+perEvent)
	}
	if g.first > 10*time.Second {
		t.Errorf("the first commit came %v after start; want the join plus about one event", g.first)
	}
	if g.commits < 20 {
		t.Errorf("only %d commits carried events; want steady small commits", g.commits)
	}
	if calls.Load() != 150 {
		t.Errorf("the chain ran %d times for 150 events: rewound records must not be processed twice", calls.Load())
	}
}

// TestVerySlowChainCommitsEachEvent: 2 s per event, longer than 20 commit
// intervals; every transaction still carries at least one event per
// partition and none comes near the transaction timeout.
func TestVerySlowChainCommitsEachEvent(t *testing.T) {
	const perEvent = 2 * time.Second
	e := newEnv(t, 4)
	ids := e.publish(12, nil)
	var calls atomic.Int64
	log := &txnLog{}
	start := time.Now()
	run(t, e.pipeline("a", e.slow(perEvent, &calls),
		consumer.CommitInterval(100*time.Millisecond),
		consumer.TransactionTimeout(8*time.Second),
		consumer.Workers(4),
		consumer.WithHooks(log),
	))
	e.waitCommitted(60 * time.Second)
	e.checkExactlyOnce(ids)
	gap, commits := log.maxGap(start)
	t.Logf("12 events at %v on 4 partitions: %d commits with events, longest gap %v, %d aborts, %d restarts", perEvent, commits, gap.Round(time.Millisecond), log.aborts.Load(), log.restarts.Load())
	if log.restarts.Load() != 0 || log.aborts.Load() != 0 {
		t.Errorf("%d restarts and %d aborts; want none", log.restarts.Load(), log.aborts.Load())
	}
	if gap > perEvent+2*time.Second {
		t.Errorf("longest time between commits %v; want about one event (%v)", gap, perEvent)
	}
}

// TestProcessingPastTheBudgetAbortsNeverDeadLetters: a processor stuck past
// half the transaction timeout is cancelled before the broker would time
// the transaction out; the event is left for the next transaction (its
// partition rewound to it) and re-run, never dead-lettered, even though the
// processor returned a plain (permanent looking) context error.
func TestProcessingPastTheBudgetAbortsNeverDeadLetters(t *testing.T) {
	e := newEnv(t, 1)
	ids := e.publish(5, nil)
	var hung atomic.Int64
	echo := e.echo()
	chain := processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		if ev.Envelope.ID == "evt-000002" && hung.Add(1) == 1 {
			<-ctx.Done() // stuck until ordo gives up on it
			return nil, errors.New("lookup: " + ctx.Err().Error())
		}
		return echo.Process(ctx, ev)
	})
	log := &txnLog{}
	run(t, e.pipeline("a", chain,
		consumer.TransactionTimeout(2*time.Second),
		consumer.WithHooks(log),
	))
	e.waitCommitted(60 * time.Second)
	e.checkExactlyOnce(ids)
	if dead := testkit.ReadCommitted(t, e.brokers, e.dlq, 10*time.Second); len(dead) != 0 {
		t.Errorf("%d dead letters; a processor cut off by the budget must be retried, not dead-lettered", len(dead))
	}
	if hung.Load() < 2 || log.restarts.Load() != 0 {
		t.Errorf("the stuck event ran %d times, %d session restarts: want it cut off by the budget and re-run, never the broker fencing the transaction", hung.Load(), log.restarts.Load())
	}
}

// TestLagIsZeroBehindTransactionalProducers: a partition written by a
// transactional producer ends in a commit marker. The committed offset must
// move past it, or the lag of an idle, caught-up replica stays at 1.
func TestLagIsZeroBehindTransactionalProducers(t *testing.T) {
	e := newEnv(t, 2)
	recs := e.records(40)
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.TransactionalID(testkit.UniqueName(t, "upstream")))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for _, batch := range [][]*kgo.Record{recs[:20], recs[20:]} {
		if err := cl.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	stats := &consumer.Stats{}
	run(t, e.pipeline("a", e.echo(), consumer.WithHooks(stats)))
	// waitCommitted compares with the high watermark, which counts the
	// final marker: it returns only when the lag is 0.
	e.waitCommitted(60 * time.Second)
	adm := testkit.NewAdmin(t, e.brokers)
	lag, err := adm.Lag(ctx, e.group)
	if err != nil {
		t.Fatal(err)
	}
	lag.Each(func(l kadm.DescribedGroupLag) {
		for _, ps := range l.Lag {
			for _, p := range ps {
				if p.Lag != 0 {
					t.Errorf("%s/%d: lag %d behind a transactional producer, want 0", p.Topic, p.Partition, p.Lag)
				}
			}
		}
	})
	if s := stats.Snapshot(); s.EventsIn != 40 || s.CommandsOut != 40 {
		t.Errorf("committed %+v; want 40 events and 40 commands (markers are not events)", s)
	}
}

// TestReadinessAndLivenessFollowProgress: an outage that makes every
// attempt fail turns readiness false after StallTimeout and back to true on
// the next commit; a processor that ignores its context and blocks fails
// liveness after LivenessTimeout.
func TestReadinessAndLivenessFollowProgress(t *testing.T) {
	e := newEnv(t, 1)
	e.publish(10, nil)
	var outage atomic.Bool
	outage.Store(true)
	block := make(chan struct{})
	var blocking atomic.Bool
	echo := e.echo()
	chain := processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		if blocking.Load() {
			<-block // ignores ctx on purpose: a stuck dependency client
		}
		if outage.Load() {
			return nil, processors.Transient(errors.New("registry refused the credentials (401)"))
		}
		return echo.Process(ctx, ev)
	})
	p := e.pipeline("a", chain,
		consumer.StallTimeout(time.Second),
		consumer.LivenessTimeout(2*time.Second),
		consumer.TransactionTimeout(20*time.Second), // the stuck processor must not be cut off first
		consumer.SessionTimeout(30*time.Second),
	)
	run(t, p)
	waitFor(t, 20*time.Second, "readiness false during the outage", func() bool {
		ok, why := p.Ready(time.Now())
		return !ok && strings.Contains(why, "no progress") && strings.Contains(why, "401")
	})
	if ok, why := p.Live(time.Now()); !ok {
		t.Errorf("an abort loop with backoff is alive, got: %s", why)
	}
	outage.Store(false)
	waitFor(t, 20*time.Second, "readiness back after the outage", func() bool { ok, _ := p.Ready(time.Now()); return ok })
	if pr := p.Progress(); pr.LastCommit.IsZero() || pr.ConsecutiveAborts != 0 {
		t.Errorf("after recovery: %+v", pr)
	}

	blocking.Store(true)
	e.publish(1, nil)
	waitFor(t, 20*time.Second, "liveness false while a processor is stuck", func() bool {
		ok, why := p.Live(time.Now())
		return !ok && strings.Contains(why, "stuck")
	})
	close(block)
	waitFor(t, 20*time.Second, "liveness back", func() bool { ok, _ := p.Live(time.Now()); return ok })
}

// TestRepeatedAbortsBackOff: an output that can never be written aborts
// every transaction; the aborts must back off instead of spinning.
func TestRepeatedAbortsBackOff(t *testing.T) {
	e := newEnv(t, 1)
	e.publish(5, nil)
	echo := e.echo()
	chain := processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		cmds, err := echo.Process(ctx, ev)
		for i := range cmds {
			cmds[i].Topic = "no such topic!" // an invalid name: every produce fails
		}
		return cmds, err
	})
	log := &txnLog{}
	run(t, e.pipeline("a", chain,
		consumer.RetryBackoff(50*time.Millisecond, time.Second),
		consumer.WithHooks(log),
		consumer.WithKgoOpts(kgo.RecordDeliveryTimeout(time.Second)),
	))
	time.Sleep(6 * time.Second)
	n := log.aborts.Load() + log.restarts.Load()
	t.Logf("aborts in 6 s: %d (restarts %d)", log.aborts.Load(), log.restarts.Load())
	if n == 0 {
		t.Fatal("no abort: the failing produce was not noticed")
	}
	// 50 ms doubling to 1 s: at most ~12 rounds in 6 s; without backoff it
	// is one per poll round (dozens a second).
	if n > 15 {
		t.Errorf("%d aborts in 6 s: repeated aborts do not back off", n)
	}
}

// records builds n OrderPlaced records without publishing them.
func (e *env) records(n int) []*kgo.Record {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	pub := publish.New(cl, e.serde, "test")
	var recs []*kgo.Record
	for i := range n {
		id := fmt.Sprintf("evt-%06d", i)
		r, err := pub.Record(context.Background(), e.input, "com.acme.checkout.OrderPlaced", fmt.Sprintf("ord-%d", i%50), order(id, i))
		if err != nil {
			e.t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}

func waitFor(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// publishHot publishes n events, every other one on the one key "hot".
func (e *env) publishHot(n int) []string {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	pub := publish.New(cl, e.serde, "test")
	var recs []*kgo.Record
	var ids []string
	for i := range n {
		id := fmt.Sprintf("evt-%06d", i)
		key := "hot"
		if i%2 == 1 {
			key = fmt.Sprintf("k-%d", i)
		}
		r, err := pub.Record(context.Background(), e.input, "com.acme.checkout.OrderPlaced", key, order(id, i))
		if err != nil {
			e.t.Fatal(err)
		}
		recs = append(recs, r)
		ids = append(ids, id)
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	return ids
}

func (l *txnLog) committedEvents() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.events {
		n += e
	}
	return n
}

// TestKeyParallelHotKeyCommits: in key-parallel mode, fast lanes used to run
// to the end of a poll before the deadline, freezing the cut there, and the
// slow lane of a hot key (150 ms per event) then had to fill every gap
// below it: past the processing budget, an abort, forever (0 commits in
// 40 s). Lanes now run at most KeyLanes records ahead of the slowest one.
func TestKeyParallelHotKeyCommits(t *testing.T) {
	e := newEnv(t, 1)
	e.publishHot(400)
	echo := e.echo()
	chain := processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		if string(ev.Key) == "hot" {
			select {
			case <-time.After(150 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return echo.Process(ctx, ev)
	})
	log := &txnLog{}
	start := time.Now()
	run(t, e.pipeline("a", chain,
		consumer.CommitInterval(100*time.Millisecond),
		consumer.BatchSize(10000),
		consumer.TransactionTimeout(8*time.Second),
		consumer.KeyParallel(true),
		consumer.WithHooks(log),
	))
	time.Sleep(12 * time.Second)
	gap, commits := log.maxGap(start)
	t.Logf("12 s: %d events committed in %d commits, longest gap %v, %d aborts", log.committedEvents(), commits, gap.Round(time.Millisecond), log.aborts.Load())
	if log.aborts.Load() != 0 {
		t.Errorf("%d aborts: the lanes' gap filling outlived the processing budget", log.aborts.Load())
	}
	// 200 hot events at 150 ms are 30 s of work: in 12 s at least ~60 of
	// them and the fast ones between them must have committed.
	if n := log.committedEvents(); n < 100 {
		t.Errorf("only %d events committed in 12 s", n)
	}
}

// TestOneEventSlowerThanTheBudgetStallsOnlyItsPartition: an event that
// always takes longer than half the transaction timeout used to abort every
// transaction it was in, so no partition committed (0/200 in 30 s). Now
// it is left for the next transaction while the other partitions commit.
func TestOneEventSlowerThanTheBudgetStallsOnlyItsPartition(t *testing.T) {
	e := newEnv(t, 4)
	ids := e.publish(200, nil)
	echo := e.echo()
	var slowCalls atomic.Int64
	chain := processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		if ev.Envelope.ID == "evt-000007" {
			slowCalls.Add(1)
			select {
			case <-time.After(3 * time.Second):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return echo.Process(ctx, ev)
	})
	log := &txnLog{}
	p := e.pipeline("a", chain,
		consumer.TransactionTimeout(4*time.Second), // budget 2 s < 3 s
		consumer.SessionTimeout(10*time.Second),
		consumer.WithHooks(log),
	)
	run(t, p)
	adm := testkit.NewAdmin(t, e.brokers)
	waitFor(t, 30*time.Second, "the other partitions to commit everything", func() bool {
		lag, err := adm.Lag(context.Background(), e.group)
		if err != nil {
			return false
		}
		behind := 0
		lag.Each(func(l kadm.DescribedGroupLag) {
			for _, ps := range l.Lag {
				for _, pl := range ps {
					if pl.Lag > 0 {
						behind++
					}
				}
			}
		})
		return behind == 1 // only the slow event's partition
	})
	// The cut-off that let the others commit rewinds the slow event; its
	// retry starts right after that commit, so give it a moment rather than
	// race the lag check against it.
	waitFor(t, 10*time.Second, "the slow event's retry (it must be retried after the budget cut it off)", func() bool { return slowCalls.Load() >= 2 })
	t.Logf("others committed: %d events, %d aborts, slow event tried %d times", log.committedEvents(), log.aborts.Load(), slowCalls.Load())
	if dead := testkit.ReadCommitted(t, e.brokers, e.dlq, 5*time.Second); len(dead) != 0 {
		t.Errorf("%d dead letters: a slow event must never be dead-lettered", len(dead))
	}
	_ = ids
}

// TestCommitIntervalMustFitTheBudget: processing is cut off at half the
// transaction timeout, so a commit interval past it is refused at start.
func TestCommitIntervalMustFitTheBudget(t *testing.T) {
	_, err := consumer.New(nil, nil, nil,
		consumer.Brokers("127.0.0.1:1"), consumer.Group("g"), consumer.Topics("t"), consumer.TransactionalID("x"),
		consumer.CommitInterval(5*time.Second), consumer.TransactionTimeout(8*time.Second), consumer.SessionTimeout(20*time.Second))
	if err == nil || !strings.Contains(err.Error(), "half the transaction timeout") {
		t.Fatalf("commit interval 5s with transaction timeout 8s: %v", err)
	}
}
