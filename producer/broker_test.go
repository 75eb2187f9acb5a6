package producer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

// These tests run against the broker testkit picks: Apache Kafka when
// KAFKA_BROKERS is set (test/kafka/kafka.sh), else kfake, which enforces
// max.message.bytes too.

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// createTopic creates topic with max.message.bytes set (0: the default).
func createTopic(t *testing.T, brokers []string, topic string, maxMessageBytes int) {
	t.Helper()
	var configs map[string]*string
	if maxMessageBytes > 0 {
		v := strconv.Itoa(maxMessageBytes)
		configs = map[string]*string{"max.message.bytes": &v}
	}
	adm := testkit.NewAdmin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopics(ctx, 1, -1, configs, topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("create %s: %v", topic, err)
	}
	testkit.CreateTopics(t, brokers, 1, topic) // waits for a leader
}

func logger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestTopicLimits: limits come from the topics' max.message.bytes, capped
// by the producer's; topics that cannot be described fall back to the
// producer's limit; unknown topics are looked up on first use.
func TestTopicLimits(t *testing.T) {
	brokers := testkit.Brokers(t)
	small, plain := testkit.UniqueName(t, "small"), testkit.UniqueName(t, "plain")
	createTopic(t, brokers, small, 20000)
	createTopic(t, brokers, plain, 0)
	missing := testkit.UniqueName(t, "missing")
	adm := testkit.NewAdmin(t, brokers)
	ctx := context.Background()

	l := producer.NewTopicLimits(adm, 0, logger())
	err := l.Describe(ctx, small, plain, missing)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("describing a missing topic should report it: %v", err)
	}
	for topic, want := range map[string]int{small: 20000, plain: producer.DefaultMaxRecordBytes, missing: producer.DefaultMaxRecordBytes} {
		if got := l.For(ctx, topic); got != want {
			t.Errorf("For(%s) = %d, want %d", topic, got, want)
		}
	}
	// A producer limit below the topic's wins.
	if got := producer.NewTopicLimits(adm, 5000, nil).For(ctx, small); got != 5000 {
		t.Errorf("producer limit 5000 vs topic 20000: For = %d", got)
	}
	// Not described at start: looked up on first use.
	lazy := producer.NewTopicLimits(adm, 0, nil)
	if got := lazy.For(ctx, small); got != 20000 {
		t.Errorf("lazy For = %d, want 20000", got)
	}

	// A cluster that does not answer: the producer's limit, within the
	// lookup timeout.
	dead, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.RetryTimeout(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer dead.Close()
	start := time.Now()
	if got := producer.NewTopicLimits(kadm.NewClient(dead), 0, nil).For(ctx, small); got != producer.DefaultMaxRecordBytes {
		t.Errorf("unreachable cluster: For = %d, want the default", got)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("unreachable cluster: For took %v", took)
	}
}

// TestRecordBytesMatchesBroker: a record estimated at exactly a topic's
// max.message.bytes is accepted; the broker does refuse larger ones (so the
// limit is real), and the bounded dead letter of a 1.1 MiB record fits.
func TestRecordBytesMatchesBroker(t *testing.T) {
	brokers := testkit.Brokers(t)
	const limit = 20000
	topic := testkit.UniqueName(t, "limited")
	createTopic(t, brokers, topic, limit)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.RecordRetries(2))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	at := &kgo.Record{Topic: topic, Key: []byte("k"), Headers: []kgo.RecordHeader{{Key: "h", Value: []byte("v")}}}
	at.Value = bytes.Repeat([]byte{'x'}, limit-producer.RecordBytes(at))
	if producer.RecordBytes(at) != limit {
		t.Fatalf("setup: %d", producer.RecordBytes(at))
	}
	if err := cl.ProduceSync(ctx, at).FirstErr(); err != nil {
		t.Fatalf("a record estimated at the limit was refused: %v", err)
	}
	over := &kgo.Record{Topic: topic, Value: bytes.Repeat([]byte{'x'}, limit+100)}
	if err := cl.ProduceSync(ctx, over).FirstErr(); !errors.Is(err, kerr.MessageTooLarge) {
		t.Fatalf("a record over max.message.bytes: want MESSAGE_TOO_LARGE, got %v", err)
	}

	limits := producer.NewTopicLimits(kadm.NewClient(cl), 0, logger())
	out := producer.NewOutput(nil, topic, "g", producer.WithMaxRecordBytes(limits.For))
	in := &kgo.Record{Topic: "in", Partition: 0, Offset: 7, Key: []byte("k"), Value: bytes.Repeat([]byte{'y'}, 1153434)}
	dead := out.DeadLetterContext(ctx, in, errors.New("poison"))
	if err := cl.ProduceSync(ctx, dead).FirstErr(); err != nil {
		t.Fatalf("the bounded dead letter (%d bytes estimated) was refused: %v", producer.RecordBytes(dead), err)
	}
}

