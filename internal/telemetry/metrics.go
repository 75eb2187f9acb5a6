package telemetry

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/processors"
)

// Metrics is ordo's Prometheus instrumentation: a consumer.Hook for the
// EOS loop, kgo hooks for the group (rebalances, assignment) and kprom's
// client metrics, all on one private prometheus.Registry. It also keeps the
// readiness state (Health).
//
// Labels are bounded: event types (the registered schemas), processor names
// (the config), topics and partitions (the config and the cluster). No ids,
// keys or error messages are ever labels.
type Metrics struct {
	Registry *prometheus.Registry
	Health   *Health
	// kprom holds franz-go's client metrics per stage (ClientHooks): one
	// kprom.Metrics per client, since kprom keeps its collectors on the
	// Metrics value and a second client would take them over.
	kpromMu sync.Mutex
	kprom   map[string]*kprom.Metrics

	// Updated per event from every worker: striped (striped.go).
	eventsProcessed *stripedCounterVec
	processing      *stripedHistogram
	processor       *stripedHistogramVec
	recordsProduced *stripedCounterVec

	deadLetters       *prometheus.CounterVec
	retries           prometheus.Counter
	committedEvents   prometheus.Counter
	committedCommands prometheus.Counter
	committedDead     prometheus.Counter
	rewound           prometheus.Counter
	endToEnd          prometheus.Histogram
	txnCommits        prometheus.Counter
	txnAborts         *prometheus.CounterVec
	txnDuration       *prometheus.HistogramVec
	lastCommit        prometheus.Gauge
	sessionRestarts   prometheus.Counter
	rebalances        prometheus.Counter
	assigned          prometheus.Gauge
	lag               *prometheus.GaugeVec
	registryUp        prometheus.Gauge
	processEvents     *prometheus.CounterVec
	dropped           prometheus.Counter
	timersTriggered   prometheus.Counter

	own []prometheus.Collector
}

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// MetricNames lists the metric families ordo exposes (histograms without
// their _bucket/_sum/_count suffixes), including kprom's client metrics, for
// the dashboard and alert-rule tests. It creates (and closes) an unconnected
// client so that kprom registers its collectors.
func MetricNames() ([]string, error) {
	m := NewMetrics()
	// The metrics a replica registers once it is built (see internal/app).
	m.RegistryStats(func() (uint64, uint64) { return 0, 0 })
	m.RegistryNegativeHits(func() uint64 { return 0 })
	m.LoopProgress(func() (time.Duration, int) { return 0, 0 })
	cl, err := kgo.NewClient(append(m.ClientHooks("pipeline"), kgo.SeedBrokers("127.0.0.1:1"))...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range m.own {
			c.Describe(ch)
		}
		m.kprom["pipeline"].Describe(ch)
		close(ch)
	}()
	var names []string
	for d := range ch {
		if mm := fqName.FindStringSubmatch(d.String()); mm != nil {
			names = append(names, mm[1])
		}
	}
	fams, err := m.Registry.Gather()
	if err != nil {
		return nil, err
	}
	for _, f := range fams {
		names = append(names, f.GetName())
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// Metric names, for the dashboard and alert tests.
const ns = "ordo"

// latency buckets: 100µs .. ~100s.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2.5, 16)

// NewMetrics registers ordo's metrics (and Go/process collectors) on a new
// registry.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{Registry: reg, Health: newHealth()}
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m.eventsProcessed = newStripedCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "events_processed_total",
		Help: "Input events processed without error (commands built), by event type; every attempt, including attempts whose transaction later aborted. Dead letters: ordo_dead_letters_total."}, []string{"type"})
	processing := newStripedHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "event_processing_seconds",
		Help: "Time to decode one event, run the chain and encode its commands.", Buckets: latencyBuckets}, nil)
	m.processing = processing.get("", func() []string { return nil })
	m.processor = newStripedHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "processor_seconds",
		Help: "Time of one run of one processor, by processor name and outcome (ok, error).", Buckets: latencyBuckets}, []string{"processor", "outcome"})
	m.recordsProduced = newStripedCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "records_produced_total",
		Help: "Command and dead-letter records handed to the transactional producer, by topic (every attempt)."}, []string{"topic"})
	m.deadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "dead_letters_total",
		Help: "Events dead-lettered, by reason: decode, encode or the failing processor's name (every attempt)."}, []string{"reason"})
	m.retries = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "transient_retries_total", Help: "Transient failures retried inside a transaction."})
	m.committedEvents = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "events_committed_total", Help: "Input events whose outputs committed (exactly once)."})
	m.committedCommands = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "commands_committed_total", Help: "Commands committed (exactly once)."})
	m.committedDead = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "dead_letters_committed_total", Help: "Dead letters committed (exactly once)."})
	m.rewound = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "records_rewound_total",
		Help: "Polled input records a committed transaction did not start before its commit deadline; the next one processes them, carried over in memory."})
	m.endToEnd = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "end_to_end_seconds",
		Help: "From an input event's record timestamp (event time) to the commit of its outputs.", Buckets: latencyBuckets})
	m.txnCommits = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "txn_commits_total", Help: "Transactions committed."})
	m.txnAborts = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "txn_aborts_total",
		Help: "Transactions aborted, by cause: aborted (requested or by a rebalance) or error (the End call failed; the session is recreated)."}, []string{"cause"})
	m.txnDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "txn_end_seconds",
		Help: "Duration of ending a transaction (flush + commit or abort), by outcome.", Buckets: latencyBuckets}, []string{"outcome"})
	m.lastCommit = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "last_commit_timestamp_seconds", Help: "Unix time of the last committed transaction (0: none yet)."})
	m.sessionRestarts = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "session_restarts_total", Help: "Transactional sessions recreated after an error."})
	m.rebalances = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "rebalances_total", Help: "Group rebalances that assigned, revoked or lost partitions of this replica."})
	m.assigned = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "assigned_partitions", Help: "Input partitions assigned to this replica."})
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "consumer_lag",
		Help: "Records between the group's committed offset and the end of each input partition (polled)."}, []string{"topic", "partition"})
	m.registryUp = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Name: "registry_up", Help: "1 if the last schema registry check succeeded."})
	m.processEvents = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "process_events_total",
		Help: "Decisions of the stateful stage in committed transactions, by process and outcome (started, completed, cancelled, timer_fired, duplicate, ...; docs/processes.md)."}, []string{"process", "outcome"})
	m.dropped = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "events_dropped_total", Help: "Events that needed no effect (duplicates, events for finished processes), committed."})
	m.timersTriggered = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "timer_triggers_total", Help: "Timer triggers produced to the process log (a timer fires when its trigger is consumed)."})
	m.own = []prometheus.Collector{m.processEvents, m.dropped, m.timersTriggered, m.eventsProcessed, processing, m.processor, m.recordsProduced, m.deadLetters, m.retries,
		m.committedEvents, m.committedCommands, m.committedDead, m.rewound, m.endToEnd, m.txnCommits, m.txnAborts, m.txnDuration, m.lastCommit,
		m.sessionRestarts, m.rebalances, m.assigned, m.lag, m.registryUp}
	for _, c := range m.own {
		f(c)
	}
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "ready", Help: "1 if the replica is ready (see /readyz)."},
		func() float64 {
			if ok, _ := m.Health.Ready(); ok {
				return 1
			}
			return 0
		}))
	f(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "producer_fenced", Help: "1 if the transactional producer was fenced and has not committed since."},
		func() float64 { return b2f(m.Health.state().fenced) }))
	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Every txn_aborts_total cause exists from the start, so rate() works.
	m.txnAborts.WithLabelValues("aborted")
	m.txnAborts.WithLabelValues("error")
	return m
}

