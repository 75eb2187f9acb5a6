package processes

import (
	"math/big"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/processors"
)

const saga = "order-fulfilment"

func TestSagaJoinInEitherOrder(t *testing.T) {
	for _, tc := range []struct {
		name  string
		first func(string, time.Time) *processors.Event
		then  func(string, time.Time) *processors.Event
	}{
		{"payment first", paymentAuthorized, inventoryReserved},
		{"stock first", inventoryReserved, paymentAuthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, sagaEngine(t))
			cmds := h.mustSend(orderPlaced("o-1", t0))
			if got := types(cmds); !slices.Equal(got, []string{"ReserveInventory"}) {
				t.Fatalf("OrderPlaced emitted %v", got)
			}
			if !hasMark(h.marks, saga, "started") || !hasMark(h.marks, saga, "timer_set") {
				t.Errorf("marks %v lack started/timer_set", h.marks)
			}
			if got := h.mustSend(tc.first("o-1", t0.Add(time.Second))); len(got) != 0 {
				t.Fatalf("the first leg emitted %v; a join waits for both", types(got))
			}
			in, _ := h.instance("o-1", saga)
			if in.State != "awaiting_payment_and_stock" || len(in.Joined) != 1 {
				t.Fatalf("after one leg: state %s joined %v", in.State, in.Joined)
			}
			cmds = h.mustSend(tc.then("o-1", t0.Add(2*time.Second)))
			if got := types(cmds); !slices.Equal(got, []string{"ShipOrder", "NotifyCustomer"}) {
				t.Fatalf("the second leg emitted %v, want ShipOrder, NotifyCustomer", got)
			}
			ship := cmds[0].Value
			if ship["order_id"] != "o-1" || ship["reservation_id"] != "res-o-1" || ship["warehouse"] != "FRA-1" {
				t.Errorf("ShipOrder fields %v", ship)
			}
			env := ship["envelope"].(map[string]any)
			if env["correlation_id"] != "o-1" || env["source"] != "ordo" || !env["time"].(time.Time).Equal(t0.Add(2*time.Second)) ||
				env["causation_id"] != tc.then("o-1", t0).Envelope.ID || string(cmds[0].Key) != "o-1" || cmds[0].Topic != "commands.ship-order.v1" {
				t.Errorf("ShipOrder envelope %v key %s topic %s", env, cmds[0].Key, cmds[0].Topic)
			}
			in, _ = h.instance("o-1", saga)
			if in.Status != "completed" || in.State != "shipped" || len(in.Timers) != 0 || len(in.Compensations) != 0 {
				t.Errorf("finished instance: %+v", in)
			}
			if !hasMark(h.marks, saga, "completed") {
				t.Errorf("marks %v lack completed", h.marks)
			}
			if due, _ := h.e.Due(h.store, t0.Add(time.Hour), 0); len(due) != 0 {
				t.Errorf("timers left after completion: %v", due)
			}
		})
	}
}

