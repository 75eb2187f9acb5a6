package demo

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

func newCluster(t *testing.T, topics ...string) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, topics...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

func newClient(t *testing.T, brokers []string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// planAll plans every order without publishing.
func planAll(opts SagaOptions) ([]OrderPlan, []scheduled) {
	g := NewSagaGenerator(nil, nil, opts)
	var all []scheduled
	for b := g.nextBlock(); len(b) > 0; b = g.nextBlock() {
		all = append(all, b...)
	}
	return g.Plans(), all
}

func TestSagaPlanDeterministic(t *testing.T) {
	a, sa := planAll(SagaOptions{Orders: 400, Seed: 7})
	b, sb := planAll(SagaOptions{Orders: 400, Seed: 7})
	if !reflect.DeepEqual(a, b) || !reflect.DeepEqual(sa, sb) {
		t.Fatal("the same seed planned different orders")
	}
	if len(a) != 400 {
		t.Fatalf("planned %d orders, want 400", len(a))
	}
	records := 0
	for _, p := range a {
		records += 1 + len(p.Legs)
	}
	if len(sa) != records {
		t.Errorf("scheduled %d records for orders with %d events", len(sa), records)
	}
	c, _ := planAll(SagaOptions{Orders: 400, Seed: 8})
	if a[0].Order == c[0].Order {
		t.Errorf("seeds 7 and 8 share order id %s: a second run would find the first run's finished orders", a[0].Order)
	}
	outcomes := map[string]int{}
	early := 0
	for _, p := range a {
		outcomes[p.Outcome]++
		has := map[string]int{}
		for _, l := range p.Legs {
			has[l]++
		}
		for l, n := range has {
			if n > 1 {
				t.Errorf("%s: %d %s legs", p.Order, n, short(l))
			}
		}
		if p.Early != "" {
			early++
			if p.Legs[0] != p.Early {
				t.Errorf("%s: early leg %s is not its first leg %v", p.Order, p.Early, p.Legs)
			}
		}
		pay := has[PaymentAuthorized] + has[PaymentDeclined]
		stock := has[InventoryReserved] + has[InventoryShortage]
		ok := false
		switch p.Outcome {
		case OutcomeHappy:
			ok = has[PaymentAuthorized] == 1 && has[InventoryReserved] == 1 && len(p.Legs) == 2
		case OutcomeDeclined:
			ok = has[PaymentDeclined] == 1 && pay == 1 && stock <= 1
		case OutcomeShortage:
			ok = has[InventoryShortage] == 1 && stock == 1 && has[PaymentDeclined] == 0
		case OutcomeTimeout:
			// No payment (it would cancel the deadline), no shortage (it
			// would cancel the order first).
			ok = pay == 0 && has[InventoryShortage] == 0
		}
		if !ok {
			t.Errorf("%s: outcome %s with legs %v", p.Order, p.Outcome, p.Legs)
		}
		// Every planned order ends: a payment without a stock leg would
		// wait forever (the payment cancels the deadline).
		if has[PaymentAuthorized] == 1 && stock == 0 {
			t.Errorf("%s: authorized payment without a stock leg never ends", p.Order)
		}
	}
	for _, o := range []string{OutcomeHappy, OutcomeDeclined, OutcomeShortage, OutcomeTimeout} {
		if outcomes[o] < 20 {
			t.Errorf("only %d %s orders of 400: %v", outcomes[o], o, outcomes)
		}
	}
	if early < 20 {
		t.Errorf("only %d of 400 orders publish a leg before OrderPlaced", early)
	}
}

// demoSerde encodes the demo events through the embedded registry, one
// subject per event type (several types share a topic).
func demoSerde(t *testing.T) *schemas.Serde {
	t.Helper()
	reg := testkit.StartDemoRegistry(t)
	readers, err := schemas.Demo()
	if err != nil {
		t.Fatal(err)
	}
	return schemas.NewSerde(schemas.NewRegistry(reg.Client), readers, schemas.WithSubjectStrategy(schemas.TopicRecordName))
}

// With Orders 0 the generator plans block by block until its context ends.
func TestSagaGeneratorUnbounded(t *testing.T) {
	brokers := newCluster(t, TopicOrders, TopicPayments, TopicWarehouse)
	cl := newClient(t, brokers)
	g := NewSagaGenerator(cl, publish.New(cl, demoSerde(t), "demo"), SagaOptions{Rate: 2000, Seed: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	_ = g.Run(ctx) // ends with the context (records in flight may fail with it)
	if n := len(g.Published()); n < 100 || len(g.Plans()) <= planBlock {
		t.Errorf("published %d records, planned %d orders in 400ms at 2000/s", n, len(g.Plans()))
	}
}

// TestSagaGeneratorPublishes runs the generator against kfake and the
// embedded registry and reads back what it wrote.
func TestSagaGeneratorPublishes(t *testing.T) {
	brokers := newCluster(t, TopicOrders, TopicPayments, TopicWarehouse)
	serde := demoSerde(t)
	cl := newClient(t, brokers, kgo.ProducerLinger(time.Millisecond))
	opts := SagaOptions{Orders: 120, PoisonEvery: 17, DuplicateEvery: 13, Seed: 42}
	g := NewSagaGenerator(cl, publish.New(cl, serde, "demo"), opts)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	pub := g.Published()
	plans := g.Plans()
	wantValid := 0
	for _, p := range plans {
		wantValid += 1 + len(p.Legs)
	}
	n := map[Kind]int{}
	for _, p := range pub {
		n[p.Kind]++
	}
	total := n[Valid] + n[Poison] + n[Duplicate]
	if n[Valid] != wantValid || n[Poison] == 0 || n[Duplicate] == 0 {
		t.Fatalf("published valid %d (want %d), poison %d, duplicates %d", n[Valid], wantValid, n[Poison], n[Duplicate])
	}
	// Every 17th record poison, every 13th a duplicate (duplicates first).
	if wantDup := total / 13; n[Duplicate] != wantDup {
		t.Errorf("duplicates %d of %d records, want %d", n[Duplicate], total, wantDup)
	}

	// Read every record back.
	rd := newClient(t, brokers, kgo.ConsumeTopics(TopicOrders, TopicPayments, TopicWarehouse), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	got := map[inputRef]*kgo.Record{}
	for len(got) < total && ctx.Err() == nil {
		rd.PollFetches(ctx).EachRecord(func(r *kgo.Record) { got[at(r)] = r })
	}
	if len(got) != total {
		t.Fatalf("read back %d records, published %d", len(got), total)
	}
	seq := func(id string) int { i, _ := strconv.Atoi(id[strings.LastIndexByte(id, '-')+1:]); return i }
	valid := map[string]*kgo.Record{}
	byOrder := map[string]map[string]int{} // order → type → publishing sequence
	for _, p := range pub {
		if p.Kind == Valid {
			valid[p.EventID] = got[inputRef{p.Topic, p.Partition, p.Offset}]
			if byOrder[p.Order] == nil {
				byOrder[p.Order] = map[string]int{}
			}
			byOrder[p.Order][p.Type] = seq(p.EventID)
		}
	}
	for _, p := range pub {
		r := got[inputRef{p.Topic, p.Partition, p.Offset}]
		switch p.Kind {
		case Valid, Duplicate:
			if string(r.Key) != p.Order || headerValue(r, producer.HeaderCorrelationID) != p.Order || headerValue(r, producer.HeaderID) != p.EventID {
				t.Errorf("%s %s: key %q, correlation id %q, id %q; want order %s, id %s", kindName(p.Kind), ref(at(r)), r.Key,
					headerValue(r, producer.HeaderCorrelationID), headerValue(r, producer.HeaderID), p.Order, p.EventID)
			}
			if !strings.HasPrefix(p.Order, "ord-"+strconv.FormatUint(42, 36)+"-") {
				t.Errorf("order id %s does not carry the seed", p.Order)
			}
			if p.Timestamp.IsZero() {
				t.Errorf("%s: no timestamp recorded", ref(at(r)))
			}
			if p.Kind == Duplicate {
				orig := valid[p.EventID]
				if orig == nil || !bytes.Equal(orig.Value, r.Value) || orig.Partition != r.Partition || orig.Offset >= r.Offset {
					t.Errorf("duplicate %s of %s is not a later re-send of the same record", ref(at(r)), p.EventID)
				}
			}
		case Poison:
			if p.Why == "" {
				t.Errorf("poison %s without a reason", ref(at(r)))
			}
		}
	}
	early := 0
	for _, p := range plans {
		s := byOrder[p.Order]
		if p.Early != "" {
			early++
			if s[p.Early] > s[OrderPlaced] {
				t.Errorf("%s: early leg %s published after OrderPlaced", p.Order, short(p.Early))
			}
		}
	}
	if early == 0 {
		t.Error("no order published a leg before its OrderPlaced")
	}
}

// TestVerifySagaKafka runs VerifySaga's reading against kfake: command
// records written in transactions (an aborted one must not count), the
// forwarding group's committed offsets, and the process log's unprocessed
// tail (an event forwarded but not processed yet keeps its order in flight).
func TestVerifySagaKafka(t *testing.T) {
	const (
		group   = "ordo-orders"
		pgroup  = group + ".process"
		plog    = group + ".process-log"
		shipT   = "commands.ship-order.v1"
		resT    = "commands.reserve-inventory.v1"
		cancelT = "commands.cancel-order.v1"
	)
	brokers := newCluster(t, TopicOrders, TopicPayments, TopicWarehouse, plog, shipT, resT, cancelT, tDLQ)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	plain := newClient(t, brokers)
	adm := kadm.NewClient(plain)
	cmdTopics := []string{cancelT, resT, shipT}
	from, err := Since(ctx, adm, append(cmdTopics, tDLQ)...)
	if err != nil {
		t.Fatal(err)
	}

	// Upstream: o1 placed, authorized, reserved; o2 placed, declined.
	var pub []Published
	up := func(order, typ, id, topic string) Published {
		r := plain.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte(order), Value: []byte(id)})
		if err := r.FirstErr(); err != nil {
			t.Fatal(err)
		}
		rec := r[0].Record
		p := Published{Topic: topic, Partition: rec.Partition, Offset: rec.Offset, Timestamp: rec.Timestamp, Kind: Valid, Type: typ, EventID: id, Order: order}
		pub = append(pub, p)
		return p
	}
	op1 := up("o1", OrderPlaced, "e1", TopicOrders)
	up("o1", PaymentAuthorized, "e2", TopicPayments)
	r1 := up("o1", InventoryReserved, "e3", TopicWarehouse)
	op2 := up("o2", OrderPlaced, "e4", TopicOrders)
	d2 := up("o2", PaymentDeclined, "e5", TopicPayments)
	// Stage 1 forwarded all of them; stage 2 processed all but o2's
	// decline.
	var upOffs kadm.Offsets
	for _, p := range pub {
		upOffs.AddOffset(p.Topic, p.Partition, p.Offset+1, -1)
		r := &kgo.Record{Topic: plog, Key: []byte(p.Order), Headers: []kgo.RecordHeader{{Key: producer.HeaderOrigin, Value: []byte(in(p))}}}
		if err := plain.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if p.EventID == "e4" {
			var lo kadm.Offsets
			lo.AddOffset(plog, 0, r.Offset+1, -1)
			commit(ctx, t, adm, pgroup, lo)
		}
	}
	commit(ctx, t, adm, group, upOffs)

	txn := newClient(t, brokers, kgo.TransactionalID("ordo-orders-dev-process"))
	cmd := func(topic, typ, id, order, causation, input string) *kgo.Record {
		return &kgo.Record{Topic: topic, Key: []byte(order), Headers: []kgo.RecordHeader{
			{Key: producer.HeaderID, Value: []byte(id)}, {Key: producer.HeaderType, Value: []byte(typ)},
			{Key: producer.HeaderCorrelationID, Value: []byte(order)}, {Key: producer.HeaderCausationID, Value: []byte(causation)},
			{Key: producer.HeaderInput, Value: []byte(input)},
		}}
	}
	inTxn := func(commit bool, rs ...*kgo.Record) {
		t.Helper()
		if err := txn.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		if err := txn.ProduceSync(ctx, rs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		if err := txn.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
			t.Fatal(err)
		}
	}
	inTxn(true,
		cmd(resT, CmdReserveInventory, "c1", "o1", "e1", in(op1)),
		cmd(shipT, CmdShipOrder, "c2", "o1", "e3", in(r1)),
		cmd(resT, CmdReserveInventory, "c3", "o2", "e4", in(op2)))
	// An aborted transaction's records are not output.
	inTxn(false, cmd(shipT, CmdShipOrder, "c2", "o1", "e3", in(r1)), cmd(cancelT, CmdCancelOrder, "c4", "o2", "e5", in(d2)))

	verifier := newClient(t, brokers, kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.KeepControlRecords())
	check := SagaCheck{ForwardGroup: group, ProcessGroup: pgroup, ProcessLog: plog, CommandTopics: cmdTopics, DeadLetterTopic: tDLQ, From: from, Deadline: time.Hour}
	rep, err := VerifySaga(ctx, verifier, adm, pub, check)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Orders != 2 || rep.Shipped != 1 || rep.InFlight != 1 || rep.NotYetProcessed != 1 || rep.CommandIDs != 3 {
		t.Fatalf("want OK, 2 orders, 1 shipped, 1 in flight (its decline waits in the process log), 3 command ids; got %+v", rep)
	}

	// Without the process log's view the decline counts as processed, and
	// o2 lacks its CancelOrder: the tail is what keeps it in flight.
	noTail := check
	noTail.ProcessGroup = ""
	rep, err = VerifySaga(ctx, verifier, adm, pub, noTail)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Violations[VMissingTerminal] != 1 {
		t.Fatalf("without the process-log tail: want missing_terminal for o2, got %v %v", rep.Violations, rep.Problems)
	}

	// A committed replay of ShipOrder c2 is caught.
	inTxn(true, cmd(shipT, CmdShipOrder, "c2", "o1", "e3", in(r1)))
	rep, err = VerifySaga(ctx, verifier, adm, pub, check)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK || rep.Violations[VRepeatedCommandID] != 1 {
		t.Fatalf("want repeated_command_id, got %v %v", rep.Violations, rep.Problems)
	}
	if s := rep.Summary(); !strings.Contains(s, "command ids REPEATED 1 times") {
		t.Errorf("summary: %s", s)
	}
}

func commit(ctx context.Context, t *testing.T, adm *kadm.Client, group string, o kadm.Offsets) {
	t.Helper()
	resp, err := adm.CommitOffsets(ctx, group, o)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		t.Fatal(fmt.Errorf("commit %s: %w", group, err))
	}
}
