package consumer_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// env is one test's world: a broker (kfake or real Kafka, see testkit), a
// real schema registry on loopback, the demo schemas, unique topics.
type env struct {
	t       testing.TB
	brokers []string
	serde   *schemas.Serde
	input   string
	output  string
	dlq     string
	group   string
}

func newEnv(t testing.TB, partitions int32) *env {
	t.Helper()
	brokers := testkit.Brokers(t)
	reg := testkit.StartDemoRegistry(t)
	e := &env{
		t:       t,
		brokers: brokers,
		serde:   reg.Serde,
		input:   testkit.UniqueName(t, "in"),
		output:  testkit.UniqueName(t, "out"),
		dlq:     testkit.UniqueName(t, "dlq"),
		group:   testkit.UniqueName(t, "group"),
	}
	testkit.CreateTopics(t, brokers, partitions, e.input, e.output)
	testkit.CreateTopics(t, brokers, 1, e.dlq)
	return e
}

// publish writes n OrderPlaced events (keys spread over 50 orders) and
// returns their event ids in publish order per key.
func (e *env) publish(n int, poison map[int]bool) (ids []string) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.ProducerLinger(2*time.Millisecond))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	pub := publish.New(cl, e.serde, "test")
	ctx := context.Background()
	var recs []*kgo.Record
	for i := range n {
		if poison[i] {
			recs = append(recs, &kgo.Record{Topic: e.input, Key: []byte("poison"), Value: []byte("not avro " + strconv.Itoa(i))})
			ids = append(ids, "")
			continue
		}
		id := fmt.Sprintf("evt-%06d", i)
		r, err := pub.Record(ctx, e.input, "com.acme.checkout.OrderPlaced", fmt.Sprintf("ord-%d", i%50), order(id, i))
		if err != nil {
			e.t.Fatal(err)
		}
		recs = append(recs, r)
		ids = append(ids, id)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	return ids
}

func order(id string, i int) map[string]any {
	return map[string]any{
		"envelope":    map[string]any{"id": id},
		"order_id":    fmt.Sprintf("ord-%d", i%50),
		"customer_id": "cust-1",
		"total":       big.NewRat(int64(100+i), 100),
		"currency":    "EUR",
		"items": []any{map[string]any{
			"sku": "SKU-1", "qty": int32(1), "unit_price": big.NewRat(int64(100+i), 100),
		}},
		"shipping_country": "DE",
		"note":             nil,
	}
}

// echo is the chain under test: one CancelOrder command per event, keyed by
// the correlation id, carrying the event id as causation.
func (e *env) echo() processors.Processor {
	return processors.Func(func(_ context.Context, ev *processors.Event) ([]processors.Command, error) {
		return []processors.Command{{
			Topic: e.output,
			Type:  "com.acme.ordo.commands.CancelOrder",
			Key:   []byte(ev.Envelope.CorrelationID),
			Value: map[string]any{
				"envelope": processors.Envelope{
					ID: ev.Envelope.ID + "/cancel", Type: "com.acme.ordo.commands.CancelOrder", Source: "ordo-test",
					Time: ev.Timestamp.UTC().Truncate(time.Millisecond), CorrelationID: ev.Envelope.CorrelationID, CausationID: ev.Envelope.ID,
				}.Map(),
				"order_id": ev.Value["order_id"],
				"reason":   "test",
			},
		}}, nil
	})
}

