package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

type latResult struct {
	Contender      string
	Run            int     // round of the interleaved runs (1-based; 0 in older results.json)
	Fraction       float64 // of ordo's max rate
	Offered        float64 // events/s
	Achieved       float64 // events/s produced
	Samples        int
	Missing        int
	P50, P99, P999 time.Duration
	Max            time.Duration
	// Prime: producing one event into every input partition until the
	// contender had committed past them (before the paced phase).
	Prime, PrimeAck time.Duration `json:",omitempty"`
	// From ordo's /metrics (ordo only): transactions committed, mean events
	// per transaction, mean time of End (flush + EndTxn), mean per-event
	// processing time.
	Txns         float64
	EventsPerTxn float64
	TxnEnd       time.Duration
	Processing   time.Duration
	// The two halves (same clock, same host): input record timestamp ->
	// command record timestamp (when the contender produced it), and command
	// record timestamp -> visible to a read_committed consumer (commit).
	ProcP50, ProcP99 time.Duration
	// Latency from the generator's Produce call instead of the append time.
	CallP50, CallP99 time.Duration
	SeeP50, SeeP99   time.Duration
	LoadAvg          string // 1-minute load average at the end of the level
	// CPU cores used during the paced phase by the contender, the broker and
	// the benchmark process (generator + reader + registry).
	CoresContender, CoresBroker, CoresBench float64
	Err                                     string
}

// latency runs ordo (and the pass-through) at fixed fractions of ordo's
// maximum rate, each on fresh input topics, with a paced producer.
func (b *bench) latency(ctx context.Context, ordoMax float64, cs []contender) []latResult {
	secs := envInt("BENCH_LAT_SECONDS", 15)
	runs := envInt("BENCH_LAT_RUNS", 3)
	var out []latResult
	level := 0
	var fracs []float64
	for _, f := range strings.Split(envStr("BENCH_LAT_LEVELS", "0.25,0.5"), ",") {
		if v, err := strconv.ParseFloat(strings.TrimSpace(f), 64); err == nil {
			fracs = append(fracs, v)
		}
	}
	// Runs are interleaved: at each level the contenders run back to back
	// (a b c, c b a, ...), then the next level, then the next round, so
	// that the machine's noise hits both sides of a ratio alike; the report
	// takes the median of each (contender, level) and the ratio of medians.
	// (a'), the pass-through at ordo's output shape, runs with them: the
	// part of ordo's latency gap its output alone would cost.
	keys := strings.Split(envStr("BENCH_LAT_CONTENDERS", "ordo,passthrough,passthrough-shape,passthrough-burn"), ",")
	// Every run's input topics are created up front and used only once
	// they all serve reads: a topic created just before its run let the
	// first second of a run stall (ListOffsets answered a retriable error
	// for some new partitions; franz-go reloads them after 1 s), and the
	// contender then met that second's events as one burst, far above the
	// offered rate.
	if err := b.prepareLatencyTopics(ctx, runs*len(fracs)*len(keys)); err != nil {
		logf("latency: %v", err)
		return out
	}
	for r := 0; r < runs; r++ {
		for _, f := range fracs {
			// Who goes first alternates by round: a run that follows a
			// busier one (or the throughput phase) meets a busier broker.
			order := keys
			if r%2 == 1 {
				order = slices.Clone(keys)
				slices.Reverse(order)
			}
			for _, key := range order {
				var c contender
				for _, x := range cs {
					if x.key == strings.TrimSpace(key) {
						c = x
					}
				}
				if c.key == "" {
					logf("latency: unknown contender %q in BENCH_LAT_CONTENDERS", key)
					continue
				}
				if ctx.Err() != nil {
					return out
				}
				level++
				settle(ctx)
				res := b.latencyOnce(ctx, c, level, f, f*ordoMax, time.Duration(secs)*time.Second)
				res.Run = r + 1
				if res.Err != "" {
					logf("latency %s @%.0f%% run %d/%d: ERROR %s", c.key, f*100, r+1, runs, res.Err)
				} else {
					logf("latency %s @%.0f%% run %d/%d (primed in %s, acks after %s; %.0f ev/s offered, %.0f achieved): p50 %s p99 %s p999 %s max %s (%d samples, %d missing; txns %.0f, %.0f ev/txn, End %s, processing %s/ev; load %s; to-produce p50/p99 %s/%s, produce-to-visible p50/p99 %s/%s; from Produce call p50/p99 %s/%s; cores: contender %.2f broker %.2f bench %.2f)",
						c.key, f*100, r+1, runs, res.Prime.Round(time.Millisecond), res.PrimeAck.Round(time.Millisecond), res.Offered, res.Achieved, res.P50, res.P99, res.P999, res.Max, res.Samples, res.Missing, res.Txns, res.EventsPerTxn, res.TxnEnd, res.Processing, res.LoadAvg, res.ProcP50, res.ProcP99, res.SeeP50, res.SeeP99, res.CallP50, res.CallP99, res.CoresContender, res.CoresBroker, res.CoresBench)
				}
				out = append(out, res)
			}
		}
	}
	return out
}