// abortCounter counts transaction ends.
type abortCounter struct {
	aborts, commits atomic.Int64
}

func (a *abortCounter) OnTxnAborted(time.Duration, error)             { a.aborts.Add(1) }
func (a *abortCounter) OnTxnCommitted(time.Duration, consumer.Counts) { a.commits.Add(1) }

// TestOversizeOutputsThroughPipeline is issue 9's bug end to end: a 1.1 MiB
// poison input, a tombstone, an empty value and an event whose command is
// too large for its topic. Before, the 1.1 MiB dead letter failed with
// MESSAGE_TOO_LARGE and the transaction aborted forever. Now the pipeline
// commits everything without an abort; the dead letters carry the reasons.
func TestOversizeOutputsThroughPipeline(t *testing.T) {
	brokers := testkit.Brokers(t)
	reg := testkit.StartDemoRegistry(t)
	serde := reg.Serde
	input, output, dlq, group := testkit.UniqueName(t, "in"), testkit.UniqueName(t, "out"), testkit.UniqueName(t, "dlq"), testkit.UniqueName(t, "group")
	createTopic(t, brokers, input, 4<<20) // the input may hold a 1.1 MiB record
	createTopic(t, brokers, output, 20000)
	createTopic(t, brokers, dlq, 0) // default: the producer's 1,000,012 bytes

	pubCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchMaxBytes(4<<20))
	if err != nil {
		t.Fatal(err)
	}
	defer pubCl.Close()
	ctx := context.Background()
	pub := publish.New(pubCl, serde, "test")
	event := func(id string) *kgo.Record {
		r, err := pub.Record(ctx, input, "com.acme.checkout.OrderPlaced", "ord-1", map[string]any{
			"envelope": map[string]any{"id": id}, "order_id": "ord-1", "customer_id": "c", "total": big.NewRat(1, 1), "currency": "EUR",
			"items": []any{}, "shipping_country": "DE", "note": nil,
		})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	huge := bytes.Repeat([]byte{'x'}, 1153434)
	recs := []*kgo.Record{
		event("evt-0"),
		{Topic: input, Key: []byte("big"), Value: huge}, // 1: poison, 1.1 MiB
		{Topic: input, Key: []byte("tomb"), Value: nil}, // 2: tombstone
		event("evt-3"), // 3: its command is too large
		{Topic: input, Key: []byte("e"), Value: []byte{}}, // 4: empty, not null
		event("evt-5"),
	}
	if err := pubCl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	chain := processors.Func(func(_ context.Context, ev *processors.Event) ([]processors.Command, error) {
		reason := "test"
		if ev.Envelope.ID == "evt-3" {
			reason = strings.Repeat("r", 30000) // over the output topic's 20000 bytes
		}
		return []processors.Command{{
			Topic: output, Type: "com.acme.ordo.commands.CancelOrder", Key: []byte(ev.Envelope.CorrelationID),
			Value: map[string]any{
				"envelope": processors.Envelope{ID: ev.Envelope.ID + "/cancel", Type: "com.acme.ordo.commands.CancelOrder", Source: "t",
					Time: ev.Timestamp.UTC().Truncate(time.Millisecond), CorrelationID: ev.Envelope.CorrelationID, CausationID: ev.Envelope.ID}.Map(),
				"order_id": "ord-1", "reason": reason,
			},
		}}, nil
	})
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer admCl.Close()
	limits := producer.NewTopicLimits(kadm.NewClient(admCl), 0, logger())
	if err := limits.Describe(ctx, dlq, output); err != nil {
		t.Fatal(err)
	}
	obs := &abortCounter{}
	p, err := consumer.New(serde, chain, producer.NewOutput(serde, dlq, group, producer.WithMaxRecordBytes(limits.For)),
		consumer.Brokers(brokers...), consumer.Group(group), consumer.Topics(input), consumer.TransactionalID(group+"-a"),
		consumer.CommitInterval(50*time.Millisecond), consumer.BatchSize(100), consumer.SessionTimeout(10*time.Second), consumer.TransactionTimeout(8*time.Second),
		consumer.RetryBackoff(10*time.Millisecond, 200*time.Millisecond), consumer.WithLogger(logger()), consumer.WithHooks(obs))
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	defer func() {
		stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pipeline: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("pipeline did not stop")
		}
	}()

	// The whole input is committed, with no abort on the way.
	adm := kadm.NewClient(admCl)
	const wait = 60 * time.Second
	deadline := time.Now().Add(wait)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		offs, err := adm.FetchOffsets(cctx, group)
		cancel()
		if o, ok := offs.Lookup(input, 0); err == nil && ok && o.At >= int64(len(recs)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("input not committed within %v (%d aborts, %d commits): the oversize outputs still fail the transaction", wait, obs.aborts.Load(), obs.commits.Load())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := obs.aborts.Load(); n != 0 {
		t.Errorf("%d transactions aborted, want 0", n)
	}

	dead := testkit.ReadCommitted(t, brokers, dlq, 30*time.Second)
	byOffset := map[string]*kgo.Record{}
	for _, r := range dead {
		byOffset[hdr(r, producer.HeaderDLQSourceOffset)] = r
	}
	if len(dead) != 4 {
		t.Fatalf("%d dead letters, want 4 (offsets 1-4)", len(dead))
	}
	check := func(offset int, want map[string]string) *kgo.Record {
		t.Helper()
		r := byOffset[strconv.Itoa(offset)]
		if r == nil {
			t.Fatalf("no dead letter for input offset %d", offset)
		}
		for k, v := range want {
			if got := hdr(r, k); got != v {
				t.Errorf("offset %d: %s = %q, want %q", offset, k, got, v)
			}
		}
		return r
	}
	big := check(1, map[string]string{producer.HeaderDLQReason: producer.ReasonRecordTooLarge, producer.HeaderDLQOriginalReason: schemas.ReasonMalformed,
		producer.HeaderDLQTruncated: "value", producer.HeaderDLQValueSize: "1153434", producer.HeaderDLQSourceTopic: input})
	if !bytes.Equal(big.Value, huge[:producer.DeadLetterPrefixBytes]) || string(big.Key) != "big" {
		t.Errorf("bounded dead letter: value %d bytes, key %q", len(big.Value), big.Key)
	}
	tomb := check(2, map[string]string{producer.HeaderDLQReason: schemas.ReasonTombstone, producer.HeaderDLQProcessor: "decode"})
	if e := hdr(tomb, producer.HeaderDLQError); !strings.Contains(e, "tombstone (null value)") {
		t.Errorf("tombstone error header %q", e)
	}
	if tomb.Value != nil {
		t.Errorf("the tombstone's dead letter keeps its null value, got %d bytes", len(tomb.Value))
	}
	cmd := check(3, map[string]string{producer.HeaderDLQReason: producer.ReasonRecordTooLarge, producer.HeaderDLQProcessor: "encode"})
	if e := hdr(cmd, producer.HeaderDLQError); !strings.Contains(e, "CancelOrder") || !strings.Contains(e, "20000") {
		t.Errorf("too-large command error header %q should name the command and the limit", e)
	}
	if !bytes.Equal(cmd.Value, recs[3].Value) {
		t.Error("the too-large command's event fits: its dead letter keeps the event")
	}
	check(4, map[string]string{producer.HeaderDLQReason: schemas.ReasonEmptyPayload})

	outs := testkit.ReadCommitted(t, brokers, output, 30*time.Second)
	var causes []string
	for _, r := range outs {
		causes = append(causes, hdr(r, producer.HeaderCausationID))
	}
	if fmt.Sprint(causes) != "[evt-0 evt-5]" {
		t.Errorf("commands caused by %v, want [evt-0 evt-5]", causes)
	}
}

func hdr(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}