func TestSagaDeadlineFiresOnce(t *testing.T) {
	h := newHarness(t, sagaEngine(t))
	h.mustSend(orderPlaced("o-1", t0))
	if due, _ := h.e.Due(h.store, t0.Add(19999*time.Millisecond), 0); len(due) != 0 {
		t.Fatalf("due before the deadline: %v", due)
	}
	due, err := h.e.Due(h.store, t0.Add(20*time.Second), 0)
	if err != nil || len(due) != 1 {
		t.Fatalf("due at the deadline: %v %v", due, err)
	}
	tm := due[0]
	if tm.Process != saga || tm.Version != 1 || tm.CorrelationID != "o-1" || tm.Name != "payment_timeout" || !tm.Due.Equal(t0.Add(20*time.Second)) {
		t.Fatalf("timer %+v", tm)
	}
	if next, ok, _ := h.e.NextDue(h.store); !ok || !next.Equal(tm.Due) {
		t.Errorf("NextDue %v %v", next, ok)
	}
	cmds := h.trigger(tm, t0.Add(21*time.Second))
	if got := types(cmds); !slices.Equal(got, []string{"CancelOrder", "NotifyCustomer"}) {
		t.Fatalf("the deadline emitted %v", got)
	}
	if cmds[0].Natural()["reason"] != "payment not authorized in time" {
		t.Errorf("reason %v", cmds[0].Natural()["reason"])
	}
	env := cmds[0].Natural()["envelope"].(map[string]any)
	if env["causation_id"] != tm.ID() || !env["time"].(time.Time).Equal(tm.Due) {
		t.Errorf("a timer's commands are caused by the timer at its due time: %v", env)
	}
	if !hasMark(h.marks, saga, "timer_fired") || !hasMark(h.marks, saga, "cancelled") {
		t.Errorf("marks %v", h.marks)
	}
	// A second trigger for the same timer (the loop produced it twice, or
	// re-ran after an abort) finds no row.
	h.marks = nil
	if cmds := h.trigger(tm, t0.Add(22*time.Second)); len(cmds) != 0 {
		t.Fatalf("the second firing emitted %v", types(cmds))
	}
	if !hasMark(h.marks, saga, "timer_stale") {
		t.Errorf("second firing marks %v, want timer_stale", h.marks)
	}
	if due, _ := h.e.Due(h.store, t0.Add(time.Hour), 0); len(due) != 0 {
		t.Errorf("still due: %v", due)
	}
}

func TestSagaPaymentCancelsDeadline(t *testing.T) {
	h := newHarness(t, sagaEngine(t))
	h.mustSend(orderPlaced("o-1", t0))
	due, _ := h.e.Due(h.store, t0.Add(time.Minute), 0)
	h.mustSend(paymentAuthorized("o-1", t0.Add(5*time.Second)))
	if d, _ := h.e.Due(h.store, t0.Add(time.Minute), 0); len(d) != 0 {
		t.Fatalf("the payment did not cancel the deadline: %v", d)
	}
	// A trigger produced before the cancel was committed is stale.
	h.marks = nil
	if cmds := h.trigger(due[0], t0.Add(21*time.Second)); len(cmds) != 0 || !hasMark(h.marks, saga, "timer_stale") {
		t.Fatalf("a cancelled timer fired: %v, marks %v", types(cmds), h.marks)
	}
	if got := types(h.mustSend(inventoryReserved("o-1", t0.Add(30*time.Second)))); !slices.Equal(got, []string{"ShipOrder", "NotifyCustomer"}) {
		t.Fatalf("emitted %v", got)
	}
}

