package consumer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
)

// noProcesses is a stateful stage without process definitions: no timers,
// nothing to housekeep, any state accepted.
type noProcesses struct{}

func (noProcesses) IsTrigger(*kgo.Record) bool { return false }
func (noProcesses) TriggerEvent(*kgo.Record) (*processors.Event, error) {
	return nil, fmt.Errorf("no triggers")
}
func (noProcesses) DueTriggers(state.Reader, time.Time, int32, int) ([]string, []*kgo.Record, error) {
	return nil, nil, nil
}
func (noProcesses) Housekeep(state.Txn, time.Time, int) (int, error) { return 0, nil }
func (noProcesses) CheckState(state.Reader) error                    { return nil }

// counter is a stateful chain: it counts the events of each key in the
// partition's state and emits one command per event carrying the count. If
// the state ever held an effect of an uncommitted transaction, or lost a
// committed one, a count would repeat or skip.
func (e *env) counter() processors.Processor {
	return processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		tx, ok := state.TxnFrom(ctx)
		if !ok {
			return nil, fmt.Errorf("no state in the context")
		}
		k := []byte("c/" + string(ev.Key))
		v, found, err := tx.Get(k)
		if err != nil {
			return nil, processors.Transient(err)
		}
		n := 0
		if found {
			n, _ = strconv.Atoi(string(v))
		}
		n++
		if err := tx.Set(k, []byte(strconv.Itoa(n))); err != nil {
			return nil, processors.Transient(err)
		}
		return []processors.Command{{
			Topic: e.output,
			Type:  "com.acme.ordo.commands.CancelOrder",
			Key:   ev.Key,
			Value: map[string]any{
				"envelope": processors.Envelope{
					ID: ev.Envelope.ID + "/count", Type: "com.acme.ordo.commands.CancelOrder", Source: "ordo-test",
					Time: ev.Timestamp.UTC().Truncate(time.Millisecond), CorrelationID: string(ev.Key), CausationID: ev.Envelope.ID,
				}.Map(),
				"order_id": ev.Value["order_id"],
				"reason":   "seq=" + strconv.Itoa(n),
			},
		}}, nil
	})
}