// ClientHooks returns the kgo option that feeds franz-go's client metrics
// (ordo_kafka_*) of one stage's client, labelled stage="<stage>": "pipeline"
// for the EOS loop (the forwarding loop of a stateful configuration),
// "process" for the stateful stage. A session recreated for the same stage
// replaces its predecessor's collectors.
func (m *Metrics) ClientHooks(stage string) []kgo.Opt {
	m.kpromMu.Lock()
	defer m.kpromMu.Unlock()
	k, ok := m.kprom[stage]
	if !ok {
		k = kprom.NewMetrics(ns, kprom.Subsystem("kafka"), kprom.Registry(replacing{m.Registry}),
			kprom.WithStaticLabel(prometheus.Labels{"stage": stage}),
			kprom.FetchAndProduceDetail(kprom.ByNode, kprom.ByTopic, kprom.Records, kprom.Batches, kprom.UncompressedBytes))
		if m.kprom == nil {
			m.kprom = map[string]*kprom.Metrics{}
		}
		m.kprom[stage] = k
	}
	return []kgo.Opt{kgo.WithHooks(k)}
}

// replacing lets a new client's kprom collectors replace those of a client
// that is not closed yet (a session recreated after its Close timed out):
// kprom registers with MustRegister, which would panic on the duplicate.
type replacing struct{ *prometheus.Registry }

