package demo

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/producer"
)

// fixture is a synthetic run of the orders saga: what was published, which
// records were processed, and the command and dead-letter records ordo
// wrote. clean() is a run without a broken invariant; each violation test
// breaks one thing.
type fixture struct {
	pub     []Published
	pending map[string]bool // event ids not processed yet
	recs    []*kgo.Record
	check   SagaCheck
	offsets map[string]int64
}

var t0 = time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)

const (
	tOrders = TopicOrders
	tPay    = TopicPayments
	tWare   = TopicWarehouse
	tDLQ    = "ordo.dead-letter.v1"
	tLog    = "ordo-orders.process-log"
)

func (f *fixture) next(topic string) int64 {
	o := f.offsets[topic]
	f.offsets[topic] = o + 1
	return o
}

// event publishes a valid event of order at ts.
func (f *fixture) event(order, typ, id string, ts time.Time) Published {
	topic := map[string]string{OrderPlaced: tOrders, PaymentAuthorized: tPay, PaymentDeclined: tPay, InventoryReserved: tWare, InventoryShortage: tWare}[typ]
	p := Published{Topic: topic, Offset: f.next(topic), Kind: Valid, Type: typ, EventID: id, Order: order, Timestamp: ts}
	f.pub = append(f.pub, p)
	return p
}

func in(p Published) string { return ref(inputRef{p.Topic, p.Partition, p.Offset}) }

// cmd appends a command record of order caused by causation, derived from
// the upstream record input.
func (f *fixture) cmd(typ, id, order, causation, input string, ts time.Time) *kgo.Record {
	topic := "commands." + strings.ToLower(short(typ)) + ".v1"
	r := &kgo.Record{Topic: topic, Offset: f.next(topic), Timestamp: ts, Key: []byte(order), Headers: []kgo.RecordHeader{
		{Key: producer.HeaderID, Value: []byte(id)},
		{Key: producer.HeaderType, Value: []byte(typ)},
		{Key: producer.HeaderCorrelationID, Value: []byte(order)},
		{Key: producer.HeaderCausationID, Value: []byte(causation)},
		{Key: producer.HeaderInput, Value: []byte(input)},
	}}
	f.recs = append(f.recs, r)
	return r
}

// deadLetter appends the dead letter of p as stage 1 writes it (source
// headers name the upstream record) or, with viaLog, as stage 2 writes it
// (source = the process-log record, ordo-origin = the upstream record).
func (f *fixture) deadLetter(p Published, viaLog bool) *kgo.Record {
	src, part, off := p.Topic, p.Partition, p.Offset
	var hs []kgo.RecordHeader
	if viaLog {
		hs = append(hs, kgo.RecordHeader{Key: producer.HeaderOrigin, Value: []byte(in(p))})
		src, part, off = tLog, 2, f.next(tLog)
	}
	hs = append(hs,
		kgo.RecordHeader{Key: producer.HeaderDLQError, Value: []byte("decode: " + p.Why)},
		kgo.RecordHeader{Key: producer.HeaderDLQSourceTopic, Value: []byte(src)},
		kgo.RecordHeader{Key: producer.HeaderDLQSourcePartition, Value: []byte(strconv.Itoa(int(part)))},
		kgo.RecordHeader{Key: producer.HeaderDLQSourceOffset, Value: []byte(strconv.FormatInt(off, 10))},
	)
	r := &kgo.Record{Topic: tDLQ, Offset: f.next(tDLQ), Headers: hs}
	f.recs = append(f.recs, r)
	return r
}

func (f *fixture) find(order, typ string) *kgo.Record {
	for _, r := range f.recs {
		if headerValue(r, producer.HeaderCorrelationID) == order && headerValue(r, producer.HeaderType) == typ {
			return r
		}
	}
	return nil
}

func (f *fixture) remove(r *kgo.Record) {
	f.recs = slices.DeleteFunc(f.recs, func(x *kgo.Record) bool { return x == r })
}

