package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/internal/app"
	"github.com/ordo-dev/ordo/internal/devenv"
	"github.com/ordo-dev/ordo/schemas"
)

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = app.Main(args, app.WithOutput(&out, &errb))
	return code, out.String(), errb.String()
}

// chdirRoot runs the test from the repository root. (The default config is
// embedded and loads from anywhere; TestDevRunsOutsideTheCheckout checks
// that.)
func chdirRoot(t *testing.T) {
	t.Helper()
	t.Chdir(filepath.Join("..", ".."))
}

// TestDevEndToEnd is the acceptance check in-process: ordo dev
// publishes demo traffic (with poison and duplicate deliveries), processes it
// exactly once on the embedded broker and verifies the committed output.
func TestDevEndToEnd(t *testing.T) {
	chdirRoot(t)
	code, out, errOut := runMain(t, "dev", "--config", "examples/orders/router.yaml", "--events", "3000", "--output", "json",
		"--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("ordo dev exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	var sum struct {
		EventsIn     int64 `json:"events_in"`
		CommandsOut  int64 `json:"commands_out"`
		DeadLettered int64 `json:"dead_lettered"`
		TxnCommits   int64 `json:"txn_commits"`
		Verify       struct {
			OK                  bool `json:"ok"`
			Published           int  `json:"published"`
			PoisonPublished     int  `json:"poison_published"`
			DuplicatesPublished int  `json:"duplicates_published"`
			CommandsExpected    int  `json:"commands_expected"`
			CommandsSeen        int  `json:"commands_seen"`
			DeadLettersSeen     int  `json:"dead_letters_seen"`
			DuplicateDeliveries int  `json:"duplicate_deliveries_seen"`
		} `json:"verify"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary is not one JSON object: %v\n%s", err, out)
	}
	v := sum.Verify
	if !v.OK || v.Published != 3000 {
		t.Fatalf("verification failed: %s", out)
	}
	if sum.EventsIn != 3000 || sum.CommandsOut != int64(v.CommandsExpected) || v.CommandsSeen != v.CommandsExpected {
		t.Errorf("counts disagree: %s", out)
	}
	if v.PoisonPublished == 0 || sum.DeadLettered != int64(v.PoisonPublished) || v.DeadLettersSeen != v.PoisonPublished {
		t.Errorf("poison handling: %s", out)
	}
	if v.DuplicatesPublished != 0 {
		t.Errorf("the stateless router cannot drop duplicates, so ordo dev publishes none by default; published %d", v.DuplicatesPublished)
	}
	if sum.TxnCommits == 0 {
		t.Error("no transaction committed")
	}
}

// TestDevRouterDuplicatesFailVerification: without a state: block nothing
// drops a re-delivered event, so its commands come out again with the same
// ids, and the verifier, which refuses any repeated command id across the
// whole output, must fail.
func TestDevRouterDuplicatesFailVerification(t *testing.T) {
	chdirRoot(t)
	code, out, errOut := runMain(t, "dev", "--config", "examples/orders/router.yaml", "--events", "600", "--duplicate-every", "50", "--output", "json",
		"--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	var sum struct {
		Verify struct {
			OK                  bool `json:"ok"`
			DuplicatesPublished int  `json:"duplicates_published"`
			DuplicateCommands   int  `json:"duplicate_commands"`
		} `json:"verify"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("exit %d, summary is not one JSON object: %v\n%s\n%s", code, err, out, errOut)
	}
	if code == 0 || sum.Verify.OK || sum.Verify.DuplicatesPublished == 0 || sum.Verify.DuplicateCommands == 0 {
		t.Fatalf("re-delivered events without dedupe must fail verification on repeated command ids: exit %d %s", code, out)
	}
}

func TestConfigValidateReportsFileLineKeyFix(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("kafka:\n  brokerz: [x:1]\ninputs: [a]\npipeline:\n  - type: orchestrate\n    config: {routes: []}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runMain(t, "config", "validate", bad)
	if code == 0 {
		t.Fatal("a config with an unknown key validated")
	}
	for _, want := range []string{bad + ":2", "kafka.brokerz", `did you mean "brokers"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error %q lacks %q", errOut, want)
		}
	}
}

func TestConfigValidateDefault(t *testing.T) {
	chdirRoot(t)
	code, out, errOut := runMain(t, "config", "validate")
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("default config invalid (exit %d): %s %s", code, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runMain(t, "version")
	if code != 0 || !strings.HasPrefix(out, "ordo ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}

// TestProduceJSONLines publishes JSON lines through `ordo produce` to the
// embedded broker and registry and decodes what landed.
func TestProduceJSONLines(t *testing.T) {
	kafka, reg := embedded(t)
	if err := kafka.CreateTopic("checkout.orders.v1", 1, nil); err != nil {
		t.Fatal(err)
	}
	in := filepath.Join(t.TempDir(), "orders.jsonl")
	lines := `{"order_id":"o-1","customer_id":"cust-7","total":"12.50","currency":"EUR","items":[{"sku":"A","qty":1,"unit_price":"12.50"}],"shipping_country":"DE","note":null}
{"order_id":"o-2","customer_id":"cust-8","total":99.99,"currency":"USD","items":[{"sku":"B","qty":3,"unit_price":33.33}],"shipping_country":"US","note":"gift"}
`
	if err := os.WriteFile(in, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMain(t, "produce", "--topic", "checkout.orders.v1", "--type", "com.acme.checkout.OrderPlaced", "--key-field", "order_id", "--file", in)
	if code != 0 {
		t.Fatalf("produce exited %d: %s %s", code, out, errOut)
	}
	if !strings.Contains(errOut, "published 2 events") {
		t.Errorf("stderr %q", errOut)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(kafka.ListenAddrs()...), kgo.ConsumeTopics("checkout.orders.v1"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	srcl, _ := sr.NewClient(sr.URLs(reg.URL()))
	readers, _ := schemas.Demo()
	serde := schemas.NewSerde(schemas.NewRegistry(srcl), readers, schemas.WithAutoRegister(false))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []schemas.Decoded
	for len(got) < 2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			d, err := serde.Decode(ctx, r.Topic, r.Value)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if string(r.Key) != d.Value["order_id"] {
				t.Errorf("key %q, order %v", r.Key, d.Value["order_id"])
			}
			got = append(got, d)
		})
	}
	if len(got) != 2 {
		t.Fatalf("read %d events", len(got))
	}
	if tot := got[1].Value["total"].(*big.Rat); tot.Cmp(big.NewRat(9999, 100)) != 0 {
		t.Errorf("total %v, want exactly 99.99", tot)
	}
	env := got[0].Value["envelope"].(map[string]any)
	if env["type"] != "com.acme.checkout.OrderPlaced" || env["correlation_id"] != "o-1" || env["id"] == "" {
		t.Errorf("envelope not filled: %v", env)
	}
}

// TestDemoPublishes runs `ordo demo` against the embedded broker and checks
// that every event landed on the three input topics.
func TestDemoPublishes(t *testing.T) {
	kafka, _ := embedded(t)
	topics := []string{"checkout.orders.v1", "payments.v1", "warehouse.v1"}
	for _, topic := range topics {
		if err := kafka.CreateTopic(topic, 2, nil); err != nil {
			t.Fatal(err)
		}
	}
	// The default config is the order saga: --events counts orders, each
	// an OrderPlaced plus its legs (and some duplicates and poison).
	code, out, errOut := runMain(t, "demo", "--events", "300", "--rate", "0")
	m := regexp.MustCompile(`published (\d+) demo records`).FindStringSubmatch(errOut)
	if code != 0 || m == nil {
		t.Fatalf("demo exited %d: %s %s", code, out, errOut)
	}
	want, _ := strconv.ParseInt(m[1], 10, 64)
	if want < 600 { // 300 orders: at least an OrderPlaced and one leg each
		t.Fatalf("published %d records for 300 orders", want)
	}
	total := int64(0)
	for _, topic := range topics {
		for _, p := range kafka.PartitionInfos(topic) {
			total += p.HighWatermark
		}
	}
	if total != want {
		t.Fatalf("%d records on the input topics, want %d", total, want)
	}
}

// embedded starts the embedded broker and registry, points ORDO_* at them
// and runs the test from the repository root.
func embedded(t *testing.T) (*kfake.Cluster, *devenv.Registry) {
	t.Helper()
	kafka, err := devenv.Kafka("127.0.0.1:0", "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kafka.Close)
	reg, err := devenv.StartRegistry("127.0.0.1:0", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	chdirRoot(t)
	t.Setenv("ORDO_KAFKA_BROKERS", kafka.ListenAddrs()[0])
	t.Setenv("ORDO_REGISTRY_URL", reg.URL())
	return kafka, reg
}