func TestSagaCompensations(t *testing.T) {
	type send func(h *harness) []processors.Command
	ev := func(f func(string, time.Time) *processors.Event, s int) send {
		return func(h *harness) []processors.Command {
			return h.mustSend(f("o-1", t0.Add(time.Duration(s)*time.Second)))
		}
	}
	deadline := func(h *harness) []processors.Command { return h.fire(t0.Add(time.Minute)) }
	for _, tc := range []struct {
		name  string
		steps []send
		want  []string // commands of the last step
	}{
		{"declined, nothing reserved", []send{ev(paymentDeclined, 1)}, []string{"CancelOrder", "NotifyCustomer"}},
		{"declined after reservation releases stock", []send{ev(inventoryReserved, 1), ev(paymentDeclined, 2)}, []string{"CancelOrder", "NotifyCustomer", "ReleaseInventory"}},
		{"shortage, nothing paid", []send{ev(inventoryShortage, 1)}, []string{"CancelOrder", "NotifyCustomer"}},
		{"shortage after payment voids it", []send{ev(paymentAuthorized, 1), ev(inventoryShortage, 2)}, []string{"CancelOrder", "NotifyCustomer", "VoidPayment"}},
		{"deadline, nothing reserved", []send{deadline}, []string{"CancelOrder", "NotifyCustomer"}},
		{"deadline after reservation releases stock", []send{ev(inventoryReserved, 1), deadline}, []string{"CancelOrder", "NotifyCustomer", "ReleaseInventory"}},
		{"payment after the deadline is voided", []send{deadline, ev(paymentAuthorized, 25)}, []string{"VoidPayment"}},
		{"stock after a decline is released", []send{ev(paymentDeclined, 1), ev(inventoryReserved, 2)}, []string{"ReleaseInventory"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, sagaEngine(t))
			h.mustSend(orderPlaced("o-1", t0))
			var last []processors.Command
			for _, s := range tc.steps {
				last = s(h)
			}
			if got := types(last); !slices.Equal(got, tc.want) {
				t.Fatalf("emitted %v, want %v", got, tc.want)
			}
			for _, c := range last {
				switch c.Type {
				case "com.acme.ordo.commands.VoidPayment":
					// The amount was recorded with the payment, stored in
					// the instance, and comes back exact.
					if a, ok := c.Natural()["amount"].(*big.Rat); !ok || a.Cmp(rat("1234.56")) != 0 || c.Natural()["payment_id"] != "pay-o-1" || c.Topic != "commands.void-payment.v1" {
						t.Errorf("VoidPayment %v", c.Value)
					}
				case "com.acme.ordo.commands.ReleaseInventory":
					if c.Natural()["reservation_id"] != "res-o-1" || c.Natural()["warehouse"] != "FRA-1" || c.Topic != "commands.release-inventory.v1" {
						t.Errorf("ReleaseInventory %v", c.Value)
					}
				}
			}
			n := 0
			for _, c := range h.sent {
				if c.Type == "com.acme.ordo.commands.CancelOrder" {
					n++
				}
				if c.Type == "com.acme.ordo.commands.ShipOrder" {
					t.Fatal("a cancelled order was shipped")
				}
			}
			if n != 1 {
				t.Fatalf("%d CancelOrder, want 1", n)
			}
			in, _ := h.instance("o-1", saga)
			if in.Status != "cancelled" || len(in.Compensations) != 0 {
				t.Errorf("instance %+v", in)
			}
			if len(tc.want) > 2 && !hasMark(h.marks, saga, "compensated") {
				t.Errorf("marks %v lack compensated", h.marks)
			}
		})
	}
}

func TestEarlyEventsBufferedThenApplied(t *testing.T) {
	h := newHarness(t, sagaEngine(t))
	if cmds := h.mustSend(paymentAuthorized("o-1", t0)); len(cmds) != 0 || !hasMark(h.marks, saga, "buffered") {
		t.Fatalf("an early payment: %v, marks %v", types(cmds), h.marks)
	}
	h.mustSend(inventoryReserved("o-1", t0.Add(time.Second)))
	if _, ok := h.instance("o-1", saga); ok {
		t.Fatal("an early event created an instance")
	}
	h.marks = nil
	cmds := h.mustSend(orderPlaced("o-1", t0.Add(2*time.Second)))
	if got := types(cmds); !slices.Equal(got, []string{"ReserveInventory", "ShipOrder", "NotifyCustomer"}) {
		t.Fatalf("OrderPlaced after both legs emitted %v", got)
	}
	if n := countMarks(h.marks, saga, "buffer_applied"); n != 2 {
		t.Errorf("%d buffer_applied marks, want 2: %v", n, h.marks)
	}
	// The early events' commands are caused by them (their ids derive from them).
	if env := cmds[1].Natural()["envelope"].(map[string]any); env["causation_id"] != "reserved-o-1" {
		t.Errorf("ShipOrder caused by %v, want the buffered InventoryReserved", env["causation_id"])
	}
	n := 0
	_ = h.store.Range(bufferPrefix("o-1", saga), prefixEnd(bufferPrefix("o-1", saga)), func(_, _ []byte) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d buffered events left", n)
	}
	in, _ := h.instance("o-1", saga)
	if in.Status != "completed" {
		t.Errorf("instance %+v", in)
	}
}