func (b *bench) latencyOnce(ctx context.Context, c contender, level int, frac, rate float64, dur time.Duration) (res latResult) {
	res = latResult{Contender: c.key, Fraction: frac, Offered: rate}
	prefix, ins := b.latencyTopics(level)
	outs := commandTopics
	if c.key == "passthrough" {
		outs = passthroughOutputs()
	}
	// A pool of pre-encoded events, replayed at the offered rate, so the
	// load generator spends no CPU on Avro while the contender runs. Commands
	// are matched to their input by the ordo-input header
	// (topic/partition/offset), which ordo and the pass-through both write.
	g := newGen(b.pub, uint64(1000+level))
	pool := make([]*kgo.Record, 6000)
	for i := range pool {
		r, err := g.record(ctx, i+1, prefix, fmt.Sprintf("l%d-", level))
		if err != nil {
			res.Err = err.Error()
			return
		}
		pool[i] = r
	}
	group := fmt.Sprintf("bench-lat-%s-%d-%d", c.key, level, time.Now().UnixNano()%1e9)
	cmd := c.cmd(group, ins)
	lf, err := startProc(cmd, b.work, fmt.Sprintf("latency-%s-%d", c.key, level))
	if err != nil {
		res.Err = err.Error()
		return
	}
	defer lf.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer stopProc(cmd, done)

	// Wait until the group owns all input partitions.
	if err := waitAssigned(ctx, b.adm, group, len(ins)*partitions, 60*time.Second); err != nil {
		res.Err = err.Error()
		return
	}
	dumpOn := os.Getenv("BENCH_LAT_DUMP") == "1"
	// The generator's client, created and primed before the paced phase.
	popts := []kgo.Opt{kgo.SeedBrokers(strings.Split(b.brokers, ",")...), kgo.ProducerLinger(5 * time.Millisecond)}
	if dumpOn { // the generator's own client log, to tell its stalls from the contender's
		if f, err := os.Create(filepath.Join(b.work, fmt.Sprintf("latency-%s-%d.gen.log", c.key, level))); err == nil {
			defer f.Close()
			popts = append(popts, kgo.WithLogger(kgo.BasicLogger(f, kgo.LogLevelDebug, func() string { return time.Now().UTC().Format("15:04:05.000000 ") })))
		}
	}
	pcl, err := kgo.NewClient(popts...)
	if err != nil {
		res.Err = err.Error()
		return
	}
	defer pcl.Close()
	if res.Prime, res.PrimeAck, err = b.prime(ctx, pcl, group, ins, pool); err != nil {
		res.Err = err.Error()
		return
	}
	// Reader of the output topics from their current ends.
	ends, err := b.adm.ListEndOffsets(ctx, outs...)
	if err != nil {
		res.Err = err.Error()
		return
	}
	parts := map[string]map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if parts[o.Topic] == nil {
			parts[o.Topic] = map[int32]kgo.Offset{}
		}
		parts[o.Topic][o.Partition] = kgo.NewOffset().At(o.Offset)
	})
	for _, t := range ins { // the inputs too, for their append times
		parts[t] = map[int32]kgo.Offset{}
		for p := int32(0); p < partitions; p++ {
			parts[t][p] = kgo.NewOffset().AtStart()
		}
	}
	rd, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(b.brokers, ",")...), kgo.ConsumePartitions(parts),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(50*time.Millisecond))
	if err != nil {
		res.Err = err.Error()
		return
	}
	defer rd.Close()

	// Events are keyed by a pointer-free struct (the input topic's index,
	// partition, offset) in maps of pointer-free values, sized up front:
	// the first version keyed them by "topic/partition/offset" strings, and
	// its maps of ~1M strings made the harness itself take 0.76 cores at
	// 65k events/s, on the 2 cores it shares with the contender and the
	// broker (bench/findings.md, 2026-12-05, night).
	topicIdx := map[string]int16{}
	for i, t := range ins {
		topicIdx[t] = int16(i)
	}
	keyOf := func(topic string, part int32, off int64) (inKey, bool) {
		t, ok := topicIdx[topic]
		return inKey{t, part, off}, ok
	}
	type pend struct {
		in      inKey
		at, cmd time.Time
	}
	// The generator's produce callbacks hand their acks over under a lock
	// of their own: they must never wait for the reader, which holds mu
	// while it matches a whole fetch (a blocked promise holds the
	// producer's buffer). This was a suspect for the generator falling a
	// second behind at the start of some runs; it was not the cause (that
	// lag persisted; bench/findings.md, 2026-12-05), but the generator
	// should not depend on the reader anyway.
	type ack struct {
		in inKey
		at time.Time
	}
	var (
		ackMu      sync.Mutex
		acks       []ack
		perr       error
		maxPending int
	)
	var (
		mu       sync.Mutex
		want     = int(rate*dur.Seconds()) + 1024
		events   = make(map[inKey]evTimes, want) // input topic/partition/offset -> its times
		nseen    int
		fromCall []time.Duration // latency from the Produce call (includes generator queueing)
		lat      []time.Duration
		dump     []string        // BENCH_LAT_DUMP: one CSV line per event (counted or warm-up)
		toProc   []time.Duration // input timestamp -> command record timestamp (ordo produced it)
		toSee    []time.Duration // command record timestamp -> visible to read_committed
		pending  []pend          // commands seen before their input's produce ack was processed
		warmEnd  time.Time
	)
	// BENCH_LAT_DUMP=1 writes every event's times (µs since the
	// epoch) to latency-<contender>-<level>.csv in the work dir, to line a
	// tail up with the contender's own log.
	record := func(in inKey, at, cmd time.Time) bool {
		e := events[in]
		if e.seen {
			return true
		}
		if e.sent == 0 || e.appended == 0 {
			return false
		}
		e.seen = true
		events[in] = e
		nseen++
		call, t := time.Unix(0, e.sent), time.Unix(0, e.appended)
		if dumpOn {
			dump = append(dump, fmt.Sprintf("%s/%d/%d,%d,%d,%d,%d,%t", ins[in.topic], in.part, in.off, t.UnixMicro(), cmd.UnixMicro(), at.UnixMicro(), call.UnixMicro(), call.After(warmEnd)))
		}
		if call.After(warmEnd) {
			lat = append(lat, at.Sub(t))
			fromCall = append(fromCall, at.Sub(call))
			toProc = append(toProc, cmd.Sub(t))
			toSee = append(toSee, at.Sub(cmd))
		}
		return true
	}
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	var rwg sync.WaitGroup
	rwg.Add(1)
	go func() {
		defer rwg.Done()
		for rctx.Err() == nil {
			fs := rd.PollFetches(rctx)
			now := time.Now()
			ackMu.Lock()
			got := acks
			acks = nil
			ackMu.Unlock()
			mu.Lock()
			for _, a := range got {
				e := events[a.in]
				e.sent = a.at.UnixNano()
				events[a.in] = e
			}
			fs.EachRecord(func(r *kgo.Record) {
				if k, ok := keyOf(r.Topic, r.Partition, r.Offset); ok {
					e := events[k]
					e.appended = r.Timestamp.UnixNano()
					events[k] = e
					return
				}
				for _, h := range r.Headers {
					if h.Key == "ordo-input" {
						k, ok := parseOrigin(h.Value, topicIdx)
						if !ok {
							return // not one of this run's inputs
						}
						if !record(k, now, r.Timestamp) {
							pending = append(pending, pend{k, now, r.Timestamp})
						}
						return
					}
				}
			})
			pending = slices.DeleteFunc(pending, func(p pend) bool { return record(p.in, p.at, p.cmd) })
			maxPending = max(maxPending, len(pending))
			mu.Unlock()
		}
	}()

	cpuOf := func(pid int) time.Duration {
		if pid <= 0 {
			return 0
		}
		d, _ := procCPU(pid)
		return d
	}
	bpid := brokerPID()
	c0, b0, s0 := cpuOf(cmd.Process.Pid), cpuOf(bpid), cpuOf(os.Getpid())
	// Paced producer: every 5 ms, produce what is due, through a client
	// that batches like an upstream service would (5 ms linger; the linger
	// is inside the measured latency, since the timestamp is set first).
	start := time.Now()
	mu.Lock()
	warmEnd = start.Add(2 * time.Second)
	mu.Unlock()
	var (
		n   int
		pwg sync.WaitGroup
	)
	failed := func() error {
		ackMu.Lock()
		defer ackMu.Unlock()
		return perr
	}
	tick := time.NewTicker(5 * time.Millisecond)
	for time.Since(start) < dur && ctx.Err() == nil {
		<-tick.C
		due := int(time.Since(start).Seconds() * rate)
		for n < due {
			p := pool[n%len(pool)]
			n++
			r := &kgo.Record{Topic: p.Topic, Key: p.Key, Value: p.Value, Headers: p.Headers, Timestamp: time.Now()}
			pwg.Add(1)
			pcl.Produce(ctx, r, func(r *kgo.Record, err error) {
				ackMu.Lock()
				if err != nil {
					perr = err
				} else {
					k, _ := keyOf(r.Topic, r.Partition, r.Offset)
					acks = append(acks, ack{k, r.Timestamp})
				}
				ackMu.Unlock()
				pwg.Done()
			})
		}
		if failed() != nil {
			break
		}
	}
	tick.Stop()
	elapsed := time.Since(start)
	res.CoresContender = (cpuOf(cmd.Process.Pid) - c0).Seconds() / elapsed.Seconds()
	res.CoresBroker = (cpuOf(bpid) - b0).Seconds() / elapsed.Seconds()
	res.CoresBench = (cpuOf(os.Getpid()) - s0).Seconds() / elapsed.Seconds()
	pwg.Wait()
	res.Achieved = float64(n) / elapsed.Seconds()
	if err := failed(); err != nil {
		res.Err = err.Error()
		return
	}
	// Wait for the stragglers.
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		got := nseen
		mu.Unlock()
		if got >= n {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	rcancel()
	rwg.Wait()
	if la, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.LoadAvg = strings.Fields(string(la))[0]
	}
	if c.key != "passthrough" {
		if resp, err := http.Get("http://" + b.admin + "/metrics"); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			_ = os.WriteFile(filepath.Join(b.work, fmt.Sprintf("latency-%s-%d.metrics", c.key, level)), body, 0o644)
		}
		if m, err := scrapeMetrics("http://" + b.admin + "/metrics"); err == nil && m["ordo_txn_commits_total"] > 0 {
			res.Txns = m["ordo_txn_commits_total"]
			res.EventsPerTxn = m["ordo_event_processing_seconds_count"] / res.Txns
			if n := m["ordo_txn_end_seconds_count"]; n > 0 {
				res.TxnEnd = time.Duration(m["ordo_txn_end_seconds_sum"] / n * float64(time.Second))
			}
			if n := m["ordo_event_processing_seconds_count"]; n > 0 {
				res.Processing = time.Duration(m["ordo_event_processing_seconds_sum"] / n * float64(time.Second))
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if dumpOn {
		_ = os.WriteFile(filepath.Join(b.work, fmt.Sprintf("latency-%s-%d.csv", c.key, level)),
			[]byte("input,appended_us,produced_us,seen_us,called_us,counted\n"+strings.Join(dump, "\n")+"\n"), 0o644)
	}
	if dumpOn {
		logf("latency %s level %d: at most %d commands waited in the reader for their input", c.key, level, maxPending)
	}
	res.Missing = n - nseen
	res.Samples = len(lat)
	if len(lat) == 0 {
		res.Err = "no samples"
		return
	}
	slices.Sort(lat)
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	res.P50, res.P99, res.P999, res.Max = q(0.50), q(0.99), q(0.999), lat[len(lat)-1]
	slices.Sort(fromCall)
	res.CallP50, res.CallP99 = fromCall[len(fromCall)/2], fromCall[min(len(fromCall)-1, int(0.99*float64(len(fromCall))))]
	slices.Sort(toProc)
	slices.Sort(toSee)
	res.ProcP50, res.ProcP99 = toProc[len(toProc)/2], toProc[min(len(toProc)-1, int(0.99*float64(len(toProc))))]
	res.SeeP50, res.SeeP99 = toSee[len(toSee)/2], toSee[min(len(toSee)-1, int(0.99*float64(len(toSee))))]
	return
}

// prime produces one pool event into every partition of the run's inputs
// (and one per topic through the generator's own client, which then knows
// the topics' metadata and has its producer id) and waits until the
// contender's group has committed past all of them: the broker's first
// appends to the fresh partitions, the generator's first requests and the
// contender's first transaction (registry lookups, command schemas) are
// not part of the measured phase, for either contender.
func (b *bench) prime(ctx context.Context, gen *kgo.Client, group string, ins []string, pool []*kgo.Record) (took, acked time.Duration, err error) {
	start := time.Now()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(b.brokers, ",")...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	var recs []*kgo.Record
	for _, t := range ins {
		for p := int32(0); p < partitions; p++ {
			src := pool[len(recs)%len(pool)]
			recs = append(recs, &kgo.Record{Topic: t, Partition: p, Key: src.Key, Value: src.Value, Headers: src.Headers})
		}
	}
	var viaGen []*kgo.Record
	for _, t := range ins { // the pool's records are on the run's topics already
		if i := slices.IndexFunc(pool, func(r *kgo.Record) bool { return r.Topic == t }); i >= 0 {
			viaGen = append(viaGen, &kgo.Record{Topic: t, Key: pool[i].Key, Value: pool[i].Value, Headers: pool[i].Headers})
		}
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := cl.ProduceSync(pctx, recs...).FirstErr(); err != nil {
		return 0, 0, fmt.Errorf("prime the input partitions: %w", err)
	}
	if err := gen.ProduceSync(pctx, viaGen...).FirstErr(); err != nil {
		return 0, 0, fmt.Errorf("prime the generator: %w", err)
	}
	acked = time.Since(start)
	want, err := endOffsets(pctx, b.adm, ins...)
	if err != nil {
		return 0, 0, err
	}
	for {
		got, err := committed(pctx, b.adm, group, ins)
		if err == nil && got >= want {
			return time.Since(start), acked, nil
		}
		if pctx.Err() != nil {
			return 0, 0, fmt.Errorf("prime: the contender committed %d of %d primed offsets in 30 s", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// settle lets the machine quiet down before a measured run (throughput or
// latency): it collects the
// benchmark process's own garbage, writes the dirty page cache back (sync)
// and waits, at most 15 s, until the broker
// has used under 0.2 cores for a second. After the throughput phase the
// kernel was still writing back gigabytes and the broker's produce
// requests took 43 ms on average instead of 8: whoever ran first paid.
func settle(ctx context.Context) {
	start := time.Now()
	// The previous run's maps (every event's times) are garbage now: collect
	// them here, not while the next run's generator is producing.
	runtime.GC()
	syscall.Sync()
	pid := brokerPID()
	if pid <= 0 {
		return
	}
	for time.Since(start) < 15*time.Second && ctx.Err() == nil {
		c0, _ := procCPU(pid)
		time.Sleep(time.Second)
		c1, _ := procCPU(pid)
		if (c1 - c0).Seconds() < 0.2 {
			break
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		logf("waited %s for the broker to settle", d.Round(100*time.Millisecond))
	}
}

// latencyTopics are the input topics of latency run level (1-based) and
// their prefix, unique per invocation: a reused broker (BENCH_BROKERS)
// keeps old ones.
func (b *bench) latencyTopics(level int) (prefix string, topics []string) {
	prefix = fmt.Sprintf("lat%d-%d.", level, b.started.Unix()%1e6)
	for _, t := range inputTopics {
		topics = append(topics, prefix+t)
	}
	return prefix, topics
}

// prepareLatencyTopics creates the input topics of latency runs 1..n,
// registers their writer schemas and waits until every partition answers
// ListOffsets (its leader is serving).
func (b *bench) prepareLatencyTopics(ctx context.Context, n int) error {
	var all []string
	for level := 1; level <= n; level++ {
		prefix, ins := b.latencyTopics(level)
		all = append(all, ins...)
		if err := registerWriters(ctx, b.reg, b.writers, prefix); err != nil {
			return err
		}
	}
	// LogAppendTime: an input record's timestamp is when the broker appended
	// it, so the latency excludes the load generator's own queueing.
	appendTime := "LogAppendTime"
	resp, err := b.adm.CreateTopics(ctx, partitions, 1, map[string]*string{"message.timestamp.type": &appendTime}, all...)
	if err != nil {
		return fmt.Errorf("create latency topics: %w", err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil {
			return fmt.Errorf("create %s: %w", r.Topic, r.Err)
		}
	}
	start := time.Now()
	deadline := start.Add(60 * time.Second)
	for {
		ready, why := 0, ""
		if offs, err := b.adm.ListEndOffsets(ctx, all...); err != nil {
			why = err.Error()
		} else {
			offs.Each(func(o kadm.ListedOffset) {
				if o.Err == nil {
					ready++
				} else if why == "" {
					why = fmt.Sprintf("%s/%d: %v", o.Topic, o.Partition, o.Err)
				}
			})
		}
		if ready == len(all)*partitions {
			logf("latency: %d input topics (%d partitions) ready after %s", len(all), ready, time.Since(start).Round(time.Millisecond))
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("latency topics: %d of %d partitions ready after 60 s (%s)", ready, len(all)*partitions, why)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitAssigned waits until the group is Stable with want partitions assigned.
func waitAssigned(ctx context.Context, adm *kadm.Client, group string, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		dg, err := adm.DescribeGroups(ctx, group)
		if err == nil {
			if g, ok := dg[group]; ok && g.State == "Stable" {
				n := 0
				for _, m := range g.Members {
					if a, ok := m.Assigned.AsConsumer(); ok {
						for _, t := range a.Topics {
							n += len(t.Partitions)
						}
					}
				}
				if n >= want {
					return nil
				}
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("group %s not assigned %d partitions within %s", group, want, timeout)
}

// scrapeMetrics sums every sample of each metric name in a Prometheus text
// exposition.
func scrapeMetrics(url string) (map[string]float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, l := range strings.Split(string(body), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name := f[0]
		if i := strings.IndexByte(name, '{'); i >= 0 {
			name = name[:i]
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, nil
}

// inKey names an input record without a pointer (so maps of them cost the
// garbage collector nothing to scan): its topic's index in the run's input
// topics, its partition and offset.
type inKey struct {
	topic int16
	part  int32
	off   int64
}

// evTimes are an input event's times in Unix nanoseconds (0: not known
// yet): when the generator called Produce for it, and its append time.
type evTimes struct {
	sent, appended int64
	seen           bool
}

// parseOrigin reads an ordo-input header ("topic/partition/offset") into
// a key, without allocating; false for a topic not in topicIdx or a value
// of another form.
func parseOrigin(v []byte, topicIdx map[string]int16) (inKey, bool) {
	j := bytes.LastIndexByte(v, '/')
	if j <= 0 {
		return inKey{}, false
	}
	i := bytes.LastIndexByte(v[:j], '/')
	if i <= 0 {
		return inKey{}, false
	}
	t, ok := topicIdx[string(v[:i])] // no allocation for a map index
	if !ok {
		return inKey{}, false
	}
	part, err1 := strconv.ParseInt(unsafeString(v[i+1:j]), 10, 32)
	off, err2 := strconv.ParseInt(unsafeString(v[j+1:]), 10, 64)
	if err1 != nil || err2 != nil {
		return inKey{}, false
	}
	return inKey{t, int32(part), off}, true
}

// unsafeString views b as a string for a parse that does not keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }
