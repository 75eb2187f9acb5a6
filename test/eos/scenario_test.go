package eos

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/testkit"
)

// The topics of examples/orders/ordo.yaml, renamed per scenario.
const (
	origOrders    = "checkout.orders.v1"
	origPayments  = "payments.v1"
	origWarehouse = "warehouse.v1"
	origReserve   = "commands.reserve-inventory.v1"
	origCapture   = "commands.capture-payment.v1"
	origShip      = "commands.ship-order.v1"
	origCancel    = "commands.cancel-order.v1"
	origNotify    = "commands.notify-customer.v1"
	origDLQ       = "ordo.dead-letter.v1"
)

// Event and command types of the wire contract.
const (
	tOrderPlaced       = "com.acme.checkout.OrderPlaced"
	tPaymentAuthorized = "com.acme.payments.PaymentAuthorized"
	tPaymentDeclined   = "com.acme.payments.PaymentDeclined"
	tInventoryReserved = "com.acme.warehouse.InventoryReserved"
	tInventoryShortage = "com.acme.warehouse.InventoryShortage"

	cReserve = "com.acme.ordo.commands.ReserveInventory"
	cCapture = "com.acme.ordo.commands.CapturePayment"
	cShip    = "com.acme.ordo.commands.ShipOrder"
	cCancel  = "com.acme.ordo.commands.CancelOrder"
	cNotify  = "com.acme.ordo.commands.NotifyCustomer"
)

// expectedCommands is the demo routes' contract: the command types each
// valid event type must produce, exactly once each.
var expectedCommands = map[string][]string{
	tOrderPlaced:       {cReserve, cNotify},
	tPaymentAuthorized: {cCapture},
	tPaymentDeclined:   {cCancel, cNotify},
	tInventoryReserved: {cShip},
	tInventoryShortage: {cCancel, cNotify},
}

// topics of one scenario.
type topics struct {
	orders, payments, warehouse               string
	reserve, capture, ship, cancel, notify    string
	dlq                                       string
	rename                                    map[string]string // original → scenario name
	commandType                               map[string]string // command topic → its command type
	inputPartitions, outputPartitions, dlqPar int32
}

func (tp *topics) inputs() []string { return []string{tp.orders, tp.payments, tp.warehouse} }
func (tp *topics) commands() []string {
	return []string{tp.reserve, tp.capture, tp.ship, tp.cancel, tp.notify}
}
func (tp *topics) outputs() []string { return append(tp.commands(), tp.dlq) }

func newTopics(base string) *topics {
	tp := &topics{rename: map[string]string{}, inputPartitions: 6, outputPartitions: 6, dlqPar: 3}
	for orig, dst := range map[string]*string{
		origOrders: &tp.orders, origPayments: &tp.payments, origWarehouse: &tp.warehouse,
		origReserve: &tp.reserve, origCapture: &tp.capture, origShip: &tp.ship, origCancel: &tp.cancel,
		origNotify: &tp.notify, origDLQ: &tp.dlq,
	} {
		*dst = base + "." + orig
		tp.rename[orig] = *dst
	}
	tp.commandType = map[string]string{tp.reserve: cReserve, tp.capture: cCapture, tp.ship: cShip, tp.cancel: cCancel, tp.notify: cNotify}
	return tp
}

// scenarioOpts shape a scenario's ordo config.
type scenarioOpts struct {
	brokers            []string                 // default: suite brokers
	registryURL        string                   // default: the shared registry
	sessionTimeout     string                   // kafka.session_timeout (default 6s: the broker minimum, so dead members leave fast)
	transactionTimeout string                   // kafka.transaction_timeout (default 5s)
	shutdownTimeout    string                   // processing.shutdown_timeout (default 5s)
	extraPipeline      string                   // YAML inserted before the routes processor
	env                []string                 // more ORDO_* overrides
	replicaEnv         func(id string) []string // per-replica overrides (e.g. ORDO_STATE_DIR), after env
}

// scenario is one test's topics, config, replicas and logs.
type scenario struct {
	t       *testing.T
	name    string
	started time.Time
	opts    scenarioOpts
	brokers []string
	regURL  string
	tp      *topics
	group   string
	dir     string // config + logs; kept when the test fails
	cfgPath string

	mu       sync.Mutex
	replicas map[string]*replica // by name (several processes may share a replica id)
	all      []*proc
	kills    int
}