func (e *env) pipeline(replica string, chain processors.Processor, opts ...consumer.Opt) *consumer.Pipeline {
	e.t.Helper()
	logger := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	var kopts []kgo.Opt
	if dir := os.Getenv("ORDO_DEBUG_LOG_DIR"); dir != "" {
		f, _ := os.Create(dir + "/" + replica + "-" + strconv.FormatInt(time.Now().UnixNano(), 10) + ".log")
		logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
		kopts = append(kopts, kgo.WithLogger(kslog.New(logger)))
	}
	// The test's options come last, so they replace these.
	opts = append([]consumer.Opt{
		consumer.Brokers(e.brokers...),
		consumer.Group(e.group),
		consumer.Topics(e.input),
		consumer.TransactionalID(e.group + "-" + replica),
		consumer.CommitInterval(50 * time.Millisecond),
		consumer.BatchSize(200),
		consumer.SessionTimeout(10 * time.Second),
		consumer.TransactionTimeout(8 * time.Second),
		consumer.RetryBackoff(10*time.Millisecond, 200*time.Millisecond),
		consumer.WithLogger(logger),
		consumer.WithKgoOpts(kopts...),
	}, opts...)
	p, err := consumer.New(e.serde, chain, producer.NewOutput(e.serde, e.dlq, e.group), opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// waitCommitted waits until the group has committed the end of the input.
func (e *env) waitCommitted(timeout time.Duration) {
	e.t.Helper()
	adm := testkit.NewAdmin(e.t, e.brokers)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, err1 := adm.ListEndOffsets(ctx, e.input)
		committed, err2 := adm.FetchOffsets(ctx, e.group)
		cancel()
		if err := errors.Join(err1, err2); err == nil {
			done := true
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					done = false
				}
			})
			if done {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("group %s did not commit the whole input within %v", e.group, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkExactlyOnce asserts that every valid input produced exactly one
// visible command, in per-key order, and nothing else is visible.
func (e *env) checkExactlyOnce(ids []string) {
	e.t.Helper()
	out := testkit.ReadCommitted(e.t, e.brokers, e.output, 30*time.Second)
	seen := map[string]int{}
	lastByKey := map[string]int{}
	for _, r := range out {
		var causation string
		for _, h := range r.Headers {
			if h.Key == producer.HeaderCausationID {
				causation = string(h.Value)
			}
		}
		seen[causation]++
		n, err := strconv.Atoi(causation[len("evt-"):])
		if err != nil {
			e.t.Fatalf("bad causation %q", causation)
		}
		if prev, ok := lastByKey[string(r.Key)]; ok && n < prev {
			e.t.Errorf("key %s: %s after evt-%06d: per-key order broken", r.Key, causation, prev)
		}
		lastByKey[string(r.Key)] = n
	}
	want := 0
	lost := map[string]bool{}
	defer func() {
		if len(lost) > 0 {
			e.diagnose(lost)
		}
	}()
	for _, id := range ids {
		if id == "" {
			continue
		}
		want++
		switch seen[id] {
		case 1:
		case 0:
			lost[id] = true
			e.t.Errorf("event %s lost: no command", id)
		default:
			e.t.Errorf("event %s: %d commands, want exactly 1", id, seen[id])
		}
	}
	if len(out) != want {
		e.t.Errorf("visible commands: %d, want %d", len(out), want)
	}
}

func run(t *testing.T, p *consumer.Pipeline) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("pipeline: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("pipeline did not stop within 30s of cancellation")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestExactlyOnceWithCrashes kills the transact session at random points
// (after producing, before ending) while two replicas share the group, and
// restarts one replica mid-stream: every event must still yield exactly one
// visible command.
func TestExactlyOnceWithCrashes(t *testing.T) { testCrashes(t, false, 0) }

// TestExactlyOnceWithCrashesKeyParallel is the same proof in key-parallel
// mode (different keys of a partition processed concurrently).
func TestExactlyOnceWithCrashesKeyParallel(t *testing.T) { testCrashes(t, true, 0) }

// TestExactlyOnceWithCrashesSlowChain: the same with a chain slow enough
// (3 ms per event, 20 ms commit interval) that most transactions end with
// rewound partitions (records not started by the deadline): crashes and a
// rebalance must not make a rewound commit lose or double anything.
func TestExactlyOnceWithCrashesSlowChain(t *testing.T) { testCrashes(t, false, 3*time.Millisecond) }

func testCrashes(t *testing.T, keyParallel bool, perEvent time.Duration) {
	if testkit.Kind(t) == testkit.KindKfake {
		// Seen repeatedly on kfake (v0.0.0-20260918054303), never on Apache
		// Kafka 4.1: after a replica restarts with the same transactional id,
		// transactions the broker acknowledged as committed stay invisible
		// to read_committed readers (kfake's aborted-transaction index).
		t.Skip("skipped on kfake: it hides committed transactions after a transactional-id restart; run with KAFKA_BROKERS (make test) to prove exactly-once on Apache Kafka")
	}
	e := newEnv(t, 6)
	n := 3000
	chain := e.echo()
	var calls0 atomic.Int64
	if perEvent > 0 {
		n = 1200
		chain = e.slow(perEvent, &calls0)
	}
	ids := e.publish(n, nil)

	// Kill at a pseudo-random but bounded schedule: every 3rd to 5th chaos
	// point, alternating between after-produce and before-end, 10 times.
	var kills, calls atomic.Int64
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var rngMu sync.Mutex
	next := int64(3)
	chaos := func(point string, sess *kgo.GroupTransactSession) {
		rngMu.Lock()
		defer rngMu.Unlock()
		if c := calls.Add(1); c >= next && kills.Load() < 10 {
			next = c + 3 + int64(rng.IntN(3))
			kills.Add(1)
			sess.Client().Close() // as if the process died here
		}
	}
	small := []consumer.Opt{consumer.BatchSize(100), consumer.KeyParallel(keyParallel), consumer.KeyLanes(8)}
	if perEvent > 0 {
		small = append(small, consumer.BatchSize(10000), consumer.CommitInterval(20*time.Millisecond))
	}
	a := e.pipeline("a", chain, small...)
	a.SetChaos(chaos)
	b := e.pipeline("b", chain, small...)
	b.SetChaos(chaos)
	stopA := run(t, a)
	stopB := run(t, b)
	time.Sleep(500 * time.Millisecond)
	stopB() // a graceful leave mid-stream: rebalance onto a
	// The restarted replica crashes too: without it, a replica whose
	// session restarts are backing off could leave b2 to process the rest
	// unharmed, and the test would prove little (and fail its kill count).
	b2 := e.pipeline("b", chain, small...)
	b2.SetChaos(chaos)
	run(t, b2)

	e.waitCommitted(90 * time.Second)
	stopA()
	if kills.Load() < 3 {
		t.Fatalf("chaos killed %d sessions; want at least 3 for the test to prove anything", kills.Load())
	}
	t.Logf("%d events, %d session kills", n, kills.Load())
	e.checkExactlyOnce(ids)
}

// TestPoisonGoesToDeadLetter checks that undecodable events land in the
// dead-letter topic in the same transaction, with their original bytes and
// the reason in headers, while the valid ones are processed.
func TestPoisonGoesToDeadLetter(t *testing.T) {
	e := newEnv(t, 3)
	poison := map[int]bool{3: true, 50: true, 199: true}
	ids := e.publish(200, poison)
	run(t, e.pipeline("a", e.echo()))
	e.waitCommitted(60 * time.Second)
	e.checkExactlyOnce(ids)

	dead := testkit.ReadCommitted(t, e.brokers, e.dlq, 30*time.Second)
	if len(dead) != len(poison) {
		t.Fatalf("dead letters: %d, want %d", len(dead), len(poison))
	}
	for _, r := range dead {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if string(r.Value[:len("not avro")]) != "not avro" || string(r.Key) != "poison" {
			t.Errorf("dead letter does not keep the original record: key %q value %q", r.Key, r.Value)
		}
		if h[producer.HeaderDLQErrorClass] != "permanent" || h[producer.HeaderDLQError] == "" ||
			h[producer.HeaderDLQSourceTopic] != e.input || h[producer.HeaderDLQSourceOffset] == "" || h[producer.HeaderDLQProcessor] != "decode" {
			t.Errorf("dead letter headers incomplete: %v", h)
		}
	}
}

// TestTransientFailureNeverDeadLetters makes the chain fail transiently for
// a while: nothing may be committed or dead-lettered during the outage, and
// everything is processed exactly once after it.
func TestTransientFailureNeverDeadLetters(t *testing.T) {
	e := newEnv(t, 3)
	ids := e.publish(300, nil)
	var outage atomic.Bool
	outage.Store(true)
	var attempts atomic.Int64
	echo := e.echo()
	chain := processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		if outage.Load() {
			attempts.Add(1)
			return nil, processors.Transient(errors.New("downstream lookup unavailable"))
		}
		return echo.Process(ctx, ev)
	})
	stats := &consumer.Stats{}
	run(t, e.pipeline("a", chain, consumer.WithHooks(stats)))

	time.Sleep(2 * time.Second)
	if attempts.Load() < 2 {
		t.Fatalf("the failing processor ran %d times; expected retries", attempts.Load())
	}
	adm := testkit.NewAdmin(t, e.brokers)
	committed, err := adm.FetchOffsets(context.Background(), e.group)
	if err != nil {
		t.Fatal(err)
	}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == e.input && o.At > 0 {
			t.Errorf("offset %d committed for %s/%d during a transient outage", o.At, o.Topic, o.Partition)
		}
	})
	if s := stats.Snapshot(); s.TxnAborts == 0 || s.EventsIn != 0 {
		t.Errorf("during the outage: %+v; want aborts and no committed events", s)
	}
	outage.Store(false)
	e.waitCommitted(60 * time.Second)
	e.checkExactlyOnce(ids)
	if dead := testkit.ReadCommitted(t, e.brokers, e.dlq, 10*time.Second); len(dead) != 0 {
		t.Errorf("%d dead letters after a transient outage, want 0", len(dead))
	}
}

