package eos

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

// What a published input record is.
type kind uint8

const (
	kindValid   kind = iota // must produce exactly its routed commands
	kindPoison              // must land in the dead-letter topic exactly once
	kindAborted             // written in an aborted upstream transaction: ordo must never act on it
	kindForeign             // a valid OrderPlaced published by a foreign client (test/foreign)
)

type tpKey struct {
	topic     string
	partition int32
}

type inRef struct {
	topic     string
	partition int32
	offset    int64
}

func (r inRef) String() string { return fmt.Sprintf("%s/%d@%d", short(r.topic), r.partition, r.offset) }

var eventTypes = []string{tOrderPlaced, tPaymentAuthorized, tPaymentDeclined, tInventoryReserved, tInventoryShortage}

// event is one published input record, compact (the soak keeps millions).
type event struct {
	ref  inRef
	kind kind
	typ  uint8 // index in eventTypes (valid/aborted)
	seq  int32 // generator sequence: envelope id is "<run>-<seq>"
	key  int32 // key index: key is "<run>-k<key>"
	ext  *extInfo
}

// extInfo holds what cannot be derived from seq/key: poison and foreign records.
type extInfo struct {
	id, key string
	value   []byte
	why     string
}

// genOpts shape a generator's traffic.
type genOpts struct {
	keys        int // distinct order ids (default 500): several events per key and topic, so order matters
	poisonEvery int // every Nth record is poison (0: none)
}

// generator publishes uniquely numbered demo events through the Publisher
// SDK (Confluent wire format, schemas registered by the SDK) and remembers
// where each landed.
type generator struct {
	sc    *scenario
	opts  genOpts
	runID string
	cl    *kgo.Client
	serde *schemas.Serde
	pub   *publish.Publisher

	mu     sync.Mutex
	rng    *rand.Rand
	next   int32
	events []event
	err    error
}

func (sc *scenario) newGenerator(opts genOpts) *generator {
	sc.t.Helper()
	if opts.keys <= 0 {
		opts.keys = 500
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(sc.brokers...), kgo.ProducerLinger(5*time.Millisecond),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
	if err != nil {
		sc.t.Fatal(err)
	}
	sc.t.Cleanup(cl.Close)
	serde := newSerde(sc.t, sc.regURL)
	g := &generator{
		sc: sc, opts: opts, runID: fmt.Sprintf("%s-%x", sc.name, rand.Uint32()), cl: cl, serde: serde,
		pub: publish.New(cl, serde, "eos-"+sc.name),
		rng: rand.New(rand.NewPCG(rand.Uint64(), 7)),
	}
	return g
}

// newSerde is the upstream producers' SDK encoder (topic_record_name
// subjects, auto-register), as other teams' Go services use it: payments
// and warehouse topics carry two event types each, and the registry
// enforces BACKWARD per subject, so each type needs its own subject.
func newSerde(t interface{ Fatal(...any) }, url string) *schemas.Serde {
	srcl, err := sr.NewClient(sr.URLs(url))
	if err != nil {
		t.Fatal(err)
	}
	readers, err := schemas.Demo()
	if err != nil {
		t.Fatal(err)
	}
	return schemas.NewSerde(schemas.NewRegistry(srcl), readers, schemas.WithSubjectStrategy(schemas.TopicRecordName))
}

func (g *generator) id(seq int32) string { return fmt.Sprintf("%s-%d", g.runID, seq) }
func (g *generator) key(k int32) string  { return fmt.Sprintf("%s-k%d", g.runID, k) }

// eventID and eventKey are an event's envelope id and Kafka key.
func (g *generator) eventID(e *event) string {
	if e.ext != nil {
		return e.ext.id
	}
	return g.id(e.seq)
}

func (g *generator) eventKey(e *event) string {
	if e.ext != nil {
		return e.ext.key
	}
	return g.key(e.key)
}

func (g *generator) setErr(err error) {
	g.mu.Lock()
	if g.err == nil {
		g.err = err
	}
	g.mu.Unlock()
}

// Err is the first publish error.
func (g *generator) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}

func (g *generator) record(ev event) {
	g.mu.Lock()
	g.events = append(g.events, ev)
	g.mu.Unlock()
}

func (g *generator) snapshot() []event {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]event(nil), g.events...)
}

