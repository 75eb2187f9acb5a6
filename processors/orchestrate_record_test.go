package processors

import (
	"bytes"
	"context"
	"testing"

	"github.com/ordo-dev/ordo/schemas"
)

// orchestrateUnmapped emits NotifyCustomer without its defaulted `detail`,
// so the slot layout holds an Unset slot the encoder fills with the default.
const orchestrateUnmapped = `routes:
  - on: com.acme.checkout.OrderPlaced
    emit:
      - type: com.acme.ordo.commands.NotifyCustomer
        topic: commands.notify-customer.v1
        fields:
          order_id: event.order_id
          template: '"order_received"'
`

// TestOrchestrateRecordEncodesAsItsMap checks the slot layout against the
// map form: with the schema's fields known, orchestrate builds commands as
// schemas.Records; without them, as maps. Both must encode to the same
// bytes with the real demo schemas, and Natural must give the same map.
func TestOrchestrateRecordEncodesAsItsMap(t *testing.T) {
	readers, err := schemas.Demo()
	if err != nil {
		t.Fatal(err)
	}
	noFields := demoDeps()
	noFields.Fields = nil
	for _, block := range []string{orchestrateDemo, orchestrateUnmapped} {
		slotted := buildOrchestrate(t, block, demoDeps())
		mapped := buildOrchestrate(t, block, noFields)
		big := orderPlaced()
		big.Value["note"] = "ring twice"
		shortage := &Event{Type: "com.acme.warehouse.InventoryShortage", Key: []byte("o-9"),
			Envelope: Envelope{ID: "e-9", CorrelationID: "o-9", Time: testTime},
			Value:    map[string]any{"order_id": "o-9", "missing_skus": []any{"SKU-9"}}}
		n := 0
		for _, ev := range []*Event{orderPlaced(), big, shortage} {
			a, err := slotted.Process(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			b, err := mapped.Process(context.Background(), ev)
			if err != nil {
				t.Fatal(err)
			}
			if len(a) != len(b) {
				t.Fatalf("%s: %d commands in slots, %d as maps", ev.Type, len(a), len(b))
			}
			for i := range a {
				n++
				if a[i].Record == nil || a[i].Value != nil {
					t.Fatalf("%s: command %d not laid out in slots: %#v", ev.Type, i, a[i])
				}
				if b[i].Record != nil || b[i].Value == nil {
					t.Fatalf("%s: command %d without schema fields is not a map", ev.Type, i)
				}
				s := readers[a[i].Type]
				got, err := s.AppendRecord(nil, a[i].Record)
				if err != nil {
					t.Fatalf("%s: encode slots: %v", a[i].Type, err)
				}
				want, err := s.EncodeNatural(b[i].Value)
				if err != nil {
					t.Fatalf("%s: encode map: %v", b[i].Type, err)
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: slots encode to %x, the map to %x", a[i].Type, got, want)
				}
				if nat := a[i].Natural(); len(nat) != len(b[i].Value) || nat["order_id"] != b[i].Value["order_id"] {
					t.Errorf("%s: Natural %v, map %v", a[i].Type, nat, b[i].Value)
				}
			}
		}
		if n == 0 {
			t.Fatalf("no commands compared for %q", block)
		}
	}
}

// BenchmarkOrchestrateLayouts is orchestrate alone on the demo's OrderPlaced.
func BenchmarkOrchestrateLayouts(b *testing.B) {
	for _, c := range []struct {
		name string
		deps Deps
	}{{"slots", demoDeps()}, {"maps", func() Deps { d := demoDeps(); d.Fields = nil; return d }()}} {
		b.Run(c.name, func(b *testing.B) {
			p := buildOrchestrate(b, orchestrateDemo, c.deps)
			ev := orderPlaced()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := p.Process(context.Background(), ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestOrchestrateKeys: the key is the correlation id; the input key is
// reused when it equals it; a nil input key with no correlation id gives a
// non-nil empty key (Kafka keeps null and empty keys apart, and compacted
// topics refuse null keys); an event without an envelope id has a null
// causation id.
func TestOrchestrateKeys(t *testing.T) {
	p := buildOrchestrate(t, orchestrateDemo, demoDeps())
	for _, c := range []struct {
		name string
		key  []byte
		corr string
		want []byte
	}{
		{"key is the correlation id", []byte("o-1"), "o-1", []byte("o-1")},
		{"correlation id wins", []byte("k"), "o-2", []byte("o-2")},
		{"no correlation id: the key", []byte("k-3"), "", []byte("k-3")},
		{"neither: empty, not null", nil, "", []byte{}},
	} {
		ev := &Event{Type: "com.acme.warehouse.InventoryShortage", Key: c.key,
			Envelope: Envelope{CorrelationID: c.corr},
			Value:    map[string]any{"order_id": "o", "missing_skus": []any{"SKU-1"}}}
		cmds, err := p.Process(context.Background(), ev)
		if err != nil || len(cmds) != 2 {
			t.Fatalf("%s: %v %v", c.name, cmds, err)
		}
		for _, cmd := range cmds {
			if cmd.Key == nil || !bytes.Equal(cmd.Key, c.want) {
				t.Errorf("%s: key %q (nil %v), want %q", c.name, cmd.Key, cmd.Key == nil, c.want)
			}
			env := cmd.Natural()["envelope"].(map[string]any)
			if env["causation_id"] != nil || env["correlation_id"] != string(c.want) {
				t.Errorf("%s: envelope %v", c.name, env)
			}
		}
	}
}
