package eos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Scenario 13: a slow dependency (an enrich_http lookup that takes 120 ms)
// with a backlog. Before transactions were bounded in time, the first poll
// took a whole batch, the transaction outlived its timeout, was fenced and
// re-run forever (0 events committed after 2 minutes). Invariant: ordo
// commits steadily (no transaction timed out, no session recreated), and
// nothing is lost, doubled or dead-lettered.
func TestSlowChainWithBacklogCommitsSteadily(t *testing.T) {
	requireKafka(t)
	const perLookup = 120 * time.Millisecond
	var requests atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		select {
		case <-time.After(perLookup):
		case <-r.Context().Done():
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"score": 1}`))
	}))
	defer srv.Close()
	sc := newScenario(t, "slow-chain-backlog", scenarioOpts{extraPipeline: riskLookup(srv.URL)})
	sc.createTopics()
	n := 1200
	if soak() {
		n = 6000
	}
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	if err := g.publish(ctx, n, 0); err != nil { // the backlog, before any replica runs
		t.Fatal(err)
	}
	start := time.Now()
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	// 2 replicas × 4 workers at 120 ms per event is ~65 events/s; allow
	// 3× that time on a loaded machine.
	sc.waitProcessed(g, 3*time.Duration(n)*perLookup/8+time.Minute)
	took := time.Since(start)
	sc.checkAlive(rs...)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	restarts, aborts := 0, 0
	for _, r := range rs {
		restarts += sc.countLog(r, "transact session failed")
		aborts += sc.countLog(r, "produce failed; aborting") + sc.countLog(r, "transient failure; aborting")
	}
	t.Logf("backlog of %d events at %v per lookup: drained in %v (%.0f events/s), %d lookups, %d session restarts, %d aborts",
		n, perLookup, took.Round(time.Second), float64(n)/took.Seconds(), requests.Load(), restarts, aborts)
	if restarts != 0 {
		t.Errorf("%d sessions recreated: a transaction outlived its timeout (logs %s)", restarts, sc.dir)
	}
}

// Scenario 16: a SIGKILLed replica restarted with the same replica id
// resumes at once: static group membership (kafka.static_membership, on by
// default) gives its partitions back without waiting out the session
// timeout (the default 45 s here, as in production). Invariant: restart →
// committing again within 10 s; nothing lost or doubled.
func TestRestartedReplicaCommitsWithinTenSeconds(t *testing.T) {
	requireKafka(t)
	sc := newScenario(t, "restart-time", scenarioOpts{sessionTimeout: "45s", transactionTimeout: "10s"})
	sc.createTopics()
	adminAddr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	r2 := sc.start("r2", "r2")
	r1 := sc.startWith("r1", "r1", "ORDO_ADMIN_LISTEN="+adminAddr)
	n := events(0.04)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	bg := g.goPublish(ctx, n, float64(n)/40)
	waitMetric(t, adminAddr, "ordo_events_committed_total", 30*time.Second) // r1 took part
	var worst time.Duration
	for i := range 3 {
		time.Sleep(3 * time.Second)
		sc.kill(r1)
		restarted := time.Now()
		r1 = sc.startWith("r1", "r1", "ORDO_ADMIN_LISTEN="+adminAddr)
		took := waitMetric(t, adminAddr, "ordo_events_committed_total", 45*time.Second)
		t.Logf("restart %d: SIGKILL → restart → first commit with events in %v", i+1, took.Round(10*time.Millisecond))
		worst = max(worst, time.Since(restarted))
	}
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(r1, r2)
	sc.stopAll()
	sc.report(sc.verify(g))
	t.Logf("slowest restart → committing again: %v (session timeout 45s)", worst.Round(10*time.Millisecond))
	if worst > 10*time.Second {
		t.Errorf("a restarted replica took %v to commit again; want ≤ 10s", worst)
	}
}

// startWith is start with extra environment for this replica only.
func (sc *scenario) startWith(name, id string, env ...string) *replica {
	sc.t.Helper()
	saved := sc.opts.env
	sc.opts.env = append(append([]string{}, saved...), env...)
	defer func() { sc.opts.env = saved }()
	return sc.start(name, id)
}

// waitMetric waits until the replica's /metrics at addr shows a positive
// value of metric and returns how long that took.
func waitMetric(t *testing.T, addr, metric string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	cl := &http.Client{Timeout: time.Second}
	for time.Since(start) < timeout {
		if v, err := scrape(cl, addr, metric); err == nil && v > 0 {
			return time.Since(start)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s on %s not positive within %v", metric, addr, timeout)
	return 0
}

func scrape(cl *http.Client, addr, metric string) (float64, error) {
	resp, err := cl.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, val, ok := strings.Cut(line, " "); ok && (name == metric || strings.HasPrefix(name, metric+"{")) {
			return strconv.ParseFloat(val, 64)
		}
	}
	return 0, fmt.Errorf("%s not found", metric)
}

// Scenario 14: oversize inputs (1.1 MiB, accepted by their topic, larger
// than the dead-letter topic takes) among normal traffic. They used to be
// dead-lettered whole, the produce failed with MESSAGE_TOO_LARGE and the
// transaction aborted ~10 times a second forever, stopping every partition
// of the replica. Invariant: each becomes one bounded dead letter (reason
// record_too_large, a prefix of the value, the original's size and
// coordinates), no transaction aborts for it, nothing else is affected.
func TestOversizeInputIsDeadLetteredBounded(t *testing.T) {
	requireKafka(t)
	sc := newScenario(t, "oversize-input", scenarioOpts{})
	sc.createTopics()
	adm, done := sc.admin()
	defer done()
	big := "2097152"
	resps, err := adm.AlterTopicConfigs(context.Background(), []kadm.AlterConfig{{Name: "max.message.bytes", Value: &big}}, sc.tp.orders)
	if err == nil {
		for _, r := range resps {
			err = errors.Join(err, r.Err)
		}
	}
	if err != nil {
		t.Fatalf("raise max.message.bytes of %s: %v", sc.tp.orders, err)
	}
	rs := []*replica{sc.start("r1", "r1"), sc.start("r2", "r2")}
	n := events(0.02)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	bg := g.goPublish(ctx, n, float64(n)/15)
	time.Sleep(3 * time.Second)
	const oversize = 3
	if err := g.publishOversize(ctx, oversize, 1100<<10); err != nil {
		t.Fatal(err)
	}
	if err := bg.wait(); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(rs...)
	sc.stopAll()
	res := sc.verify(g)
	sc.report(res)
	aborts := 0
	for _, r := range rs {
		aborts += sc.countLog(r, "produce failed; aborting") + sc.countLog(r, "transact session failed")
	}
	t.Logf("%d oversize inputs of 1.1 MiB: %d dead letters in all, %d aborts or session failures", oversize, res.deadLetters, aborts)
	if aborts != 0 {
		t.Errorf("%d transactions aborted or sessions failed: an oversize input must not make a produce fail (logs %s)", aborts, sc.dir)
	}
}

// publishOversize publishes k garbage records of size bytes to the orders
// topic (through a client whose batches can hold them) as poison events.
func (g *generator) publishOversize(ctx context.Context, k, size int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(g.sc.brokers...), kgo.ProducerBatchMaxBytes(int32(size+4096)))
	if err != nil {
		return err
	}
	defer cl.Close()
	for range k {
		g.mu.Lock()
		g.next++
		seq := g.next
		g.mu.Unlock()
		key := fmt.Sprintf("%s-oversize-%d", g.runID, seq)
		unit := []byte("oversize-" + strconv.Itoa(int(seq)) + "|")
		value := bytes.Repeat(unit, size/len(unit)+1)[:size]
		r := &kgo.Record{Topic: g.sc.tp.orders, Key: []byte(key), Value: value}
		// The raised max.message.bytes reaches the partition shortly
		// after the alter returns: retry the broker's refusal meanwhile.
		for deadline := time.Now().Add(15 * time.Second); ; {
			err := cl.ProduceSync(ctx, r).FirstErr()
			if err == nil {
				break
			}
			if !errors.Is(err, kerr.MessageTooLarge) || time.Now().After(deadline) {
				return fmt.Errorf("publish oversize: %w", err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		g.record(event{kind: kindPoison, seq: seq, ref: inRef{r.Topic, r.Partition, r.Offset},
			ext: &extInfo{id: g.id(seq), key: key, value: value, why: "oversize"}})
	}
	return nil
}

// Scenario 15: the schema registry refuses ordo's credentials (401) for
// 15 s while events written with a writer schema ordo has not cached
// arrive, then accepts them again. A 401 used to be classified as
// permanent: valid events were dead-lettered. Invariant: ordo stalls and
// reports itself not ready (registry unreachable, input waiting), nothing is
// dead-lettered, and after the refusal everything is processed exactly once.
func TestRegistryRefusingCredentialsStallsWithoutDeadLetters(t *testing.T) {
	requireKafka(t)
	sc := newScenario(t, "registry-401", scenarioOpts{})
	target, err := url.Parse(sc.regURL)
	if err != nil {
		t.Fatal(err)
	}
	var refuse atomic.Bool
	var refused atomic.Int64
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if refuse.Load() {
			refused.Add(1)
			w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error_code":40101,"message":"Unauthorized"}`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	adminAddr, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	// The replicas reach the registry only through the proxy; the
	// generator and the verifier use it directly.
	sc.opts.env = append(sc.opts.env, "ORDO_REGISTRY_URL="+srv.URL, "ORDO_PROCESSING_STALL_TIMEOUT=5s")
	sc.createTopics()
	r1 := sc.startWith("r1", "r1", "ORDO_ADMIN_LISTEN="+adminAddr)
	r2 := sc.start("r2", "r2")
	n := events(0.03)
	g := sc.newGenerator(genOpts{})
	ctx := context.Background()
	if err := g.publish(ctx, n/2, 0); err != nil {
		t.Fatal(err)
	}
	sc.waitProcessed(g, drainTimeout(n)) // every schema so far is cached
	v2, err := g.registerPaymentV2(ctx)
	if err != nil {
		t.Fatal(err)
	}
	recs, evs, isV2, err := g.buildOutageTraffic(ctx, v2, n-n/2)
	if err != nil {
		t.Fatal(err)
	}
	refuse.Store(true)
	t0 := time.Now()
	v2Refs, err := g.produceBuilt(ctx, recs, evs, isV2)
	if err != nil {
		t.Fatal(err)
	}
	// Not ready while refused: the registry check and the waiting input.
	var why string
	cl := &http.Client{Timeout: time.Second}
	for time.Since(t0) < 14*time.Second && why == "" {
		if resp, err := cl.Get("http://" + adminAddr + "/readyz"); err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusServiceUnavailable {
				why = strings.TrimSpace(string(b))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(15*time.Second - time.Since(t0))
	behind := sc.uncommitted(v2Refs)
	refuse.Store(false)
	t.Logf("registry refused %d requests for %v; %d of %d v2 records uncommitted at the end; r1 /readyz said: %q",
		refused.Load(), time.Since(t0).Round(100*time.Millisecond), behind, len(v2Refs), why)
	if refused.Load() == 0 || behind == 0 {
		t.Error("ordo never needed the refusing registry: the scenario proved nothing")
	}
	if why == "" {
		t.Error("r1 stayed ready while the registry refused its credentials")
	}
	sc.waitProcessed(g, drainTimeout(n))
	sc.checkAlive(r1, r2)
	sc.stopAll()
	sc.report(sc.verify(g)) // a dead-lettered valid event is a failure there
}
