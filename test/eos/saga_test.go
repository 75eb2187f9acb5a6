package eos

// The order saga (examples/orders/ordo.yaml: state: + processes:) under
// chaos: 3 replicas, SIGKILLs, a scale 1→3→1 and a replica whose local state
// directory is deleted while it is down. Verified by sagaVerify
// (saga_verify_test.go), which reads the committed commands and the
// committed changelog.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/demo"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/publish"
)

// The saga's compensation command topics (not in router.yaml) and its
// payment deadline in this scenario.
const (
	origRelease = "commands.release-inventory.v1"
	origVoid    = "commands.void-payment.v1"

	cRelease = "com.acme.ordo.commands.ReleaseInventory"
	cVoid    = "com.acme.ordo.commands.VoidPayment"

	// sagaTimeout replaces the example's 20s payment_timeout so that the
	// timers fire during the run.
	sagaTimeout = 8 * time.Second
	processName = "order-fulfilment"
)

// sagaTopics are one saga scenario's topics.
type sagaTopics struct {
	orders, payments, warehouse, dlq string
	processLog, changelog            string
	rename                           map[string]string // example name → scenario name
	commandOf                        map[string]string // command topic → command type
}

func newSagaTopics(base string) *sagaTopics {
	st := &sagaTopics{rename: map[string]string{}, commandOf: map[string]string{}}
	for _, orig := range []string{origOrders, origPayments, origWarehouse, origDLQ,
		origReserve, origCapture, origShip, origCancel, origNotify, origRelease, origVoid} {
		st.rename[orig] = base + "." + orig
	}
	st.orders, st.payments, st.warehouse, st.dlq = st.rename[origOrders], st.rename[origPayments], st.rename[origWarehouse], st.rename[origDLQ]
	st.processLog, st.changelog = base+".process-log", base+".changelog"
	for orig, typ := range map[string]string{origReserve: cReserve, origCapture: cCapture, origShip: cShip,
		origCancel: cCancel, origNotify: cNotify, origRelease: cRelease, origVoid: cVoid} {
		st.commandOf[st.rename[orig]] = typ
	}
	return st
}

func (st *sagaTopics) inputs() []string { return []string{st.orders, st.payments, st.warehouse} }

func (st *sagaTopics) commands() []string {
	out := make([]string, 0, len(st.commandOf))
	for tpc := range st.commandOf {
		out = append(out, tpc)
	}
	return out
}