type replica struct {
	name, id string
	p        *proc
	starts   int
}

func newScenario(t *testing.T, name string, opts scenarioOpts) *scenario {
	t.Helper()
	requireKafka(t)
	if opts.brokers == nil {
		opts.brokers = suite.brokers
	}
	if opts.registryURL == "" {
		opts.registryURL = suite.registryURL
	}
	if opts.sessionTimeout == "" {
		opts.sessionTimeout = "6s"
	}
	if opts.transactionTimeout == "" {
		opts.transactionTimeout = "5s"
	}
	if opts.shutdownTimeout == "" {
		opts.shutdownTimeout = "5s"
	}
	base := testkit.UniqueName(t, "eos")
	dir := filepath.Join(suite.dir, base)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	sc := &scenario{
		t: t, name: name, started: time.Now(), opts: opts, brokers: opts.brokers, regURL: opts.registryURL,
		tp: newTopics(base), group: base + "-group", dir: dir, replicas: map[string]*replica{},
	}
	t.Cleanup(sc.cleanup)
	sc.writeConfig()
	return sc
}

// writeConfig derives the scenario's config from examples/orders/ordo.yaml
// with the topic names replaced.
func (sc *scenario) writeConfig() {
	t := sc.t
	src := filepath.Join(repoRoot, "examples", "orders")
	b, err := os.ReadFile(filepath.Join(src, "router.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	// longest names first so that no name is a prefix of a replaced one
	for _, orig := range []string{origReserve, origCapture, origShip, origCancel, origNotify, origOrders, origDLQ, origPayments, origWarehouse} {
		if !strings.Contains(text, orig) {
			t.Fatalf("examples/orders/ordo.yaml no longer mentions topic %s: update test/eos", orig)
		}
		text = strings.ReplaceAll(text, orig, sc.tp.rename[orig])
	}
	if sc.opts.extraPipeline != "" {
		const anchor = "  - name: routes\n"
		if !strings.Contains(text, anchor) {
			t.Fatalf("examples/orders/ordo.yaml has no %q processor to insert before", anchor)
		}
		text = strings.Replace(text, anchor, sc.opts.extraPipeline+anchor, 1)
	}
	sc.cfgPath = filepath.Join(sc.dir, "ordo.yaml")
	if err := os.WriteFile(sc.cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	csv, err := os.ReadFile(filepath.Join(src, "customer-tiers.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sc.dir, "customer-tiers.csv"), csv, 0o644); err != nil {
		t.Fatal(err)
	}
	// and its schemas (schemas.files: [schemas/], beside the config)
	if err := os.RemoveAll(filepath.Join(sc.dir, "schemas")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(sc.dir, "schemas"), os.DirFS(filepath.Join(src, "schemas"))); err != nil {
		t.Fatal(err)
	}
}

func (sc *scenario) env(replicaID string) []string {
	env := append(os.Environ(),
		"ORDO_KAFKA_BROKERS="+strings.Join(sc.brokers, ","),
		"ORDO_REGISTRY_URL="+sc.regURL,
		"ORDO_KAFKA_GROUP="+sc.group,
		"ORDO_KAFKA_TRANSACTIONAL_ID_PREFIX="+sc.group,
		"ORDO_REPLICA_ID="+replicaID,
		"ORDO_ADMIN_LISTEN=",
		"ORDO_KAFKA_SESSION_TIMEOUT="+sc.opts.sessionTimeout,
		"ORDO_KAFKA_TRANSACTION_TIMEOUT="+sc.opts.transactionTimeout,
		"ORDO_PROCESSING_SHUTDOWN_TIMEOUT="+sc.opts.shutdownTimeout,
		"OTEL_EXPORTER_OTLP_ENDPOINT=", "OTEL_TRACES_EXPORTER=none",
	)
	if keyParallelSuite() {
		// The whole suite in key-parallel mode (scenario options below may
		// still set their own lanes).
		env = append(env, "ORDO_PROCESSING_KEY_PARALLEL=true")
	}
	env = append(env, sc.opts.env...)
	if sc.opts.replicaEnv != nil {
		env = append(env, sc.opts.replicaEnv(replicaID)...)
	}
	return env
}

// keyParallelSuite reports EOS_KEY_PARALLEL=1: every replica processes the
// keys of a partition concurrently (processing.key_parallel).
func keyParallelSuite() bool { return os.Getenv("EOS_KEY_PARALLEL") == "1" }

func (sc *scenario) createTopics() {
	sc.t.Helper()
	tp := sc.tp
	testkit.CreateTopics(sc.t, sc.brokers, tp.inputPartitions, tp.inputs()...)
	testkit.CreateTopics(sc.t, sc.brokers, tp.outputPartitions, tp.commands()...)
	testkit.CreateTopics(sc.t, sc.brokers, tp.dlqPar, tp.dlq)
}

// start starts (or restarts) the replica called name with replica id id.
func (sc *scenario) start(name, id string) *replica {
	sc.t.Helper()
	sc.mu.Lock()
	r := sc.replicas[name]
	if r == nil {
		r = &replica{name: name, id: id}
		sc.replicas[name] = r
	}
	sc.mu.Unlock()
	if r.p != nil && r.p.alive() {
		sc.t.Fatalf("replica %s is still running", name)
	}
	p, err := startProc(name, filepath.Join(sc.dir, "replica-"+name+".log"), sc.env(id), suite.bin, "run", "--config", sc.cfgPath)
	if err != nil {
		sc.t.Fatal(err)
	}
	sc.mu.Lock()
	r.p = p
	r.starts++
	sc.all = append(sc.all, p)
	sc.mu.Unlock()
	return r
}

// kill SIGKILLs a replica.
func (sc *scenario) kill(r *replica) {
	r.p.kill()
	sc.mu.Lock()
	sc.kills++
	sc.mu.Unlock()
}

// terminate SIGTERMs a replica and asserts that it exits 0 within deadline.
func (sc *scenario) terminate(r *replica, deadline time.Duration) time.Duration {
	sc.t.Helper()
	exited, took := r.p.term(deadline)
	if !exited {
		sc.t.Errorf("replica %s (pid %d) did not exit within %v of SIGTERM (log %s)", r.name, r.p.pid(), deadline, sc.logOf(r))
		r.p.kill()
		return took
	}
	if c := r.p.exitCode(); c != 0 {
		sc.t.Errorf("replica %s exited %d after SIGTERM, want 0 (log %s)", r.name, c, sc.logOf(r))
	}
	return took
}

func (sc *scenario) logOf(r *replica) string { return filepath.Join(sc.dir, "replica-"+r.name+".log") }

// shutdownDeadline is how long a SIGTERMed replica may take: finishing the
// open transaction and leaving the group are each bounded by
// processing.shutdown_timeout.
func (sc *scenario) shutdownDeadline() time.Duration {
	d, err := time.ParseDuration(sc.opts.shutdownTimeout)
	if err != nil {
		sc.t.Fatal(err)
	}
	return 2*d + 3*time.Second
}

// stopAll SIGTERMs every running replica (asserting a clean exit).
func (sc *scenario) stopAll() {
	sc.t.Helper()
	sc.mu.Lock()
	var rs []*replica
	for _, r := range sc.replicas {
		if r.p != nil && r.p.alive() {
			rs = append(rs, r)
		}
	}
	sc.mu.Unlock()
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Go(func() { sc.terminate(r, sc.shutdownDeadline()) })
	}
	wg.Wait()
}

// checkAlive fails the test if a replica that should be running exited on
// its own.
func (sc *scenario) checkAlive(rs ...*replica) {
	sc.t.Helper()
	for _, r := range rs {
		if !r.p.alive() {
			sc.t.Fatalf("replica %s exited on its own (%v); log %s", r.name, r.p.waitErr(), sc.logOf(r))
		}
	}
}

func (sc *scenario) cleanup() {
	sc.mu.Lock()
	ps := append([]*proc(nil), sc.all...)
	sc.mu.Unlock()
	for _, p := range ps {
		if p.alive() {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			p.kill()
		}
	}
	if sc.t.Failed() {
		suite.keepDir = true
		fmt.Printf("eos: %s failed; config and replica logs in %s\n", sc.t.Name(), sc.dir)
	} else if os.Getenv("EOS_KEEP_LOGS") == "" {
		_ = os.RemoveAll(sc.dir)
	}
}

// report prints the scenario's summary line and fails the test on any
// violation.
func (sc *scenario) report(res *result) {
	sc.t.Helper()
	sc.mu.Lock()
	kills := sc.kills
	sc.mu.Unlock()
	mode := "partition-serial"
	if keyParallelSuite() {
		mode = "key-parallel"
	}
	line := fmt.Sprintf("eos: scenario=%s mode=%s events=%d kills=%d lost=%d duplicated=%d aborted_read=%d order_violations=%d dead_letters=%d elapsed=%.1fs",
		sc.name, mode, res.events, kills, res.lost, res.duplicated, res.abortedRead, res.orderViolations, res.deadLetters, time.Since(sc.started).Seconds())
	sc.t.Log(line)
	fmt.Println(line)
	sc.t.Logf("details: %s", res.details())
	for _, p := range res.problems {
		sc.t.Error(p)
	}
	if res.lost != 0 || res.duplicated != 0 || res.abortedRead != 0 || res.orderViolations != 0 || res.deadLetters != res.wantDeadLetters {
		sc.t.Errorf("exactly-once violated: lost=%d duplicated=%d aborted_read=%d order_violations=%d dead_letters=%d (want %d); logs in %s",
			res.lost, res.duplicated, res.abortedRead, res.orderViolations, res.deadLetters, res.wantDeadLetters, sc.dir)
	}
}

// ---------------------------------------------------------------- knobs

// Size knobs (see README.md): EOS_EVENTS is the total number of events over
// the default scenarios (default 220k; 1.2M with EOS_SOAK=1), split by each
// scenario's share; EOS_KILLS is the SIGKILL count of the kill scenario
// (default 24; 120 with EOS_SOAK=1).
func soak() bool { return truthy(os.Getenv("EOS_SOAK")) }

func totalEvents() int {
	if v, err := strconv.Atoi(os.Getenv("EOS_EVENTS")); err == nil && v > 0 {
		return v
	}
	if soak() {
		return 1_200_000
	}
	return 220_000
}

// events returns this scenario's event count for its share of the total.
func events(share float64) int { return max(500, int(math.Round(float64(totalEvents())*share))) }

func killCount() int {
	if v, err := strconv.Atoi(os.Getenv("EOS_KILLS")); err == nil && v > 0 {
		return v
	}
	if soak() {
		return 120
	}
	return 24
}

// ---------------------------------------------------------------- waiting

// waitProcessed waits until the group's committed offsets (stable, i.e. no
// transactional offset commit pending) cover every visible input record the
// generator published: ordo has committed everything.
func (sc *scenario) waitProcessed(g *generator, timeout time.Duration) {
	sc.t.Helper()
	want := g.lastVisible()
	cl, err := kgo.NewClient(kgo.SeedBrokers(sc.brokers...))
	if err != nil {
		sc.t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(timeout)
	var lag string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		offs, err := adm.FetchOffsets(kadm.RequireStable(ctx), sc.group)
		cancel()
		if err == nil {
			var behind []string
			total := int64(0)
			for tp, end := range want {
				at := int64(-1)
				if o, ok := offs.Lookup(tp.topic, tp.partition); ok && o.Err == nil {
					at = o.At
				}
				if at < end {
					total += end - max(at, 0)
					behind = append(behind, fmt.Sprintf("%s/%d at %d < %d", short(tp.topic), tp.partition, at, end))
				}
			}
			if len(behind) == 0 {
				return
			}
			lag = fmt.Sprintf("%d records behind: %s", total, strings.Join(first(behind, 6), ", "))
		} else {
			lag = err.Error()
		}
		if time.Now().After(deadline) {
			sc.t.Fatalf("ordo did not commit all input within %v: %s (logs %s)", timeout, lag, sc.dir)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("... (%d more)", len(s)-n))
	}
	return s
}

func short(topic string) string {
	if i := strings.LastIndex(topic, "."+"v1"); i > 0 {
		if j := strings.Index(topic, "."); j > 0 && j < i {
			return topic[j+1:]
		}
	}
	return topic
}

// sleepRand sleeps a uniformly random duration in [lo, hi).
func sleepRand(rng *rand.Rand, lo, hi time.Duration) {
	time.Sleep(lo + time.Duration(rng.Int64N(int64(hi-lo))))
}
