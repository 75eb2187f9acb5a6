package eos

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
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
	sc := newScenario(t, "slow-chain-backlog", scenarioOpts{extraPipeline: `  - name: risk-lookup
    type: enrich_http
    config:
      url: ` + srv.URL + `/risk/{key}
      key: event.order_id
      into: risk
      timeout: 30s
      retries: 0
      cache_size: 0
`})
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