func (f *fixture) setHeader(r *kgo.Record, key, value string) {
	for i := range r.Headers {
		if r.Headers[i].Key == key {
			r.Headers[i].Value = []byte(value)
			return
		}
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

func (f *fixture) run() *SagaReport {
	processed := func(p Published) bool { return !f.pending[p.EventID] || p.Kind != Valid }
	return checkSaga(f.pub, processed, f.recs, f.check)
}

// clean: o1 shipped, o2 declined after its stock was reserved (released),
// o3 short of stock after its payment was authorized (voided), o4 timed out
// with reserved stock (released), o5 waiting for its deadline, o6 with a leg
// not processed yet, o7 not started; a dropped duplicate delivery and two
// poison records (dead-lettered by stage 1 and by stage 2).
func clean() *fixture {
	now := t0.Add(time.Minute)
	f := &fixture{pending: map[string]bool{}, offsets: map[string]int64{},
		check: SagaCheck{DeadLetterTopic: tDLQ, Deadline: 20 * time.Second, Now: func() time.Time { return now }}}
	ts := t0
	// o1: happy.
	op1 := f.event("o1", OrderPlaced, "e1", ts)
	a1 := f.event("o1", PaymentAuthorized, "e2", ts.Add(time.Second))
	r1 := f.event("o1", InventoryReserved, "e3", ts.Add(2*time.Second))
	f.cmd(CmdReserveInventory, "c1", "o1", "e1", in(op1), ts)
	f.cmd(CmdNotifyCustomer, "c2", "o1", "e1", in(op1), ts)
	f.cmd(CmdCapturePayment, "c3", "o1", "e2", in(a1), ts)
	f.cmd(CmdShipOrder, "c4", "o1", "e3", in(r1), ts)
	f.cmd(CmdNotifyCustomer, "c5", "o1", "e3", in(r1), ts)
	// o2: stock reserved, then payment declined (the reservation came
	// first, before the OrderPlaced: buffered, applied with it).
	r2 := f.event("o2", InventoryReserved, "e5", ts)
	op2 := f.event("o2", OrderPlaced, "e4", ts)
	d2 := f.event("o2", PaymentDeclined, "e6", ts.Add(time.Second))
	_ = r2
	f.cmd(CmdReserveInventory, "c6", "o2", "e4", in(op2), ts)
	f.cmd(CmdCancelOrder, "c7", "o2", "e6", in(d2), ts)
	f.cmd(CmdReleaseInventory, "c8", "o2", "e6", in(d2), ts)
	// o3: payment authorized, then a shortage.
	op3 := f.event("o3", OrderPlaced, "e7", ts)
	f.event("o3", PaymentAuthorized, "e8", ts)
	s3 := f.event("o3", InventoryShortage, "e9", ts)
	f.cmd(CmdReserveInventory, "c9", "o3", "e7", in(op3), ts)
	f.cmd(CmdCancelOrder, "c10", "o3", "e9", in(s3), ts)
	f.cmd(CmdVoidPayment, "c11", "o3", "e9", in(s3), ts)
	// o4: stock reserved, no payment: the deadline cancels it.
	op4 := f.event("o4", OrderPlaced, "e10", ts)
	f.event("o4", InventoryReserved, "e11", ts)
	f.cmd(CmdReserveInventory, "c12", "o4", "e10", in(op4), ts)
	f.cmd(CmdCancelOrder, "c13", "o4", "timer-o4", tLog+"/3/77", ts.Add(21*time.Second))
	f.cmd(CmdReleaseInventory, "c14", "o4", "timer-o4", tLog+"/3/77", ts.Add(21*time.Second))
	// o5: placed 5s before the check, nothing else yet.
	op5 := f.event("o5", OrderPlaced, "e12", now.Add(-5*time.Second))
	f.cmd(CmdReserveInventory, "c15", "o5", "e12", in(op5), now.Add(-5*time.Second))
	// o6: placed long ago; its payment is published but not processed.
	op6 := f.event("o6", OrderPlaced, "e13", ts)
	f.event("o6", PaymentAuthorized, "e14", ts)
	f.pending["e14"] = true
	f.cmd(CmdReserveInventory, "c16", "o6", "e13", in(op6), ts)
	// o7: its OrderPlaced is not processed yet.
	f.event("o7", OrderPlaced, "e15", ts)
	f.pending["e15"] = true
	// A duplicate delivery of e2 (dropped: no commands).
	dup := a1
	dup.Kind, dup.Offset = Duplicate, f.next(tPay)
	f.pub = append(f.pub, dup)
	// Poison: one refused by stage 1, one by stage 2.
	p1 := Published{Topic: tOrders, Offset: f.next(tOrders), Kind: Poison, Why: "not Confluent-framed (JSON)"}
	p2 := Published{Topic: tWare, Offset: f.next(tWare), Kind: Poison, Why: "wrong magic byte"}
	f.pub = append(f.pub, p1, p2)
	f.deadLetter(p1, false)
	f.deadLetter(p2, true)
	return f
}

func TestCheckSagaClean(t *testing.T) {
	rep := clean().run()
	if !rep.OK {
		t.Fatalf("clean run reported violations %v: %s", rep.Violations, strings.Join(rep.Problems, "\n"))
	}
	want := SagaReport{OK: true, Orders: 6, Shipped: 1, Cancelled: 3, CancelledDeclined: 1, CancelledShortage: 1, CancelledTimeout: 1,
		InFlight: 2, NotStarted: 1, Published: 18, NotYetProcessed: 2, PoisonPublished: 2, PoisonDeadLettered: 2,
		DuplicatesPublished: 1, DuplicatesDropped: 1, CommandRecords: 16, CommandIDs: 16, CommandsSeen: 16, DeadLetters: 2}
	got := *rep
	got.CommandsByType, got.Violations, got.Problems = nil, nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("report\n got %+v\nwant %+v", got, want)
	}
	if rep.CommandsByType[CmdShipOrder] != 1 || rep.CommandsByType[CmdReserveInventory] != 6 {
		t.Errorf("commands by type = %v", rep.CommandsByType)
	}
	line := rep.Summary()
	wantLine := "verify OK: orders 6 · shipped 1 · cancelled 3 (declined 1, shortage 1, timeout 1) · in flight 2 · not started 1 · duplicates dropped 1 · poison 2 dead-lettered · command ids unique (16)"
	if line != wantLine {
		t.Errorf("summary\n got %s\nwant %s", line, wantLine)
	}
}

// TestCheckSagaViolations breaks one invariant at a time; each must be
// reported under its kind, with a problem naming the order or record.
func TestCheckSagaViolations(t *testing.T) {
	cases := []struct {
		kind   string
		want   string // in the problem text
		mutate func(f *fixture)
	}{
		{VRepeatedCommandID, "ordo-id c4", func(f *fixture) {
			r := *f.find("o1", CmdShipOrder)
			r.Offset = 99
			f.recs = append(f.recs, &r)
		}},
		{VMalformedCommand, "has no ordo-id", func(f *fixture) {
			r := f.cmd(CmdNotifyCustomer, "x", "o1", "e1", "", t0)
			f.setHeader(r, producer.HeaderID, "")
		}},
		{VDuplicateDelivery, "duplicate delivery", func(f *fixture) {
			dup := f.pub[len(f.pub)-3]
			f.cmd(CmdCapturePayment, "c-dup", "o1", "e2", in(dup), t0)
		}},
		{VShipAndCancel, "order o1: both", func(f *fixture) {
			f.cmd(CmdCancelOrder, "c-late", "o1", "timer-o1", tLog+"/0/5", t0.Add(30*time.Second))
		}},
		{VRepeatedCommand, "order o2: 2 CancelOrder", func(f *fixture) {
			f.cmd(CmdCancelOrder, "c7b", "o2", "e6", "x/0/1", t0)
		}},
		{VMissingTerminal, "order o3: no ShipOrder or CancelOrder", func(f *fixture) {
			f.remove(f.find("o3", CmdCancelOrder))
			f.remove(f.find("o3", CmdVoidPayment))
		}},
		{VDeadlineMissed, "order o5: its deadline passed", func(f *fixture) {
			f.check.Now = func() time.Time { return t0.Add(10 * time.Minute) }
		}},
		{VTimerEarly, "order o4: timeout CancelOrder c13", func(f *fixture) {
			f.find("o4", CmdCancelOrder).Timestamp = t0.Add(5 * time.Second)
		}},
		{VShipWithoutLegs, "order o6: ShipOrder", func(f *fixture) {
			f.cmd(CmdShipOrder, "c-ship6", "o6", "e14", "x/0/2", t0)
		}},
		{VCancelWithoutCause, "caused by its InventoryReserved event e5", func(f *fixture) {
			f.setHeader(f.find("o2", CmdCancelOrder), producer.HeaderCausationID, "e5")
		}},
		{VCompensationNoCancel, "order o1: ReleaseInventory", func(f *fixture) {
			f.cmd(CmdReleaseInventory, "c-rel1", "o1", "e3", "x/0/3", t0)
		}},
		{VCompensationNoLeg, "order o2: VoidPayment", func(f *fixture) {
			f.cmd(CmdVoidPayment, "c-void2", "o2", "e6", "x/0/4", t0)
		}},
		{VMissingCompensation, "order o3: cancelled", func(f *fixture) {
			f.remove(f.find("o3", CmdVoidPayment))
		}},
		{VMissingReserve, "order o1: OrderPlaced", func(f *fixture) {
			f.remove(f.find("o1", CmdReserveInventory))
		}},
		{VPoisonNotDeadLettered, "wrong magic byte", func(f *fixture) {
			f.recs = f.recs[:len(f.recs)-1]
		}},
		{VPoisonDeadLetteredTwice, "dead-lettered 2 times", func(f *fixture) {
			f.deadLetter(f.pub[len(f.pub)-2], false)
		}},
		{VPoisonCommands, "poison record", func(f *fixture) {
			f.cmd(CmdReserveInventory, "c-poison", "poison-1", "", in(f.pub[len(f.pub)-2]), t0)
		}},
		{VValidDeadLettered, "event e2", func(f *fixture) {
			f.deadLetter(f.pub[1], true)
		}},
		{VDeadLetterNoReason, "no ordo-dlq-error", func(f *fixture) {
			f.setHeader(f.recs[len(f.recs)-1], producer.HeaderDLQError, "")
		}},
	}
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.kind] = true
		t.Run(tc.kind, func(t *testing.T) {
			f := clean()
			tc.mutate(f)
			rep := f.run()
			if rep.OK || rep.Violations[tc.kind] == 0 {
				t.Fatalf("%s not detected: ok=%v violations=%v problems:\n%s", tc.kind, rep.OK, rep.Violations, strings.Join(rep.Problems, "\n"))
			}
			found := false
			for _, p := range rep.Problems {
				if strings.HasPrefix(p, tc.kind+": ") && strings.Contains(p, tc.want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no %s problem mentions %q:\n%s", tc.kind, tc.want, strings.Join(rep.Problems, "\n"))
			}
			if s := rep.Summary(); !strings.HasPrefix(s, "verify FAILED") || !strings.Contains(s, tc.kind) {
				t.Errorf("summary does not say FAILED with %s: %s", tc.kind, s)
			}
		})
	}
	for _, k := range allViolations {
		if !covered[k] {
			t.Errorf("violation %s has no test case", k)
		}
	}
}

// allViolations lists every kind checkSaga reports.
var allViolations = []string{VRepeatedCommandID, VMalformedCommand, VDuplicateDelivery, VShipAndCancel, VRepeatedCommand,
	VMissingTerminal, VDeadlineMissed, VTimerEarly, VShipWithoutLegs, VCancelWithoutCause, VCompensationNoCancel,
	VCompensationNoLeg, VMissingCompensation, VMissingReserve, VPoisonNotDeadLettered, VPoisonDeadLetteredTwice,
	VPoisonCommands, VValidDeadLettered, VDeadLetterNoReason}

// Orders that legitimately have no terminal command yet are in flight, not
// failures: a deadline not passed (or within the grace), a leg not yet
// processed, an unknown deadline.
func TestCheckSagaInFlight(t *testing.T) {
	f := clean()
	f.check.Now = func() time.Time { return t0.Add(time.Minute).Add(17 * time.Second) } // o5's deadline + 2s, within the default grace
	if rep := f.run(); !rep.OK || rep.InFlight != 2 {
		t.Errorf("within the grace: ok=%v in flight %d (want 2) %v", rep.OK, rep.InFlight, rep.Problems)
	}
	f.check.Grace = time.Second
	if rep := f.run(); rep.OK || rep.Violations[VDeadlineMissed] != 1 || rep.InFlight != 1 {
		t.Errorf("past the grace: ok=%v in flight %d violations %v", rep.OK, rep.InFlight, rep.Violations)
	}
	f.check.Deadline = 0
	if rep := f.run(); !rep.OK || rep.InFlight != 2 {
		t.Errorf("unknown deadline: ok=%v in flight %d %v", rep.OK, rep.InFlight, rep.Problems)
	}
}

// Problems are capped at 20; Violations count them all.
func TestCheckSagaProblemCap(t *testing.T) {
	f := clean()
	ship := f.find("o1", CmdShipOrder)
	for i := range 30 {
		r := *ship
		r.Offset = int64(100 + i)
		f.recs = append(f.recs, &r)
	}
	rep := f.run()
	if len(rep.Problems) != maxProblems || rep.ProblemCount() <= maxProblems {
		t.Errorf("problems %d (cap %d), counted %d", len(rep.Problems), maxProblems, rep.ProblemCount())
	}
}

func TestNum(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", 4211: "4,211", 1234567: "1,234,567", -4211: "-4,211"} {
		if got := num(n); got != want {
			t.Errorf("num(%d) = %s, want %s", n, got, want)
		}
	}
}
