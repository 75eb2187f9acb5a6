// Command ordobench is ordo's end-to-end benchmark. It starts (or uses) a
// real Kafka broker and ordo's schema registry, preloads realistic Avro
// events, runs each contender as its own OS process on the same data with a
// fresh consumer group, measures throughput, CPU per million events and peak
// RSS, measures ordo's end-to-end latency at fixed offered loads, profiles
// ordo, and writes docs/benchmarks.md. Run it through bench/run.sh (`make
// bench`), which builds the binaries and the Kafka Streams peer first.
//
// Environment (all optional):
//
//	BENCH_EVENTS       events to preload (default 300000)
//	BENCH_RUNS         throughput runs per contender (default 3)
//	BENCH_SLOW_RUNS    throughput runs of the slow contenders saga, watermill, kstreams (default BENCH_RUNS; 1 saves ~2 min per run)
//	BENCH_WARMUP       unmeasured rounds (pass-through, then ordo) before the throughput runs: at least this
//	                   many (default 2; 0 skips), more until the broker's CPU per event of the pass-through
//	                   is within 15% of the previous round's (at most 8)
//	BENCH_CONTENDERS   comma list (default passthrough,passthrough-shape,passthrough-burn,ordo,ordo-codec,saga,watermill,kstreams;
//	                   passthrough-shape is (a'), the pass-through producing ordo's output records: shape.go;
//	                   passthrough-burn is (a''), (a') plus BENCH_BURN_NS (default 3600) of busy CPU per event;
//	                   passthrough-lean (an experiment, not in the default list) is (a') without ordo's envelope headers;
//	                   ordo-alt and saga-alt run $BENCH_BIN/ordo-alt with (b)'s or (f)'s config, for A/Bs;
//	                   the list's order is the run order)
//	BENCH_ORDER        abba (default): the run order reversed every other run; fixed: always the list's order
//	BENCH_BROKERS      use this Kafka instead of starting one (test/kafka/kafka.sh)
//	BENCH_LATENCY      0 disables the latency runs (default 1)
//	BENCH_LAT_SECONDS  seconds of paced load per latency level (default 15)
//	BENCH_LAT_RUNS     latency runs per level, interleaved; the report shows medians (default 3)
//	BENCH_LAT_LEVELS   fractions of ordo's max rate (default 0.25,0.5: the levels)
//	BENCH_LAT_MAX      the max rate the levels are fractions of, in events/s (default: ordo's median
//	                   throughput of this invocation; set it to A/B latency at a fixed offered load)
//	BENCH_LAT_CONTENDERS  who runs in the latency step (default ordo,passthrough,passthrough-shape,passthrough-burn)
//	BENCH_LAT_DUMP     1 writes every latency event's times to <work dir>/latency-<contender>-<n>.csv
//	BENCH_PT_FANOUT    1: the pass-through spreads its copies over ordo's command topics (an experiment; default 0)
//	BENCH_CONTENDER_LOG_LEVEL  the ordo contenders' --log-level (default warn; debug logs every poll and transaction)
//	BENCH_MICRO        0 disables the in-memory BenchmarkPipeline step (default 1)
//	BENCH_MICRO_COUNT  its -count (default 3; the report shows medians)
//	BENCH_MICRO_EVENTS its -benchtime in events (default 20000)
//	BENCH_PROFILE      0 disables the ordo CPU profile (default 1); each profiled drain also
//	                   saves a heap profile halfway (<work>/ordo.heap.N.pprof: the live heap
//	                   of the last GC, what each GC cycle marks, and the allocations so far)
//	BENCH_PROFILE_RUNS drains of the backlog profiled and merged (default 3)
//	BENCH_PROFILE_CONTENDER  the contender profiled (default ordo; saga profiles (f))
//	BENCH_TRACE        1: each profiled drain also saves a 1 s execution trace, <work>/ordo.trace.N.out
//	                   (go tool trace -pprof=sync <file> shows where the goroutines wait)
//	BENCH_RESTORE      instances for the state-restore step (internal/state BenchmarkRestore against
//	                   the bench broker; default 1000000, 0 skips it)
//	BENCH_RESTORE_RUNS restores of that changelog (go test -benchtime Nx; default 2)
//	BENCH_OUT          report path (default docs/benchmarks.md; "-" = stdout only)
//	BENCH_BIN          directory with ordo, ordo-codec, passthrough, watermill-peer (default bin/bench)
//	BENCH_WORK         scratch directory (default a new /tmp/ordobench.*)
//	KAFKA_PORT, KAFKA_RUN_DIR, ORDO_CACHE_DIR   passed to test/kafka/kafka.sh
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/devenv"
	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[ordobench %s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func envInt(k string, def int) int {
	if v := os.Getenv(k); v != "" {
		n, err := strconv.Atoi(v)
		if err == nil {
			return n
		}
	}
	return def
}

func envStr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// Output topics.
var (
	commandTopics = []string{
		"commands.reserve-inventory.v1", "commands.capture-payment.v1", "commands.ship-order.v1",
		"commands.cancel-order.v1", "commands.notify-customer.v1",
		// The saga's compensations (examples/orders/ordo.yaml, processes:).
		"commands.release-inventory.v1", "commands.void-payment.v1",
	}
	deadLetterTopic  = "ordo.dead-letter.v1"
	passthroughTopic = "bench.passthrough.v1"
	codecTopic       = "bench.codec.v1"
)

const partitions = 12

// slowContenders take BENCH_SLOW_RUNS runs instead of BENCH_RUNS (each of
// their runs on 300k events takes 20 s to minutes, (a)-(c) take seconds):
// the same input for all, fewer repetitions, the count in the table.
var slowContenders = []string{"saga", "saga-alt", "watermill", "kstreams"}

type bench struct {
	root     string // repo root
	work     string
	bin      string
	brokers  string
	regURL   string
	events   int
	runs     int
	slowRuns int    // runs of the slow contenders (slowContenders)
	command  string // the invocation, for the report
	adm      *kadm.Client
	cl       *kgo.Client
	reg      *schemas.Registry
	writers  map[string]*schemas.Schema
	pub      *publish.Publisher
	sizes    sizeStats
	started  time.Time
	loadAvg  string      // set when rewriting a report from results.json
	admin    string      // host:port of the ordo contenders' admin server (one runs at a time)
	shape    *shapeStats // ordo's output per event, as the shaped pass-through replays it
	cleanups []func()
}

func main() {
	if err := run(); err != nil {
		logf("FAILED: %v", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{
		events:   envInt("BENCH_EVENTS", 300000),
		runs:     envInt("BENCH_RUNS", 3),
		slowRuns: envInt("BENCH_SLOW_RUNS", envInt("BENCH_RUNS", 3)),
		bin:      envStr("BENCH_BIN", "bin/bench"),
		started:  time.Now(),
	}
	defer func() {
		for i := len(b.cleanups) - 1; i >= 0; i-- {
			b.cleanups[i]()
		}
	}()
	var err error
	if b.root, err = os.Getwd(); err != nil {
		return err
	}
	if b.admin, err = freeAddr(); err != nil {
		return fmt.Errorf("a free port for ordo's admin server: %w", err)
	}
	if b.bin, err = filepath.Abs(b.bin); err != nil {
		return err
	}
	b.work = os.Getenv("BENCH_WORK")
	if b.work == "" {
		if b.work, err = os.MkdirTemp("", "ordobench."); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(b.work, 0o755); err != nil {
		return err
	}
	b.command = commandLine()
	if from := os.Getenv("BENCH_REPORT_FROM"); from != "" {
		return b.reportFrom(from)
	}
	b.slowRuns = min(max(b.slowRuns, 1), b.runs)
	logf("work dir %s, %d events, %d run(s) (%d of the slow contenders %s)", b.work, b.events, b.runs, b.slowRuns, strings.Join(slowContenders, ","))
	if err := b.setup(ctx); err != nil {
		return err
	}
	contenders := b.contenders()
	want := strings.Split(envStr("BENCH_CONTENDERS", "passthrough,passthrough-shape,passthrough-burn,ordo,ordo-codec,saga,watermill,kstreams"), ",")
	var active []contender
	for _, k := range want {
		for _, c := range contenders {
			if c.key == strings.TrimSpace(k) {
				active = append(active, c)
			}
		}
	}
	total, err := endOffsets(ctx, b.adm, inputTopics...)
	if err != nil {
		return err
	}
	timeout := time.Duration(max(180, b.events/500)) * time.Second
	// A fresh broker is slow at first: unmeasured pass-through and ordo runs
	// warm it up (ordo's transactions span the 7 command topics; without
	// them ordo's first measured run was 3-4x slower than its others). With
	// the test suite's 512 MiB heap its CPU per event kept falling for about
	// a minute after the preload (G1 marking back to back; bench/run.sh now
	// gives it 1 GiB), so rounds repeat until the pass-through's broker CPU
	// per event is within 15% of the previous round's: at least BENCH_WARMUP
	// rounds (default 2, 0 skips the warm-up), at most 8.
	minRounds := envInt("BENCH_WARMUP", 2)
	prevBroker := 0.0
	for round := 1; minRounds > 0 && round <= 8; round++ {
		broker := 0.0
		for _, c := range contenders {
			if c.key == "passthrough" || c.key == "ordo" && slices.ContainsFunc(active, func(a contender) bool { return a.key == "ordo" }) {
				logf("warm-up %d (not measured): %s ...", round, c.label)
				r := measure(ctx, b.adm, c, 0, total, b.work, timeout, brokerPID())
				logf("  warm-up: %.0f ev/s, broker %.2f CPU-s/M ev %s", r.Throughput, r.BrokerCPU, r.Err)
				if c.key == "passthrough" {
					broker = r.BrokerCPU
				}
			}
		}
		steady := prevBroker > 0 && broker > 0 && math.Abs(broker-prevBroker) <= 0.15*prevBroker
		prevBroker = broker
		if round >= minRounds && steady {
			break
		}
		if round == 8 {
			logf("warm-up: the broker's CPU per event still moved by more than 15%% after 8 rounds")
		}
	}
	var results []result
	// Interleave contenders within a run so machine noise spreads evenly,
	// and reverse their order every other run (a b c, c b a, a b c, ...):
	// a run's speed depends on which contender ran just before it and on
	// the machine's drift over the invocation (an A/A test of one build as
	// ordo and ordo-alt: the one right after the pass-through was 6-9%
	// slower in medians of 9, bench/findings.md), so with a fixed order that
	// bias falls on the same contender every time. BENCH_ORDER=fixed keeps
	// the list order.
	for run := 1; run <= b.runs; run++ {
		for _, c := range runOrder(active, run) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if run > b.slowRuns && slices.Contains(slowContenders, c.key) {
				continue
			}
			// The previous run's leftovers (dirty pages, the broker's own
			// background work) go to nobody's account: sync and wait
			// until the broker is idle, as before a latency run.
			settle(ctx)
			logf("run %d/%d: %s ...", run, b.runs, c.label)
			r := measure(ctx, b.adm, c, run, total, b.work, timeout, brokerPID())
			if r.Err == "" && r.Orders > 0 {
				logf("  %s run %d: %d orders finished (%d completed, %d cancelled), %.0f orders/s", c.key, run, r.Orders, r.Completed, r.Orders-r.Completed, r.OrdersPerSec)
			}
			if r.Err != "" {
				logf("  %s run %d: ERROR %s", c.key, run, r.Err)
			} else {
				logf("  %s run %d: %.0f ev/s, %.2f CPU-s/M ev (broker %.2f), peak RSS %d MiB, window %s, wall %s", c.key, run, r.Throughput, r.CPUPerM, r.BrokerCPU, r.RSS>>20, r.Window.Round(time.Millisecond), r.Wall.Round(time.Millisecond))
			}
			results = append(results, r)
		}
	}
	summ := summarize(results, active)

	ordoMax := 0.0
	for _, s := range summ {
		if s.key == "ordo" {
			ordoMax = s.throughput
		}
	}
	if v := envInt("BENCH_LAT_MAX", 0); v > 0 {
		ordoMax = float64(v)
	}
	var lats []latResult
	if envInt("BENCH_LATENCY", 1) != 0 {
		if ordoMax > 0 {
			lats = b.latency(ctx, ordoMax, contenders)
		}
	}
	var prof *profile
	if envInt("BENCH_PROFILE", 1) != 0 && slices.ContainsFunc(active, func(c contender) bool { return c.key == profileContender() }) {
		// Profile ~60% of the expected drain time (1-10 s) of each of
		// BENCH_PROFILE_RUNS drains, merged.
		secs := envInt("BENCH_PROFILE_SECONDS", 0)
		if secs == 0 && ordoMax > 0 {
			secs = min(10, max(1, int(0.6*float64(total)/ordoMax+0.5)))
		}
		prof, err = b.profileOrdo(ctx, contenders, max(secs, 1), max(1, envInt("BENCH_PROFILE_RUNS", 3)))
		if err != nil {
			logf("profile: %v", err)
		}
	}
	var micro *microResult
	if envInt("BENCH_MICRO", 1) != 0 {
		micro = b.runMicro(ctx)
		if micro.Err != "" {
			logf("micro-benchmarks: %s", micro.Err)
		}
	}
	var restore *restoreResult
	if n := envInt("BENCH_RESTORE", 1000000); n > 0 {
		restore = b.restore(ctx, n, envInt("BENCH_RESTORE_RUNS", 2))
	}
	raw := rawResults{Shape: b.shape, Restore: restore, Date: b.started, LoadAvg: strings.Join(strings.Fields(shell("cat", "/proc/loadavg"))[:3], " "), LatSeconds: envStr("BENCH_LAT_SECONDS", "15"), Events: b.events, Runs: b.runs, Sizes: b.sizes, Results: results, Latency: lats, Profile: prof, MicroResult: micro, SlowRuns: b.slowRuns, Command: b.command}
	for _, c := range active {
		raw.Contenders = append(raw.Contenders, c.key)
	}
	if j, err := json.MarshalIndent(raw, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(b.work, "results.json"), j, 0o644)
		logf("raw results: %s (BENCH_REPORT_FROM=%s rewrites the report from it)", filepath.Join(b.work, "results.json"), filepath.Join(b.work, "results.json"))
	}
	doc := b.report(results, summ, lats, prof, active, micro, restore)
	out := envStr("BENCH_OUT", "docs/benchmarks.md")
	if out == "-" {
		fmt.Print(doc)
		return nil
	}
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		return err
	}
	logf("wrote %s (total %s)", out, time.Since(b.started).Round(time.Second))
	return nil
}

func (b *bench) setup(ctx context.Context) error {
	b.brokers = os.Getenv("BENCH_BROKERS")
	if b.brokers == "" {
		env := append(os.Environ(), "KAFKA_PORT="+envStr("KAFKA_PORT", "9792"), "KAFKA_RUN_DIR="+envStr("KAFKA_RUN_DIR", "/tmp/bench-kafka"))
		start := exec.Command("bash", "test/kafka/kafka.sh", "start")
		start.Env, start.Stderr = env, os.Stderr
		outb, err := start.Output()
		if err != nil {
			return fmt.Errorf("start kafka: %w", err)
		}
		b.cleanups = append(b.cleanups, func() {
			stopK := exec.Command("bash", "test/kafka/kafka.sh", "stop")
			stopK.Env, stopK.Stderr = env, os.Stderr
			_ = stopK.Run()
		})
		b.brokers = strings.TrimPrefix(strings.TrimSpace(string(outb)), "export KAFKA_BROKERS=")
	}
	logf("kafka %s", b.brokers)
	reg, err := devenv.StartRegistry("127.0.0.1:0", "", nil)
	if err != nil {
		return err
	}
	b.cleanups = append(b.cleanups, func() { _ = reg.Close() })
	b.regURL = reg.URL()
	logf("schema registry %s", b.regURL)

	b.cl, err = kgo.NewClient(kgo.SeedBrokers(strings.Split(b.brokers, ",")...), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	b.cleanups = append(b.cleanups, b.cl.Close)
	b.adm = kadm.NewClient(b.cl)
	src, err := sr.NewClient(sr.URLs(b.regURL))
	if err != nil {
		return err
	}
	b.reg = schemas.NewRegistry(src)
	if b.writers, err = writerSchemas(); err != nil {
		return err
	}
	if err := registerWriters(ctx, b.reg, b.writers, ""); err != nil {
		return err
	}
	b.pub = publish.New(b.cl, schemas.NewSerde(b.reg, b.writers, schemas.WithSubjectStrategy(schemas.TopicRecordName)), "bench")

	// A fresh broker per invocation is the norm; with BENCH_BROKERS the
	// input topics are recreated so every invocation sees exactly N events.
	if os.Getenv("BENCH_BROKERS") != "" {
		_, _ = b.adm.DeleteTopics(ctx, inputTopics...)
		time.Sleep(2 * time.Second)
	}
	all := append(append([]string{}, inputTopics...), commandTopics...)
	all = append(all, passthroughTopic, codecTopic)
	if err := b.createTopics(ctx, partitions, all...); err != nil {
		return err
	}
	if err := b.createTopics(ctx, 3, deadLetterTopic); err != nil {
		return err
	}
	if err := b.warmup(ctx); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	if err := b.writeConfigs(); err != nil {
		return err
	}
	st, err := writeShape(ctx, b.root, b.shapeFile(), shapeEvents)
	if err != nil {
		return fmt.Errorf("the shaped pass-through's templates: %w", err)
	}
	b.shape = &st
	logf("shaped pass-through: %d templates, %.2f records/event, %.0f B value and %.1f headers (%.0f B) per record, %d topics", st.Events, st.perEvent(), float64(st.ValueBytes)/float64(st.Records), float64(st.Headers)/float64(st.Records), float64(st.HeaderBytes)/float64(st.Records), st.Topics)
	g := newGen(b.pub, 42)
	b.sizes, err = preload(ctx, b.cl, g, b.events)
	return err
}

func (b *bench) createTopics(ctx context.Context, parts int32, topics ...string) error {
	resp, err := b.adm.CreateTopics(ctx, parts, 1, nil, topics...)
	if err != nil {
		return err
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !strings.Contains(r.Err.Error(), "TOPIC_ALREADY_EXISTS") {
			return fmt.Errorf("create %s: %w", r.Topic, r.Err)
		}
	}
	return nil
}

// writeConfigs writes the ordo configs: ordo.yaml is the default pipeline
// (examples/orders/router.yaml verbatim, with its table and schemas; brokers, registry, group and admin
// come from ORDO_* variables) and ordo-codec.yaml the same file with the
// pipeline replaced by one processor that re-emits each event unchanged.
func (b *bench) writeConfigs() error {
	src, err := os.ReadFile(filepath.Join(b.root, "examples/orders/router.yaml"))
	if err != nil {
		return err
	}
	tiers, err := os.ReadFile(filepath.Join(b.root, "examples/orders/customer-tiers.csv"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.work, "customer-tiers.csv"), tiers, 0o644); err != nil {
		return err
	}
	// The config names its schemas beside it (schemas.files: [schemas/]).
	if err := os.RemoveAll(filepath.Join(b.work, "schemas")); err != nil {
		return err
	}
	if err := os.CopyFS(filepath.Join(b.work, "schemas"), os.DirFS(filepath.Join(b.root, "examples/orders/schemas"))); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(b.work, "ordo.yaml"), src, 0o644); err != nil {
		return err
	}
	s := string(src)
	i, j := strings.Index(s, "\npipeline:\n"), strings.Index(s, "\nadmin:\n")
	if i < 0 || j < i {
		return fmt.Errorf("examples/orders/router.yaml: no pipeline: ... admin: section")
	}
	codec := s[:i] + "\npipeline:\n  - name: codec\n    type: bench_reemit\n    config:\n      topic: " + codecTopic + "\n" + s[j:]
	if err := os.WriteFile(filepath.Join(b.work, "ordo-codec.yaml"), []byte(codec), 0o644); err != nil {
		return err
	}
	// The saga: examples/orders/ordo.yaml verbatim (state: + processes:, the
	// same kafka/processing settings as router.yaml). Its process log and
	// changelog default to <group>.process-log / <group>.changelog, so every
	// run's fresh group gets fresh state topics; ORDO_STATE_DIR gives every
	// run an empty store directory.
	saga, err := os.ReadFile(filepath.Join(b.root, "examples/orders/ordo.yaml"))
	if err != nil {
		return err
	}
	if !strings.Contains(string(saga), "\nstate:") || !strings.Contains(string(saga), "\nprocesses:") {
		return fmt.Errorf("examples/orders/ordo.yaml: no state: and processes: blocks (the saga row needs them)")
	}
	return os.WriteFile(filepath.Join(b.work, "ordo-saga.yaml"), saga, 0o644)
}

func (b *bench) contenders() []contender {
	ordoEnv := func(group string, inputs []string) []string {
		return append(os.Environ(),
			"ORDO_KAFKA_BROKERS="+b.brokers, "ORDO_REGISTRY_URL="+b.regURL,
			"ORDO_KAFKA_GROUP="+group, "ORDO_KAFKA_TRANSACTIONAL_ID_PREFIX="+group, "ORDO_REPLICA_ID=bench",
			"ORDO_ADMIN_LISTEN="+b.admin, "ORDO_ADMIN_PPROF=true",
			"ORDO_INPUTS="+strings.Join(inputs, ","),
			"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_TRACES_EXPORTER=none",
		)
	}
	defaults := config.Defaults().Processing
	peerEnv := func(group string, inputs []string) []string {
		return append(os.Environ(),
			"BENCH_TXN_BATCH="+strconv.Itoa(defaults.BatchSize),
			"BENCH_COMMIT_INTERVAL_MS="+strconv.FormatInt(defaults.CommitInterval.D().Milliseconds(), 10),
			"BENCH_BROKERS="+b.brokers, "BENCH_REGISTRY="+b.regURL, "BENCH_GROUP="+group, "BENCH_TXN_ID="+group,
			"BENCH_INPUTS="+strings.Join(inputs, ","),
			"BENCH_SCHEMA_DIR="+filepath.Join(b.root, "examples/orders/schemas"),
			"BENCH_TIERS="+filepath.Join(b.root, "examples/orders/customer-tiers.csv"),
			"BENCH_STATE_DIR="+filepath.Join(b.work, "kstreams-state"),
		)
	}
	ksDir := filepath.Join(b.root, "bench/peers/kstreams/target")
	return []contender{
		{key: "passthrough", label: "(a) franz-go EOS pass-through (limit)", cmd: func(g string, in []string) *exec.Cmd {
			c := exec.Command(filepath.Join(b.bin, "passthrough"))
			c.Env = append(peerEnv(g, in), "BENCH_OUTPUT="+strings.Join(passthroughOutputs(), ","))
			return c
		}},
		{key: "passthrough-shape", label: "(a') pass-through at ordo's output shape (bound for (b))", cmd: func(g string, in []string) *exec.Cmd {
			c := exec.Command(filepath.Join(b.bin, "passthrough"))
			c.Env = append(peerEnv(g, in), "BENCH_SHAPE="+b.shapeFile())
			return c
		}},
		// An experiment, never in the default list: (a') with ordo's
		// envelope headers cut to the trace context (BENCH_SHAPE_HEADERS=
		// trace), what ordo's output would cost the Kafka side without them
		// (they repeat the envelope in the value, for routing without a
		// decode). Run it beside passthrough-shape.
		{key: "passthrough-lean", label: "(a' lean) pass-through at ordo's output shape without envelope headers (experiment)", cmd: func(g string, in []string) *exec.Cmd {
			c := exec.Command(filepath.Join(b.bin, "passthrough"))
			c.Env = append(peerEnv(g, in), "BENCH_SHAPE="+b.shapeFile(), "BENCH_SHAPE_HEADERS=trace")
			return c
		}},
		// (a''), a counterfactual for the latency tail: (a') plus busy CPU
		// per event on its one loop goroutine (BENCH_BURN_NS, default 3600
		// ns: in one invocation at 23:44 on 2026-12-05 that gave it ordo's
		// max throughput, 114-118k against 115-120k events/s, though at less
		// CPU per event, 8.0-8.3 against 11.6-11.8 µs, since ordo spreads
		// its work over both cores). Same service rate, bare loop: its
		// latency tail is what ordo's CPU cost alone would give.
		{key: "passthrough-burn", label: "(a'') pass-through at ordo's output shape + busy CPU per event", cmd: func(g string, in []string) *exec.Cmd {
			c := exec.Command(filepath.Join(b.bin, "passthrough"))
			c.Env = append(peerEnv(g, in), "BENCH_SHAPE="+b.shapeFile(), "BENCH_BURN_NS="+envStr("BENCH_BURN_NS", "3600"))
			return c
		}},
		{key: "ordo", label: "(b) ordo, full pipeline", cmd: func(g string, in []string) *exec.Cmd {
			c := exec.Command(filepath.Join(b.bin, "ordo"), "run", "--config", filepath.Join(b.work, "ordo.yaml"), "--log-level", envStr("BENCH_CONTENDER_LOG_LEVEL", "warn"))
			c.Env = ordoEnv(g, in)
			return c
		}},
		// A/B of an ordo change: put another build at $BENCH_BIN/ordo-alt and
		// add ordo-alt to BENCH_CONTENDERS; it runs the same config as (b).
		{key: "ordo-alt", label: "(b') ordo variant: " + envStr("BENCH_ALT_LABEL", "$BENCH_BIN/ordo-alt"), cmd: func(g string, in []string) *exec.Cmd {
			c := exec.Command(filepath.Join(b.bin, "ordo-alt"), "run", "--config", filepath.Join(b.work, "ordo.yaml"), "--log-level", envStr("BENCH_CONTENDER_LOG_LEVEL", "warn"))
			c.Env = ordoEnv(g, in)
			return c
		}},
		// The order saga: two loops per replica (forward → process log →
		// stateful stage), so its CPU per upstream event includes both. The
		// run ends when every whole order in the input has reached a
		// terminal outcome (ordo_process_events_total on /metrics).
		{key: "saga", label: "(f) ordo, order saga (state + processes)", orders: wholeOrders(b.events), metrics: "http://" + b.admin + "/metrics",
			prepare: b.stateTopics,
			cmd: func(g string, in []string) *exec.Cmd {
				c := exec.Command(filepath.Join(b.bin, "ordo"), "run", "--config", filepath.Join(b.work, "ordo-saga.yaml"), "--log-level", envStr("BENCH_CONTENDER_LOG_LEVEL", "warn"))
				c.Env = append(ordoEnv(g, in), "ORDO_STATE_DIR="+filepath.Join(b.work, "state", g))
				return c
			}},
		// A/B of a stateful change: the saga run by $BENCH_BIN/ordo-alt.
		{key: "saga-alt", label: "(f') order saga variant: " + envStr("BENCH_ALT_LABEL", "$BENCH_BIN/ordo-alt"), orders: wholeOrders(b.events), metrics: "http://" + b.admin + "/metrics",
			prepare: b.stateTopics,
			cmd: func(g string, in []string) *exec.Cmd {
				c := exec.Command(filepath.Join(b.bin, "ordo-alt"), "run", "--config", filepath.Join(b.work, "ordo-saga.yaml"), "--log-level", envStr("BENCH_CONTENDER_LOG_LEVEL", "warn"))
				c.Env = append(ordoEnv(g, in), "ORDO_STATE_DIR="+filepath.Join(b.work, "state", g))
				return c
			}},
		{key: "ordo-codec", label: "(c) ordo, codec only", cmd: func(g string, in []string) *exec.Cmd {
			c := exec.Command(filepath.Join(b.bin, "ordo-codec"), "run", "--config", filepath.Join(b.work, "ordo-codec.yaml"), "--log-level", envStr("BENCH_CONTENDER_LOG_LEVEL", "warn"))
			c.Env = ordoEnv(g, in)
			return c
		}},
		{key: "watermill", label: "(d) Watermill + watermill-kafka (Sarama), at-least-once", cmd: func(g string, in []string) *exec.Cmd {
			c := exec.Command(filepath.Join(b.bin, "watermill-peer"))
			c.Env = peerEnv(g, in)
			return c
		}},
		{key: "kstreams", label: "(e) Kafka Streams 4.1.1, exactly_once_v2", cmd: func(g string, in []string) *exec.Cmd {
			c := exec.Command("java", "-Xms256m", "-Xmx1g", "-XX:+UseG1GC",
				"-cp", filepath.Join(ksDir, "classes")+":"+filepath.Join(ksDir, "lib")+"/*",
				"dev.ordo.bench.OrdoStreams")
			c.Env = peerEnv(g, in)
			return c
		}},
	}
}

// stateTopics creates the saga run's process log and changelog (the names
// and partition count ordo derives from the saga config and the group) as
// ordo would (state.EnsureTopics), then waits until the broker's metadata
// lists both. ordo creates them itself when missing, but on this loaded
// machine its co-partitioning check, right after creating them, has seen
// "topic does not exist" and ordo exited; the topics' creation is not part
// of what is measured.
func (b *bench) stateTopics(ctx context.Context, group string) error {
	cfg, err := config.Load(filepath.Join(b.work, "ordo-saga.yaml"), []string{"ORDO_KAFKA_GROUP=" + group})
	if err != nil {
		return err
	}
	st := cfg.StateSettings()
	if err := state.EnsureTopics(ctx, b.adm, st.ProcessLog, st.Changelog, st.Partitions, -1); err != nil {
		return err
	}
	for i := 0; ; i++ {
		err := state.CheckCoPartitioned(ctx, b.adm, st.ProcessLog, st.Changelog)
		if err == nil {
			return nil
		}
		if i >= 100 || ctx.Err() != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// warmup makes the broker create __transaction_state and __consumer_offsets
// (50 partitions each) before anything is measured.
func (b *bench) warmup(ctx context.Context) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(b.brokers, ",")...), kgo.TransactionalID("bench-warmup"))
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		return err
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: passthroughTopic, Value: []byte("warm-up")}).FirstErr(); err != nil {
		return err
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		return err
	}
	var os kadm.Offsets
	os.AddOffset(passthroughTopic, 0, 0, -1)
	for i := 0; i < 60; i++ {
		if _, err = b.adm.CommitOffsets(ctx, "bench-warmup", os); err == nil {
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	return err
}

// rawResults is everything a report is made from (results.json in the work
// dir), so the report can be rewritten without rerunning.
type rawResults struct {
	Date         time.Time
	Events, Runs int
	LatSeconds   string
	LoadAvg      string
	Sizes        sizeStats
	Contenders   []string
	Results      []result
	Latency      []latResult
	Profile      *profile
	Micro        string       `json:",omitempty"` // older results.json: the raw Benchmark lines
	MicroResult  *microResult `json:",omitempty"`
	SlowRuns     int          `json:",omitempty"`
	Command      string       `json:",omitempty"`
	Restore      *restoreResult
	Shape        *shapeStats `json:",omitempty"`
}

func (b *bench) reportFrom(file string) error {
	j, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	var raw rawResults
	if err := json.Unmarshal(j, &raw); err != nil {
		return err
	}
	b.events, b.runs, b.sizes, b.started, b.loadAvg, b.shape = raw.Events, raw.Runs, raw.Sizes, raw.Date, raw.LoadAvg, raw.Shape
	if raw.LatSeconds != "" {
		os.Setenv("BENCH_LAT_SECONDS", raw.LatSeconds)
	}
	var active []contender
	for _, k := range raw.Contenders {
		for _, c := range b.contenders() {
			if c.key == k {
				active = append(active, c)
			}
		}
	}
	prof := raw.Profile
	if prof != nil {
		files := prof.Files
		if len(files) == 0 {
			files = []string{prof.File}
		}
		if _, err := os.Stat(files[0]); err == nil {
			if p, err := analyzeProfile(filepath.Join(b.bin, "ordo"), files, prof.Seconds); err == nil {
				prof = p
			}
		}
	}
	micro := raw.MicroResult
	if micro == nil {
		micro = microFromRaw(raw.Micro)
	}
	b.slowRuns = raw.SlowRuns
	if raw.Command != "" {
		b.command = raw.Command
	} else {
		b.command = fmt.Sprintf("BENCH_EVENTS=%d BENCH_RUNS=%d make bench", raw.Events, raw.Runs)
	}
	doc := b.report(raw.Results, summarize(raw.Results, active), raw.Latency, prof, active, micro, raw.Restore)
	out := envStr("BENCH_OUT", "docs/benchmarks.md")
	if out == "-" {
		fmt.Print(doc)
		return nil
	}
	return os.WriteFile(out, []byte(doc), 0o644)
}

// shapeEvents is how many of the benchmark's events the shaped
// pass-through's templates are made of (the mix repeats well within it).
const shapeEvents = 3000

// shapeFile is where the shaped pass-through's templates are.
func (b *bench) shapeFile() string { return filepath.Join(b.work, "ordo-shape.gob") }

// freeAddr returns a loopback address with a port free right now (the
// contenders' admin server binds it later; one contender runs at a time).
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// passthroughOutputs is the pass-through's output topic list: its own
// topic, or, with BENCH_PT_FANOUT=1, ordo's command topics (as many output
// partitions per transaction as ordo writes to).
func passthroughOutputs() []string {
	if os.Getenv("BENCH_PT_FANOUT") == "1" {
		return commandTopics
	}
	return []string{passthroughTopic}
}

// runOrder is the order of the contenders in run (1-based): the list order
// in odd runs and its reverse in even ones (BENCH_ORDER=abba, the default),
// or always the list order (BENCH_ORDER=fixed).
func runOrder(active []contender, run int) []contender {
	if envStr("BENCH_ORDER", "abba") == "fixed" || run%2 == 1 {
		return active
	}
	rev := slices.Clone(active)
	slices.Reverse(rev)
	return rev
}
