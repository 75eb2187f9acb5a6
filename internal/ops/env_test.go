package ops_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// env is one test's world: a broker (real Kafka with KAFKA_BROKERS, see
// testkit), a real schema registry on loopback, unique topics and group.
type env struct {
	t       *testing.T
	brokers []string
	conn    []kgo.Opt
	serde   *schemas.Serde
	input   string
	output  string
	dlq     string
	group   string
	// gate makes the "gate" processor dead-letter orders whose total is
	// below 2.00 while it is true (the "bug" a redrive follows a fix of).
	gate atomic.Bool
}

func newEnv(t *testing.T, partitions int32) *env {
	t.Helper()
	brokers := testkit.Brokers(t)
	reg := testkit.StartDemoRegistry(t)
	e := &env{
		t:       t,
		brokers: brokers,
		conn:    []kgo.Opt{kgo.SeedBrokers(brokers...)},
		serde:   reg.Serde,
		input:   testkit.UniqueName(t, "in"),
		output:  testkit.UniqueName(t, "out"),
		dlq:     testkit.UniqueName(t, "dlq"),
		group:   testkit.UniqueName(t, "group"),
	}
	testkit.CreateTopics(t, brokers, partitions, e.input, e.output)
	testkit.CreateTopics(t, brokers, 2, e.dlq)
	return e
}

func order(id string, i int, cents int64) map[string]any {
	return map[string]any{
		"envelope":    map[string]any{"id": id},
		"order_id":    fmt.Sprintf("ord-%d", i),
		"customer_id": "cust-1",
		"total":       big.NewRat(cents, 100),
		"currency":    "EUR",
		"items": []any{map[string]any{
			"sku": "SKU-1", "qty": int32(1), "unit_price": big.NewRat(cents, 100),
		}},
		"shipping_country": "DE",
		"note":             nil,
	}
}

// published describes what publish wrote.
type published struct {
	ids    []string // event ids of the valid events, in order
	cheap  []string // ids of the events the gate rejects (total < 2.00)
	poison int      // records that are not Avro
}

// publish writes n OrderPlaced events with the given timestamp; every
// cheapEvery-th is cheap (total 1.50), every poisonEvery-th is not Avro
// (0 disables either).
func (e *env) publish(n, cheapEvery, poisonEvery int, ts time.Time) published {
	e.t.Helper()
	cl, err := kgo.NewClient(append(e.conn, kgo.ProducerLinger(2*time.Millisecond))...)
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	pub := publish.New(cl, e.serde, "test")
	ctx := context.Background()
	var out published
	var recs []*kgo.Record
	base := time.Now().UnixNano()
	for i := range n {
		if poisonEvery > 0 && i%poisonEvery == poisonEvery-1 {
			recs = append(recs, &kgo.Record{Topic: e.input, Key: []byte("poison"), Value: []byte("not avro " + strconv.Itoa(i)), Timestamp: ts})
			out.poison++
			continue
		}
		id := fmt.Sprintf("evt-%d-%06d", base, i)
		cents := int64(500 + i)
		if cheapEvery > 0 && i%cheapEvery == 0 {
			cents = 150
			out.cheap = append(out.cheap, id)
		}
		r, err := pub.Record(ctx, e.input, "com.acme.checkout.OrderPlaced", fmt.Sprintf("ord-%d", i), order(id, i, cents))
		if err != nil {
			e.t.Fatal(err)
		}
		r.Timestamp = ts
		recs = append(recs, r)
		out.ids = append(out.ids, id)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// chain is the pipeline under test: the gate, then orchestrate (one
// CancelOrder per OrderPlaced, ids derived from the event id).
func (e *env) chain() processors.Processor {
	e.t.Helper()
	var node yaml.Node
	cfg := fmt.Sprintf(`
routes:
  - on: com.acme.checkout.OrderPlaced
    emit:
      - type: com.acme.ordo.commands.CancelOrder
        topic: %s
        fields:
          order_id: event.order_id
          reason: '"test"'
`, e.output)
	if err := yaml.Unmarshal([]byte(cfg), &node); err != nil {
		e.t.Fatal(err)
	}
	built, err := processors.Builtins().Build([]processors.Spec{{Name: "routes", Type: "orchestrate", Config: *node.Content[0]}}, processors.Deps{})
	if err != nil {
		e.t.Fatal(err)
	}
	min := big.NewRat(2, 1)
	gate := processors.Func(func(_ context.Context, ev *processors.Event) ([]processors.Command, error) {
		if tot, ok := ev.Value["total"].(*big.Rat); ok && e.gate.Load() && tot.Cmp(min) < 0 {
			return nil, processors.Permanent(fmt.Errorf("total %s is below the minimum %q", tot.FloatString(2), "2.00"))
		}
		return nil, nil
	})
	return append(processors.Chain{processors.Named("gate", gate)}, built...)
}

// runPipeline runs one ordo replica until the group has committed the whole
// input, then stops it (it leaves the group: not a static member).
func (e *env) runPipeline() {
	e.t.Helper()
	p, err := consumer.New(e.serde, e.chain(), producer.NewOutput(e.serde, e.dlq, e.group),
		consumer.Brokers(e.brokers...),
		consumer.Group(e.group),
		consumer.Topics(e.input),
		consumer.TransactionalID(e.group+"-r1"),
		consumer.CommitInterval(50*time.Millisecond),
		consumer.BatchSize(200),
		consumer.SessionTimeout(10*time.Second),
		consumer.TransactionTimeout(8*time.Second),
		consumer.WithLogger(slog.New(slog.DiscardHandler)),
	)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	e.waitCommitted(60 * time.Second)
	cancel()
	if err := <-done; err != nil {
		e.t.Fatalf("pipeline: %v", err)
	}
}

// waitCommitted waits until the group has committed the end of the input.
func (e *env) waitCommitted(timeout time.Duration) {
	e.t.Helper()
	adm := testkit.NewAdmin(e.t, e.brokers)
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, err1 := adm.ListEndOffsets(ctx, e.input)
		committed, err2 := adm.FetchOffsets(ctx, e.group)
		cancel()
		if err := errors.Join(err1, err2); err == nil {
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
			e.t.Fatalf("group %s did not commit the whole input within %v", e.group, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// commands returns the committed commands on the output topic: for each
// causation (event) id, the ordo-id of every command it caused.
func (e *env) commands() map[string][]string {
	e.t.Helper()
	out := map[string][]string{}
	for _, r := range testkit.ReadCommitted(e.t, e.brokers, e.output, 30*time.Second) {
		h := headers(r)
		out[h[producer.HeaderCausationID]] = append(out[h[producer.HeaderCausationID]], h[producer.HeaderID])
	}
	return out
}

func headers(r *kgo.Record) map[string]string {
	m := map[string]string{}
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

func (e *env) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}
