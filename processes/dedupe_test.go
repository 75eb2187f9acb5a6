package processes

import (
	"slices"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/processors"
)

func TestDuplicateProcessEventsDropped(t *testing.T) {
	h := newHarness(t, sagaEngine(t))
	h.mustSend(orderPlaced("o-1", t0))
	h.mustSend(paymentAuthorized("o-1", t0.Add(time.Second)))

	// The same OrderPlaced delivered again: nothing emitted, nothing written.
	dup := orderPlaced("o-1", t0.Add(3*time.Second))
	cmds, err := h.send(dup)
	if !isDrop(err) || len(cmds) != 0 {
		t.Fatalf("duplicate: %v, %v; want ErrDrop and no commands", types(cmds), err)
	}
	if !slices.Contains(dup.Marks, processors.Mark{Outcome: "duplicate"}) {
		t.Errorf("duplicate marks %v", dup.Marks)
	}
	if processors.IsTransient(err) {
		t.Error("a duplicate is not transient")
	}

	// A duplicate of the leg that completes the join: the join completes
	// once.
	if got := types(h.mustSend(inventoryReserved("o-1", t0.Add(4*time.Second)))); !slices.Equal(got, []string{"ShipOrder", "NotifyCustomer"}) {
		t.Fatalf("join: %v", got)
	}
	if cmds, err := h.send(inventoryReserved("o-1", t0.Add(5*time.Second))); !isDrop(err) || len(cmds) != 0 {
		t.Fatalf("duplicate leg: %v, %v", types(cmds), err)
	}
	// A new event id with the same content is not a duplicate: it reaches
	// the finished instance (on_finished: ignore).
	again := inventoryReserved("o-1", t0.Add(6*time.Second))
	again.Envelope.ID = "reserved-o-1-redelivered-by-the-warehouse"
	cmds, err = h.send(again)
	if err != nil || len(cmds) != 0 || !hasMark(again.Marks, saga, "finished_instance") {
		t.Fatalf("new id after completion: %v, %v, marks %v; want no commands and finished_instance", types(cmds), err, again.Marks)
	}
}

// Dedupe runs before the stateless routes too: a real orchestrate
// processor behind it emits once per event id.
func TestDuplicateDroppedBeforeStatelessRoutes(t *testing.T) {
	var doc yaml.Node
	src := `routes:
  - on: com.acme.payments.PaymentDeclined
    emit:
      - type: com.acme.ordo.commands.NotifyCustomer
        topic: commands.notify-customer.v1
        fields:
          order_id: event.order_id
          template: '"payment_declined"'
          detail: event.reason
`
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	chain, err := processors.Builtins().Build([]processors.Spec{{Name: "routes", Type: "orchestrate", Config: *doc.Content[0], File: "ordo.yaml"}}, demoDeps(t))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Build(&yaml.Node{}, "ordo.yaml", demoDeps(t), DedupeWindow(time.Hour)) // no processes: only dedupe
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, e, chain...)
	first := h.mustSend(paymentDeclined("o-7", t0))
	if got := types(first); !slices.Equal(got, []string{"NotifyCustomer"}) {
		t.Fatalf("first delivery: %v", got)
	}
	cmds, err := h.send(paymentDeclined("o-7", t0.Add(time.Minute)))
	if !isDrop(err) || len(cmds) != 0 {
		t.Fatalf("duplicate through a stateless route: %v, %v", types(cmds), err)
	}
	// After the window the id is accepted again (Zeebe's message TTL
	// semantics), decided on record time.
	later := h.mustSend(paymentDeclined("o-7", t0.Add(time.Hour)))
	if len(later) != 1 {
		t.Fatalf("after the window: %v", types(later))
	}
	// Events without an id pass and are marked.
	noID := paymentDeclined("o-8", t0)
	noID.Envelope.ID = ""
	if got := h.mustSend(noID); len(got) != 1 || !slices.Contains(noID.Marks, processors.Mark{Outcome: "no_event_id"}) {
		t.Fatalf("no id: %v, marks %v", types(got), noID.Marks)
	}
}