// statefulPipeline is a stateful-stage replica over e.input (the process
// log) with its own store directory.
func (e *env) statefulPipeline(replica, dir, changelog string, opts ...consumer.Opt) (*consumer.Pipeline, *state.Manager) {
	e.t.Helper()
	store, err := state.Open(context.Background(), state.Options{Dir: dir, Changelog: changelog, KgoOpts: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { store.Close() })
	opts = append([]consumer.Opt{consumer.State(&consumer.Stateful{Changelog: changelog, Store: store, Processes: noProcesses{}})}, opts...)
	p := e.pipeline(replica, e.counter(), opts...)
	return p, store
}

// TestStatefulExactlyOnceWithCrashes is the stateful stage's proof: two
// replicas count events per key in their stores while sessions are killed
// at random points (after producing, before ending), one replica leaves
// and comes back, and one comes back with its state directory deleted.
// Every event must get exactly one command whose count is its position
// among its key's events (no count lost, repeated or skipped), and the
// committed changelog must hold every key's final count.
func TestStatefulExactlyOnceWithCrashes(t *testing.T) {
	if testkit.Kind(t) == testkit.KindKfake {
		t.Skip("skipped on kfake: it hides committed transactions after a transactional-id restart (see testCrashes); run with KAFKA_BROKERS (make test)")
	}
	e := newEnv(t, 6)
	changelog := testkit.UniqueName(t, "changelog")
	testkit.CreateTopicsWithConfig(t, e.brokers, 6, map[string]*string{"cleanup.policy": ptr("compact")}, changelog)
	const n = 3000
	ids := e.publish(n, nil)

	var kills, calls atomic.Int64
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 11))
	var rngMu sync.Mutex
	next := int64(3)
	chaos := func(point string, sess *kgo.GroupTransactSession) {
		rngMu.Lock()
		defer rngMu.Unlock()
		if c := calls.Add(1); c >= next && kills.Load() < 10 {
			next = c + 3 + int64(rng.IntN(3))
			kills.Add(1)
			sess.Client().Close()
		}
	}
	small := consumer.BatchSize(100)
	base := t.TempDir()
	a, _ := e.statefulPipeline("a", filepath.Join(base, "a"), changelog, small)
	a.SetChaos(chaos)
	b, storeB := e.statefulPipeline("b", filepath.Join(base, "b"), changelog, small)
	b.SetChaos(chaos)
	stopA := run(t, a)
	stopB := run(t, b)
	time.Sleep(700 * time.Millisecond)
	stopB() // graceful leave: a takes over b's partitions, restoring them
	storeB.Close()
	// Restarted replicas crash too (see testCrashes: otherwise a backing-off
	// a could leave them to process the rest unharmed).
	b2, storeB2 := e.statefulPipeline("b", filepath.Join(base, "b"), changelog, small)
	b2.SetChaos(chaos)
	stopB2 := run(t, b2)
	time.Sleep(700 * time.Millisecond)
	stopB2()
	storeB2.Close()
	// b comes back with its state directory gone: a full restore.
	b3, _ := e.statefulPipeline("b", filepath.Join(base, "b-wiped"), changelog, small)
	b3.SetChaos(chaos)
	run(t, b3)

	e.waitCommitted(120 * time.Second)
	stopA()
	if kills.Load() < 3 {
		t.Fatalf("chaos killed %d sessions; want at least 3 for the test to prove anything", kills.Load())
	}
	t.Logf("%d events, %d session kills", n, kills.Load())

	// Expected count of each event: its position among its key's events.
	want := map[string]int{}
	perKey := map[string]int{}
	for i, id := range ids {
		k := fmt.Sprintf("ord-%d", i%50)
		perKey[k]++
		want[id] = perKey[k]
	}
	out := testkit.ReadCommitted(t, e.brokers, e.output, 30*time.Second)
	got := map[string]int{}
	bad := 0
	for _, r := range out {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		id := h[producer.HeaderCausationID]
		got[id]++
		seq := seqOf(t, e, r)
		if seq != want[id] && bad < 10 {
			bad++
			t.Errorf("event %s (key %s): count %d, want %d: the state lost or repeated an effect", id, r.Key, seq, want[id])
		}
	}
	for id := range want {
		if got[id] != 1 {
			t.Errorf("event %s: %d commands, want exactly 1", id, got[id])
		}
	}
	// The committed changelog holds the final counts.
	final := map[string]string{}
	for _, r := range testkit.ReadCommitted(t, e.brokers, changelog, 30*time.Second) {
		final[string(r.Key)] = string(r.Value)
	}
	for k, c := range perKey {
		if final["c/"+k] != strconv.Itoa(c) {
			t.Errorf("changelog c/%s = %q, want %d", k, final["c/"+k], c)
		}
	}
}

// seqOf decodes a counter command's count.
func seqOf(t *testing.T, e *env, r *kgo.Record) int {
	t.Helper()
	d, err := e.serde.Decode(context.Background(), r.Topic, r.Value)
	if err != nil {
		t.Fatalf("decode command: %v", err)
	}
	reason, _ := d.Value["reason"].(string)
	n, err := strconv.Atoi(strings.TrimPrefix(reason, "seq="))
	if err != nil {
		t.Fatalf("command reason %q", reason)
	}
	return n
}

func ptr[T any](v T) *T { return &v }

// refusingProcesses refuses every partition's state, as the engine does
// for instances of a changed or removed definition version.
type refusingProcesses struct{ noProcesses }

func (refusingProcesses) CheckState(state.Reader) error {
	return fmt.Errorf("process order-fulfilment version 1 changed since its instances started")
}

// TestStatefulRefusedStateStopsTheReplica: definitions that cannot continue
// the stored instances stop Run with the reason (the replica exits at
// start with a clear error) instead of processing with them.
func TestStatefulRefusedStateStopsTheReplica(t *testing.T) {
	e := newEnv(t, 2)
	changelog := testkit.UniqueName(t, "changelog")
	testkit.CreateTopicsWithConfig(t, e.brokers, 2, map[string]*string{"cleanup.policy": ptr("compact")}, changelog)
	store, err := state.Open(context.Background(), state.Options{Dir: t.TempDir(), Changelog: changelog, KgoOpts: []kgo.Opt{kgo.SeedBrokers(e.brokers...)}})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	p := e.pipeline("a", e.counter(), consumer.State(&consumer.Stateful{Changelog: changelog, Store: store, Processes: refusingProcesses{}}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = p.Run(ctx)
	if err == nil || ctx.Err() != nil || !strings.Contains(err.Error(), "version 1 changed") {
		t.Fatalf("Run = %v (ctx %v); want the refusal", err, ctx.Err())
	}
}
