package processors

import (
	"context"
	"strings"
	"testing"
)

const validateDemo = `require_envelope: true
rules:
  - name: positive_total
    when: type == "com.acme.checkout.OrderPlaced"
    expr: event.total > 0.0 && size(event.items) > 0
    message: "order total must be positive and the order must have items"
  - name: known_currency
    expr: event.currency in ["EUR", "USD", "GBP"]
    message: unsupported currency
`

func buildValidate(t testing.TB, block string, deps Deps) Processor {
	t.Helper()
	p, err := newValidate(testSpec(t, "validate", "order-rules", block), deps)
	if err != nil {
		t.Fatalf("build: %v", err)
	}
	return p
}

func TestValidateRules(t *testing.T) {
	p := buildValidate(t, validateDemo, Deps{})
	cases := []struct {
		name   string
		mutate func(ev *Event)
		want   []string // fragments; nil = pass
	}{
		{"pass", func(*Event) {}, nil},
		{"zero total", func(ev *Event) { ev.Value["total"] = rat("0") },
			[]string{"rule positive_total: order total must be positive and the order must have items"}},
		{"no items", func(ev *Event) { ev.Value["items"] = []any{} },
			[]string{"rule positive_total:"}},
		{"bad currency", func(ev *Event) { ev.Value["currency"] = "OTHER" },
			[]string{"rule known_currency: unsupported currency"}},
		{"both fail", func(ev *Event) { ev.Value["currency"] = "OTHER"; ev.Value["total"] = rat("-1") },
			[]string{"rule positive_total:", "rule known_currency:"}},
		{"when false skips rule", func(ev *Event) {
			ev.Type, ev.Envelope.Type = "com.acme.Other", "com.acme.Other"
			ev.Value["total"] = rat("0")
		}, nil},
		{"missing field is a failure", func(ev *Event) { delete(ev.Value, "total") },
			[]string{"rule positive_total:", "no such key: total"}},
		{"decimal compares as double", func(ev *Event) { ev.Value["total"] = rat("0.01") }, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := orderPlaced()
			c.mutate(ev)
			cmds, err := p.Process(context.Background(), ev)
			if len(cmds) != 0 {
				t.Fatalf("validate emitted commands: %v", cmds)
			}
			if c.want == nil {
				if err != nil {
					t.Fatalf("want pass, got %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want failure %v, got pass", c.want)
			}
			if IsTransient(err) {
				t.Errorf("validation failure must be permanent: %v", err)
			}
			for _, f := range c.want {
				if !strings.Contains(err.Error(), f) {
					t.Errorf("error %q does not contain %q", err, f)
				}
			}
		})
	}
}

func TestValidateEnvelope(t *testing.T) {
	p := buildValidate(t, "rules: []\n", Deps{})
	cases := []struct {
		name   string
		mutate func(ev *Event)
		want   string
	}{
		{"empty id", func(ev *Event) { ev.Envelope.ID = "" }, "envelope.id is empty"},
		{"empty type", func(ev *Event) { ev.Envelope.Type = "" }, "envelope.type is empty"},
		{"empty correlation", func(ev *Event) { ev.Envelope.CorrelationID = "" }, "envelope.correlation_id is empty"},
		{"type mismatch", func(ev *Event) { ev.Envelope.Type = "com.acme.checkout.OrderCancelled" },
			`envelope.type "com.acme.checkout.OrderCancelled" does not match the writer schema "com.acme.checkout.OrderPlaced"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := orderPlaced()
			c.mutate(ev)
			_, err := p.Process(context.Background(), ev)
			if err == nil || !strings.Contains(err.Error(), c.want) || IsTransient(err) {
				t.Fatalf("want permanent %q, got %v", c.want, err)
			}
		})
	}
	// require_envelope: false turns the check off.
	off := buildValidate(t, "require_envelope: false\n", Deps{})
	ev := orderPlaced()
	ev.Envelope = Envelope{}
	if _, err := off.Process(context.Background(), ev); err != nil {
		t.Fatalf("require_envelope false: %v", err)
	}
	// No config block at all: envelope check on, no rules.
	p2, err := newValidate(Spec{Type: "validate", File: "ordo.yaml"}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p2.Process(context.Background(), ev); err == nil {
		t.Fatal("empty config must still require the envelope")
	}
}

func TestValidateKnownType(t *testing.T) {
	p := buildValidate(t, "rules: []\n", Deps{KnownType: func(n string) bool { return n == "com.acme.checkout.OrderPlaced" }})
	if _, err := p.Process(context.Background(), orderPlaced()); err != nil {
		t.Fatalf("known type rejected: %v", err)
	}
	ev := orderPlaced()
	ev.Type, ev.Envelope.Type = "com.acme.Mystery", "com.acme.Mystery"
	_, err := p.Process(context.Background(), ev)
	if err == nil || !strings.Contains(err.Error(), `unknown event type "com.acme.Mystery"`) {
		t.Fatalf("want unknown type error, got %v", err)
	}
}

func TestValidateConfigErrors(t *testing.T) {
	cases := []struct {
		name, block string
		line        int
		key         string
		frags       []string
	}{
		{"type error", `rules:
  - name: a
    expr: evnt.total > 0.0
`, 3, "pipeline[order-rules].rules[0].expr", []string{"invalid CEL expression", "undeclared reference to 'evnt'", "fix:"}},
		{"syntax error in when", `rules:
  - name: a
    expr: "true"
  - name: b
    when: type ==
    expr: "true"
`, 5, "pipeline[order-rules].rules[1].when", []string{"invalid CEL expression"}},
		{"not bool", `rules:
  - name: a
    expr: event.order_id + "x"
`, 3, "pipeline[order-rules].rules[0].expr", []string{"want bool"}},
		{"missing name", `rules:
  - expr: "true"
`, 2, "pipeline[order-rules].rules[0]", []string{"rule has no name"}},
		{"duplicate name", `rules:
  - name: a
    expr: "true"
  - name: a
    expr: "false"
`, 4, "pipeline[order-rules].rules[1].name", []string{"duplicate rule name"}},
		{"missing expr", `rules:
  - name: a
    message: hi
`, 2, "pipeline[order-rules].rules[0]", []string{"has no expr"}},
		{"unknown key", `rules:
  - name: a
    exp: "true"
`, 3, "pipeline[order-rules].rules[0].exp", []string{"unknown key", `did you mean "expr"?`, "Valid keys: name, when, expr, message"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := newValidate(testSpec(t, "validate", "order-rules", c.block), Deps{})
			wantConfigError(t, err, c.line, c.key, c.frags...)
		})
	}
}

func TestValidateViaRegistry(t *testing.T) {
	spec := testSpec(t, "validate", "", validateDemo)
	chain, err := Builtins().Build([]Spec{spec}, Deps{})
	if err != nil {
		t.Fatal(err)
	}
	ev := orderPlaced()
	ev.Value["total"] = rat("0")
	_, err = chain.Process(context.Background(), ev)
	if err == nil || !strings.Contains(err.Error(), "processor validate: validation failed: rule positive_total") {
		t.Fatalf("got %v", err)
	}
}

func BenchmarkValidate(b *testing.B) {
	p := buildValidate(b, validateDemo, Deps{})
	ev := orderPlaced()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := p.Process(ctx, ev); err != nil {
			b.Fatal(err)
		}
	}
}
