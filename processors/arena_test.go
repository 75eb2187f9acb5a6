package processors

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"
)

// Three commands per event: two take their ids from the event's arena, the
// third is boxed on its own (arenaIDs is 2).
const threeEmits = `source: ordo
routes:
  - on: com.acme.warehouse.InventoryShortage
    emit:
      - type: com.acme.ordo.commands.CancelOrder
        topic: commands.cancel-order.v1
        fields: {order_id: event.order_id, reason: '"a"'}
      - type: com.acme.ordo.commands.CancelOrder
        topic: commands.cancel-order.v1
        fields: {order_id: event.order_id, reason: '"b"'}
      - type: com.acme.ordo.commands.CancelOrder
        topic: commands.cancel-order.v1
        fields: {order_id: event.order_id, reason: '"c"'}
`

func shortage(i int) *Event {
	id := fmt.Sprintf("evt-%d", i)
	return &Event{
		Topic: "warehouse.v1", Offset: int64(i), Key: []byte("order-1"),
		Timestamp: testTime.Add(time.Duration(i) * time.Millisecond),
		Type:      "com.acme.warehouse.InventoryShortage",
		Envelope:  Envelope{ID: id, Type: "com.acme.warehouse.InventoryShortage", CorrelationID: "order-1"},
		Value: map[string]any{
			"envelope": map[string]any{"id": id, "type": "com.acme.warehouse.InventoryShortage", "correlation_id": "order-1"},
			"order_id": fmt.Sprintf("order-%d", i), "missing_skus": []any{"SKU-1"},
		},
	}
}

// The ids and times orchestrate boxes from its per-event arena are the ids
// commandID derives, and they stay as they were while later events are
// processed and the GC runs.
func TestOrchestrateArenaValuesStayPut(t *testing.T) {
	p := buildOrchestrate(t, threeEmits, demoDeps())
	o := p.(*orchestrator)
	type seen struct {
		id, when string
	}
	const n = 50
	var kept [][]Command
	var want [][]seen
	for i := range n {
		ev := shortage(i)
		cmds, err := p.Process(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		if len(cmds) != 3 {
			t.Fatalf("event %d: %d commands, want 3", i, len(cmds))
		}
		var w []seen
		for ei := range cmds {
			env := cmds[ei].Natural()["envelope"].(map[string]any)
			id := env["id"].(string)
			if derived := o.commandID(ev, 0, ei); id != derived {
				t.Fatalf("event %d command %d: id %s, commandID gives %s", i, ei, id, derived)
			}
			if env["time"] != ev.Timestamp {
				t.Fatalf("event %d command %d: time %v, want %v", i, ei, env["time"], ev.Timestamp)
			}
			w = append(w, seen{strings.Clone(id), env["time"].(time.Time).String()})
		}
		kept, want = append(kept, cmds), append(want, w)
	}
	runtime.GC()
	ids := map[string]bool{}
	for i, cmds := range kept {
		for ei := range cmds {
			env := cmds[ei].Natural()["envelope"].(map[string]any)
			if got := (seen{env["id"].(string), env["time"].(time.Time).String()}); got != want[i][ei] {
				t.Fatalf("event %d command %d changed after later events and a GC: %+v, was %+v", i, ei, got, want[i][ei])
			}
			if ids[want[i][ei].id] {
				t.Fatalf("command id %s twice", want[i][ei].id)
			}
			ids[want[i][ei].id] = true
		}
	}
}

// An Event copied after the chain ran on it gets its own CEL activation:
// expressions read the copy's value, not the original's.
func TestCopiedEventReadsItsOwnValue(t *testing.T) {
	p := buildOrchestrate(t, threeEmits, demoDeps())
	ev := shortage(1)
	if _, err := p.Process(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	cp := *ev
	cp.Value = shortage(2).Value
	cmds, err := p.Process(context.Background(), &cp)
	if err != nil {
		t.Fatal(err)
	}
	if got := cmds[0].Natural()["order_id"]; got != "order-2" {
		t.Fatalf("the copy's command has order_id %v, want order-2 (the copy's value)", got)
	}
	// The type, boxed once per event, follows a changed Type too.
	v := newVars(&cp)
	cp.Type = "com.acme.Other"
	if got, _ := v.ResolveName("type"); got != "com.acme.Other" {
		t.Fatalf("type = %v after the event's Type changed", got)
	}
}
