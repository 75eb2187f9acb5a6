package demo

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/ordo-dev/ordo/publish"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Command types of the orders saga (examples/orders/ordo.yaml, processes:).
const (
	CmdReserveInventory = "com.acme.ordo.commands.ReserveInventory"
	CmdNotifyCustomer   = "com.acme.ordo.commands.NotifyCustomer"
	CmdCapturePayment   = "com.acme.ordo.commands.CapturePayment"
	CmdShipOrder        = "com.acme.ordo.commands.ShipOrder"
	CmdCancelOrder      = "com.acme.ordo.commands.CancelOrder"
	CmdReleaseInventory = "com.acme.ordo.commands.ReleaseInventory"
	CmdVoidPayment      = "com.acme.ordo.commands.VoidPayment"
)

// Outcomes the saga generator plans for an order.
const (
	OutcomeHappy    = "happy"    // PaymentAuthorized + InventoryReserved → ShipOrder
	OutcomeDeclined = "declined" // PaymentDeclined (+ reserved, shortage or no stock leg) → CancelOrder
	OutcomeShortage = "shortage" // InventoryShortage (+ authorized or no payment leg) → CancelOrder
	OutcomeTimeout  = "timeout"  // no payment leg (+ reserved or nothing) → CancelOrder at the deadline
)

// OrderPlan is what the saga generator planned for one order.
type OrderPlan struct {
	Order   string
	Outcome string
	// Legs are the payment and warehouse events besides OrderPlaced, in
	// publishing order.
	Legs []string
	// Early is the leg published before OrderPlaced ("" for none): ordo
	// must buffer it until the order starts.
	Early string
}

// SagaOptions shape the saga traffic.
type SagaOptions struct {
	Orders         int     // orders to publish (0 = until Run's context ends)
	Rate           float64 // records per second (0 = as fast as possible)
	PoisonEvery    int     // every Nth record is poison (0 = none)
	DuplicateEvery int     // every Nth record re-delivers an earlier valid one (0 = none)
	Seed           uint64  // the same seed plans the same orders, legs, order of records and ids (0 = 1)
	// Topics override the demo topic names (TopicOrders, TopicPayments,
	// TopicWarehouse) when set.
	Topics map[string]string
}

// SagaGenerator publishes orders for the orders saga through the Publisher
// SDK: per order an OrderPlaced and a mix of payment and warehouse legs
// (happy, declined, shortage, timeout), legs in random order and
// interleaved with other orders, sometimes a leg before its OrderPlaced,
// plus poison records and duplicate deliveries (the same record re-sent,
// same envelope id). Order and event ids contain the seed, so runs with
// different seeds never share an order (ordo keeps finished orders).
type SagaGenerator struct {
	pub    *publish.Publisher
	cl     *kgo.Client
	opts   SagaOptions
	poison *Generator // the stateless generator's poison records

	// Planning state (Run's goroutine only): orders are planned in blocks
	// so that an unbounded run needs no unbounded plan up front.
	planRng *rand.Rand
	planned int

	mu        sync.Mutex
	plans     []OrderPlan
	published []Published
}

// scheduled is one planned valid record.
type scheduled struct {
	at    float64 // position in the stream, in records
	order int
	typ   string
}

// The traffic mix. Weights are out of 100.
const (
	weightHappy    = 60
	weightDeclined = 18
	weightShortage = 12 // the rest (10) times out
	// earlyPercent of the orders publish one leg before OrderPlaced.
	earlyPercent = 15
	// legWindow is how far (in records) a leg may trail its OrderPlaced,
	// so that the legs of several orders interleave.
	legWindow = 24.0
	// dupLookback is how many recent valid records a duplicate picks from.
	dupLookback = 64
	// planBlock orders are planned (and their records ordered) at a time.
	planBlock = 64
)

// NewSagaGenerator returns a generator writing with cl (an idempotent,
// non-transactional client) through pub. The seed fixes the plan.
func NewSagaGenerator(cl *kgo.Client, pub *publish.Publisher, opts SagaOptions) *SagaGenerator {
	if opts.Seed == 0 {
		opts.Seed = 1
	}
	return &SagaGenerator{pub: pub, cl: cl, opts: opts,
		poison:  &Generator{pub: pub, cl: cl, opts: Options{PoisonEvery: opts.PoisonEvery, Seed: opts.Seed, Topics: opts.Topics}},
		planRng: rand.New(rand.NewPCG(opts.Seed, 0x5a6a))}
}

// runID names this seed's run in order and event ids (base 36, short).
func (g *SagaGenerator) runID() string { return strconv.FormatUint(g.opts.Seed, 36) }

func (g *SagaGenerator) orderID(n int) string { return fmt.Sprintf("ord-%s-%06d", g.runID(), n) }