// build returns the next record to publish and its event (ref unset).
func (g *generator) build(ctx context.Context) (*kgo.Record, event, error) {
	g.mu.Lock()
	g.next++
	seq := g.next
	rng := rand.New(rand.NewPCG(uint64(seq), g.rng.Uint64()))
	g.mu.Unlock()
	if g.opts.poisonEvery > 0 && int(seq)%g.opts.poisonEvery == 0 {
		return g.poison(ctx, rng, seq)
	}
	k := int32(rng.IntN(g.opts.keys))
	typ, topic, v := g.valid(rng, seq, g.key(k))
	r, err := g.pub.Record(ctx, topic, typ, g.key(k), v)
	if err != nil {
		return nil, event{}, err
	}
	return r, event{kind: kindValid, typ: typeIndex(typ), seq: seq, key: k}, nil
}

func typeIndex(t string) uint8 {
	for i, x := range eventTypes {
		if x == t {
			return uint8(i)
		}
	}
	panic("unknown type " + t)
}

// valid returns a valid event of a random type for order id key.
func (g *generator) valid(rng *rand.Rand, seq int32, key string) (typ, topic string, v map[string]any) {
	tp := g.sc.tp
	switch rng.IntN(3) {
	case 0:
		topic, typ = tp.orders, tOrderPlaced
		v = orderPlaced(rng, key)
	case 1:
		topic = tp.payments
		if rng.IntN(5) == 0 {
			typ = tPaymentDeclined
			v = map[string]any{"order_id": key, "payment_id": fmt.Sprintf("pay-%d", seq), "reason": "insufficient funds"}
		} else {
			typ = tPaymentAuthorized
			v = map[string]any{"order_id": key, "payment_id": fmt.Sprintf("pay-%d", seq), "amount": big.NewRat(int64(1000+rng.IntN(90000)), 100), "currency": "EUR"}
		}
	default:
		topic = tp.warehouse
		if rng.IntN(6) == 0 {
			typ = tInventoryShortage
			v = map[string]any{"order_id": key, "missing_skus": []any{fmt.Sprintf("SKU-%d", rng.IntN(500))}}
		} else {
			typ = tInventoryReserved
			v = map[string]any{"order_id": key, "reservation_id": fmt.Sprintf("res-%d", seq), "warehouse": []string{"FRA-1", "AMS-2"}[rng.IntN(2)]}
		}
	}
	v["envelope"] = map[string]any{"id": g.id(seq)}
	return typ, topic, v
}

func orderPlaced(rng *rand.Rand, key string) map[string]any {
	n := 1 + rng.IntN(3)
	items := make([]any, n)
	total := new(big.Rat)
	for j := range items {
		price := big.NewRat(int64(199+rng.IntN(20000)), 100)
		qty := int32(1 + rng.IntN(4))
		items[j] = map[string]any{"sku": fmt.Sprintf("SKU-%d", rng.IntN(500)), "qty": qty, "unit_price": price}
		total.Add(total, new(big.Rat).Mul(price, big.NewRat(int64(qty), 1)))
	}
	var note any
	if rng.IntN(4) == 0 {
		note = "leave at the door"
	}
	return map[string]any{
		"order_id": key, "customer_id": fmt.Sprintf("cust-%d", rng.IntN(250)), "total": total,
		"currency": "EUR", "items": items, "shipping_country": "DE", "note": note,
	}
}

// poisonKinds are the ways upstream data goes wrong; every one must be
// dead-lettered, byte for byte.
var poisonKinds = []string{"garbage", "wrong-magic-byte", "unknown-schema-id", "truncated-body", "business-rule"}

func (g *generator) poison(ctx context.Context, rng *rand.Rand, seq int32) (*kgo.Record, event, error) {
	tp := g.sc.tp
	key := fmt.Sprintf("%s-poison-%d", g.runID, seq)
	why := poisonKinds[(int(seq)/g.opts.poisonEvery)%len(poisonKinds)]
	var r *kgo.Record
	switch why {
	case "garbage":
		r = &kgo.Record{Topic: tp.orders, Value: []byte(fmt.Sprintf(`{"not":"avro","seq":%d}`, seq))}
	case "wrong-magic-byte":
		r = &kgo.Record{Topic: tp.warehouse, Value: []byte{1, 0, 0, 0, 1, 2, byte(seq)}}
	case "unknown-schema-id":
		r = &kgo.Record{Topic: tp.payments, Value: []byte{0, 0x7f, 0xff, 0xff, 0xf0, 2, 'x', byte(seq)}}
	case "truncated-body":
		v := orderPlaced(rng, key)
		v["envelope"] = map[string]any{"id": g.id(seq)}
		good, err := g.pub.Record(ctx, tp.orders, tOrderPlaced, key, v)
		if err != nil {
			return nil, event{}, err
		}
		good.Value = good.Value[:len(good.Value)-3]
		r = good
	case "business-rule":
		v := map[string]any{
			"envelope": map[string]any{"id": g.id(seq)}, "order_id": key, "customer_id": "cust-1",
			"total": big.NewRat(0, 1), "currency": "EUR", "items": []any{}, "shipping_country": "DE", "note": nil,
		}
		var err error
		if r, err = g.pub.Record(ctx, tp.orders, tOrderPlaced, key, v); err != nil {
			return nil, event{}, err
		}
	}
	r.Key = []byte(key)
	return r, event{kind: kindPoison, seq: seq, ext: &extInfo{id: g.id(seq), key: key, value: r.Value, why: why}}, nil
}

