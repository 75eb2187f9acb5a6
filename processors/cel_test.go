package processors

import (
	"strings"
	"testing"
	"time"
)

func evalOn(t *testing.T, ev *Event, src string) (any, error) {
	t.Helper()
	x, err := compileCEL(testSpec(t, "orchestrate", "p", "x: 1\n"), nil, "k", src, anyResult)
	if err != nil {
		t.Fatalf("compile %s: %v", src, err)
	}
	return x.evalNatural(newVars(ev))
}

func TestCELVariablesAndConversions(t *testing.T) {
	ev := orderPlaced()
	ev.Attrs = map[string]any{"score": int64(7), "blob": []byte("hi"), "f": float32(1.5)}
	ev.Envelope.CausationID = ""
	cases := map[string]any{
		`type`: "com.acme.checkout.OrderPlaced",
		`topic + "/" + string(partition) + "/" + string(offset)`: "checkout.orders.v1/3/1017",
		`key`:                                   "order-42",
		`envelope.id + envelope.correlation_id`: "evt-1order-42",
		`envelope.causation_id`:                 "",
		`envelope.time < timestamp("2026-03-01T12:00:00Z")`: true,
		`envelope.time`: testTime.Add(-time.Second),
		`event.envelope.time + duration("1s") == timestamp("2026-03-01T12:00:00Z")`: true,
		`event.items[0].qty + 1`:                           int64(3),
		`event.items[1].unit_price * 2.0`:                  69.12,
		`event.total > 1234 && event.total < 1235`:         true,
		`event.note == null`:                               true,
		`has(event.note)`:                                  true,
		`has(event.nothing)`:                               false,
		`attrs.score * 2`:                                  int64(14),
		`attrs.f`:                                          float32(1.5), // plain path: copied as is
		`attrs.f + 0.0`:                                    1.5,
		`size(attrs.blob)`:                                 int64(2),
		`["a", "b"].join()`:                                "ab",
		`event.items.map(i, i.sku).join(",")`:              "SKU-1,SKU-2",
		`" MiXed ".trim().lowerAscii() + "x".upperAscii()`: "mixedX",
		`"a-b-c".split("-")`:                               []any{"a", "b", "c"},
		`"a-b".replace("-", "+")`:                          "a+b",
		`event.currency in ["EUR", "USD"]`:                 true,
	}
	for src, want := range cases {
		got, err := evalOn(t, ev, src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		if gt, ok := got.(time.Time); ok {
			if !gt.Equal(want.(time.Time)) {
				t.Errorf("%s = %v, want %v", src, got, want)
			}
			continue
		}
		if !equalNatural(got, want) {
			t.Errorf("%s = %#v, want %#v", src, got, want)
		}
	}
	// Missing attrs / nil value behave as empty maps.
	empty := &Event{}
	if got, err := evalOn(t, empty, `has(attrs.x) || has(event.y)`); err != nil || got != false {
		t.Fatalf("empty event: %v %v", got, err)
	}
}

func equalNatural(a, b any) bool {
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !equalNatural(x[i], y[i]) {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestCELCostLimit(t *testing.T) {
	ev := orderPlaced()
	big := make([]any, 400)
	for i := range big {
		big[i] = int64(i)
	}
	ev.Value["big"] = big
	start := time.Now()
	_, err := evalOn(t, ev, `event.big.all(a, event.big.all(b, a + b >= 0))`)
	if err == nil || !strings.Contains(err.Error(), "cost limit exceeded") {
		t.Fatalf("want cost limit error, got %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("cost limit took %v", d)
	}
}

func TestCELFixHints(t *testing.T) {
	s := testSpec(t, "orchestrate", "p", "x: 1\n")
	_, err := compileCEL(s, nil, "k", `event.skus.implode(",")`, anyResult)
	if err == nil || !strings.Contains(err.Error(), "no function implode") {
		t.Fatalf("got %v", err)
	}
	_, err = compileCEL(s, nil, "k", `standard`, anyResult)
	if err == nil || !strings.Contains(err.Error(), "must be quoted") {
		t.Fatalf("got %v", err)
	}
	_, err = compileCEL(s, nil, "k", `  `, anyResult)
	if err == nil || !strings.Contains(err.Error(), "empty CEL expression") {
		t.Fatalf("got %v", err)
	}
}