// A dead-lettered event leaves no dedupe mark: its redrive is processed.
func TestDeadLetteredEventIsNotMarked(t *testing.T) {
	e := buildInline(t, strictProcess)
	h := newHarness(t, e)
	ev := paymentAuthorized("o-1", t0)
	if _, err := h.send(ev); err == nil || isDrop(err) || processors.IsTransient(err) {
		t.Fatalf("on_unknown: dead_letter: err %v, want a permanent error", err)
	}
	if _, ok, _ := h.store.Get(dedupeKey("o-1", ev.Envelope.ID)); ok {
		t.Fatal("the dead-lettered event left a dedupe mark")
	}
	h.mustSend(orderPlaced("o-1", t0.Add(time.Second)))
	// Redrive: the same id is processed, not dropped as a duplicate.
	cmds := h.mustSend(paymentAuthorized("o-1", t0.Add(2*time.Second)))
	if got := types(cmds); !slices.Equal(got, []string{"ShipOrder"}) {
		t.Fatalf("redrive: %v", got)
	}
}

func TestHousekeep(t *testing.T) {
	e := sagaEngine(t) // dedupe window 24h, early_events_ttl 1h, keep_finished 24h
	h := newHarness(t, e)
	h.mustSend(paymentAuthorized("early", t0))                      // buffered, expires t0+1h
	h.mustSend(orderPlaced("done", t0))                             //
	h.mustSend(paymentDeclined("done", t0.Add(time.Second)))        // finished at t0+1s
	h.mustSend(orderPlaced("running", t0.Add(2*time.Second)))       // running
	h.mustSend(paymentAuthorized("running", t0.Add(3*time.Second))) // no timer left
	count := func(prefix string) int {
		n := 0
		_ = h.store.Range([]byte(prefix), prefixEnd([]byte(prefix)), func(_, _ []byte) bool { n++; return true })
		return n
	}
	housekeep := func(now time.Time) int {
		ov := h.store // the loop runs it in the partition's transaction
		n, err := e.Housekeep(ov, now, 0)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := housekeep(t0.Add(59 * time.Minute)); n != 0 {
		t.Fatalf("housekept %d entries before anything expired", n)
	}
	housekeep(t0.Add(61 * time.Minute))
	if count(prefixBuffer) != 0 {
		t.Error("the expired early event is still buffered")
	}
	if count(prefixDedupe) != 5 {
		t.Errorf("%d dedupe marks, want 5 (24h window)", count(prefixDedupe))
	}
	housekeep(t0.Add(24*time.Hour + 10*time.Second))
	if _, ok := h.instance("done", saga); ok {
		t.Error("the finished instance outlived keep_finished")
	}
	if _, ok := h.instance("running", saga); !ok {
		t.Error("housekeeping removed a running instance")
	}
	if n := count(prefixDedupe); n != 0 {
		t.Errorf("%d dedupe marks after the window", n)
	}
	if n := count(prefixExpiry); n != 0 {
		t.Errorf("%d expiry entries left", n)
	}

	// A window made longer after marking: the mark is re-indexed, not lost.
	long, err := Build(exampleProcesses(t), exampleFile, demoDeps(t), DedupeWindow(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	h2 := newHarness(t, sagaEngine(t))
	h2.mustSend(paymentDeclined("x", t0))
	if _, err := long.Housekeep(h2.store, t0.Add(25*time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := h2.store.Get(dedupeKey("x", "declined-x")); !ok {
		t.Fatal("a mark inside the (longer) window was deleted")
	}
	h2.e = long
	h2.chain[0] = processors.Named("dedupe", long.Dedupe())
	if _, err := h2.send(paymentDeclined("x", t0.Add(30*time.Hour))); !isDrop(err) {
		t.Fatalf("within the 48h window: %v, want a duplicate", err)
	}
	if _, err := long.Housekeep(h2.store, t0.Add(49*time.Hour), 0); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := h2.store.Get(dedupeKey("x", "declined-x")); ok {
		t.Fatal("the mark outlived the 48h window")
	}

	// limit bounds the work per call.
	h3 := newHarness(t, sagaEngine(t))
	for i := range 5 {
		h3.mustSend(paymentDeclined("l"+string(rune('a'+i)), t0))
	}
	if n, _ := h3.e.Housekeep(h3.store, t0.Add(48*time.Hour), 2); n != 2 {
		t.Fatalf("limit 2: handled %d", n)
	}
}
