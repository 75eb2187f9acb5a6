// Package demo publishes the order-fulfilment demo traffic that `ordo dev`
// runs (three teams: checkout, payments, warehouse), including poison
// records and duplicate deliveries, and verifies ordo's committed output
// against what it published.
package demo

import (
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/ordo-dev/ordo/publish"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topics of the demo domain.
const (
	TopicOrders    = "checkout.orders.v1"
	TopicPayments  = "payments.v1"
	TopicWarehouse = "warehouse.v1"
)

// Event types of the demo domain.
const (
	OrderPlaced       = "com.acme.checkout.OrderPlaced"
	PaymentAuthorized = "com.acme.payments.PaymentAuthorized"
	PaymentDeclined   = "com.acme.payments.PaymentDeclined"
	InventoryReserved = "com.acme.warehouse.InventoryReserved"
	InventoryShortage = "com.acme.warehouse.InventoryShortage"
)

// ExpectedCommands is how many commands the demo config
// (examples/orders/ordo.yaml) routes for each valid event type.
var ExpectedCommands = map[string]int{
	OrderPlaced:       2, // ReserveInventory + NotifyCustomer
	PaymentAuthorized: 1, // CapturePayment
	PaymentDeclined:   2, // CancelOrder + NotifyCustomer
	InventoryReserved: 1, // ShipOrder
	InventoryShortage: 2, // CancelOrder + NotifyCustomer
}

// Kind says what a published record is.
type Kind int

const (
	Valid     Kind = iota
	Poison         // must land in the dead-letter topic
	Duplicate      // a valid event delivered again by a retrying producer
)

// Published is one record the demo wrote, with what ordo must do with it.
type Published struct {
	Topic     string
	Partition int32
	Offset    int64
	Kind      Kind
	Type      string // event type ("" for undecodable poison)
	EventID   string
	Order     string    // the order (correlation id) of a valid event or duplicate
	Timestamp time.Time // the record's timestamp (the saga's event time)
	Commands  int       // commands expected from this record (stateless demo)
	Why       string    // for poison: why it is poison
}

// Options shape the traffic.
type Options struct {
	Events         int     // records to publish in all (valid + poison + duplicates)
	PoisonEvery    int     // every Nth record is poison (0 = none)
	DuplicateEvery int     // every Nth record re-delivers the previous valid one (0 = none)
	Rate           float64 // records per second (0 = as fast as possible)
	Seed           uint64
	// Topics override the demo topic names (TopicOrders, TopicPayments,
	// TopicWarehouse) when set.
	Topics map[string]string
}

// topic maps a demo topic name through Options.Topics.
func (g *Generator) topic(name string) string {
	if t, ok := g.opts.Topics[name]; ok && t != "" {
		return t
	}
	return name
}

// Generator publishes demo traffic through the Publisher SDK.
type Generator struct {
	pub  *publish.Publisher
	cl   *kgo.Client
	opts Options

	mu        sync.Mutex
	published []Published
}

// NewGenerator returns a generator writing with cl (an idempotent,
// non-transactional client) through pub.
func NewGenerator(cl *kgo.Client, pub *publish.Publisher, opts Options) *Generator {
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	return &Generator{pub: pub, cl: cl, opts: opts}
}

// Published returns every record written so far.
func (g *Generator) Published() []Published {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Published(nil), g.published...)
}

// Run publishes Options.Events records (or until ctx ends) and waits until
// all are acknowledged.
func (g *Generator) Run(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(g.opts.Seed, 0x0dd0))
	var (
		out      sender
		lastGood *kgo.Record
		lastPub  Published
	)
	start := time.Now()
	for i := 1; i <= g.opts.Events && ctx.Err() == nil; i++ {
		if g.opts.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / g.opts.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-time.After(d):
				case <-ctx.Done():
				}
			}
		}
		var (
			rec *kgo.Record
			p   Published
			err error
		)
		switch {
		case g.opts.DuplicateEvery > 0 && i%g.opts.DuplicateEvery == 0 && lastGood != nil:
			rec = &kgo.Record{Topic: lastGood.Topic, Key: lastGood.Key, Value: lastGood.Value, Headers: lastGood.Headers}
			p = lastPub
			p.Kind = Duplicate
		case g.opts.PoisonEvery > 0 && i%g.opts.PoisonEvery == 0:
			rec, p, err = g.poison(ctx, rng, i)
		default:
			rec, p, err = g.valid(ctx, rng, i)
			lastGood, lastPub = rec, p
		}
		if err != nil {
			return err
		}
		out.send(ctx, g.cl, rec, p, g.record)
	}
	return out.wait()
}

