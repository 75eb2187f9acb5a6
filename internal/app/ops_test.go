package app_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// TestOpsHelpShowsExamples: every operator command documents itself with
// a runnable example.
func TestOpsHelpShowsExamples(t *testing.T) {
	for _, c := range [][]string{{"replay"}, {"dlq", "list"}, {"dlq", "show"}, {"dlq", "redrive"}} {
		code, out, errOut := runMain(t, append(c, "--help")...)
		name := strings.Join(c, " ")
		if code != 0 {
			t.Fatalf("%s --help: exit %d %s", name, code, errOut)
		}
		if !strings.Contains(out, "Examples:") || !strings.Contains(out, "ordo "+name+" -c ordo.yaml") {
			t.Errorf("%s --help has no example:\n%s", name, out)
		}
	}
	code, out, _ := runMain(t, "--help")
	if code != 0 || !strings.Contains(out, "replay") || !strings.Contains(out, "dlq") {
		t.Errorf("root help does not list replay and dlq:\n%s", out)
	}
}

// opsWorld is a broker (real Kafka with KAFKA_BROKERS), a registry, unique
// topics, and ORDO_* pointing the default config at them.
type opsWorld struct {
	brokers []string
	input   string
	dlq     string
	group   string
	serde   *schemas.Serde
	sr      *sr.Client
}

func newOpsWorld(t *testing.T) *opsWorld {
	t.Helper()
	brokers := testkit.Brokers(t)
	reg := testkit.StartDemoRegistry(t)
	w := &opsWorld{
		brokers: brokers,
		input:   testkit.UniqueName(t, "in"),
		dlq:     testkit.UniqueName(t, "dlq"),
		group:   testkit.UniqueName(t, "group"),
		serde:   reg.Serde,
		sr:      reg.Client,
	}
	testkit.CreateTopics(t, brokers, 2, w.input, w.dlq)
	chdirRoot(t)
	t.Setenv("ORDO_KAFKA_BROKERS", strings.Join(brokers, ","))
	t.Setenv("ORDO_REGISTRY_URL", reg.URL)
	t.Setenv("ORDO_DEAD_LETTER_TOPIC", w.dlq)
	t.Setenv("ORDO_KAFKA_GROUP", w.group)
	t.Setenv("ORDO_INPUTS", w.input)
	t.Setenv("ORDO_KAFKA_TRANSACTIONAL_ID_PREFIX", w.group)
	return w
}

