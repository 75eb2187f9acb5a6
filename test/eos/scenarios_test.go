package eos

import (
	"context"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// drainTimeout bounds waiting for ordo to commit everything after the
// faults stop.
func drainTimeout(n int) time.Duration { return 2*time.Minute + time.Duration(n/500)*time.Second }

// Scenario 1: SIGKILL replicas at random points, ≥20 times, restarting the
// same replica id after a short random delay. Invariant: no loss, no
// duplicate, no aborted record read, per-key order, offsets == end of input;
// the kills did leave aborted output in the log (read_uncommitted).
func TestSIGKILLedReplicasLoseAndDuplicateNothing(t *testing.T) {
	// No producer linger: outputs reach the broker while the transaction is
	// open, so a kill leaves aborted records that must stay invisible (with
	// the default linger they often wait in the client until End).
	sc := newScenario(t, "sigkill-replicas", scenarioOpts{env: []string{"ORDO_KAFKA_PRODUCER_LINGER=0s"}})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	kills, n := killCount(), events(0.28)
	meanGap := 2 * time.Second
	rate := float64(n) / (float64(kills) * meanGap.Seconds())
	g := sc.newGenerator(genOpts{poisonEvery: 499})
	ctx := context.Background()
	foreign := sc.foreign(ctx, g)
	bg := g.goPublish(ctx, n, rate)
	// Kills every ~2 s keep the group rebalancing (a killed member holds its
	// partitions for the 6 s session timeout), when few transactions are
	// open. Let it settle before every 6th kill so some kills land
	// mid-transaction, with output on the broker.
	sc.killAndRestart(rs, kills, meanGap, 6)
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	foreign()
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	if res.abortedOutput == 0 {
		t.Errorf("%d SIGKILLs left no aborted output in the log: the kills never hit an open transaction, so this run proved nothing about them", kills)
	}
}

// killAndRestart SIGKILLs a random replica kills times, meanGap apart on
// average, restarting the same replica id 50–800 ms later. With settleEvery
// > 0 the group gets 7 s to settle before every settleEvery-th kill.
func (sc *scenario) killAndRestart(rs []*replica, kills int, meanGap time.Duration, settleEvery int) {
	rng := rand.New(rand.NewPCG(rand.Uint64(), uint64(kills)))
	for i := range kills {
		sleepRand(rng, meanGap/2, meanGap*3/2)
		if settleEvery > 0 && i%settleEvery == settleEvery-1 {
			time.Sleep(7 * time.Second)
		}
		r := rs[rng.IntN(len(rs))]
		sc.kill(r)
		sleepRand(rng, 50*time.Millisecond, 800*time.Millisecond)
		sc.start(r.name, r.id)
	}
}

// Scenario 10: poison records of every kind (garbage, wrong magic byte,
// unknown schema id, truncated body, business-rule violation) mixed into
// valid traffic. Invariant: the dead-letter topic holds exactly the poison
// inputs, byte-equal, with reason headers; valid events are unaffected.
func TestPoisonRecordsAreDeadLetteredExactlyOnceByteEqual(t *testing.T) {
	sc := newScenario(t, "poison-records", scenarioOpts{})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	n := events(0.06)
	g := sc.newGenerator(genOpts{poisonEvery: 20})
	ctx := context.Background()
	foreign := sc.foreign(ctx, g)
	if err := g.publish(ctx, n, 0); err != nil {
		t.Fatal(err)
	}
	foreign()
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	if res.poison < len(poisonKinds) {
		t.Errorf("only %d poison records published; want every kind", res.poison)
	}
}

// Scenario 2: SIGSTOP a replica past the session timeout (6s) and the
// transaction timeout (5s), then SIGCONT it. Invariant: the zombie is
// fenced: the transaction it had open when stopped is aborted and none of
// its records become visible; no loss, no duplicate.
func TestSIGSTOPZombieIsFencedAndItsOutputInvisible(t *testing.T) {
	sc := newScenario(t, "sigstop-zombie", scenarioOpts{sessionTimeout: "6s", transactionTimeout: "5s"})
	sc.createTopics()
	r1, r2 := sc.start("r1", "r1"), sc.start("r2", "r2")
	n := events(0.09)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	bg := g.goPublish(ctx, n, float64(n)/35)
	time.Sleep(6 * time.Second)
	z := sc.stopReplica(r1) // SIGSTOP, with its open transaction described
	// Past the session timeout (the group moves its partitions to r2) and
	// the transaction timeout plus the broker's abort sweep (10s): the
	// coordinator aborts the zombie's transaction and bumps its epoch.
	time.Sleep(20 * time.Second)
	sc.contReplica(r1)
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(r1, r2)
	sc.stopAll()
	res := sc.verify(g)
	sc.checkZombie(z, res)
	sc.report(res)
}

// Scenario 3: two processes with the same replica id, hence the same
// transactional id (and static-member instance id). Invariant: they fence
// each other instead of both committing: no loss, no duplicate.
func TestDuplicateTransactionalIDFencesInsteadOfDoubling(t *testing.T) {
	sc := newScenario(t, "duplicate-transactional-id", scenarioOpts{})
	sc.createTopics()
	a, b, r2 := sc.start("r1a", "r1"), sc.start("r1b", "r1"), sc.start("r2", "r2")
	n := events(0.07)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	bg := g.goPublish(ctx, n, float64(n)/20)
	time.Sleep(20 * time.Second)
	sc.checkAlive(a, b, r2)
	sc.terminate(b, sc.shutdownDeadline())
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(a, r2)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	// Fenced by the transaction coordinator (the session is recreated) or,
	// with static membership (on for explicit replica ids), already by the
	// group coordinator: one member per instance id.
	const groupFenced = "another live replica uses this replica id"
	fenced := sc.countLog(a, "transact session failed") + sc.countLog(b, "transact session failed")
	static := sc.countLog(a, groupFenced) + sc.countLog(b, groupFenced)
	t.Logf("sessions recreated after transactional fencing: %d; joins refused by the group coordinator (FENCED_INSTANCE_ID): %d", fenced, static)
	if fenced+static == 0 {
		t.Errorf("two live replicas shared a transactional id and neither was fenced (no \"transact session failed\" nor %q in %s, %s)", groupFenced, sc.logOf(a), sc.logOf(b))
	}
}

// Scenario 4: rolling restart of 3 replicas under load, SIGTERM one at a
// time, twice around. Invariant: each exits 0 within its shutdown deadline;
// no loss, no duplicate.
func TestRollingRestartExitsCleanlyAndKeepsExactlyOnce(t *testing.T) {
	sc := newScenario(t, "rolling-restart", scenarioOpts{})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2"), sc.start("r3", "r3")}
	n := events(0.11)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	bg := g.goPublish(ctx, n, float64(n)/30)
	time.Sleep(3 * time.Second)
	var worst time.Duration
	for round := 0; round < 2; round++ {
		for _, r := range rs {
			took := sc.terminate(r, sc.shutdownDeadline())
			worst = max(worst, took)
			time.Sleep(500 * time.Millisecond)
			sc.start(r.name, r.id)
			time.Sleep(3 * time.Second)
		}
	}
	t.Logf("slowest SIGTERM exit: %v (deadline %v)", worst, sc.shutdownDeadline())
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	sc.report(sc.verify(g))
}

// Scenario 5: scale 1 → 3 → 1 replicas under load. Invariant: no loss, no
// duplicate across the rebalances; the replicas scaled away exit 0.
func TestScaleOneThreeOneKeepsExactlyOnce(t *testing.T) {
	sc := newScenario(t, "scale-1-3-1", scenarioOpts{})
	sc.createTopics()
	r1 := sc.start("r1", "r1")
	n := events(0.11)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	bg := g.goPublish(ctx, n, float64(n)/30)
	time.Sleep(7 * time.Second)
	r2, r3 := sc.start("r2", "r2"), sc.start("r3", "r3")
	time.Sleep(12 * time.Second)
	sc.checkAlive(r1, r2, r3)
	sc.terminate(r2, sc.shutdownDeadline())
	sc.terminate(r3, sc.shutdownDeadline())
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(r1)
	sc.stopAll()
	sc.report(sc.verify(g))
}

// Scenario 6a: restart the (single) broker mid-run. Invariant: ordo rides
// out the outage (sessions recreated as needed): no loss, no duplicate.
func TestBrokerRestartKeepsExactlyOnce(t *testing.T) {
	requireKafka(t)
	kc := ownedBroker(t)
	sc := newScenario(t, "broker-restart", scenarioOpts{brokers: kc.brokers})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	n := events(0.09)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	bg := g.goPublish(ctx, n, float64(n)/30)
	time.Sleep(6 * time.Second)
	t0 := time.Now()
	if err := kafkaSh(kc.runDir, filepath.Join(sc.dir, "kafka.log"), nil, "restart-node", "1"); err != nil {
		t.Fatal(err)
	}
	t.Logf("broker restarted in %.1fs", time.Since(t0).Seconds())
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	sc.report(sc.verify(g))
}

// Scenario 6b: SIGKILL the group coordinator's node of a 3-broker cluster
// (RF 3, min ISR 2) mid-run and start it again. Invariant: no loss, no
// duplicate.
func TestThreeBrokerNodeKillKeepsExactlyOnce(t *testing.T) {
	requireKafka(t)
	raw := strings.TrimSpace(os.Getenv("KAFKA_BROKERS_3"))
	runDir := os.Getenv("EOS_KAFKA3_RUN_DIR")
	if raw == "" || runDir == "" {
		if truthy(os.Getenv("REQUIRE_REAL_KAFKA")) && truthy(os.Getenv("EOS_THREE_BROKERS")) {
			t.Fatal("EOS_THREE_BROKERS=1 and REQUIRE_REAL_KAFKA=1 but KAFKA_BROKERS_3 or EOS_KAFKA3_RUN_DIR is unset")
		}
		skipf(t, "needs a 3-broker cluster it may kill nodes of: KAFKA_BROKERS_3 and EOS_KAFKA3_RUN_DIR (EOS_THREE_BROKERS=1 test/eos/run.sh sets both)")
	}
	sc := newScenario(t, "broker-kill-3node", scenarioOpts{brokers: strings.Split(raw, ",")})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	n := events(0.05)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	bg := g.goPublish(ctx, n, float64(n)/35)
	time.Sleep(6 * time.Second)
	adm, done := sc.admin()
	co := adm.FindGroupCoordinators(ctx, sc.group)[sc.group]
	done()
	if co.Err != nil {
		t.Fatalf("group coordinator: %v", co.Err)
	}
	pid, err := nodePid(runDir, co.NodeID)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("SIGKILL node %d (pid %d), the group coordinator", co.NodeID, pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	time.Sleep(8 * time.Second)
	if err := kafkaSh(runDir, filepath.Join(sc.dir, "kafka.log"), nil, "start-node", strconv.Itoa(int(co.NodeID))); err != nil {
		t.Fatal(err)
	}
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	sc.report(sc.verify(g))
}

// Scenario 7: an enrich_http processor stalls past the transaction timeout
// (requests arriving in a window sleep 18s > 5s transaction timeout + the
// broker's 10s abort sweep), then answers. Invariant: the timed-out
// transaction is aborted and re-run: no loss, no duplicate, no dead letter.
func TestProcessorStallPastTransactionTimeoutLosesNothing(t *testing.T) {
	requireKafka(t)
	const stall = 18 * time.Second
	var (
		windowStart, windowEnd atomic.Int64
		stalled, requests      atomic.Int64
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		now := time.Now().UnixNano()
		if now >= windowStart.Load() && now < windowEnd.Load() {
			stalled.Add(1)
			select {
			case <-time.After(stall):
			case <-r.Context().Done():
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"score": 1}`))
	}))
	defer srv.Close()
	windowStart.Store(math.MaxInt64)
	sc := newScenario(t, "processor-stall", scenarioOpts{extraPipeline: riskLookup(srv.URL)})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	n := events(0.05)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	bg := g.goPublish(ctx, n, float64(n)/25)
	time.Sleep(4 * time.Second)
	windowStart.Store(time.Now().UnixNano())
	windowEnd.Store(time.Now().Add(2 * time.Second).UnixNano())
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n)+stall)
	sc.checkAlive(rs...)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	fenced := 0
	for _, r := range rs {
		fenced += sc.countLog(r, "produce failed; aborting") + sc.countLog(r, "transact session failed")
	}
	t.Logf("lookups: %d requests, %d stalled %v; transactions the broker had timed out (produce/End failed afterwards): %d", requests.Load(), stalled.Load(), stall, fenced)
	if stalled.Load() == 0 {
		t.Error("no lookup arrived in the stall window: the scenario proved nothing")
	}
}

// Scenario 8: the schema registry is down for 10s while events written with
// a writer schema version registered just before the outage (so ordo must
// fetch it) arrive. Invariant: processing stalls instead of dead-lettering,
// then resumes: no dead letter, no loss, no duplicate.
func TestRegistryOutageStallsWithoutDeadLetters(t *testing.T) {
	requireKafka(t)
	sc := newScenario(t, "registry-outage", scenarioOpts{})
	reg, err := startRegistry(filepath.Join(sc.dir, "registry"), "", filepath.Join(sc.dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { reg.proc.stop(5 * time.Second) }()
	sc.regURL = reg.url
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	n := events(0.06)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	if err := g.publish(ctx, n/2, 0); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n)) // ordo has every schema so far cached

	// A new writer version of PaymentAuthorized, registered just now.
	v2, err := g.registerPaymentV2(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recs, evs, isV2, err := g.buildOutageTraffic(ctx, v2, n-n/2)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if ok, _ := reg.proc.term(5 * time.Second); !ok {
		reg.proc.kill()
	}
	v2Refs, err := g.produceBuilt(ctx, recs, evs, isV2)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10*time.Second - time.Since(t0))
	// ordo needed the registry: the first v2 record is not committed yet.
	if behind := sc.uncommitted(v2Refs); behind == 0 {
		t.Error("ordo committed every v2 record while the registry was down: it never needed the registry")
	} else {
		t.Logf("after %.1fs of outage, %d of the v2 records were still uncommitted", time.Since(t0).Seconds(), behind)
	}
	reg2, err := startRegistry(reg.dataDir, reg.addr, reg.logPath)
	if err != nil {
		t.Fatal(err)
	}
	reg = reg2
	t.Logf("registry down for %.1fs", time.Since(t0).Seconds())
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	sc.report(sc.verify(g))
}

// Scenario 9: an upstream transactional producer aborts about half of its
// batches. Invariant: ordo never acts on an aborted event (no command or
// dead letter caused by one), and processes every committed one exactly once.
func TestUpstreamAbortedEventsAreNeverActedOn(t *testing.T) {
	sc := newScenario(t, "upstream-aborts", scenarioOpts{})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	n := events(0.08) * 2 // half of it is aborted
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	committed, aborted, err := g.publishTransactional(ctx, n, 50, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("upstream: %d events committed, %d aborted", committed, aborted)
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	if aborted == 0 || committed == 0 {
		t.Errorf("upstream committed %d and aborted %d events: want both", committed, aborted)
	}
}

// Scenario 12: key-parallel mode (processing.key_parallel) with a slow
// enrichment (2 ms per lookup, no cache), replicas SIGKILLed and restarted
// while traffic flows. Different keys of one partition are processed
// concurrently, and each transaction ends only when every record of its
// batch is done. Invariant: no loss, no duplicate, per-key order, offsets
// == end of input; the lookup server saw more requests in flight at once
// than partition-serial processing could issue (so the mode was on).
func TestKeyParallelModeKeepsExactlyOnceAndKeyOrder(t *testing.T) {
	requireKafka(t)
	var inFlight, maxInFlight, requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if n <= m || maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-time.After(2 * time.Millisecond):
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"score": 1}`))
	}))
	defer srv.Close()
	const workers = 2 // per replica: partitions processed at once
	sc := newScenario(t, "key-parallel", scenarioOpts{
		env: []string{"ORDO_PROCESSING_KEY_PARALLEL=true", "ORDO_PROCESSING_KEY_LANES=16",
			"ORDO_PROCESSING_WORKERS=" + strconv.Itoa(workers), "ORDO_KAFKA_PRODUCER_LINGER=0s"},
		extraPipeline: `  - name: risk-lookup
    type: enrich_http
    config:
      url: ` + srv.URL + `/risk/{key}
      key: event.order_id
      into: risk
      timeout: 5s
      retries: 0
      cache_size: 0
`})
	sc.createTopics()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	n := events(0.08)
	g := sc.newGenerator(genOpts{poisonEvery: 997})
	ctx := context.Background()
	kills := max(4, killCount()/4)
	meanGap := 2 * time.Second
	bg := g.goPublish(ctx, n, float64(n)/(float64(kills)*meanGap.Seconds()+4))
	sc.killAndRestart(rs, kills, meanGap, 0)
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	t.Logf("lookups: %d requests, at most %d in flight at once", requests.Load(), maxInFlight.Load())
	if serial := int64(workers * len(rs)); maxInFlight.Load() <= serial {
		t.Errorf("at most %d lookups were in flight at once, which partition-serial processing (%d workers × %d replicas) also reaches: key-parallel mode was not exercised", maxInFlight.Load(), workers, len(rs))
	}
}

// riskLookup is an enrich_http processor (inserted before the routes) that
// looks every order up on the test's server at base, uncached, without
// retries: the scenarios' slow or stalling dependency.
func riskLookup(base string) string {
	return `  - name: risk-lookup
    type: enrich_http
    config:
      url: ` + base + `/risk/{key}
      key: event.order_id
      into: risk
      timeout: 30s
      retries: 0
      cache_size: 0
`
}