// publish publishes n events at rate per second (0: as fast as possible)
// through the idempotent client and waits until all are acknowledged.
func (g *generator) publish(ctx context.Context, n int, rate float64) error {
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < n && ctx.Err() == nil; i++ {
		if rate > 0 && i%20 == 0 {
			due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		r, ev, err := g.build(ctx)
		if err != nil {
			g.setErr(err)
			return err
		}
		wg.Add(1)
		g.cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				g.setErr(fmt.Errorf("publish to %s: %w", r.Topic, err))
				return
			}
			ev.ref = inRef{r.Topic, r.Partition, r.Offset}
			g.record(ev)
		})
	}
	wg.Wait()
	return g.Err()
}

// publishTransactional publishes n events in upstream transactions of batch
// records each through a transactional producer, aborting each batch with
// probability abortP. Aborted records are remembered as kindAborted.
func (g *generator) publishTransactional(ctx context.Context, n, batch int, abortP float64) (committed, aborted int, err error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(g.sc.brokers...), kgo.TransactionalID(g.runID+"-upstream"),
		kgo.ProducerLinger(5*time.Millisecond), kgo.TransactionTimeout(30*time.Second))
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	pub := publish.New(cl, g.serde, "eos-upstream-txn")
	for done := 0; done < n && ctx.Err() == nil; {
		if err := cl.BeginTransaction(); err != nil {
			return committed, aborted, err
		}
		abort := g.rng.Float64() < abortP
		var (
			wg  sync.WaitGroup
			mu  sync.Mutex
			evs []event
		)
		for i := 0; i < batch && done < n; i, done = i+1, done+1 {
			g.mu.Lock()
			g.next++
			seq := g.next
			rng := rand.New(rand.NewPCG(uint64(seq), g.rng.Uint64()))
			g.mu.Unlock()
			k := int32(rng.IntN(g.opts.keys))
			typ, topic, v := g.valid(rng, seq, g.key(k))
			r, err := pub.Record(ctx, topic, typ, g.key(k), v)
			if err != nil {
				return committed, aborted, err
			}
			ev := event{kind: kindValid, typ: typeIndex(typ), seq: seq, key: k}
			if abort {
				ev.kind = kindAborted
			}
			wg.Add(1)
			cl.Produce(ctx, r, func(r *kgo.Record, err error) {
				defer wg.Done()
				if err != nil {
					g.setErr(fmt.Errorf("transactional publish to %s: %w", r.Topic, err))
					return
				}
				ev.ref = inRef{r.Topic, r.Partition, r.Offset}
				mu.Lock()
				evs = append(evs, ev)
				mu.Unlock()
			})
		}
		wg.Wait()
		if err := g.Err(); err != nil {
			return committed, aborted, err
		}
		try := kgo.TryCommit
		if abort {
			try = kgo.TryAbort
		}
		if err := cl.EndTransaction(ctx, try); err != nil {
			return committed, aborted, fmt.Errorf("end upstream transaction: %w", err)
		}
		for _, ev := range evs {
			g.record(ev)
		}
		if abort {
			aborted += len(evs)
		} else {
			committed += len(evs)
		}
	}
	return committed, aborted, ctx.Err()
}

// lastVisible is, per input partition, one past the last record a
// read_committed consumer sees (what ordo must have committed when done).
func (g *generator) lastVisible() map[tpKey]int64 {
	out := map[tpKey]int64{}
	for _, e := range g.snapshot() {
		if e.kind == kindAborted {
			continue
		}
		k := tpKey{e.ref.topic, e.ref.partition}
		out[k] = max(out[k], e.ref.offset+1)
	}
	return out
}

// background runs publish in a goroutine; wait returns its error.
type background struct{ done chan error }

func (g *generator) goPublish(ctx context.Context, n int, rate float64) *background {
	b := &background{done: make(chan error, 1)}
	go func() { b.done <- g.publish(ctx, n, rate) }()
	return b
}

func (b *background) wait() error { return <-b.done }
