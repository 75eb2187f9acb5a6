package processes

import (
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/processors"
)

// TestRandomizedOrders runs many orders of the example saga with random
// outcomes, legs in random order (early events before their OrderPlaced),
// duplicate deliveries, duplicate timer triggers, aborted transactions and
// deadlines, and checks the saga's invariants:
//
//   - every order ends with exactly one ShipOrder or CancelOrder, never
//     both, never twice;
//   - a shipped order has both legs and nothing undone; a cancelled order
//     has its stock released exactly once if it was reserved and its
//     payment voided exactly once if it was authorized (by compensation or,
//     for a leg that came after the end, by the cancelled state's handler);
//   - no command id is emitted twice; a re-run after an abort emits exactly
//     what the aborted attempt did;
//   - at the end no timer, early event or running instance is left.
//
// ORDO_TEST_SEED=<n> replays a run.
func TestRandomizedOrders(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("ORDO_TEST_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("seed %d (ORDO_TEST_SEED=%d replays it)", seed, seed)
	rnd := rand.New(rand.NewPCG(seed, 0x0d0))
	orders := 400
	if testing.Short() {
		orders = 100
	}

	type scenario struct {
		paid, declined, reserved bool
	}
	type delivery struct {
		at time.Time
		ev *processors.Event
	}
	scen := map[string]scenario{}
	var log []delivery
	deliver := func(ev *processors.Event, at time.Time) {
		log = append(log, delivery{at, ev})
		if rnd.IntN(100) < 15 { // a duplicate delivery, up to a minute later
			dup := *ev
			dup.Marks = nil
			log = append(log, delivery{at.Add(time.Duration(rnd.IntN(60_000)) * time.Millisecond), &dup})
		}
	}
	jitter := func() time.Duration { return time.Duration(rnd.IntN(10_000)-5_000) * time.Millisecond }
	for i := range orders {
		cid := fmt.Sprintf("order-%04d", i)
		base := t0.Add(time.Duration(i) * 700 * time.Millisecond)
		s := scenario{}
		deliver(orderPlaced(cid, base), base.Add(jitter()))
		switch r := rnd.IntN(100); {
		case r < 60:
			s.paid = true
		case r < 80:
			s.declined = true
		} // else: no answer from payments, the deadline decides
		s.reserved = rnd.IntN(100) < 75
		payAt := base.Add(time.Duration(rnd.IntN(30_000)) * time.Millisecond) // may miss the 20s deadline
		if s.paid {
			deliver(paymentAuthorized(cid, payAt), payAt.Add(jitter()))
		} else if s.declined {
			deliver(paymentDeclined(cid, payAt), payAt.Add(jitter()))
		}
		stockAt := base.Add(time.Duration(rnd.IntN(15_000)) * time.Millisecond)
		if s.reserved {
			deliver(inventoryReserved(cid, stockAt), stockAt.Add(jitter()))
		} else {
			deliver(inventoryShortage(cid, stockAt), stockAt.Add(jitter()))
		}
		scen[cid] = s
	}
	sort.SliceStable(log, func(i, j int) bool { return log[i].at.Before(log[j].at) })

	h := newHarness(t, sagaEngine(t))
	aborts, dupTriggers, early, dups := 0, 0, 0, 0
	fireDue := func(now time.Time) {
		due, err := h.e.Due(h.store, now, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, tm := range due {
			h.trigger(tm, now)
			if rnd.IntN(100) < 20 { // the loop produced the trigger twice
				h.marks = nil
				if cmds := h.trigger(tm, now); len(cmds) != 0 || !hasMark(h.marks, saga, "timer_stale") {
					t.Fatalf("a duplicate trigger of %+v emitted %v", tm, types(cmds))
				}
				dupTriggers++
			}
		}
	}
	for _, d := range log {
		fireDue(d.at)
		ev := d.ev
		if _, ok := h.instance(string(ev.Key), saga); !ok && ev.Type != "com.acme.checkout.OrderPlaced" {
			early++
		}
		ev.Offset = h.offset
		h.offset++
		if rnd.IntN(100) < 10 { // an aborted attempt first
			attempt, _, err := h.try(ev)
			got, err2 := h.commit(ev)
			if (err == nil) != (err2 == nil) || !reflect.DeepEqual(attempt, got) {
				t.Fatalf("the re-run of %s after an abort differs: %v/%v vs %v/%v", ev.Envelope.ID, types(attempt), err, types(got), err2)
			}
			aborts++
			continue
		}
		cmds, err := h.commit(ev)
		switch {
		case isDrop(err):
			dups++
			if len(cmds) != 0 {
				t.Fatalf("a dropped duplicate emitted %v", types(cmds))
			}
		case err != nil:
			t.Fatalf("%s %s: %v", ev.Type, ev.Envelope.ID, err)
		}
	}
	fireDue(t0.Add(24 * time.Hour))

	ids := map[string]bool{}
	count := map[string]map[string]int{}
	for _, c := range h.sent {
		id := c.Natural()["envelope"].(map[string]any)["id"].(string)
		if ids[id] {
			t.Fatalf("command id %s emitted twice (%s for %s)", id, c.Type, c.Key)
		}
		ids[id] = true
		cid := string(c.Key)
		if count[cid] == nil {
			count[cid] = map[string]int{}
		}
		count[cid][c.Type[len("com.acme.ordo.commands."):]]++
	}
	shipped, cancelled := 0, 0
	for cid, s := range scen {
		n := count[cid]
		switch {
		case n["ShipOrder"] == 1 && n["CancelOrder"] == 0:
			shipped++
			if !s.paid || !s.reserved || n["ReleaseInventory"]+n["VoidPayment"] != 0 {
				t.Errorf("%s shipped: scenario %+v, commands %v", cid, s, n)
			}
		case n["CancelOrder"] == 1 && n["ShipOrder"] == 0:
			cancelled++
			if want := b2i(s.reserved); n["ReleaseInventory"] != want {
				t.Errorf("%s cancelled: %d ReleaseInventory, want %d (scenario %+v)", cid, n["ReleaseInventory"], want, s)
			}
			if want := b2i(s.paid); n["VoidPayment"] != want {
				t.Errorf("%s cancelled: %d VoidPayment, want %d (scenario %+v)", cid, n["VoidPayment"], want, s)
			}
		default:
			t.Errorf("%s ended with %d ShipOrder and %d CancelOrder (scenario %+v)", cid, n["ShipOrder"], n["CancelOrder"], s)
		}
		if n["ReserveInventory"] != 1 {
			t.Errorf("%s: %d ReserveInventory", cid, n["ReserveInventory"])
		}
		in, ok := h.instance(cid, saga)
		if !ok || !in.Finished() || len(in.Timers) != 0 {
			t.Errorf("%s: instance %+v", cid, in)
		}
	}
	for _, p := range []string{prefixTimer, prefixBuffer} {
		_ = h.store.Range([]byte(p), prefixEnd([]byte(p)), func(k, _ []byte) bool { t.Errorf("left over: %q", k); return true })
	}
	t.Logf("%d orders: %d shipped, %d cancelled; %d deliveries (%d early, %d duplicates dropped), %d aborted attempts, %d duplicate triggers, %d commands",
		orders, shipped, cancelled, len(log), early, dups, aborts, dupTriggers, len(h.sent))
	if shipped == 0 || cancelled == 0 || early == 0 || aborts == 0 || dupTriggers == 0 || dups == 0 {
		t.Fatal("the run did not exercise every path; the generator is broken")
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
