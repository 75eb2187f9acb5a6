package processes

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/processors"
)

// strictProcess dead-letters events for unknown and finished instances.
const strictProcess = `processes:
  - name: pay
    version: 1
    on_unknown: dead_letter
    on_finished: dead_letter
    start:
      on: com.acme.checkout.OrderPlaced
      set: {order_id: event.order_id}
      goto: waiting
    states:
      waiting:
        transitions:
          - on: com.acme.payments.PaymentAuthorized
            emit:
              - type: com.acme.ordo.commands.ShipOrder
                topic: commands.ship-order.v1
                fields:
                  order_id: vars.order_id
                  reservation_id: '"r"'
                  warehouse: '"w"'
            goto: done
      done:
        terminal: completed
`

func buildInline(t testing.TB, text string) *Engine {
	t.Helper()
	e, err := Build(processesNode(t, text), "ordo.yaml", demoDeps(t))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestUnknownAndFinishedOutcomes(t *testing.T) {
	t.Run("dead_letter", func(t *testing.T) {
		h := newHarness(t, buildInline(t, strictProcess))
		_, err := h.send(paymentAuthorized("o-1", t0))
		if err == nil || processors.IsTransient(err) || isDrop(err) || !strings.Contains(err.Error(), "no instance for correlation id \"o-1\"") {
			t.Fatalf("unknown instance: %v", err)
		}
		if n := len(h.store.Writes()); n != 0 {
			t.Fatalf("a dead-lettered event left %d state writes", n)
		}
		h.mustSend(orderPlaced("o-1", t0))
		h.mustSend(paymentAuthorized("o-1", t0.Add(time.Second)))
		late := paymentAuthorized("o-1", t0.Add(2*time.Second))
		late.Envelope.ID = "auth-2"
		_, err = h.send(late)
		if err == nil || processors.IsTransient(err) || !strings.Contains(err.Error(), "has finished") || !strings.Contains(err.Error(), "on_finished: dead_letter") {
			t.Fatalf("finished instance: %v", err)
		}
	})
	t.Run("ignore", func(t *testing.T) {
		text := strings.Replace(strings.Replace(strictProcess, "on_unknown: dead_letter", "on_unknown: ignore", 1), "on_finished: dead_letter", "on_finished: ignore", 1)
		h := newHarness(t, buildInline(t, text))
		ev := paymentAuthorized("o-1", t0)
		if cmds := h.mustSend(ev); len(cmds) != 0 || !hasMark(ev.Marks, "pay", "unknown_instance") {
			t.Fatalf("unknown: %v marks %v", types(cmds), ev.Marks)
		}
		if _, ok, _ := h.store.Get(bufferKey("o-1", "pay", ev.Offset)); ok {
			t.Fatal("on_unknown: ignore buffered the event")
		}
		h.mustSend(orderPlaced("o-1", t0))
		late := paymentAuthorized("o-1", t0.Add(time.Second))
		late.Envelope.ID = "auth-2"
		h.mustSend(late) // completes
		late = paymentAuthorized("o-1", t0.Add(2*time.Second))
		late.Envelope.ID = "auth-3"
		if cmds := h.mustSend(late); len(cmds) != 0 || !hasMark(late.Marks, "pay", "finished_instance") {
			t.Fatalf("finished: %v marks %v", types(cmds), late.Marks)
		}
	})
	t.Run("unhandled in the current state", func(t *testing.T) {
		h := newHarness(t, sagaEngine(t))
		h.mustSend(orderPlaced("o-1", t0))
		again := orderPlaced("o-1", t0.Add(time.Second))
		again.Envelope.ID = "placed-again"
		if cmds := h.mustSend(again); len(cmds) != 0 || !hasMark(again.Marks, saga, "unhandled") {
			t.Fatalf("a second OrderPlaced: %v marks %v", types(cmds), again.Marks)
		}
	})
}

// A start event whose `when` fails starts nothing; an event type no process
// mentions is left alone (no marks).
func TestStartGuardAndUnrelatedTypes(t *testing.T) {
	text := strings.Replace(strictProcess, "set: {order_id: event.order_id}", "when: event.total > 1000.0\n      set: {order_id: event.order_id}", 1)
	h := newHarness(t, buildInline(t, text))
	small := orderPlaced("o-1", t0)
	small.Value["total"] = rat("10.00")
	if cmds := h.mustSend(small); len(cmds) != 0 || !hasMark(small.Marks, "pay", "not_started") {
		t.Fatalf("guarded start: %v marks %v", types(cmds), small.Marks)
	}
	if _, ok := h.instance("o-1", "pay"); ok {
		t.Fatal("instance started although `when` was false")
	}
	ev := inventoryShortage("o-2", t0)
	h.mustSend(ev)
	if slices.ContainsFunc(ev.Marks, func(m processors.Mark) bool { return m.Process != "" }) {
		t.Fatalf("an unrelated event got process marks %v", ev.Marks)
	}
}

// A CEL error at run time dead-letters the event and names the step.
func TestRuntimeExpressionErrorNamesTheStep(t *testing.T) {
	h := newHarness(t, buildInline(t, strings.Replace(strictProcess, "set: {order_id: event.order_id}", "set: {order_id: event.no_such_field}", 1)))
	_, err := h.send(orderPlaced("o-1", t0))
	if err == nil || processors.IsTransient(err) || !strings.Contains(err.Error(), "processes[0].start.set.order_id") {
		t.Fatalf("err %v", err)
	}
}

// Without the stateful stage's transaction the engine stalls (a wiring
// bug) rather than dead-letter valid events.
func TestNoTxnIsTransient(t *testing.T) {
	e := sagaEngine(t)
	_, err := e.Processor().Process(t.Context(), orderPlaced("o-1", t0))
	if !processors.IsTransient(err) {
		t.Fatalf("err %v, want transient", err)
	}
	_, err = e.Dedupe().Process(t.Context(), orderPlaced("o-1", t0))
	if !processors.IsTransient(err) {
		t.Fatalf("dedupe err %v, want transient", err)
	}
}
