package state

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/testkit"
)

// realKafka returns KAFKA_BROKERS: the store's correctness is about Apache
// Kafka's transactions, compaction and offsets, so these tests need a real
// broker. Without one they skip (saying so), or fail under
// REQUIRE_REAL_KAFKA=1 (CI).
func realKafka(t testing.TB) []string {
	t.Helper()
	if strings.TrimSpace(os.Getenv(testkit.EnvBrokers)) == "" {
		if v := os.Getenv(testkit.EnvRequireReal); v == "1" || strings.EqualFold(v, "true") {
			t.Fatal("REQUIRE_REAL_KAFKA=1 but KAFKA_BROKERS is unset: the state store tests need a real broker")
		}
		t.Skip("state store tests need real Kafka: start one (KAFKA_PORT=9600 KAFKA_RUN_DIR=/tmp/store-k test/kafka/kafka.sh start --nodes 1) and export KAFKA_BROKERS")
	}
	return testkit.Brokers(t)
}

// env is one test's topics and clients.
type env struct {
	t                     testing.TB
	brokers               []string
	adm                   *kadm.Client
	processLog, changelog string
	partitions            int
}

func newEnv(t testing.TB, partitions int) *env {
	t.Helper()
	brokers := realKafka(t)
	e := &env{
		t: t, brokers: brokers, adm: testkit.NewAdmin(t, brokers),
		processLog: testkit.UniqueName(t, "pl"), changelog: testkit.UniqueName(t, "cl"),
		partitions: partitions,
	}
	if err := EnsureTopics(ctx(t), e.adm, e.processLog, e.changelog, partitions, -1); err != nil {
		t.Fatal(err)
	}
	e.waitLeaders(e.changelog, e.processLog)
	return e
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

// waitLeaders waits until every partition of topics answers ListOffsets (a
// real broker creates topics asynchronously).
func (e *env) waitLeaders(topics ...string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		los, err := e.adm.ListEndOffsets(ctx(e.t), topics...)
		if err == nil {
			err = los.Error()
		}
		if err == nil && len(los) == len(topics) {
			n := 0
			for _, ps := range los {
				n += len(ps)
			}
			if n == len(topics)*e.partitions {
				return
			}
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("topics %v have no leaders after 30s: %v", topics, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// producer is a transactional client writing the changelog the way stage 2
// does (Record.Partition honoured).
func (e *env) producer() *kgo.Client {
	e.t.Helper()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(e.brokers...),
		kgo.TransactionalID(testkit.UniqueName(e.t, "tx")),
		kgo.RecordPartitioner(Partitioner(e.changelog, e.processLog)),
		kgo.DefaultProduceTopic(e.changelog),
	)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(cl.Close)
	return cl
}

// txn produces recs in one transaction and commits or aborts it.
func (e *env) txn(cl *kgo.Client, commit bool, recs ...*kgo.Record) {
	e.t.Helper()
	c := ctx(e.t)
	if err := cl.BeginTransaction(); err != nil {
		e.t.Fatal(err)
	}
	if err := cl.ProduceSync(c, recs...).FirstErr(); err != nil {
		e.t.Fatalf("produce: %v", err)
	}
	if err := cl.EndTransaction(c, kgo.TransactionEndTry(commit)); err != nil {
		e.t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
	// The markers land after EndTransaction returns: without this, a
	// restore listing the high watermark right away could list it one
	// short of what the test lists later (seen under load).
	testkit.WaitSettled(e.t, e.adm, e.changelog, 30*time.Second)
}

func rec(p int32, key, value string, tombstone bool) *kgo.Record {
	r := &kgo.Record{Partition: p, Key: []byte(key), Value: []byte(value)}
	if tombstone {
		r.Value = nil
	}
	return r
}

// recorder counts hook calls.
type recorder struct {
	mu      sync.Mutex
	applied map[int32]int
	wiped   map[int32][]string
	failed  map[int32][]error
	done    map[int32]int64
}

func newRecorder() *recorder {
	return &recorder{applied: map[int32]int{}, wiped: map[int32][]string{}, failed: map[int32][]error{}, done: map[int32]int64{}}
}

func (r *recorder) hooks() Hooks {
	return Hooks{
		RestoreApplied: func(p int32, n int) { r.mu.Lock(); r.applied[p] += n; r.mu.Unlock() },
		Wiped:          func(p int32, reason string) { r.mu.Lock(); r.wiped[p] = append(r.wiped[p], reason); r.mu.Unlock() },
		RestoreFailed:  func(p int32, err error) { r.mu.Lock(); r.failed[p] = append(r.failed[p], err); r.mu.Unlock() },
		RestoreDone:    func(p int32, n int64, _ time.Duration) { r.mu.Lock(); r.done[p] = n; r.mu.Unlock() },
	}
}

func (r *recorder) wipes(p int32) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.wiped[p]...)
}

func (e *env) open(dir string, h Hooks) *Manager {
	e.t.Helper()
	m, err := Open(ctx(e.t), Options{
		Dir: dir, Changelog: e.changelog, KgoOpts: []kgo.Opt{kgo.SeedBrokers(e.brokers...)},
		CacheBytes: 4 << 20, Hooks: h,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { m.Close() })
	return m
}

// waitReady waits until every partition in ps is Ready.
func waitReady(t testing.TB, m *Manager, timeout time.Duration, ps ...int32) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		all := true
		for _, p := range ps {
			all = all && m.Ready(p)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("partitions %v not ready after %v: %+v", ps, timeout, m.Progress())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dump reads all of p's state through View.
func dump(t testing.TB, m *Manager, p int32) map[string]string {
	t.Helper()
	v, err := m.View(p)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	var prev string
	err = v.Range(nil, nil, func(k, val []byte) bool {
		if len(out) > 0 && string(k) <= prev {
			t.Errorf("Range out of order: %q after %q", k, prev)
		}
		prev = string(k)
		out[string(k)] = string(val)
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func progressOf(t testing.TB, m *Manager, p int32) Progress {
	t.Helper()
	for _, pr := range m.Progress() {
		if pr.Partition == p {
			return pr
		}
	}
	t.Fatalf("no progress for partition %d: %+v", p, m.Progress())
	return Progress{}
}

func diffMaps(want, got map[string]string) string {
	var b strings.Builder
	for k, v := range want {
		if g, ok := got[k]; !ok {
			fmt.Fprintf(&b, "missing %q=%q; ", k, v)
		} else if g != v {
			fmt.Fprintf(&b, "%q=%q, want %q; ", k, g, v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			fmt.Fprintf(&b, "extra %q=%q; ", k, v)
		}
	}
	return b.String()
}

// hwm lists the changelog's high watermark of p.
func (e *env) hwm(p int32) int64 {
	e.t.Helper()
	los, err := e.adm.ListEndOffsets(ctx(e.t), e.changelog)
	if err != nil {
		e.t.Fatal(err)
	}
	lo, ok := los.Lookup(e.changelog, p)
	if !ok || lo.Err != nil {
		e.t.Fatalf("end offset of %s/%d: %v", e.changelog, p, lo.Err)
	}
	return lo.Offset
}

// recreateChangelog deletes the changelog and creates it again, empty (a
// new topic id).
func (e *env) recreateChangelog() {
	e.t.Helper()
	old := e.topicID()
	if _, err := e.adm.DeleteTopic(ctx(e.t), e.changelog); err != nil {
		e.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		// Deletion is asynchronous: EnsureTopics sees the old topic (or
		// gets TopicAlreadyExists) until it is gone.
		if err := EnsureTopics(ctx(e.t), e.adm, e.processLog, e.changelog, e.partitions, -1); err != nil {
			e.t.Logf("recreating %s: %v", e.changelog, err)
		}
		if id := e.topicID(); id != old && id != ([16]byte{}) {
			break
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s was not recreated within 60s", e.changelog)
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.waitLeaders(e.changelog)
}

func (e *env) topicID() [16]byte {
	tds, err := e.adm.ListTopics(ctx(e.t), e.changelog)
	if err != nil {
		e.t.Fatal(err)
	}
	td, ok := tds[e.changelog]
	if !ok || td.Err != nil {
		return [16]byte{}
	}
	return td.ID
}

// waitTopic waits until metadata lists topic.
func (e *env) waitTopic(topic string) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		tds, err := e.adm.ListTopics(ctx(e.t), topic)
		if err == nil && tds[topic].Err == nil && len(tds[topic].Partitions) > 0 {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("topic %s not in metadata after 30s: %v", topic, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