// nextBlock plans the next orders (outcome, legs) and returns their valid
// records in publishing order; nil when every order is planned. Legs
// interleave with the other orders of the block.
func (g *SagaGenerator) nextBlock() []scheduled {
	rng := g.planRng
	end := g.planned + planBlock
	if g.opts.Orders > 0 {
		end = min(end, g.opts.Orders)
	}
	var sched []scheduled
	var plans []OrderPlan
	for n := g.planned; n < end; n++ {
		p := OrderPlan{Order: g.orderID(n)}
		pick := func(opts ...string) string { return opts[rng.IntN(len(opts))] }
		switch w := rng.IntN(100); {
		case w < weightHappy:
			p.Outcome, p.Legs = OutcomeHappy, []string{PaymentAuthorized, InventoryReserved}
		case w < weightHappy+weightDeclined:
			p.Outcome, p.Legs = OutcomeDeclined, []string{PaymentDeclined}
			if l := pick(InventoryReserved, InventoryShortage, ""); l != "" {
				p.Legs = append(p.Legs, l)
			}
		case w < weightHappy+weightDeclined+weightShortage:
			p.Outcome, p.Legs = OutcomeShortage, []string{InventoryShortage}
			if l := pick(PaymentAuthorized, ""); l != "" {
				p.Legs = append(p.Legs, l)
			}
		default:
			// No payment leg: the deadline cancels the order. A
			// PaymentAuthorized would cancel the deadline, and an order
			// with a payment but no stock leg would wait forever.
			p.Outcome = OutcomeTimeout
			if l := pick(InventoryReserved, ""); l != "" {
				p.Legs = append(p.Legs, l)
			}
		}
		rng.Shuffle(len(p.Legs), func(i, j int) { p.Legs[i], p.Legs[j] = p.Legs[j], p.Legs[i] })
		base := float64(n) * 2.5 // about the records per order
		sched = append(sched, scheduled{at: base, order: n, typ: OrderPlaced})
		early := len(p.Legs) > 0 && rng.IntN(100) < earlyPercent
		for i, l := range p.Legs {
			at := base + 0.5 + rng.Float64()*legWindow
			if early && i == 0 {
				at = base - 0.1 - rng.Float64()*legWindow/2
				p.Early = l
			}
			sched = append(sched, scheduled{at: at, order: n, typ: l})
		}
		plans = append(plans, p)
	}
	g.planned = end
	g.mu.Lock()
	g.plans = append(g.plans, plans...)
	g.mu.Unlock()
	slices.SortStableFunc(sched, func(a, b scheduled) int {
		switch {
		case a.at < b.at:
			return -1
		case a.at > b.at:
			return 1
		}
		return 0
	})
	return sched
}

// Plans returns the orders planned so far (Run plans ahead of publishing:
// when it was stopped, the last orders may be published in part or not
// at all; Published says what was).
func (g *SagaGenerator) Plans() []OrderPlan {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.plans)
}

// Published returns every record written so far (valid events with their
// order, duplicates, poison).
func (g *SagaGenerator) Published() []Published {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.published)
}

// Run publishes every planned order (or until ctx ends) and waits until all
// records are acknowledged.
func (g *SagaGenerator) Run(ctx context.Context) error {
	rng := rand.New(rand.NewPCG(g.opts.Seed, 0x0dd0))
	var (
		out    sender
		recent []sent // recent valid records, for duplicates
	)
	start := time.Now()
	var sched []scheduled // the planned valid records not yet published
	for i := 1; ctx.Err() == nil; i++ {
		if len(sched) == 0 {
			if sched = g.nextBlock(); len(sched) == 0 {
				break
			}
		}
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
		case g.opts.DuplicateEvery > 0 && i%g.opts.DuplicateEvery == 0 && len(recent) > 0:
			// A producer retrying after a lost acknowledgement: the same
			// key, value and headers, hence the same envelope id.
			d := recent[rng.IntN(len(recent))]
			rec = &kgo.Record{Topic: d.rec.Topic, Key: d.rec.Key, Value: d.rec.Value, Headers: d.rec.Headers}
			p = d.pub
			p.Kind = Duplicate
		case g.opts.PoisonEvery > 0 && i%g.opts.PoisonEvery == 0:
			rec, p, err = g.poison.poison(ctx, rng, i)
		default:
			s := sched[0]
			sched = sched[1:]
			rec, p, err = g.valid(ctx, rng, s, i)
			if err == nil {
				recent = append(recent, sent{rec, p})
				if len(recent) > dupLookback {
					recent = recent[1:]
				}
			}
		}
		if err != nil {
			out.wait()
			return err
		}
		out.send(ctx, g.cl, rec, p, g.record)
	}
	return out.wait()
}

type sent struct {
	rec *kgo.Record
	pub Published
}

func (g *SagaGenerator) topic(name string) string {
	if t, ok := g.opts.Topics[name]; ok && t != "" {
		return t
	}
	return name
}

// valid builds the record of one planned event; its key (and so its
// correlation id) is the order id.
func (g *SagaGenerator) valid(ctx context.Context, rng *rand.Rand, s scheduled, i int) (*kgo.Record, Published, error) {
	order := g.orderID(s.order)
	topic := TopicWarehouse
	switch s.typ {
	case OrderPlaced:
		topic = TopicOrders
	case PaymentAuthorized, PaymentDeclined:
		topic = TopicPayments
	}
	v := eventValue(rng, s.typ, order, i)
	id := fmt.Sprintf("evt-%s-%08d", g.runID(), i)
	v["envelope"] = map[string]any{"id": id}
	r, err := g.pub.Record(ctx, g.topic(topic), s.typ, order, v)
	if err != nil {
		return nil, Published{}, err
	}
	return r, Published{Kind: Valid, Type: s.typ, EventID: id, Order: order}, nil
}

// record notes a published record.
func (g *SagaGenerator) record(p Published) {
	g.mu.Lock()
	g.published = append(g.published, p)
	g.mu.Unlock()
}
