package main

import (
	"context"
	"maps"
	"math/big"
	"slices"
	"testing"

	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
	"gopkg.in/yaml.v3"
)

func spec(t *testing.T, typ, block string) processors.Spec {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(block), &doc); err != nil {
		t.Fatal(err)
	}
	return processors.Spec{Type: typ, File: "ordo.yaml", Config: *doc.Content[0]}
}

func order(total string, country string, qtys ...int32) *processors.Event {
	r, _ := new(big.Rat).SetString(total)
	var items []any
	for _, q := range qtys {
		items = append(items, map[string]any{"sku": "S", "qty": q, "unit_price": big.NewRat(1, 1)})
	}
	return &processors.Event{
		Type:     "com.acme.checkout.OrderPlaced",
		Envelope: processors.Envelope{ID: "e1", Type: "com.acme.checkout.OrderPlaced", CorrelationID: "o1"},
		Value:    map[string]any{"order_id": "o1", "total": r, "shipping_country": country, "items": items},
	}
}

func TestFraudScoreInChain(t *testing.T) {
	reg := processors.Builtins()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(reg.Types(), "fraud_score") || !slices.Contains(reg.Types(), "orchestrate") {
		t.Fatalf("types: %v", reg.Types())
	}
	chain, err := reg.Build([]processors.Spec{
		spec(t, "fraud_score", "high_total: 1000\nrisky_countries: [XX]\n"),
		spec(t, "orchestrate", `routes:
  - on: com.acme.checkout.OrderPlaced
    when: attrs.fraud_score >= 80
    emit:
      - type: com.acme.ordo.commands.CancelOrder
        topic: commands.cancel-order.v1
        fields:
          order_id: event.order_id
          reason: '"fraud score " + string(attrs.fraud_score)'
`),
	}, processors.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ev    *processors.Event
		score int64
	}{
		{order("10.00", "DE", 1), 0},
		{order("1000.01", "DE", 1), 50},
		{order("1000.00", "XX", 5, 6), 50},
		{order("5000", "XX", 11), 100},
	}
	// Each case also in the form ordo's decoder gives (ev.Record): the
	// processor reads both alike and never makes ordo build the map.
	for _, c := range cases {
		rec := asRecordEvent(c.ev)
		cases = append(cases, struct {
			ev    *processors.Event
			score int64
		}{rec, c.score})
	}
	for i, c := range cases {
		cmds, err := chain.Process(context.Background(), c.ev)
		if err != nil {
			t.Fatal(err)
		}
		if got := c.ev.Attrs["fraud_score"]; got != c.score {
			t.Errorf("case %d: score = %v, want %d", i, got, c.score)
		}
		if i >= len(cases)/2 && c.ev.Value != nil {
			t.Errorf("case %d: the chain built the event's map for a processor that reads records", i)
		}
		wantCmds := 0
		if c.score >= 80 {
			wantCmds = 1
		}
		if len(cmds) != wantCmds {
			t.Fatalf("score %d: %d commands", c.score, len(cmds))
		}
		if wantCmds == 1 && cmds[0].Natural()["reason"] != "fraud score 100" {
			t.Errorf("reason = %v", cmds[0].Natural()["reason"])
		}
	}
}

// asRecordEvent is ev with its value as the *schemas.Record form the
// decoder gives (fields in name order, nested records too).
func asRecordEvent(ev *processors.Event) *processors.Event {
	var conv func(v any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case map[string]any:
			names := slices.Sorted(maps.Keys(x))
			r := &schemas.Record{Names: names, Values: make([]any, len(names))}
			for i, k := range names {
				r.Values[i] = conv(x[k])
			}
			return r
		case []any:
			out := make([]any, len(x))
			for i, e := range x {
				out[i] = conv(e)
			}
			return out
		}
		return v
	}
	c := *ev
	c.Record, c.Value = conv(ev.Value).(*schemas.Record), nil
	return &c
}

func TestFraudScoreConfigError(t *testing.T) {
	s := spec(t, "fraud_score", "high_total: -1\n")
	s.Name = "fraud"
	_, err := newFraudScore(s, processors.Deps{})
	if err == nil || err.Error() != "ordo.yaml:1: pipeline[fraud]: high_total must be positive, got -1" {
		t.Fatalf("err = %v", err)
	}
	reg := processors.NewRegistry()
	if err := Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := Register(reg); err == nil {
		t.Fatal("double registration must fail")
	}
}
