package foreign_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/internal/devenv"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/schemas"
	"github.com/ordo-dev/ordo/test/foreign"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// perLang is how many OrderPlaced events each foreign producer writes.
const perLang = 300

const orderPlaced = "com.acme.checkout.OrderPlaced"

// requireLangs returns the foreign languages to test. A missing client skips
// the test with the reason, unless REQUIRE_FOREIGN=1, which makes it a
// failure.
func requireLangs(t *testing.T) []string {
	t.Helper()
	var langs, missing []string
	for _, l := range foreign.Languages {
		if ok, why := foreign.Ready(l); ok {
			langs = append(langs, l)
		} else {
			missing = append(missing, why)
		}
	}
	if len(missing) > 0 {
		msg := strings.Join(missing, "; ")
		if os.Getenv("REQUIRE_FOREIGN") == "1" {
			t.Fatalf("REQUIRE_FOREIGN=1 but %s", msg)
		}
		fmt.Fprintf(os.Stderr, "test/foreign: SKIP: %s\n", msg)
		t.Skip(msg)
	}
	return langs
}

// world is one test run: broker, registry, unique topics, ordo's config.
type world struct {
	t        *testing.T
	brokers  []string
	registry string
	cfg      *config.Config
	serde    *schemas.Serde
	readers  map[string]*schemas.Schema
	topic    map[string]string // config topic name -> this run's unique name
}