// TestShutdownCommitsOpenWork cancels the pipeline while its transaction
// holds processed work: Run must return promptly, and the shutdown must
// commit that transaction (not abort it, not leave it to the broker's
// timeout), with the committed offsets covering exactly the committed
// events; a new replica then finishes the input exactly once.
func TestShutdownCommitsOpenWork(t *testing.T) {
	e := newEnv(t, 3)
	ids := e.publish(1000, nil)
	var processed atomic.Int64
	echo := e.echo()
	chain := processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		processed.Add(1)
		return echo.Process(ctx, ev)
	})
	stats := &consumer.Stats{}
	// A 10s commit interval: the open transaction cannot commit by itself
	// before the shutdown below.
	stop := run(t, e.pipeline("a", chain,
		consumer.SessionTimeout(45*time.Second),
		consumer.TransactionTimeout(30*time.Second),
		consumer.CommitInterval(10*time.Second),
		consumer.BatchSize(100000),
		consumer.WithHooks(stats),
	))
	// Shut down once the work is processed: a shutdown in the middle of
	// an event aborts instead (unfinished work, see the fake tests).
	waitFor(t, 30*time.Second, "the input processed", func() bool { return processed.Load() >= int64(len(ids)) })
	if s := stats.Snapshot(); s.TxnCommits != 0 || s.TxnAborts != 0 {
		t.Fatalf("a transaction ended before the shutdown (%+v): the test needs open work", s)
	}
	start := time.Now()
	stop()
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("shutdown took %v", d)
	}
	s := stats.Snapshot()
	if s.TxnCommits != 1 || s.TxnAborts != 0 || s.EventsIn == 0 {
		t.Fatalf("shutdown ended the open transaction with %+v; want one commit of the processed events and no abort", s)
	}
	adm := testkit.NewAdmin(t, e.brokers)
	committed, err := adm.FetchOffsets(context.Background(), e.group)
	if err != nil {
		t.Fatal(err)
	}
	var offsets int64
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == e.input {
			offsets += o.At
		}
	})
	if offsets != s.EventsIn {
		t.Errorf("committed offsets cover %d records, the committed transaction %d events", offsets, s.EventsIn)
	}
	if out := testkit.ReadCommitted(t, e.brokers, e.output, 10*time.Second); int64(len(out)) != s.EventsIn {
		t.Errorf("%d commands visible after the shutdown, want %d (one per committed event)", len(out), s.EventsIn)
	}
	run(t, e.pipeline("a", e.echo()))
	e.waitCommitted(60 * time.Second)
	e.checkExactlyOnce(ids)
}

func TestConfigValidation(t *testing.T) {
	_, err := consumer.New(nil, nil, nil,
		consumer.Brokers("127.0.0.1:1"), consumer.Group("g"), consumer.Topics("t"), consumer.TransactionalID("x"),
		consumer.SessionTimeout(10*time.Second), consumer.TransactionTimeout(20*time.Second))
	if err == nil {
		t.Fatal("transaction timeout above session timeout accepted")
	}
	_, err = consumer.New(nil, nil, nil)
	for _, want := range []string{"consumer.Brokers", "consumer.Group", "consumer.Topics", "consumer.TransactionalID"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("empty config: error %v does not mention %q", err, want)
		}
	}
}