func (r replacing) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				panic(err)
			}
			r.Unregister(are.ExistingCollector)
			r.Registry.MustRegister(c)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// StateRestore exposes the stateful stage's restore: partitions restoring
// and changelog records applied while restoring.
func (m *Metrics) StateRestore(restoring func() int, applied func() uint64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "state_restoring_partitions",
		Help: "Process-log partitions whose store is being restored from the changelog (not ready meanwhile)."}, func() float64 { return float64(restoring()) }))
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "state_restored_records_total",
		Help: "Changelog records applied to local stores by restores and catch-ups."}, func() float64 { return float64(applied()) }))
}

// LoopProgress exposes the EOS loop's progress: how long polled input has
// waited without a commit (0 when nothing waits) and the aborts since the
// last commit. Together with readiness they make an abort loop or a stall
// visible long before lag alerts fire.
func (m *Metrics) LoopProgress(progress func() (waiting time.Duration, aborts int)) {
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "input_waiting_seconds", Help: "How long polled input has waited without a commit (0: nothing waits)."},
			func() float64 { w, _ := progress(); return w.Seconds() }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "txn_consecutive_aborts", Help: "Transaction aborts since the last commit (each one backs off longer)."},
			func() float64 { _, a := progress(); return float64(a) }),
	)
}

// RegistryNegativeHits exposes how many schema-id lookups the registry
// client answered from its negative cache (ids the registry does not know).
func (m *Metrics) RegistryNegativeHits(hits func() uint64) {
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "registry_negative_cache_hits_total",
		Help: "Schema-by-id lookups answered from the negative cache (ids the registry reported unknown, kept for a TTL)."},
		func() float64 { return float64(hits()) }))
}

// RegistryStats exposes a schema registry cache's hit and miss counters.
func (m *Metrics) RegistryStats(stats func() (hits, misses uint64)) {
	m.Registry.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "registry_cache_hits_total", Help: "Schema-by-id lookups served from the cache."},
			func() float64 { h, _ := stats(); return float64(h) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: "registry_cache_misses_total", Help: "Schema-by-id lookups that waited for a registry fetch."},
			func() float64 { _, mi := stats(); return float64(mi) }),
	)
}

// KgoOpts are the client options that feed the metrics and readiness: the
// group assignment callbacks (the client metrics come from ClientHooks).
func (m *Metrics) KgoOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			m.rebalances.Inc()
			m.assigned.Set(float64(m.Health.assign(ps, true)))
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, ps map[string][]int32) {
			if len(ps) > 0 {
				m.rebalances.Inc()
			}
			m.assigned.Set(float64(m.Health.assign(ps, false)))
		}),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, _ map[string][]int32) {
			m.rebalances.Inc()
			m.Health.lost()
			m.assigned.Set(0)
		}),
	}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// consumer.Hook implementations.