func newWorld(t *testing.T) *world {
	t.Helper()
	brokers := testkit.Brokers(t)
	reg, err := devenv.StartRegistry("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	t.Logf("broker %s (%s), registry %s", strings.Join(brokers, ","), testkit.Kind(t), reg.URL())

	// ordo's own demo config, with every topic renamed to a unique name so
	// the test can share a broker with others.
	root := filepath.Join(foreign.Dir(), "..", "..")
	src := filepath.Join(root, "examples", "orders")
	text, err := os.ReadFile(filepath.Join(src, "router.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	orig, err := config.Parse(filepath.Join(src, "router.yaml"), text, nil)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, 0, len(orig.Topics))
	for name := range orig.Topics {
		names = append(names, name)
	}
	// longest first, so no name is replaced inside a longer one
	slices.SortFunc(names, func(a, b string) int { return len(b) - len(a) })
	topic := map[string]string{}
	yml := string(text)
	for _, name := range names {
		topic[name] = testkit.UniqueName(t, name)
		yml = strings.ReplaceAll(yml, name, topic[name])
	}
	dir := t.TempDir()
	tiers, err := os.ReadFile(filepath.Join(src, "customer-tiers.csv"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "customer-tiers.csv"), tiers, 0o644); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "ordo.yaml")
	if err := os.WriteFile(file, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	group := testkit.UniqueName(t, "group")
	cfg, err := config.Load(file, []string{
		"ORDO_KAFKA_BROKERS=" + strings.Join(brokers, ","),
		"ORDO_REGISTRY_URL=" + reg.URL(),
		"ORDO_KAFKA_GROUP=" + group,
		"ORDO_KAFKA_TRANSACTIONAL_ID_PREFIX=" + group,
		"ORDO_REPLICA_ID=foreign-1",
		"ORDO_PROCESSING_COMMIT_INTERVAL=50ms",
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range orig.Topics {
		parts := tc.Partitions
		if parts <= 0 || parts > 3 {
			parts = 3
		}
		testkit.CreateTopics(t, brokers, int32(parts), topic[name])
	}

	readers, err := schemas.Demo()
	if err != nil {
		t.Fatal(err)
	}
	cl, err := sr.NewClient(sr.URLs(reg.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return &world{
		t: t, brokers: brokers, registry: reg.URL(), cfg: cfg, readers: readers, topic: topic,
		serde: schemas.NewSerde(schemas.NewRegistry(cl), readers),
	}
}

// pipeline builds ordo's replica from w.cfg the way `ordo run` does.
func (w *world) pipeline() *consumer.Pipeline {
	t := w.t
	log := slog.New(slog.DiscardHandler)
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	chain, err := processors.Builtins().Build(w.cfg.Specs(), processors.Deps{
		BaseDir:   w.cfg.BaseDir(),
		Logger:    log,
		KnownType: func(typ string) bool { _, ok := w.readers[typ]; return ok },
	})
	if err != nil {
		t.Fatal(err)
	}
	c := w.cfg
	p, err := consumer.New(w.serde, chain, producer.NewOutput(w.serde, c.DeadLetter, c.Kafka.Group),
		consumer.Brokers(c.Kafka.Brokers...),
		consumer.Group(c.Kafka.Group),
		consumer.Topics(c.Inputs...),
		consumer.TransactionalID(c.TransactionalID()),
		consumer.CommitInterval(c.Processing.CommitInterval.D()),
		consumer.BatchSize(c.Processing.BatchSize),
		consumer.Workers(c.Processing.Workers),
		consumer.SessionTimeout(c.Kafka.SessionTimeout.D()),
		consumer.TransactionTimeout(c.Kafka.TransactionTimeout.D()),
		consumer.ShutdownTimeout(c.Processing.ShutdownTimeout.D()),
		consumer.TransientRetries(c.Processing.TransientRetries),
		consumer.WithLogger(log),
	)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// waitCommitted waits until ordo's group has committed the end of topic.
func (w *world) waitCommitted(topic string, timeout time.Duration) {
	w.t.Helper()
	adm := testkit.NewAdmin(w.t, w.brokers)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, err1 := adm.ListEndOffsets(ctx, topic)
		committed, err2 := adm.FetchOffsets(ctx, w.cfg.Kafka.Group)
		cancel()
		if errors.Join(err1, err2) == nil {
			done := true
			ends.Each(func(o kadm.ListedOffset) {
				c, ok := committed.Lookup(o.Topic, o.Partition)
				if o.Offset > 0 && (!ok || c.At < o.Offset) {
					done = false
				}
			})
			if done {
				return
			}
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("ordo's group %s did not commit all of %s within %v", w.cfg.Kafka.Group, topic, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// tiers is examples/orders/customer-tiers.csv: customer id -> tier.
func tiers(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(filepath.Join(foreign.Dir(), "..", "..", "examples", "orders", "customer-tiers.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows[1:] {
		out[r[0]] = r[1]
	}
	return out
}

func header(r *kgo.Record, k string) string {
	for _, h := range r.Headers {
		if h.Key == k {
			return string(h.Value)
		}
	}
	return ""
}

// sent is one event a foreign producer wrote.
type sent struct {
	lang   string
	prefix string
	seq    int
}

// TestForeignProducers: Python (current schema) and Node (newer schema)
// producers write OrderPlaced; ordo decodes every event to the exact natural
// values, routes each to one ReserveInventory and one NotifyCustomer command
// exactly once, and a Python consumer reads those commands back.
func TestForeignProducers(t *testing.T) {
	langs := requireLangs(t)
	w := newWorld(t)
	in := w.topic["checkout.orders.v1"]
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// ordo's schema is registered first, as in production: the foreign
	// producers find it (python) or add a newer version next to it (node).
	v1 := w.readers[orderPlaced]
	v1ID, err := schemas.NewRegistry(mustSR(t, w.registry)).Register(ctx, in+"-value", v1.Text)
	if err != nil {
		t.Fatal(err)
	}

	// 1. the foreign producers, concurrently
	stamp := time.Now().UnixNano() % 1e6
	prefixes := map[string]string{}
	var wg sync.WaitGroup
	errs := make([]error, len(langs))
	t0 := time.Now()
	for i, l := range langs {
		prefixes[l] = fmt.Sprintf("%s%d", l[:2], stamp)
		wg.Go(func() { errs[i] = foreign.Produce(ctx, l, w.brokers, w.registry, in, perLang, prefixes[l]) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	t.Logf("foreign producers %v wrote %d events each in %v", langs, perLang, time.Since(t0).Round(time.Millisecond))

	// 2. every foreign event decodes in ordo to exactly the expected values
	inRecs := testkit.ReadCommitted(t, w.brokers, in, time.Minute)
	if len(inRecs) != perLang*len(langs) {
		t.Fatalf("input topic holds %d records, want %d", len(inRecs), perLang*len(langs))
	}
	byID := map[string]sent{}
	for _, l := range langs {
		for seq := range perLang {
			byID[foreign.EventID(prefixes[l], seq)] = sent{l, prefixes[l], seq}
		}
	}
	writerIDs := map[string]map[int]bool{}
	for _, r := range inRecs {
		d, err := w.serde.Decode(ctx, r.Topic, r.Value)
		if err != nil {
			t.Fatalf("%s/%d@%d: ordo cannot decode a foreign event: %v", r.Topic, r.Partition, r.Offset, err)
		}
		env, _ := d.Value["envelope"].(map[string]any)
		id, _ := env["id"].(string)
		s, ok := byID[id]
		if !ok {
			t.Fatalf("%s/%d@%d: unexpected envelope.id %q", r.Topic, r.Partition, r.Offset, id)
		}
		if d.Type != orderPlaced {
			t.Errorf("%s: writer type %s", id, d.Type)
		}
		if got, want := string(r.Key), foreign.OrderID(s.prefix, s.seq); got != want {
			t.Errorf("%s: key %q, want %q", id, got, want)
		}
		if got, want := foreign.Canonical(d.Value), foreign.Canonical(foreign.Expected(s.prefix, s.seq, s.lang)); got != want {
			t.Errorf("%s (%s, writer schema id %d) decodes to\n  %s\nwant\n  %s", id, s.lang, d.SchemaID, got, want)
		}
		if writerIDs[s.lang] == nil {
			writerIDs[s.lang] = map[int]bool{}
		}
		writerIDs[s.lang][d.SchemaID] = true
	}
	if t.Failed() {
		t.FailNow()
	}
	// python wrote with ordo's schema, node with a newer version that ordo
	// resolved to its reader (the decoded values above have no channel).
	if ids := writerIDs["python"]; ids != nil && (len(ids) != 1 || !ids[v1ID]) {
		t.Errorf("python's writer schema ids %v, want only ordo's %d", ids, v1ID)
	}
	if ids := writerIDs["node"]; ids != nil {
		if len(ids) != 1 || ids[v1ID] {
			t.Errorf("node's writer schema ids %v, want one id other than ordo's %d", ids, v1ID)
		}
		for id := range ids {
			sch, err := schemas.NewRegistry(mustSR(t, w.registry)).SchemaByID(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(sch.Text, `"channel"`) {
				t.Errorf("node's writer schema %d has no channel field: %s", id, sch.Text)
			}
		}
	}

	// 3. ordo's pipeline (the demo config) routes each event exactly once
	t0 = time.Now()
	runCtx, stop := context.WithCancel(ctx)
	p := w.pipeline()
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	w.waitCommitted(in, 2*time.Minute)
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("pipeline: %v", err)
	}
	t.Logf("ordo processed %d foreign events in %v", len(inRecs), time.Since(t0).Round(time.Millisecond))

	tier := tiers(t)
	reserve := w.topic["commands.reserve-inventory.v1"]
	notify := w.topic["commands.notify-customer.v1"]
	for _, out := range []string{reserve, notify} {
		recs := testkit.ReadCommitted(t, w.brokers, out, time.Minute)
		seen := map[string]int{}
		for _, r := range recs {
			cause := header(r, "ordo-causation-id")
			seen[cause]++
			s, ok := byID[cause]
			if !ok {
				t.Errorf("%s: command caused by unknown event %q", out, cause)
				continue
			}
			want := foreign.Expected(s.prefix, s.seq, s.lang)
			d, err := w.serde.Decode(ctx, r.Topic, r.Value)
			if err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if string(r.Key) != want["order_id"] || d.Value["order_id"] != want["order_id"] {
				t.Errorf("%s: command for %s has key %q order_id %v, want %v", out, cause, r.Key, d.Value["order_id"], want["order_id"])
			}
			env := d.Value["envelope"].(map[string]any)
			if env["causation_id"] != cause || env["correlation_id"] != want["order_id"] {
				t.Errorf("%s: command for %s has envelope %v", out, cause, env)
			}
			switch out {
			case reserve:
				var items []any
				for _, it := range want["items"].([]any) {
					m := it.(map[string]any)
					items = append(items, map[string]any{"sku": m["sku"], "qty": m["qty"]})
				}
				prio := "standard"
				if tier[want["customer_id"].(string)] == "gold" {
					prio = "express"
				}
				got := foreign.Canonical(map[string]any{"items": d.Value["items"], "priority": d.Value["priority"]})
				if exp := foreign.Canonical(map[string]any{"items": items, "priority": prio}); got != exp {
					t.Errorf("%s: ReserveInventory for %s is %s, want %s", out, cause, got, exp)
				}
			case notify:
				if d.Value["template"] != "order_received" || d.Value["detail"] != want["note"] {
					t.Errorf("%s: NotifyCustomer for %s: template %v detail %v, want order_received / %v",
						out, cause, d.Value["template"], d.Value["detail"], want["note"])
				}
			}
		}
		for id := range byID {
			if seen[id] != 1 {
				t.Errorf("%s: event %s produced %d commands, want exactly 1", out, id, seen[id])
			}
		}
		if len(recs) != len(byID) {
			t.Errorf("%s: %d commands for %d events", out, len(recs), len(byID))
		}
	}
	if dl := testkit.ReadCommitted(t, w.brokers, w.topic["ordo.dead-letter.v1"], 30*time.Second); len(dl) > 0 {
		t.Errorf("%d foreign events were dead-lettered; first: %s %s", len(dl), header(dl[0], "ordo-dlq-error-class"), header(dl[0], "ordo-dlq-error"))
	}
	if t.Failed() {
		t.FailNow()
	}

	// 4. the reverse direction: a foreign consumer reads ordo's commands
	if slices.Contains(langs, "python") {
		readBack(t, w, reserve, byID)
	}
}

// readBack runs python/consume.py (confluent-kafka AvroDeserializer,
// read_committed) on ordo's ReserveInventory topic.
func readBack(t *testing.T, w *world, topic string, byID map[string]sent) {
	t.Helper()
	t0 := time.Now()
	py := filepath.Join(foreign.CacheDir(), "venv", "bin", "python")
	cmd := exec.Command(py, filepath.Join(foreign.Dir(), "python", "consume.py"),
		"--brokers", strings.Join(w.brokers, ","), "--registry", w.registry,
		"--topic", topic, "--count", fmt.Sprint(len(byID)), "--timeout", "90")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("consume.py: %v\n%s", err, errb.String())
	}
	type rec struct {
		Key     string            `json:"key"`
		Headers map[string]string `json:"headers"`
		Value   struct {
			Envelope struct {
				ID, Type, Source string
				Time             int64
				CorrelationID    string  `json:"correlation_id"`
				CausationID      *string `json:"causation_id"`
			} `json:"envelope"`
			OrderID string `json:"order_id"`
			Items   []struct {
				SKU string `json:"sku"`
				Qty int32  `json:"qty"`
			} `json:"items"`
			Priority string `json:"priority"`
		} `json:"value"`
	}
	seen := map[string]int{}
	sc := bufio.NewScanner(&out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r rec
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("consume.py line %q: %v", sc.Text(), err)
		}
		v := r.Value
		if v.Envelope.CausationID == nil {
			t.Fatalf("consume.py: command without causation id: %s", sc.Text())
		}
		s, ok := byID[*v.Envelope.CausationID]
		if !ok {
			t.Fatalf("consume.py: command for unknown event: %s", sc.Text())
		}
		seen[*v.Envelope.CausationID]++
		want := foreign.Expected(s.prefix, s.seq, s.lang)
		wantItems := want["items"].([]any)
		ok = v.Envelope.Type == "com.acme.ordo.commands.ReserveInventory" && v.OrderID == want["order_id"] &&
			r.Key == v.OrderID && v.Envelope.CorrelationID == v.OrderID && v.Envelope.ID == r.Headers["ordo-id"] &&
			v.Envelope.Time > 0 && len(v.Items) == len(wantItems)
		for i := 0; ok && i < len(v.Items); i++ {
			m := wantItems[i].(map[string]any)
			ok = v.Items[i].SKU == m["sku"] && v.Items[i].Qty == m["qty"]
		}
		if !ok {
			t.Errorf("consume.py read %s, want order %v items %v", sc.Text(), want["order_id"], wantItems)
		}
	}
	for id := range byID {
		if seen[id] != 1 {
			t.Errorf("consume.py: event %s has %d ReserveInventory commands, want 1", id, seen[id])
		}
	}
	t.Logf("python AvroDeserializer read %d of ordo's commands in %v", len(byID), time.Since(t0).Round(time.Millisecond))
}

func mustSR(t *testing.T, url string) *sr.Client {
	t.Helper()
	cl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	return cl
}