// writeSagaConfig replaces the scenario's config with one derived from
// examples/orders/ordo.yaml: the scenario's topic names (the internal
// topics set explicitly) and a short payment deadline.
func (sc *scenario) writeSagaConfig(st *sagaTopics) {
	t := sc.t
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples", "orders", "ordo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	// longest names first so that no name is a prefix of a replaced one
	for _, orig := range []string{origRelease, origReserve, origCapture, origNotify, origCancel, origShip, origVoid,
		origOrders, origDLQ, origWarehouse, origPayments} {
		if !strings.Contains(text, orig) {
			t.Fatalf("examples/orders/ordo.yaml no longer mentions topic %s: update test/eos/saga_test.go", orig)
		}
		text = strings.ReplaceAll(text, orig, st.rename[orig])
	}
	for _, r := range []struct{ old, new string }{
		{"payment_timeout: 20s", "payment_timeout: " + sagaTimeout.String()},
		{"\nstate:\n", "\nstate:\n  process_log: " + st.processLog + "\n  changelog: " + st.changelog + "\n"},
	} {
		if strings.Count(text, r.old) != 1 {
			t.Fatalf("examples/orders/ordo.yaml: expected %q once: update test/eos/saga_test.go", r.old)
		}
		text = strings.Replace(text, r.old, r.new, 1)
	}
	if err := os.WriteFile(sc.cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (sc *scenario) stateDir(id string) string { return filepath.Join(sc.dir, "state-"+id) }

// sagaOrders is the scenario's order count (EOS_SAGA_ORDERS, default 3000).
func sagaOrders() int {
	if v, err := strconv.Atoi(os.Getenv("EOS_SAGA_ORDERS")); err == nil && v > 0 {
		return v
	}
	return 3000
}

// TestSagaUnderChaosEndsEveryOrderExactlyOnce: the orders saga on 3
// replicas: scale 1→3, ≥20 SIGKILLs of random replicas (restarted 50–800ms
// later with the same id), one of them restarted with its state directory
// deleted, scale 3→1, all while ~3000 orders (happy, declined, shortage,
// timeout legs in random order, early legs, duplicate deliveries, poison)
// are published. Invariants (sagaVerify): every order reaches exactly one
// terminal command, command ids are unique, no timer fired twice or was
// lost, duplicates produced nothing, poison was dead-lettered once each, and
// the committed changelog holds the state the commands imply.
func TestSagaUnderChaosEndsEveryOrderExactlyOnce(t *testing.T) {
	var sc *scenario
	// No producer linger: outputs reach the broker while the transaction is
	// open, so kills leave aborted records that must stay invisible.
	sc = newScenario(t, "saga-chaos", scenarioOpts{
		env:        []string{"ORDO_KAFKA_PRODUCER_LINGER=0s"},
		replicaEnv: func(id string) []string { return []string{"ORDO_STATE_DIR=" + sc.stateDir(id)} },
	})
	st := newSagaTopics(strings.TrimSuffix(sc.group, "-group"))
	sc.writeSagaConfig(st)
	testkit.CreateTopics(t, sc.brokers, 6, st.inputs()...)
	testkit.CreateTopics(t, sc.brokers, 6, st.commands()...)
	testkit.CreateTopics(t, sc.brokers, 3, st.dlq)
	// The internal topics too (as an operator may): ordo creates missing
	// ones at start, but its co-partitioning check right after the create
	// can read broker metadata that does not show them yet and exit ("topic
	// does not exist"), which would end this scenario before any chaos.
	testkit.CreateTopics(t, sc.brokers, 6, st.processLog)
	testkit.CreateTopicsWithConfig(t, sc.brokers, 6, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, st.changelog)

	orders, kills := sagaOrders(), max(20, killCount())
	const meanGap, settleEvery = 2 * time.Second, 8
	// Publishing spans the scale-up and the kills (about 2.7 records per
	// order with the duplicates and poison).
	span := 14*time.Second + time.Duration(kills)*meanGap + time.Duration(kills/settleEvery)*7*time.Second
	rate := float64(orders) * 2.7 / span.Seconds()

	cl, err := kgo.NewClient(kgo.SeedBrokers(sc.brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pub := publish.New(cl, newSerde(t, sc.regURL), "eos-saga")
	gen := demo.NewSagaGenerator(cl, pub, demo.SagaOptions{
		Orders: orders, Rate: rate, PoisonEvery: 199, DuplicateEvery: 20, Seed: rand.Uint64() | 1,
		Topics: map[string]string{demo.TopicOrders: st.orders, demo.TopicPayments: st.payments, demo.TopicWarehouse: st.warehouse},
	})

	// Scale 1 → 3.
	r1 := sc.start("r1", "r1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pubDone := make(chan error, 1)
	go func() { pubDone <- gen.Run(ctx) }()
	time.Sleep(8 * time.Second)
	sc.checkAlive(r1)
	rs := []*replica{r1, sc.start("r2", "r2"), sc.start("r3", "r3")}
	time.Sleep(6 * time.Second)

	// SIGKILLs; halfway, the killed replica's state directory goes too.
	rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(kills)))
	wipeAt := kills / 2
	var wiped *replica
	var wipedFiles int
	var wipedLogFrom int64
	for i := range kills {
		sleepRand(rng, meanGap/2, meanGap*3/2)
		if i%settleEvery == settleEvery-1 {
			time.Sleep(7 * time.Second) // let the group settle, so kills also land mid-transaction
		}
		r := rs[rng.IntN(len(rs))]
		sc.kill(r)
		if i == wipeAt {
			wiped, wipedFiles = r, countFiles(sc.stateDir(r.id))
			if err := os.RemoveAll(sc.stateDir(r.id)); err != nil {
				t.Fatal(err)
			}
			if fi, err := os.Stat(sc.logOf(r)); err == nil {
				wipedLogFrom = fi.Size()
			}
			t.Logf("kill %d: deleted %s's state directory (%d files) while it was down", i+1, r.name, wipedFiles)
		}
		sleepRand(rng, 50*time.Millisecond, 800*time.Millisecond)
		sc.start(r.name, r.id)
	}
	if err := <-pubDone; err != nil {
		t.Fatalf("publishing: %v", err)
	}
	pubEnd := time.Now()

	// Scale 3 → 1.
	time.Sleep(3 * time.Second)
	sc.checkAlive(rs...)
	sc.terminate(rs[1], sc.shutdownDeadline())
	sc.terminate(rs[2], sc.shutdownDeadline())

	// Drain: stage 1 has forwarded every input, the last deadline (+ a
	// margin for the trigger's trip through the process log) has passed,
	// and stage 2 has consumed every trigger.
	published := gen.Published()
	var lastDue time.Time
	for _, p := range published {
		if p.Kind == demo.Valid && p.Type == demo.OrderPlaced && p.Timestamp.Add(sagaTimeout).After(lastDue) {
			lastDue = p.Timestamp.Add(sagaTimeout)
		}
	}
	sc.waitCaughtUp(sc.group, st.inputs(), 3*time.Minute, false)
	// r2 and r3 are static members (explicit replica ids): their
	// partitions move to r1 only after the session timeout, and r1 then
	// restores them before their due timers can fire, so the margin covers
	// the session timeout too.
	session, err := time.ParseDuration(sc.opts.sessionTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(lastDue.Add(session + 8*time.Second)); d > 0 {
		time.Sleep(d)
	}
	sc.waitCaughtUp(sc.group+".process", []string{st.processLog}, 2*time.Minute, true)
	sc.checkAlive(r1)
	sc.stopAll()
	t.Logf("published for %.1fs; drained %.1fs after publishing ended", pubEnd.Sub(sc.started).Seconds(), time.Since(pubEnd).Seconds())

	if wiped == nil || wipedFiles == 0 {
		t.Errorf("the wiped replica's state directory held no files before it was deleted: the wipe proved nothing")
	} else {
		restored := sc.restoresSince(wiped, wipedLogFrom)
		t.Logf("%s restored %d partitions from the changelog after its state directory was deleted", wiped.name, restored)
		if restored == 0 {
			t.Errorf("%s never restored a partition after its state directory was deleted (log %s)", wiped.name, sc.logOf(wiped))
		}
	}

	vctx, vcancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer vcancel()
	res, err := sagaVerify(vctx, sc.brokers, sc.regURL, st, published)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	sc.sagaCrossCheck(vctx, st, published)
	sagaVerifierSelfCheck(vctx, t, sc.brokers, sc.regURL, st, published, res.ends)
	sc.mu.Lock()
	killed, restarts := sc.kills, 0
	for _, r := range sc.replicas {
		restarts += r.starts - 1
	}
	sc.mu.Unlock()
	line := fmt.Sprintf("eos: scenario=%s orders=%d shipped=%d cancelled=%d (declined=%d shortage=%d timeout=%d, of them happy legs too late=%d) timers_fired=%d duplicates=%d dropped=%d poison=%d dead_letters=%d commands=%d changelog_keys=%d aborted_records=%d kills=%d restarts=%d wiped=%s elapsed=%.1fs problems=%d",
		sc.name, res.orders, res.shipped, res.cancelled, res.cancelledDeclined, res.cancelledShortage, res.cancelledTimeout, res.happyTimedOut,
		res.timersFired, res.duplicates, res.duplicatesDropped, res.poison, res.deadLetters, res.commands, res.changelogKeys, res.abortedRecords,
		killed, restarts, nameOf(wiped), time.Since(sc.started).Seconds(), res.problemCount)
	t.Log(line)
	fmt.Println(line)
	for _, p := range res.problems {
		t.Error(p)
	}
	if res.abortedRecords == 0 {
		t.Errorf("%d SIGKILLs left no aborted record in the outputs or the changelog: no kill hit an open transaction, so the run proved nothing about them", killed)
	}
	if kills < 20 || killed < kills {
		t.Errorf("only %d SIGKILLs, want ≥ 20", killed)
	}
	if res.orders < orders || res.timersFired == 0 || res.duplicates == 0 || res.poison == 0 {
		t.Errorf("the run did not exercise the saga: %d of %d orders, %d timers fired, %d duplicates, %d poison", res.orders, orders, res.timersFired, res.duplicates, res.poison)
	}
}

func nameOf(r *replica) string {
	if r == nil {
		return "none"
	}
	return r.name
}

func countFiles(dir string) int {
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// restoresSince counts the partitions r restored from the changelog in its
// log from byte offset from to the next restart.
func (sc *scenario) restoresSince(r *replica, from int64) int {
	b, err := os.ReadFile(sc.logOf(r))
	if err != nil || int64(len(b)) < from {
		return 0
	}
	seg := string(b[from:])
	// the restart right after the wipe, up to the next one
	if i := strings.Index(seg, "===== eos: start"); i >= 0 {
		seg = seg[i+1:]
		if j := strings.Index(seg, "===== eos: start"); j >= 0 {
			seg = seg[:j]
		}
	}
	return strings.Count(seg, "state: partition restored")
}

// waitCaughtUp waits until group's committed offsets (stable) reach the end
// of every partition of topics. With quiet, the ends must also stay the
// same for a second (timer triggers may still be on their way).
func (sc *scenario) waitCaughtUp(group string, topics []string, timeout time.Duration, quiet bool) {
	sc.t.Helper()
	adm, done := sc.admin()
	defer done()
	deadline := time.Now().Add(timeout)
	var lag string
	var prev map[tpKey]int64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err1 := adm.ListEndOffsets(ctx, topics...)
		offs, err2 := adm.FetchOffsets(kadm.RequireStable(ctx), group)
		cancel()
		if err := firstErr(err1, err2, ends.Error()); err != nil {
			lag = err.Error()
		} else {
			cur := map[tpKey]int64{}
			var behind []string
			ends.Each(func(e kadm.ListedOffset) {
				cur[tpKey{e.Topic, e.Partition}] = e.Offset
				if e.Offset == 0 {
					return
				}
				if c, ok := offs.Lookup(e.Topic, e.Partition); !ok || c.Err != nil || c.At < e.Offset {
					behind = append(behind, fmt.Sprintf("%s/%d < %d", e.Topic, e.Partition, e.Offset))
				}
			})
			if len(behind) == 0 && (!quiet || sameEnds(prev, cur)) {
				return
			}
			prev = cur
			lag = strings.Join(first(behind, 6), ", ")
			if lag == "" {
				lag = "ends still moving"
			}
		}
		if time.Now().After(deadline) {
			sc.t.Fatalf("group %s did not catch up within %v: %s (logs %s)", group, timeout, lag, sc.dir)
		}
		time.Sleep(time.Second)
	}
}

func sameEnds(a, b map[tpKey]int64) bool {
	if a == nil || len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// sagaCrossCheck logs the summary of internal/demo's VerifySaga (the
// `ordo dev` verifier) next to the suite's own verdict. It is not the judge.
func (sc *scenario) sagaCrossCheck(ctx context.Context, st *sagaTopics, published []demo.Published) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(sc.brokers...), kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	if err != nil {
		sc.t.Logf("cross-check: %v", err)
		return
	}
	defer cl.Close()
	rep, err := demo.VerifySaga(ctx, cl, kadm.NewClient(cl), published, demo.SagaCheck{
		ForwardGroup: sc.group, ProcessGroup: sc.group + ".process", ProcessLog: st.processLog,
		CommandTopics: st.commands(), DeadLetterTopic: st.dlq, Deadline: sagaTimeout,
	})
	if err != nil {
		sc.t.Logf("cross-check with demo.VerifySaga failed: %v", err)
		return
	}
	sc.t.Logf("cross-check (demo.VerifySaga): %s", rep.Summary())
	for _, p := range rep.Problems {
		sc.t.Logf("cross-check: %s", p)
	}
}