// OnEventProcessed implements consumer.HookEventProcessed.
func (m *Metrics) OnEventProcessed(ev *processors.Event, _ int, took time.Duration) {
	m.eventsProcessed.get(ev.Type, func() []string { return []string{ev.Type} }).Inc()
	m.processing.Observe(took)
}

// OnProcessorDone implements consumer.HookProcessorDone.
func (m *Metrics) OnProcessorDone(name string, took time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	key := name
	if err != nil {
		key = "\x00" + name // error path only: the concatenation is rare
	}
	m.processor.get(key, func() []string { return []string{name, outcome} }).Observe(took)
}

// OnProduced implements consumer.HookProduced.
func (m *Metrics) OnProduced(r *kgo.Record) {
	m.recordsProduced.get(r.Topic, func() []string { return []string{r.Topic} }).Inc()
}

// OnDeadLettered implements consumer.HookDeadLettered.
func (m *Metrics) OnDeadLettered(_ *kgo.Record, err error) {
	reason := "decode"
	var pe *processors.ProcessorError
	if errors.As(err, &pe) {
		reason = pe.Processor
	}
	m.deadLetters.WithLabelValues(reason).Inc()
}

// OnRetried implements consumer.HookRetried.
func (m *Metrics) OnRetried(*kgo.Record, error) { m.retries.Inc() }

// OnTxnCommitted implements consumer.HookTxnCommitted.
func (m *Metrics) OnTxnCommitted(took time.Duration, c consumer.Counts) {
	now := time.Now()
	m.txnCommits.Inc()
	m.txnDuration.WithLabelValues("committed").Observe(took.Seconds())
	m.committedEvents.Add(float64(c.EventsIn))
	m.committedCommands.Add(float64(c.CommandsOut))
	m.committedDead.Add(float64(c.DeadLettered))
	m.rewound.Add(float64(c.Rewound))
	m.dropped.Add(float64(c.Dropped))
	m.timersTriggered.Add(float64(c.TimersTriggered))
	for mk, n := range c.Marks {
		m.processEvents.WithLabelValues(mk.Process, mk.Outcome).Add(float64(n))
	}
	for _, t := range c.EventTimes {
		if !t.IsZero() {
			m.endToEnd.Observe(max(now.Sub(t).Seconds(), 0))
		}
	}
	m.lastCommit.Set(float64(now.UnixMilli()) / 1000)
	m.Health.ended(nil)
}

// OnTxnAborted implements consumer.HookTxnAborted.
func (m *Metrics) OnTxnAborted(took time.Duration, err error) {
	cause := "aborted"
	if err != nil {
		cause = "error"
	}
	m.txnAborts.WithLabelValues(cause).Inc()
	m.txnDuration.WithLabelValues("aborted").Observe(took.Seconds())
	m.Health.ended(err)
}

// OnSessionRestarted implements consumer.HookSessionRestarted.
func (m *Metrics) OnSessionRestarted(err error) {
	m.sessionRestarts.Inc()
	m.Health.restarted(err)
	m.assigned.Set(0)
}

