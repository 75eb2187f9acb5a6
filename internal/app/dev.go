package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/demo"
	"github.com/ordo-dev/ordo/internal/devenv"
	"github.com/ordo-dev/ordo/internal/telemetry"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

type devFlags struct {
	commonFlags
	dataDir        string
	fresh          bool
	kafkaAddr      string
	registryAddr   string
	demo           bool
	events         int
	rate           float64
	poisonEvery    int
	duplicateEvery int
	duplicateSet   bool // --duplicate-every given explicitly
	output         string
	timeout        time.Duration
	otlpEndpoint   string
	adminAddr      string
}

func newDevCmd(o *options) *cobra.Command {
	var f devFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run ordo on an embedded broker and registry with demo traffic (no infrastructure needed)",
		Long: `ordo dev starts everything on this machine:

  - an in-process Kafka-protocol broker (franz-go kfake) on --kafka-addr,
  - a Confluent-compatible schema registry (franz-go srfake) on --registry-addr,
    which enforces compatibility levels like a production registry
    (BACKWARD by default; see ordo schemas and docs/schemas.md),

both persisted under --data-dir, registers the demo schemas, creates the
topics of --config, runs the pipeline, and (unless --demo=false) publishes
demo traffic from three teams, with poison records and duplicate deliveries.
Outside clients (kcat, kafkajs, confluent-kafka, another ordo) can connect to
both addresses while it runs.

It prints a live progress line, and on Ctrl-C or after --events demo events
a summary, which it verifies against the committed output of the command and
dead-letter topics (exit status 3 if the verification fails).

With processes (a state: block, as in the default config) the demo traffic
is orders for the orders saga: --events orders, each an OrderPlaced plus
payment and warehouse events that ship it, cancel it (declined, out of
stock) or let its payment deadline pass, in random order and sometimes
before the OrderPlaced. ordo dev then waits until the deadlines of the
published orders have passed and verifies the saga: every order ends with
exactly one ShipOrder or CancelOrder (orders still legitimately open are
reported in flight), compensations only for cancelled orders, duplicate
deliveries dropped, no command id twice in any command topic.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f.duplicateSet = cmd.Flags().Changed("duplicate-every")
			return runDev(cmd.Context(), o, &f)
		},
	}
	f.register(cmd)
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data-dir", ".ordo", "where the embedded broker and registry keep their data")
	fl.BoolVar(&f.fresh, "fresh", false, "delete --data-dir first")
	fl.StringVar(&f.kafkaAddr, "kafka-addr", "127.0.0.1:9092", "listen address of the embedded broker")
	fl.StringVar(&f.registryAddr, "registry-addr", "127.0.0.1:8081", "listen address of the embedded schema registry")
	fl.BoolVar(&f.demo, "demo", true, "publish demo traffic")
	fl.IntVar(&f.events, "events", 0, "publish this many demo events (with processes: orders), wait until ordo has committed them all, verify and exit (0 = publish 1000/s until Ctrl-C)")
	fl.Float64Var(&f.rate, "rate", 0, "demo events per second (0 = as fast as possible with --events, 1000/s without)")
	fl.IntVar(&f.poisonEvery, "poison-every", 97, "every Nth demo event is poison (0 = none)")
	fl.IntVar(&f.duplicateEvery, "duplicate-every", 89, "every Nth demo event re-delivers an earlier one (the previous one; with processes one of the last 64), as a retrying producer would (0 = none)")
	fl.StringVar(&f.output, "output", "text", "summary format: text or json")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Minute, "with --events: give up waiting for ordo after this long")
	fl.StringVar(&f.adminAddr, "admin-addr", "127.0.0.1:9464", "admin server (/metrics, /readyz, /livez); \"\" disables it")
	fl.StringVar(&f.otlpEndpoint, "otlp-endpoint", "", "export traces over OTLP to this URL, e.g. http://127.0.0.1:4318 (sets OTEL_EXPORTER_OTLP_ENDPOINT; the demo publishers start each trace)")
	return cmd
}

func runDev(ctx context.Context, o *options, f *devFlags) error {
	if f.output != "text" && f.output != "json" {
		return fmt.Errorf("--output %q: use text or json", f.output)
	}
	logFile, err := openDevLog(f)
	if err != nil {
		return err
	}
	defer logFile.Close()
	// In dev the terminal belongs to the progress line; logs go to a file.
	log, err := newLogger(logFile, f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(f.config, os.Environ(), o.processors)
	if err != nil {
		return err
	}
	cfg.Kafka.ReplicaID = "dev"
	cfg.Admin.Listen = f.adminAddr

	kafka, err := devenv.Kafka(f.kafkaAddr, filepath.Join(f.dataDir, "kafka"))
	if err != nil {
		return err
	}
	defer kafka.Close()
	cfg.Kafka.Brokers = kafka.ListenAddrs() // the real port when --kafka-addr has :0
	reg, err := devenv.StartRegistry(f.registryAddr, filepath.Join(f.dataDir, "registry.json"), log)
	if err != nil {
		return err
	}
	defer reg.Close()
	cfg.Registry.URL = reg.URL()

	errw := o.stderr
	fmt.Fprintf(errw, "ordo dev: config %s · kafka %s · schema registry %s · data %s · logs %s\n", configName(f.config), cfg.Kafka.Brokers[0], reg.URL(), f.dataDir, logFile.Name())

	if cfg.State != nil {
		if cfg.State.Dir == "" {
			cfg.State.Dir = filepath.Join(f.dataDir, "state", cfg.TransactionalID())
		}
		if err := ensureStateTopics(ctx, cfg, nil); err != nil {
			return err
		}
	}
	if err := createTopics(ctx, cfg, log); err != nil {
		return err
	}
	if f.otlpEndpoint != "" {
		// The OTLP exporters read the standard variables themselves.
		if err := os.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f.otlpEndpoint); err != nil {
			return err
		}
	}
	tr, err := telemetry.NewTracing(ctx, os.Getenv, "ordo", Version)
	if err != nil {
		return err
	}
	defer shutdownTracing(ctx, tr, log)
	if tr.Enabled() {
		fmt.Fprintf(errw, "ordo dev: traces → %s (OTLP %s, tracing.parent %s); e.g. Jaeger UI http://127.0.0.1:16686\n", tr.Endpoint, tr.Protocol, cfg.Tracing.Parent)
	}
	metrics := telemetry.NewMetrics()
	ob := observe{tracing: tr, metrics: metrics}
	rs, err := readers(ctx, cfg, log)
	if err != nil {
		return err
	}
	if f.demo {
		if err := demoTypesKnown(rs.byName, "add their .avsc files (examples/orders/schemas) to schemas.files, or run with --demo=false and publish your own events with ordo produce"); err != nil {
			return err
		}
	}
	rt, err := build(cfg, rs, o.processors, log, ob)
	if err == nil {
		defer rt.close()
	}
	if err != nil {
		return err
	}
	if err := registerSchemas(ctx, rt); err != nil {
		return err
	}
	if rt.process != nil {
		if err := ensureStateTopics(ctx, cfg, rt.process); err != nil {
			return err
		}
	}
	stopPolls, err := startPolls(ctx, cfg, rt, metrics)
	if err != nil {
		return err
	}
	defer stopPolls()
	stopAdmin, adminAddr, err := serveAdminAt(ctx, cfg.Admin, log, metrics, cfg.Redactor())
	if err != nil {
		return err
	}
	defer stopAdmin()
	if adminAddr != "" {
		fmt.Fprintf(errw, "ordo dev: metrics → http://%s/metrics · health http://%s/readyz\n", adminAddr, adminAddr)
	}

	kopts, _ := clientOpts(cfg)
	verifyCl, err := kgo.NewClient(append(kopts, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())...)
	if err != nil {
		return err
	}
	defer verifyCl.Close()
	adm := kadm.NewClient(verifyCl)
	outTopics := commandTopics(cfg)
	// With processes the demo is the orders saga, verified per order.
	var saga *sagaCheck
	if cfg.State != nil {
		st := cfg.StateSettings()
		saga = &sagaCheck{SagaCheck: demo.SagaCheck{
			ForwardGroup: cfg.Kafka.Group, ProcessGroup: cfg.Kafka.Group + processGroupSuffix, ProcessLog: st.ProcessLog,
			CommandTopics: outTopics, DeadLetterTopic: cfg.DeadLetter, Deadline: demo.LongestTimer(&cfg.Processes), Grace: demo.DefaultGrace,
		}}
	}
	from, err := demo.Since(ctx, adm, append(outTopics, cfg.DeadLetter)...)
	if err != nil {
		return fmt.Errorf("read output offsets: %w", err)
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	pipeDone := make(chan error, 1)
	go func() { pipeDone <- rt.run(runCtx) }()

	// Demo traffic through the Publisher SDK, as the teams would publish.
	var gen demoTraffic
	genDone := make(chan error, 1)
	if f.demo {
		pubCl, err := kgo.NewClient(append(kopts, kgo.ProducerLinger(5*time.Millisecond))...)
		if err != nil {
			return err
		}
		defer pubCl.Close()
		events, rate := f.events, f.rate
		if events == 0 {
			events = int(^uint(0) >> 1)
			if rate == 0 {
				rate = 1000
			}
		}
		pub := publish.New(pubCl, rt.serde, "demo", publish.WithTracerProvider(ob.tracerProvider()))
		// A new seed per run: the saga's order ids must not meet the
		// finished orders a previous run left in --data-dir.
		seed := uint64(time.Now().UnixNano())
		if saga != nil {
			gen = demo.NewSagaGenerator(pubCl, pub, demo.SagaOptions{
				Orders: f.events, PoisonEvery: f.poisonEvery, DuplicateEvery: f.duplicateEvery, Rate: rate, Seed: seed,
			})
		} else {
			dup := f.duplicateEvery
			if !f.duplicateSet && dup > 0 {
				// Without state: there is no dedupe, so a re-delivered event
				// emits its commands again (same ids), and the verifier,
				// which refuses any repeated command id, would fail.
				dup = 0
				fmt.Fprintln(errw, "ordo dev: no duplicate deliveries: this config has no state: block, so nothing would drop them (docs/processes.md); --duplicate-every N publishes them anyway")
			}
			gen = demo.NewGenerator(pubCl, pub, demo.Options{
				Events: events, PoisonEvery: f.poisonEvery, DuplicateEvery: dup, Rate: rate, Seed: seed,
			})
		}
		go func() { genDone <- gen.Run(runCtx) }()
	}

	start := time.Now()
	prog := newProgress(errw, rt.stats)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	ticks := 0
	var deadline <-chan time.Time
	if f.events > 0 {
		deadline = time.After(f.timeout)
	}
	published := false
	var runErr error
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case err := <-pipeDone:
			runErr = err
			break wait
		case err := <-genDone:
			if err != nil {
				runErr = err
				break wait
			}
			published = true
		case <-deadline:
			runErr = fmt.Errorf("ordo did not commit all %d demo events within --timeout %v", f.events, f.timeout)
			break wait
		case <-tick.C:
			if ticks++; ticks%4 == 0 {
				prog.print()
			}
			if published && f.events > 0 {
				caught, err := caughtUp(ctx, adm, cfg.Kafka.Group, cfg.Inputs)
				if err != nil {
					log.Warn("lag check failed", "err", err)
				}
				if caught && saga != nil {
					caught, err = saga.settled(ctx, verifyCl, adm, gen.Published(), from, func(msg string) {
						if prog.tty {
							fmt.Fprint(errw, "\r\033[K") // over the live line
						}
						fmt.Fprintln(errw, "ordo dev:", msg)
					})
					if err != nil {
						log.Warn("saga check failed", "err", err)
					}
				}
				if caught {
					break wait
				}
			}
		}
	}
	stopRun()
	if err := <-pipeDone; err != nil && runErr == nil {
		runErr = err
	}
	prog.finish()
	elapsed := time.Since(start)
	if runErr != nil {
		return runErr
	}

	sum := devSummary{Snapshot: rt.stats.Snapshot(), ElapsedSeconds: elapsed.Seconds()}
	sum.EventsPerSecond = float64(sum.EventsIn) / elapsed.Seconds()
	if gen != nil {
		vctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if saga != nil {
			c := saga.SagaCheck
			c.From = from
			rep, err := demo.VerifySaga(vctx, verifyCl, adm, gen.Published(), c)
			if err != nil {
				return err
			}
			sum.Saga = rep
		} else {
			rep, err := demo.Verify(vctx, verifyCl, adm, cfg.Kafka.Group, gen.Published(), outTopics, cfg.DeadLetter, from)
			if err != nil {
				return err
			}
			sum.Verify = rep
		}
	}
	if err := sum.write(o.stdout, f.output); err != nil {
		return err
	}
	if sum.Verify != nil && !sum.Verify.OK || sum.Saga != nil && !sum.Saga.OK {
		return exitError(3)
	}
	return nil
}

// demoTraffic is the stateless demo's Generator or the saga's
// SagaGenerator.
type demoTraffic interface {
	Run(ctx context.Context) error
	Published() []demo.Published
}

// sagaCheck decides when ordo dev --events may stop and verify the saga:
// once both stages have caught up, the deadlines of the published orders
// have passed (their timers fire from the running pipeline) and either no
// order is in flight any more or the grace for late timers is over too.
type sagaCheck struct {
	demo.SagaCheck
	lastDue  time.Time // the latest order deadline; zero until computed
	told     bool
	lastPoll time.Time
}

func (s *sagaCheck) settled(ctx context.Context, cl *kgo.Client, adm *kadm.Client, published []demo.Published, from kadm.ListedOffsets, note func(string)) (bool, error) {
	caught, err := caughtUp(ctx, adm, s.ProcessGroup, []string{s.ProcessLog})
	if err != nil || !caught {
		return false, err
	}
	if s.Deadline <= 0 {
		return true, nil // no timer: nothing to wait for
	}
	if s.lastDue.IsZero() {
		for _, p := range published {
			if p.Kind == demo.Valid && p.Type == demo.OrderPlaced && p.Timestamp.Add(s.Deadline).After(s.lastDue) {
				s.lastDue = p.Timestamp.Add(s.Deadline)
			}
		}
	}
	now := time.Now()
	if now.Before(s.lastDue) {
		if !s.told {
			s.told = true
			note(fmt.Sprintf("waiting %s for the payment deadlines (%s) of the last orders", s.lastDue.Sub(now).Round(time.Second), s.Deadline))
		}
		return false, nil
	}
	if now.After(s.lastDue.Add(s.Grace)) {
		return true, nil // late timers are the verifier's finding now
	}
	if now.Sub(s.lastPoll) < time.Second {
		return false, nil
	}
	s.lastPoll = now
	c := s.SagaCheck
	c.From = from
	vctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rep, err := demo.VerifySaga(vctx, cl, adm, published, c)
	if err != nil {
		return false, err
	}
	return rep.InFlight == 0, nil
}

func openDevLog(f *devFlags) (*os.File, error) {
	if f.fresh {
		if err := os.RemoveAll(f.dataDir); err != nil {
			return nil, fmt.Errorf("--fresh: %w", err)
		}
	}
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("--data-dir: %w", err)
	}
	return os.OpenFile(filepath.Join(f.dataDir, "ordo.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
}

// demoEvents are the event types the demo traffic publishes, with their
// topics.
func demoEvents() []struct{ topic, typ string } {
	return []struct{ topic, typ string }{
		{demo.TopicOrders, demo.OrderPlaced},
		{demo.TopicPayments, demo.PaymentAuthorized},
		{demo.TopicPayments, demo.PaymentDeclined},
		{demo.TopicWarehouse, demo.InventoryReserved},
		{demo.TopicWarehouse, demo.InventoryShortage},
	}
}

// demoTypesKnown checks that readers has a schema for every demo event
// type, so demo traffic does not fail event by event.
func demoTypesKnown(readers map[string]*schemas.Schema, fix string) error {
	var missing []string
	for _, e := range demoEvents() {
		if _, ok := readers[e.typ]; !ok && !slices.Contains(missing, e.typ) {
			missing = append(missing, e.typ)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return fmt.Errorf("the demo traffic publishes the example's event types, but the config's schemas (schemas:) have none for %s (fix: %s)",
		strings.Join(missing, ", "), fix)
}

// registerSchemas registers the demo event types' schemas under their
// topics' subjects, as the producing teams would.
func registerSchemas(ctx context.Context, rt *runtime) error {
	for _, t := range demoEvents() {
		s, ok := rt.readers[t.typ]
		if !ok {
			continue // not in the config's schemas: no demo traffic of this type (see demoTypesKnown)
		}
		subject := rt.strategy.Subject(t.topic, t.typ, false)
		if _, err := rt.registry.Register(ctx, subject, s.Text); err != nil {
			var re *sr.ResponseError
			if errors.As(err, &re) && re.StatusCode == http.StatusConflict {
				// The registry enforces compatibility: one subject per
				// record type, or a changed schema that breaks readers.
				return fmt.Errorf("register %s for %s under subject %s: %w (fix: with several event types on a topic use registry.subject_strategy: topic_record_name; for a changed schema see ordo schemas check)", t.typ, t.topic, subject, err)
			}
			return fmt.Errorf("register %s for %s: %w", t.typ, t.topic, err)
		}
	}
	return nil
}

// commandTopics are the orchestrate targets: every configured topic that is
// neither an input, the dead-letter topic nor a state topic.
func commandTopics(cfg *config.Config) []string {
	var out []string
	st := cfg.StateSettings()
	for t := range cfg.Topics {
		if !slices.Contains(cfg.Inputs, t) && t != cfg.DeadLetter && (cfg.State == nil || t != st.ProcessLog && t != st.Changelog) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// caughtUp reports whether the group has committed up to the end of every
// input partition.
func caughtUp(ctx context.Context, adm *kadm.Client, group string, topics []string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return false, err
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false, err
	}
	ok := true
	ends.Each(func(e kadm.ListedOffset) {
		if e.Offset == 0 {
			return
		}
		c, found := committed.Lookup(e.Topic, e.Partition)
		if !found || c.At < e.Offset {
			ok = false
		}
	})
	return ok, nil
}

type devSummary struct {
	consumer.Snapshot
	ElapsedSeconds  float64          `json:"elapsed_seconds"`
	EventsPerSecond float64          `json:"events_per_second"`
	Verify          *demo.Report     `json:"verify,omitempty"`
	Saga            *demo.SagaReport `json:"saga_verify,omitempty"`
}

func (s devSummary) write(w io.Writer, format string) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		return enc.Encode(s)
	}
	fmt.Fprintf(w, "events in %d · commands out %d · dead-lettered %d · txn commits %d · aborts %d · %.0f events/s over %.1fs\n",
		s.EventsIn, s.CommandsOut, s.DeadLettered, s.TxnCommits, s.TxnAborts, s.EventsPerSecond, s.ElapsedSeconds)
	if v := s.Verify; v != nil {
		verdict := "OK"
		if !v.OK {
			verdict = "FAILED"
		}
		if v.NotYetProcessed > 0 {
			fmt.Fprintf(w, "%d published events were not processed before the stop; the next run processes them\n", v.NotYetProcessed)
		}
		fmt.Fprintf(w, "verify %s: published %d (%d valid, %d poison, %d duplicate deliveries) · commands %d/%d · missing %d · duplicated %d · poison in DLQ %d/%d · duplicate deliveries seen %d\n",
			verdict, v.Published, v.ValidPublished, v.PoisonPublished, v.DuplicatesPublished, v.CommandsSeen, v.CommandsExpected,
			v.MissingCommands, v.DuplicateCommands, v.PoisonPublished-v.PoisonMissingInDLQ, v.PoisonPublished, v.DuplicateDeliveriesSeen)
		for _, p := range v.Problems {
			fmt.Fprintln(w, "  problem:", p)
		}
	}
	if v := s.Saga; v != nil {
		if v.NotYetProcessed > 0 {
			fmt.Fprintf(w, "%d published records were not processed before the stop; the next run processes them\n", v.NotYetProcessed)
		}
		fmt.Fprintln(w, v.Summary())
		for _, p := range v.Problems {
			fmt.Fprintln(w, "  problem:", p)
		}
		if n := v.ProblemCount(); n > len(v.Problems) {
			fmt.Fprintf(w, "  ... %d more (--output json lists the counts by kind)\n", n-len(v.Problems))
		}
	}
	return nil
}