func TestEarlyEventsExpire(t *testing.T) {
	h := newHarness(t, sagaEngine(t))
	h.mustSend(paymentAuthorized("o-1", t0))
	h.mustSend(inventoryReserved("o-1", t0.Add(50*time.Minute)))
	h.marks = nil
	// The payment was buffered 1h1m before the order: past early_events_ttl.
	cmds := h.mustSend(orderPlaced("o-1", t0.Add(61*time.Minute)))
	if got := types(cmds); !slices.Equal(got, []string{"ReserveInventory"}) {
		t.Fatalf("emitted %v: an expired early event joined", got)
	}
	if !hasMark(h.marks, saga, "buffer_expired") || !hasMark(h.marks, saga, "buffer_applied") {
		t.Errorf("marks %v", h.marks)
	}
	in, _ := h.instance("o-1", saga)
	if !slices.Equal(in.Joined, []string{"InventoryReserved"}) {
		t.Errorf("joined %v", in.Joined)
	}
}

// Early buffers are per correlation id even when one id is a prefix of
// another with a '/' (keys escape it).
func TestBuffersDoNotMixCorrelationIDs(t *testing.T) {
	h := newHarness(t, sagaEngine(t))
	h.mustSend(paymentAuthorized("a/"+saga, t0))
	h.mustSend(inventoryReserved("a/"+saga, t0))
	cmds := h.mustSend(orderPlaced("a", t0.Add(time.Second)))
	if got := types(cmds); !slices.Equal(got, []string{"ReserveInventory"}) {
		t.Fatalf("order a picked up the early events of order a/%s: %v", saga, got)
	}
	cmds = h.mustSend(orderPlaced("a/"+saga, t0.Add(time.Second)))
	if got := types(cmds); !slices.Equal(got, []string{"ReserveInventory", "ShipOrder", "NotifyCustomer"}) {
		t.Fatalf("order a/%s: %v", saga, got)
	}
}

func countMarks(marks []processors.Mark, process, outcome string) int {
	n := 0
	for _, m := range marks {
		if m.Process == process && m.Outcome == outcome {
			n++
		}
	}
	return n
}

// Same events on a fresh state: the same commands (ids, values, order) and
// the same state, byte for byte. An aborted attempt leaves nothing behind
// and its re-run emits exactly what the attempt did.
func TestDeterminism(t *testing.T) {
	run := func(abortFirst bool) ([]processors.Command, *harness) {
		h := newHarness(t, sagaEngine(t))
		evs := []*processors.Event{
			paymentAuthorized("o-2", t0),
			orderPlaced("o-1", t0),
			orderPlaced("o-2", t0.Add(time.Second)),
			inventoryReserved("o-1", t0.Add(2*time.Second)),
			inventoryShortage("o-2", t0.Add(3*time.Second)),
			orderPlaced("o-3", t0.Add(4*time.Second)),
		}
		for _, ev := range evs {
			if abortFirst {
				ev.Offset = h.offset
				attempt, _, err := h.try(ev)
				if err != nil {
					t.Fatal(err)
				}
				got := h.mustSend(ev)
				if !reflect.DeepEqual(attempt, got) {
					t.Fatalf("the re-run after an abort differs:\n%v\n%v", attempt, got)
				}
				continue
			}
			h.mustSend(ev)
		}
		h.fire(t0.Add(time.Minute))
		return h.sent, h
	}
	a, ha := run(false)
	b, hb := run(true)
	if len(a) != 11 { // 3 ReserveInventory; o-1 and o-3 time out (o-1 releases stock), o-2 is short (voids its payment)
		t.Fatalf("%d commands: %v", len(a), types(a))
	}
	if !reflect.DeepEqual(a, b) {
		t.Fatalf("different commands:\n%v\n%v", a, b)
	}
	if wa, wb := ha.store.Writes(), hb.store.Writes(); !reflect.DeepEqual(wa, wb) {
		t.Fatal("different state")
	}
}