func (g *Generator) valid(ctx context.Context, rng *rand.Rand, i int) (*kgo.Record, Published, error) {
	order := fmt.Sprintf("ord-%06d", i/3)
	var topic, typ string
	switch i % 3 {
	case 0:
		topic, typ = g.topic(TopicOrders), OrderPlaced
	case 1:
		topic, typ = g.topic(TopicPayments), PaymentAuthorized
		if rng.IntN(5) == 0 {
			typ = PaymentDeclined
		}
	default:
		topic, typ = g.topic(TopicWarehouse), InventoryReserved
		if rng.IntN(6) == 0 {
			typ = InventoryShortage
		}
	}
	v := eventValue(rng, typ, order, i)
	id := fmt.Sprintf("evt-%d-%08d", g.opts.Seed, i)
	v["envelope"] = map[string]any{"id": id}
	r, err := g.pub.Record(ctx, topic, typ, order, v)
	if err != nil {
		return nil, Published{}, err
	}
	return r, Published{Kind: Valid, Type: typ, EventID: id, Order: order, Commands: ExpectedCommands[typ]}, nil
}

// eventValue is the natural Avro value (without envelope) of a demo event
// of type typ for order; i makes payment and reservation ids unique.
func eventValue(rng *rand.Rand, typ, order string, i int) map[string]any {
	switch typ {
	case OrderPlaced:
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
			"order_id": order, "customer_id": fmt.Sprintf("cust-%d", rng.IntN(250)), "total": total,
			"currency": []string{"EUR", "USD", "GBP"}[rng.IntN(3)], "items": items,
			"shipping_country": []string{"DE", "FR", "US", "GB"}[rng.IntN(4)], "note": note,
		}
	case PaymentDeclined:
		return map[string]any{"order_id": order, "payment_id": fmt.Sprintf("pay-%d", i), "reason": "insufficient funds"}
	case PaymentAuthorized:
		return map[string]any{"order_id": order, "payment_id": fmt.Sprintf("pay-%d", i), "amount": big.NewRat(int64(1000+rng.IntN(90000)), 100), "currency": "EUR"}
	case InventoryShortage:
		return map[string]any{"order_id": order, "missing_skus": []any{fmt.Sprintf("SKU-%d", rng.IntN(500))}}
	default: // InventoryReserved
		return map[string]any{"order_id": order, "reservation_id": fmt.Sprintf("res-%d", i), "warehouse": []string{"FRA-1", "AMS-2"}[rng.IntN(2)]}
	}
}

// poison returns a record ordo must dead-letter, cycling through the ways
// upstream data goes wrong.
func (g *Generator) poison(ctx context.Context, rng *rand.Rand, i int) (*kgo.Record, Published, error) {
	key := []byte(fmt.Sprintf("poison-%d", i))
	switch (i / max(g.opts.PoisonEvery, 1)) % 5 {
	case 0:
		return &kgo.Record{Topic: g.topic(TopicOrders), Key: key, Value: []byte("{\"not\":\"avro\"}")}, Published{Kind: Poison, Why: "not Confluent-framed (JSON)"}, nil
	case 1:
		return &kgo.Record{Topic: g.topic(TopicPayments), Key: key, Value: []byte{0, 0, 0x0f, 0x42, 0x3f, 2, 'x'}}, Published{Kind: Poison, Why: "unknown schema id 999999"}, nil
	case 2:
		good, p, err := g.valid(ctx, rng, i*3) // an OrderPlaced
		if err != nil {
			return nil, Published{}, err
		}
		return &kgo.Record{Topic: good.Topic, Key: key, Value: good.Value[:len(good.Value)-3], Headers: good.Headers},
			Published{Kind: Poison, Type: p.Type, Why: "truncated Avro body"}, nil
	case 3:
		id := fmt.Sprintf("evt-%d-%08d-bad", g.opts.Seed, i)
		v := map[string]any{
			"envelope": map[string]any{"id": id}, "order_id": fmt.Sprintf("ord-bad-%d", i), "customer_id": "cust-1",
			"total": big.NewRat(0, 1), "currency": "EUR", "items": []any{}, "shipping_country": "DE", "note": nil,
		}
		r, err := g.pub.Record(ctx, g.topic(TopicOrders), OrderPlaced, string(key), v)
		return r, Published{Kind: Poison, Type: OrderPlaced, EventID: id, Why: "business rule: zero total, no items"}, err
	default:
		return &kgo.Record{Topic: g.topic(TopicWarehouse), Key: key, Value: []byte{1, 0, 0, 0, 1, 2}}, Published{Kind: Poison, Why: "wrong magic byte"}, nil
	}
}

// record notes a published record.
func (g *Generator) record(p Published) {
	g.mu.Lock()
	g.published = append(g.published, p)
	g.mu.Unlock()
}

// sender produces a generator's records asynchronously and hands each
// acknowledged one, with its coordinates, to done; wait returns the first
// produce error.
type sender struct {
	wg       sync.WaitGroup
	errOnce  sync.Once
	firstErr error
}

func (s *sender) send(ctx context.Context, cl *kgo.Client, rec *kgo.Record, p Published, done func(Published)) {
	s.wg.Add(1)
	cl.Produce(ctx, rec, func(r *kgo.Record, err error) {
		defer s.wg.Done()
		if err != nil {
			s.errOnce.Do(func() { s.firstErr = fmt.Errorf("demo publish to %s: %w", r.Topic, err) })
			return
		}
		p.Topic, p.Partition, p.Offset, p.Timestamp = r.Topic, r.Partition, r.Offset, r.Timestamp
		done(p)
	})
}

func (s *sender) wait() error {
	s.wg.Wait()
	return s.firstErr
}