// PollLag sets consumer_lag for every partition of topics every interval
// until ctx ends, through adm.
func (m *Metrics) PollLag(ctx context.Context, adm *kadm.Client, group string, topics []string, every time.Duration) {
	poll := func() {
		ctx, cancel := context.WithTimeout(ctx, every)
		defer cancel()
		ends, err := adm.ListEndOffsets(ctx, topics...)
		if err != nil {
			return
		}
		committed, err := adm.FetchOffsets(ctx, group)
		if err != nil {
			return
		}
		ends.Each(func(e kadm.ListedOffset) {
			if e.Err != nil {
				return
			}
			lag := e.Offset
			if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.Err == nil && c.At >= 0 {
				lag = e.Offset - c.At
			}
			m.lag.WithLabelValues(e.Topic, strconv.Itoa(int(e.Partition))).Set(float64(max(lag, 0)))
		})
	}
	every = max(every, time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		poll()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// PollRegistry runs check every interval until ctx ends; its result is
// registry_up and part of readiness.
func (m *Metrics) PollRegistry(ctx context.Context, check func(context.Context) error, every time.Duration) {
	every = max(every, time.Second)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		cctx, cancel := context.WithTimeout(ctx, every)
		err := check(cctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		m.registryUp.Set(b2f(err == nil))
		m.Health.registry(err)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Health is a replica's readiness: group joined, producer not fenced, last
// transaction end succeeded, registry reachable.
type Health struct {
	mu sync.Mutex
	st healthState
}

type healthState struct {
	// loopLive and loopReady are the EOS loop's own probes (LoopProbes).
	loopLive, loopReady func(time.Time) (bool, string)
	joined              bool
	fenced              bool
	lastEndErr          error
	registryErr         error
	assigned            map[string]map[int32]struct{}
}

func newHealth() *Health {
	return &Health{st: healthState{registryErr: errors.New("not checked yet"), assigned: map[string]map[int32]struct{}{}}}
}

func (h *Health) state() healthState {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.st
}

// Ready reports readiness and, when not ready, why.
func (h *Health) Ready() (bool, []string) {
	s := h.state()
	var why []string
	if !s.joined {
		why = append(why, "consumer group not joined")
	}
	if s.fenced {
		why = append(why, "transactional producer fenced")
	}
	if s.lastEndErr != nil {
		why = append(why, "last transaction end failed: "+s.lastEndErr.Error())
	}
	if s.registryErr != nil {
		why = append(why, "schema registry unreachable: "+s.registryErr.Error())
	}
	if s.loopReady != nil {
		if ok, y := s.loopReady(time.Now()); !ok {
			why = append(why, y)
		}
	}
	return len(why) == 0, why
}

// Live reports whether the EOS loop still comes round (see LoopProbes);
// without probes it is always live.
func (h *Health) Live() (bool, string) {
	s := h.state()
	if s.loopLive == nil {
		return true, ""
	}
	return s.loopLive(time.Now())
}

// LoopProbes connects the EOS loop's liveness and progress checks
// (consumer.Pipeline.Live and Ready) to /livez and /readyz.
func (h *Health) LoopProbes(live, ready func(time.Time) (bool, string)) {
	h.mu.Lock()
	h.st.loopLive, h.st.loopReady = live, ready
	h.mu.Unlock()
}

func (h *Health) assign(ps map[string][]int32, add bool) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if add {
		h.st.joined = true
	}
	for t, parts := range ps {
		set := h.st.assigned[t]
		if set == nil {
			set = map[int32]struct{}{}
			h.st.assigned[t] = set
		}
		for _, p := range parts {
			if add {
				set[p] = struct{}{}
			} else {
				delete(set, p)
			}
		}
	}
	n := 0
	for _, set := range h.st.assigned {
		n += len(set)
	}
	return n
}

func (h *Health) lost() {
	h.mu.Lock()
	h.st.joined = false
	h.st.assigned = map[string]map[int32]struct{}{}
	h.mu.Unlock()
}

func (h *Health) ended(err error) {
	h.mu.Lock()
	h.st.lastEndErr = err
	if err == nil {
		h.st.fenced = false
	} else if isFenced(err) {
		h.st.fenced = true
	}
	h.mu.Unlock()
}

func (h *Health) restarted(err error) {
	h.mu.Lock()
	h.st.joined = false
	h.st.assigned = map[string]map[int32]struct{}{}
	if isFenced(err) {
		h.st.fenced = true
	}
	h.mu.Unlock()
}

func (h *Health) registry(err error) {
	h.mu.Lock()
	h.st.registryErr = err
	h.mu.Unlock()
}

func isFenced(err error) bool {
	return errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.TransactionalIDAuthorizationFailed)
}
