package ordo_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ordo-dev/ordo"
	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/publish"
	"github.com/twmb/franz-go/pkg/kgo"
)

// A config with a mistake fails at New with the file, the line, the key and
// a fix, before anything connects.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "ordo-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ordo.yaml")
	_ = os.WriteFile(path, []byte("kafka:\n  brokers: [127.0.0.1:9092]\n  grup: orders\n"), 0o644)
	_, err := ordo.New(path)
	fmt.Println(err != nil && strings.Contains(err.Error(), "ordo.yaml:3") && strings.Contains(err.Error(), "grup"))
	// Output: true
}

func TestNewLoadsTheExampleConfigs(t *testing.T) {
	for _, name := range []string{"ordo.yaml", "router.yaml"} {
		if _, err := ordo.New(filepath.Join("examples", "orders", name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestNewNamesUnknownProcessorTypes(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("examples", "orders", "router.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(src), "type: validate", "type: fraud_score", 1)
	path := filepath.Join(dir, "ordo.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// What the config refers to relative to itself.
	if err := copyFile(filepath.Join("examples", "orders", "customer-tiers.csv"), filepath.Join(dir, "customer-tiers.csv")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "schemas"), os.DirFS(filepath.Join("examples", "orders", "schemas"))); err != nil {
		t.Fatal(err)
	}
	if _, err := ordo.New(path); err == nil || !strings.Contains(err.Error(), "fraud_score") {
		t.Fatalf("New with an unregistered processor type: %v, want an error naming fraud_score", err)
	}
	reg := processors.Builtins()
	reg.MustRegister("fraud_score", func(processors.Spec, processors.Deps) (processors.Processor, error) {
		return processors.Func(nil), nil
	})
	if _, err := ordo.New(path, ordo.WithProcessors(reg)); err != nil && strings.Contains(err.Error(), "fraud_score") {
		t.Fatalf("New with fraud_score registered still refuses it: %v", err)
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

func TestMainPrintsVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := ordo.Main([]string{"version"}, ordo.WithOutput(&out, &errb)); code != 0 {
		t.Fatalf("ordo version exited %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), ordo.Version()) {
		t.Errorf("ordo version printed %q, want it to contain %q", out.String(), ordo.Version())
	}
	out.Reset()
	if code := ordo.Main([]string{"no-such-command"}, ordo.WithOutput(&out, &errb)); code == 0 {
		t.Errorf("an unknown command exited 0")
	}
}

// commitWatch is an embedder's hook: it implements one Hook* interface.
type commitWatch struct{ events chan int }

func (w commitWatch) OnTxnCommitted(_ time.Duration, c consumer.Counts) {
	if c.EventsIn > 0 {
		select {
		case w.events <- c.EventsIn:
		default:
		}
	}
}

// A hook given to New sees the replica's commits: the wiring from
// WithHooks to the loop, end to end on a broker (kfake in plain go test, the
// real one under test/run.sh).
func TestReplicaRunCallsHooks(t *testing.T) {
	brokers := testkit.Brokers(t)
	reg := testkit.StartDemoRegistry(t)
	group := fmt.Sprintf("ordo-hooks-%d", time.Now().UnixNano())
	t.Setenv("ORDO_KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("ORDO_REGISTRY_URL", reg.URL)
	t.Setenv("ORDO_KAFKA_GROUP", group)
	t.Setenv("ORDO_KAFKA_TRANSACTIONAL_ID_PREFIX", group)
	t.Setenv("ORDO_KAFKA_REPLICA_ID", "r1")
	t.Setenv("ORDO_ADMIN_LISTEN", "127.0.0.1:0")
	if _, err := ordo.New(filepath.Join("examples", "orders", "router.yaml"), ordo.WithHooks(struct{}{})); err == nil {
		t.Fatal("New accepted a hook implementing no Hook* interface")
	}
	w := commitWatch{events: make(chan int, 1)}
	r, err := ordo.New(filepath.Join("examples", "orders", "router.yaml"), ordo.WithHooks(w), ordo.WithCreateTopics(true),
		ordo.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()

	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pub := publish.New(cl, reg.Serde, "test")
	v := map[string]any{
		"order_id": "o-hook", "customer_id": "c-1", "currency": "EUR", "total": big.NewRat(1250, 100), "shipping_country": "DE",
		"items": []any{map[string]any{"sku": "sku-1", "qty": int32(1), "unit_price": big.NewRat(1250, 100)}},
	}
	// Until the replica has joined and created its topics, a publish may
	// fail or land before the group's start; keep publishing until a
	// commit with events is seen.
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case n := <-w.events:
			cancel()
			if err := <-done; err != nil {
				t.Fatalf("Run after cancel: %v", err)
			}
			t.Logf("the hook saw a commit of %d event(s)", n)
			return
		case err := <-done:
			t.Fatalf("Run ended before any commit: %v", err)
		case <-tick.C:
			if _, err := pub.Publish(ctx, "checkout.orders.v1", "com.acme.checkout.OrderPlaced", "o-hook", v); err != nil {
				t.Logf("publish: %v (retrying)", err)
			}
		case <-ctx.Done():
			t.Fatal("no commit with events reached the hook within 2 minutes")
		}
	}
}
