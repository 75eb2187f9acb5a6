package processors

import (
	"context"
	"math/big"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// orchestrateDemo are the demo routes (examples/ordo.yaml uses the same).
const orchestrateDemo = `source: ordo
routes:
  - on: com.acme.checkout.OrderPlaced
    when: event.total > 0.0
    emit:
      - type: com.acme.ordo.commands.ReserveInventory
        topic: commands.reserve-inventory.v1
        fields:
          order_id: event.order_id
          items: 'event.items.map(i, {"sku": i.sku, "qty": i.qty})'
          priority: 'has(attrs.customer) ? attrs.customer.tier : "standard"'
  - on: com.acme.checkout.OrderPlaced
    when: event.total >= 1000.0
    emit:
      - type: com.acme.ordo.commands.NotifyCustomer
        topic: commands.notify-customer.v1
        fields:
          order_id: event.order_id
          template: '"large_order_received"'
          detail: event.note
  - on: com.acme.payments.PaymentAuthorized
    emit:
      - type: com.acme.ordo.commands.CapturePayment
        topic: commands.capture-payment.v1
        fields:
          order_id: event.order_id
          payment_id: event.payment_id
          amount: event.amount
          currency: event.currency
  - on: com.acme.warehouse.InventoryShortage
    emit:
      - type: com.acme.ordo.commands.CancelOrder
        topic: commands.cancel-order.v1
        fields:
          order_id: event.order_id
          reason: '"inventory_shortage"'
      - type: com.acme.ordo.commands.NotifyCustomer
        topic: commands.notify-customer.v1
        fields:
          order_id: event.order_id
          template: '"order_cancelled"'
          detail: '"missing: " + event.missing_skus[0]'
`

// demoSchemas mirrors examples/orders/schemas for Deps.KnownType/Fields/Required.
var demoSchemas = map[string]struct{ fields, required []string }{
	"com.acme.checkout.OrderPlaced":           {[]string{"envelope", "order_id", "customer_id", "total", "currency", "items", "shipping_country", "note"}, []string{"envelope", "order_id", "customer_id", "total", "currency", "items", "shipping_country"}},
	"com.acme.payments.PaymentAuthorized":     {[]string{"envelope", "order_id", "payment_id", "amount", "currency"}, []string{"envelope", "order_id", "payment_id", "amount", "currency"}},
	"com.acme.warehouse.InventoryShortage":    {[]string{"envelope", "order_id", "missing_skus"}, []string{"envelope", "order_id", "missing_skus"}},
	"com.acme.ordo.commands.ReserveInventory": {[]string{"envelope", "order_id", "items", "priority"}, []string{"envelope", "order_id", "items"}},
	"com.acme.ordo.commands.NotifyCustomer":   {[]string{"envelope", "order_id", "template", "detail"}, []string{"envelope", "order_id", "template"}},
	"com.acme.ordo.commands.CapturePayment":   {[]string{"envelope", "order_id", "payment_id", "amount", "currency"}, []string{"envelope", "order_id", "payment_id", "amount", "currency"}},
	"com.acme.ordo.commands.CancelOrder":      {[]string{"envelope", "order_id", "reason"}, []string{"envelope", "order_id", "reason"}},
}

func demoDeps() Deps {
	return Deps{
		KnownType: func(n string) bool { _, ok := demoSchemas[n]; return ok },
		Fields: func(n string) ([]string, bool) {
			s, ok := demoSchemas[n]
			return s.fields, ok
		},
		Required: func(n string) ([]string, bool) {
			s, ok := demoSchemas[n]
			return s.required, ok
		},
	}
}

func buildOrchestrate(t testing.TB, block string, deps Deps) Processor {
	t.Helper()
	p, err := newOrchestrate(testSpec(t, "orchestrate", "routes", block), deps)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return p
}

var uuidV8 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// stripIDs checks and removes envelope ids, returning them.
func stripIDs(t *testing.T, cmds []Command) []string {
	t.Helper()
	var ids []string
	for i := range cmds {
		// Compare commands in map form; the slot layout's own encoding is
		// checked against the map's in TestOrchestrateRecordEncodesAsItsMap.
		if cmds[i].Record != nil {
			cmds[i].Value, cmds[i].Record = cmds[i].Record.Natural(), nil
		}
	}
	for _, c := range cmds {
		env := c.Value["envelope"].(map[string]any)
		id := env["id"].(string)
		if !uuidV8.MatchString(id) {
			t.Errorf("command id %q is not a v8 UUID", id)
		}
		ids = append(ids, id)
		delete(env, "id")
	}
	return ids
}

func TestOrchestrateOrderPlaced(t *testing.T) {
	p := buildOrchestrate(t, orchestrateDemo, demoDeps())
	ev := orderPlaced()
	ev.Value["note"] = "leave at door"
	cmds, err := p.Process(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	ids := stripIDs(t, cmds)
	if len(ids) == 2 && ids[0] == ids[1] {
		t.Errorf("ids not unique: %v", ids)
	}
	env := func(typ string) map[string]any {
		return map[string]any{"type": typ, "source": "ordo", "time": testTime,
			"correlation_id": "order-42", "causation_id": "evt-1"}
	}
	want := []Command{
		{Topic: "commands.reserve-inventory.v1", Type: "com.acme.ordo.commands.ReserveInventory", Key: []byte("order-42"),
			Value: map[string]any{
				"envelope": env("com.acme.ordo.commands.ReserveInventory"),
				"order_id": "order-42",
				"items": []any{
					map[string]any{"sku": "SKU-1", "qty": int64(2)},
					map[string]any{"sku": "SKU-2", "qty": int64(1)},
				},
				"priority": "standard",
			}},
		{Topic: "commands.notify-customer.v1", Type: "com.acme.ordo.commands.NotifyCustomer", Key: []byte("order-42"),
			Value: map[string]any{
				"envelope": env("com.acme.ordo.commands.NotifyCustomer"),
				"order_id": "order-42",
				"template": "large_order_received",
				"detail":   "leave at door",
			}},
	}
	if !reflect.DeepEqual(cmds, want) {
		t.Fatalf("commands:\n got %#v\nwant %#v", cmds, want)
	}

	// With enrichment and a small order: priority from attrs, second route off,
	// null note copied as nil.
	ev = orderPlaced()
	ev.Value["total"] = rat("10.00")
	ev.Attrs = map[string]any{"customer": map[string]any{"tier": "gold"}}
	cmds, err = p.Process(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 1 || cmds[0].Natural()["priority"] != "gold" {
		t.Fatalf("got %#v", cmds)
	}

	// when false on every route: nothing.
	ev.Value["total"] = rat("0")
	if cmds, err = p.Process(context.Background(), ev); err != nil || len(cmds) != 0 {
		t.Fatalf("got %v, %v", cmds, err)
	}
}

func TestOrchestrateDecimalsExact(t *testing.T) {
	p := buildOrchestrate(t, orchestrateDemo, demoDeps())
	amount := rat("0.10") // not representable as a double
	ev := &Event{
		Topic: "payments.v1", Offset: 5, Timestamp: testTime, Type: "com.acme.payments.PaymentAuthorized",
		Envelope: Envelope{ID: "pay-evt-9", Type: "com.acme.payments.PaymentAuthorized", CorrelationID: "order-42"},
		Value:    map[string]any{"order_id": "order-42", "payment_id": "pay-1", "amount": amount, "currency": "EUR"},
	}
	cmds, err := p.Process(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(cmds) != 1 {
		t.Fatalf("got %d commands", len(cmds))
	}
	got, ok := cmds[0].Natural()["amount"].(*big.Rat)
	if !ok || got.Cmp(rat("0.10")) != 0 {
		t.Fatalf("amount = %#v, want exact 0.10", cmds[0].Natural()["amount"])
	}
	if cmds[0].Natural()["currency"] != "EUR" || cmds[0].Natural()["payment_id"] != "pay-1" {
		t.Fatalf("got %#v", cmds[0].Value)
	}
}

func TestOrchestrateValueConversions(t *testing.T) {
	p := buildOrchestrate(t, `routes:
  - on: com.acme.checkout.OrderPlaced
    emit:
      - type: X
        topic: x
        fields:
          total: event.total
          total_idx: event["total"]
          first_price: event.items[0].unit_price
          items_whole: event.items
          items_filtered: event.items.filter(i, i.qty > 1)
          qty: event.items[0].qty
          sum: event.items[0].qty + 1
          dbl: event.total * 2.0
          flag: event.currency == "EUR"
          when: envelope.time
          n: event.note
          tier: attrs.customer.tier
          m: '{"a": [1, 2.5, "s", null, b"x"]}'
          part: partition
          k: key
          t: type
`, Deps{})
	ev := orderPlaced()
	ev.Attrs = map[string]any{"customer": map[string]any{"tier": "gold"}}
	cmds, err := p.Process(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	v := cmds[0].Value
	checks := map[string]any{
		"total":          rat("1234.56"),
		"total_idx":      rat("1234.56"),
		"first_price":    rat("600.00"),
		"qty":            int32(2),
		"sum":            int64(3),
		"dbl":            2469.12,
		"flag":           true,
		"when":           testTime.Add(-time.Second),
		"n":              nil,
		"tier":           "gold",
		"m":              map[string]any{"a": []any{int64(1), 2.5, "s", nil, []byte("x")}},
		"part":           int64(3),
		"k":              "order-42",
		"t":              "com.acme.checkout.OrderPlaced",
		"items_whole":    orderPlaced().Value["items"],
		"items_filtered": []any{orderPlaced().Value["items"].([]any)[0]},
	}
	for k, want := range checks {
		got := v[k]
		if wr, ok := want.(*big.Rat); ok {
			if gr, ok := got.(*big.Rat); !ok || gr.Cmp(wr) != 0 {
				t.Errorf("%s = %#v, want %v", k, got, wr)
			}
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", k, got, want)
		}
	}
	// Copies never alias the event.
	v["items_whole"].([]any)[0].(map[string]any)["sku"] = "CHANGED"
	if ev.Value["items"].([]any)[0].(map[string]any)["sku"] != "SKU-1" {
		t.Fatal("command aliases the event's items")
	}
}

func TestOrchestrateDeterministic(t *testing.T) {
	p := buildOrchestrate(t, orchestrateDemo, demoDeps())
	a, err := p.Process(context.Background(), orderPlaced())
	if err != nil {
		t.Fatal(err)
	}
	// A fresh build (restart) and a second run (re-run after abort).
	p2 := buildOrchestrate(t, orchestrateDemo, demoDeps())
	for range 3 {
		b, err := p2.Process(context.Background(), orderPlaced())
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Fatalf("not deterministic:\n%#v\n%#v", a, b)
		}
	}
	// Ids depend on the event id, and on topic/partition/offset without one.
	ev := orderPlaced()
	ev.Envelope.ID = "evt-2"
	c, _ := p.Process(context.Background(), ev)
	if c[0].Natural()["envelope"].(map[string]any)["id"] == a[0].Natural()["envelope"].(map[string]any)["id"] {
		t.Fatal("different events got the same command id")
	}
	noID := func(off int64) string {
		ev := orderPlaced()
		ev.Envelope.ID = ""
		ev.Offset = off
		c, err := p.Process(context.Background(), ev)
		if err != nil {
			t.Fatal(err)
		}
		if c[0].Natural()["envelope"].(map[string]any)["causation_id"] != nil {
			t.Fatal("causation_id must be null without an event id")
		}
		return c[0].Natural()["envelope"].(map[string]any)["id"].(string)
	}
	if noID(1) != noID(1) || noID(1) == noID(2) {
		t.Fatal("offset-based ids wrong")
	}
	// Another orchestrate processor in the chain gets different ids.
	p3, err := newOrchestrate(testSpec(t, "orchestrate", "other", orchestrateDemo), demoDeps())
	if err != nil {
		t.Fatal(err)
	}
	d, _ := p3.Process(context.Background(), orderPlaced())
	if d[0].Natural()["envelope"].(map[string]any)["id"] == a[0].Natural()["envelope"].(map[string]any)["id"] {
		t.Fatal("two orchestrate processors produced the same id")
	}
}

func TestOrchestrateKeyFallbackAndNoRoute(t *testing.T) {
	p := buildOrchestrate(t, orchestrateDemo, demoDeps())
	ev := orderPlaced()
	ev.Envelope.CorrelationID = ""
	ev.Key = []byte("kafka-key")
	ev.Timestamp = time.Time{}
	cmds, err := p.Process(context.Background(), ev)
	if err != nil {
		t.Fatal(err)
	}
	env := cmds[0].Natural()["envelope"].(map[string]any)
	if string(cmds[0].Key) != "kafka-key" || env["correlation_id"] != "kafka-key" {
		t.Fatalf("key fallback: %q %v", cmds[0].Key, env)
	}
	if env["time"] != ev.Envelope.Time {
		t.Fatalf("time fallback: %v", env["time"])
	}
	ev = orderPlaced()
	ev.Type = "com.acme.Unrouted"
	if cmds, err := p.Process(context.Background(), ev); err != nil || cmds != nil {
		t.Fatalf("unrouted: %v %v", cmds, err)
	}
}

func TestOrchestrateRuntimeError(t *testing.T) {
	p := buildOrchestrate(t, orchestrateDemo, demoDeps())
	ev := &Event{Type: "com.acme.warehouse.InventoryShortage",
		Envelope: Envelope{ID: "e", CorrelationID: "o"},
		Value:    map[string]any{"order_id": "o", "missing_skus": []any{}}}
	_, err := p.Process(context.Background(), ev)
	if err == nil || IsTransient(err) {
		t.Fatalf("want permanent error, got %v", err)
	}
	for _, f := range []string{"route 3", "emit 1", "NotifyCustomer", "field detail", "index"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q lacks %q", err, f)
		}
	}
	ev.Value["missing_skus"] = []any{"SKU-9"}
	cmds, err := p.Process(context.Background(), ev)
	if err != nil || len(cmds) != 2 || cmds[1].Natural()["detail"] != "missing: SKU-9" || cmds[0].Natural()["reason"] != "inventory_shortage" {
		t.Fatalf("got %#v %v", cmds, err)
	}
}

func TestOrchestrateConfigErrors(t *testing.T) {
	cases := []struct {
		name, block string
		line        int
		key         string
		frags       []string
	}{
		{"unknown field", `routes:
  - on: com.acme.checkout.OrderPlaced
    emit:
      - type: com.acme.ordo.commands.ReserveInventory
        topic: t
        fields:
          order_id: event.order_id
          items: event.items
          prio: '"x"'
`, 9, "pipeline[routes].routes[0].emit[0].fields.prio", []string{`has no field "prio"`, "fix: map only fields of the command schema: order_id, items, priority"}},
		{"required missing", `routes:
  - on: com.acme.checkout.OrderPlaced
    emit:
      - type: com.acme.ordo.commands.ReserveInventory
        topic: t
        fields:
          order_id: event.order_id
`, 4, "pipeline[routes].routes[0].emit[0]", []string{"requires field(s) items", "fix: add them under `fields:`"}},
		{"bad expr", `routes:
  - on: com.acme.checkout.OrderPlaced
    emit:
      - type: com.acme.ordo.commands.ReserveInventory
        topic: t
        fields:
          order_id: event.order_id
          items: event.items
          priority: standard
`, 9, "pipeline[routes].routes[0].emit[0].fields.priority", []string{"undeclared reference to 'standard'", "must be quoted"}},
		{"when not bool", `routes:
  - on: com.acme.checkout.OrderPlaced
    when: event.total
    emit: []
`, 3, "pipeline[routes].routes[0].when", nil},
		{"unknown event type", `routes:
  - on: com.acme.checkout.OrderPlacd
    emit:
      - type: com.acme.ordo.commands.CancelOrder
        topic: t
`, 2, "pipeline[routes].routes[0].on", []string{`unknown event type "com.acme.checkout.OrderPlacd"`, "fix:"}},
		{"unknown command type", `routes:
  - on: com.acme.checkout.OrderPlaced
    emit:
      - type: Nope
        topic: t
`, 4, "pipeline[routes].routes[0].emit[0].type", []string{`unknown command type "Nope"`}},
		{"no emit", `routes:
  - on: com.acme.checkout.OrderPlaced
`, 2, "pipeline[routes].routes[0]", []string{"no emit"}},
		{"no topic", `routes:
  - on: com.acme.checkout.OrderPlaced
    emit:
      - type: com.acme.ordo.commands.CancelOrder
        fields: {order_id: event.order_id, reason: '"x"'}
`, 4, "pipeline[routes].routes[0].emit[0]", []string{"no `topic`"}},
		{"envelope mapped", `routes:
  - on: com.acme.checkout.OrderPlaced
    emit:
      - type: com.acme.ordo.commands.CancelOrder
        topic: t
        fields:
          envelope: event.envelope
`, 7, "pipeline[routes].routes[0].emit[0].fields.envelope", []string{"envelope is set by ordo"}},
		{"no routes", `source: x
`, 1, "pipeline[routes].routes", []string{"no routes"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := newOrchestrate(testSpec(t, "orchestrate", "routes", c.block), demoDeps())
			if c.name == "when not bool" {
				// event.total is dyn: accepted at build time, checked at run time.
				if err == nil || !strings.Contains(err.Error(), "no emit") {
					t.Fatalf("got %v", err)
				}
				return
			}
			wantConfigError(t, err, c.line, c.key, c.frags...)
		})
	}
}

func BenchmarkOrchestrate(b *testing.B) {
	p := buildOrchestrate(b, orchestrateDemo, demoDeps())
	ev := orderPlaced()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		cmds, err := p.Process(ctx, ev)
		if err != nil || len(cmds) != 2 {
			b.Fatal(err, len(cmds))
		}
	}
}