// deadLetters writes four inputs and their dead letters the way the
// pipeline does (producer.Output): a valid order the "gate" processor
// rejected, a value that is not Avro, one framed with a schema id the
// registry does not know, and an OrderPlaced written with a schema ordo's
// reader schema cannot read (fields without defaults missing).
func (w *opsWorld) deadLetters(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pub := publish.New(cl, w.serde, "test")
	valid, err := pub.Record(ctx, w.input, "com.acme.checkout.OrderPlaced", "ord-1", map[string]any{
		"envelope": map[string]any{"id": "evt-1"}, "order_id": "ord-1", "customer_id": "cust-1", "total": big.NewRat(150, 100), "currency": "EUR",
		"items":            []any{map[string]any{"sku": "A", "qty": int32(1), "unit_price": big.NewRat(150, 100)}},
		"shipping_country": "DE", "note": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	unknown := binary.BigEndian.AppendUint32([]byte{0}, 99999)
	unknown = append(unknown, 2, 'x')
	const foreign = `{"type":"record","name":"OrderPlaced","namespace":"com.acme.checkout","fields":[{"name":"order_id","type":"string"}]}`
	ss, err := w.sr.CreateSchema(ctx, w.input+"-foreign-value", sr.Schema{Schema: foreign})
	if err != nil {
		t.Fatal(err)
	}
	fs, err := schemas.ParseSchema(ss.ID, foreign)
	if err != nil {
		t.Fatal(err)
	}
	incompatible, err := fs.AppendNatural(schemas.AppendHeader(nil, ss.ID), map[string]any{"order_id": "ord-9"})
	if err != nil {
		t.Fatal(err)
	}
	ins := []*kgo.Record{valid,
		{Topic: w.input, Key: []byte("poison"), Value: []byte("not avro")},
		{Topic: w.input, Key: []byte("alien"), Value: unknown},
		{Topic: w.input, Key: []byte("ord-9"), Value: incompatible},
	}
	for _, r := range ins {
		r.Partition = 1
	}
	if err := cl.ProduceSync(ctx, ins...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	out := producer.NewOutput(w.serde, w.dlq, w.group)
	dead := []*kgo.Record{
		out.DeadLetter(ins[0], &processors.ProcessorError{Processor: "gate", Err: errors.New(`total 1.50 is below the minimum "2.00"`)}),
		out.DeadLetter(ins[1], fmt.Errorf("decode: %w", errors.New("avro: malformed frame: unknown magic byte 0x6e (want 0x00)"))),
		out.DeadLetter(ins[2], errors.New("avro: schema id 99999 not found in registry")),
		out.DeadLetter(ins[3], errors.New("avro: cannot resolve writer schema to reader schema")),
	}
	for _, r := range dead {
		r.Partition = 0
	}
	if err := cl.ProduceSync(ctx, dead...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

func TestDLQCommands(t *testing.T) {
	w := newOpsWorld(t)

	// Empty DLQ: a clear message, exit 0.
	code, out, errOut := runMain(t, "dlq", "list")
	if code != 0 || !strings.Contains(errOut, w.dlq+" is empty") {
		t.Fatalf("empty DLQ: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = runMain(t, "dlq", "redrive", "--all")
	if code != 0 || !strings.Contains(out, "nothing to redrive") {
		t.Fatalf("redrive of an empty DLQ: exit %d %s", code, out)
	}
	// Missing DLQ: a clear error.
	code, _, errOut = runMain(t, "dlq", "list", "--dlq-topic", w.dlq+"-nope")
	if code == 0 || !strings.Contains(errOut, "does not exist") || !strings.Contains(errOut, "dead_letter_topic") {
		t.Fatalf("missing DLQ: exit %d %s", code, errOut)
	}

	w.deadLetters(t)
	code, out, errOut = runMain(t, "dlq", "list")
	if code != 0 {
		t.Fatalf("list: exit %d %s", code, errOut)
	}
	t.Logf("dlq list:\n%s", out)
	for _, want := range []string{"4 dead letter(s)", "gate", "decode", w.input, `below the minimum "…"`} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q", want)
		}
	}
	code, out, _ = runMain(t, "dlq", "list", "--output", "json", "--where", "processor=gate")
	var sums []struct {
		Processor string `json:"processor"`
		Count     int    `json:"count"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &sums) != nil || len(sums) != 1 || sums[0].Count != 1 || sums[0].Processor != "gate" {
		t.Fatalf("list --output json --where processor=gate: exit %d %s", code, out)
	}
	code, _, errOut = runMain(t, "dlq", "list", "--where", "colour=red")
	if code == 0 || !strings.Contains(errOut, "unknown key") {
		t.Errorf("bad --where: exit %d %s", code, errOut)
	}

	// show: decoded, not Avro, unknown schema, incompatible schema.
	code, out, errOut = runMain(t, "dlq", "show", "0@0", "0@1", "0@2", "0@3")
	if code != 0 {
		t.Fatalf("show: exit %d %s", code, errOut)
	}
	t.Logf("dlq show:\n%s", out)
	for _, want := range []string{
		"source       " + w.input + "/1@0", `"order_id": "ord-1"`, `"total": "1.5"`, "com.acme.checkout.OrderPlaced (schema id",
		"not decoded: avro: malformed frame", "6e 6f 74 20 61 76 72 6f", "not found in registry",
		"decoded with the writer schema: ordo's reader schema cannot read it", `"order_id": "ord-9"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q", want)
		}
	}
	code, _, errOut = runMain(t, "dlq", "show", "1@9")
	if code == 0 || !strings.Contains(errOut, "no committed dead letter at "+w.dlq+"/1@9") {
		t.Errorf("show of a missing record: exit %d %s", code, errOut)
	}

	// redrive.
	code, _, errOut = runMain(t, "dlq", "redrive")
	if code == 0 || !strings.Contains(errOut, "--all") {
		t.Errorf("redrive without a filter: exit %d %s", code, errOut)
	}
	code, out, errOut = runMain(t, "dlq", "redrive", "--where", "processor=gate")
	if code != 0 || !strings.Contains(out, "redrove 1 in 1 transaction(s)") || !strings.Contains(out, w.dlq+"/0@0 -> "+w.input+"/1@") {
		t.Fatalf("redrive: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("dlq redrive:\n%s", out)
	code, out, _ = runMain(t, "dlq", "redrive", "--all")
	if code != 0 || !strings.Contains(out, "redrove 0") || !strings.Contains(out, "1 already redriven") || strings.Count(out, "would fail again") != 3 ||
		!strings.Contains(out, "0@2: would fail again: avro: schema id 99999 not found in registry") {
		t.Fatalf("redrive --all after the filtered one: exit %d\n%s", code, out)
	}
	code, out, _ = runMain(t, "dlq", "list")
	if code != 0 || !strings.Contains(out, "gate") {
		t.Fatalf("list after redrive: %s", out)
	}
	// The ledger shows up in list and show.
	code, out, _ = runMain(t, "dlq", "show", "0@0")
	if code != 0 || !strings.Contains(out, "redriven     to "+w.input+"/1@4") {
		t.Errorf("show after redrive:\n%s", out)
	}
}

func TestReplayCommand(t *testing.T) {
	w := newOpsWorld(t)
	code, _, errOut := runMain(t, "replay", "--to-offset", "earliest")
	if code == 0 || !strings.Contains(errOut, "does not exist on the cluster") {
		t.Fatalf("unknown group: exit %d %s", code, errOut)
	}
	code, _, errOut = runMain(t, "replay", "--to-offset", "earliest", "--to-time", "-1h")
	if code == 0 || !strings.Contains(errOut, "use one of them") {
		t.Errorf("two targets: exit %d %s", code, errOut)
	}
	code, _, errOut = runMain(t, "replay")
	if code == 0 || !strings.Contains(errOut, "--to-time") {
		t.Errorf("no target: exit %d %s", code, errOut)
	}
	code, _, errOut = runMain(t, "replay", "--to-time", "1h")
	if code == 0 || !strings.Contains(errOut, "minus sign") {
		t.Errorf("positive duration: exit %d %s", code, errOut)
	}

	// A stopped group with committed offsets.
	w.deadLetters(t) // three records on the input's partition 1
	cl, err := kgo.NewClient(kgo.SeedBrokers(w.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: w.input, Partition: 1, At: 3, LeaderEpoch: -1})
	if err := adm.CommitAllOffsets(ctx, w.group, os); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runMain(t, "replay", "--to-offset", "earliest", "--dry-run")
	if code != 0 || !strings.Contains(out, "3 record(s) will be processed again") || !strings.Contains(out, "dry run") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("replay --dry-run:\n%s", out)
	// A time only rewinds partitions with a committed offset; the others
	// start at the log start anyway.
	code, out, errOut = runMain(t, "replay", "--to-time", "-1h", "--dry-run")
	if code != 0 || !strings.Contains(out, "no committed offset: starts at the log start") || !strings.Contains(out, "3 record(s) will be processed again") {
		t.Fatalf("dry run to a time: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = runMain(t, "replay", "--to-offset", w.input+":1=1", "--output", "json")
	var res struct {
		Applied    bool `json:"applied"`
		Partitions []struct {
			Partition int32 `json:"partition"`
			Before    int64 `json:"before"`
			After     int64 `json:"after"`
		} `json:"partitions"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !res.Applied {
		t.Fatalf("replay: exit %d\n%s%s", code, out, errOut)
	}
	got, err := adm.FetchOffsets(ctx, w.group)
	if err != nil {
		t.Fatal(err)
	}
	if o, _ := got.Lookup(w.input, 1); o.At != 1 {
		t.Fatalf("committed %d after replay to 1", o.At)
	}
}
