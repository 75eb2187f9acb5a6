package processors

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/schemas"
)

// fastExprs covers what the fast path implements, plus shapes it must leave
// to cel-go. Each is evaluated on every event of fastEvents both ways.
var fastExprs = []string{
	`type == "com.acme.checkout.OrderPlaced"`,
	`type != "com.acme.checkout.OrderPlaced"`,
	`event.total > 0.0 && size(event.items) > 0`,
	`event.items.all(i, i.qty > 0)`,
	`event.items.exists(i, i.qty > 1)`,
	`event.items.exists_one(i, i.qty == 1)`,
	`event.items.map(i, {"sku": i.sku, "qty": i.qty})`,
	`event.items.map(i, i)`,
	`event.items.filter(i, i.qty >= 2)`,
	`event.items.map(i, i.qty > 1, i.sku)`,
	`event.items.map(i, i.tags.map(t, t + "!"))`,
	// The typed append of the map macro: empty, nested (the inner element
	// reads the outer iteration variable), results used by other operators.
	`[].map(i, i)`, `[] + []`, `size(event.items.map(i, i.qty))`, `event.items.map(i, i.qty) + [1]`,
	`event.items.map(i, event.items.map(j, j.qty + i.qty))`, `[] + event.items.map(i, [i.sku] + [])`,
	`event.items.map(i, i.missing)`,
	`type == "com.acme.checkout.OrderPlaced" ? event.customer_id : ""`,
	`attrs.customer.tier == "gold" ? "express" : "standard"`,
	`"order_received"`,
	`"missing: " + string(size(event.items)) + " SKU(s)"`, `string(event.n)`, `string(event.n32)`, `string(event.big)`,
	`string(event.currency)`, `string(event.flag)`, `string(event.f)`, `string(event.ts)`,
	`"payment declined: " + event.reason`,
	`event.n + 1`, `event.n - 1`, `event.n * 3`, `event.f * 2.0`, `event.f - 0.5`,
	`event.n + event.f`,
	`event.n == 1.0`, `event.n == event.n32`, `event.n < event.n32`,
	`event.note == null`, `event.currency == null`, `null == null`,
	`event.missing == 1`, `has(event.missing)`, `has(event.note)`,
	`!(event.total > 100.0)`, `event.total >= event.f || event.n > 0`,
	`event.flag && event.missing == 1`, `event.missing == 1 && event.flag`,
	`event.missing == 1 || true`, `true || event.missing == 1`,
	`event.currency in ["EUR", "USD"]`, `event.n in [1, 2, 3]`, `"sku" in event.items[0]`,
	`event.items[0].sku`, `event.items[5].sku`, `event.items[0]["qty"]`, `event.items[event.n].sku`,
	`size(event.currency)`, `event.currency.size()`, `size(event.blob)`, `size(attrs)`,
	`event.currency.startsWith("E")`, `event.currency.endsWith("R")`, `event.currency.contains("U")`,
	`event.currency < "USD"`, `event.ts < timestamp("2030-01-01T00:00:00Z")`,
	`[event.n, event.f, event.currency]`, `{"a": event.items, "b": [event.total]}`,
	`[1, 2] + [3]`, `event.items + event.items`,
	`event.big + 1`, `event.big * 2`, `-event.n`,
	`event.f == event.f`, `event.nan == event.nan`, `event.nan < 1.0`,
	`event.ts`, `event.blob`, `envelope.id + "/" + key`, `partition + offset`,
}

func fastEvents() []*Event {
	base := orderPlaced()
	base.Attrs = map[string]any{"customer": map[string]any{"tier": "gold"}}
	withExtras := func(ev *Event, kv ...any) *Event {
		for i := 0; i < len(kv); i += 2 {
			ev.Value[kv[i].(string)] = kv[i+1]
		}
		return ev
	}
	items := func(qtys ...any) []any {
		out := make([]any, len(qtys))
		for i, q := range qtys {
			out[i] = map[string]any{"sku": fmt.Sprintf("S%d", i), "qty": q, "tags": []any{"x", "y"}}
		}
		return out
	}
	e1 := withExtras(base, "n", int64(1), "n32", int32(1), "f", 2.5, "flag", true, "reason", "no funds",
		"blob", []byte("héllo"), "ts", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), "big", int64(math.MaxInt64), "nan", math.NaN(),
		"items", items(int32(2), int32(1), int32(3)))
	e2 := orderPlaced()
	e2.Type = "com.acme.payments.PaymentDeclined"
	e2.Attrs = map[string]any{"customer": map[string]any{"tier": 7}}
	e2 = withExtras(e2, "n", int64(0), "n32", int32(-5), "f", float32(0.25), "flag", false, "reason", nil,
		"currency", nil, "total", rat("-1.5"), "big", int64(math.MinInt64), "items", items())
	e3 := orderPlaced()
	e3.Attrs = nil
	e3 = withExtras(e3, "n", int32(2), "f", rat("3.25"), "flag", "yes", "items", []any{map[string]any{"sku": 1, "qty": int64(0)}, "str"})
	e4 := &Event{Type: "x"}
	return []*Event{e1, e2, e3, e4}
}

// celReference evaluates src with cel-go only (the fast path disabled).
func celReference(c *celExpr, a *vars) (any, error) {
	out, err := c.eval(a)
	if err != nil {
		return nil, err
	}
	return fromCEL(out)
}

func TestFastPathAgreesWithCEL(t *testing.T) {
	s := testSpec(t, "orchestrate", "p", "x: 1\n")
	used := 0
	for _, src := range fastExprs {
		c, err := compileCEL(s, nil, "k", src, anyResult)
		if err != nil {
			t.Fatalf("compile %s: %v", src, err)
		}
		if c.fast == nil {
			continue
		}
		for i, ev := range fastEvents() {
			got, ok := c.fastNatural(newVars(ev), false)
			if !ok {
				continue
			}
			used++
			want, err := celReference(c, newVars(ev))
			if err != nil {
				t.Errorf("%s on event %d: fast path returned %#v, cel-go failed: %v", src, i, got, err)
				continue
			}
			if !sameNatural(got, want) {
				t.Errorf("%s on event %d: fast path %#v, cel-go %#v", src, i, got, want)
			}
			// With records kept (orchestrate's slots), the same value.
			if rec, _ := c.fastNatural(newVars(ev), true); !sameNatural(schemas.CloneNatural(rec), want) {
				t.Errorf("%s on event %d: fast path keeping records %#v, cel-go %#v", src, i, rec, want)
			}
			// evalBool and evalKey take the fast path too.
			if b, isBool := want.(bool); isBool {
				fb, err := c.evalBool(newVars(ev))
				if err != nil || fb != b {
					t.Errorf("%s on event %d: evalBool %v %v, want %v", src, i, fb, err, b)
				}
			}
		}
	}
	if used < 100 {
		t.Fatalf("fast path answered only %d (expression, event) pairs; it is not being used", used)
	}
}

// TestFastPathCoversThePipelineExpressions pins that the expressions of the
// example pipeline run without cel-go; a regression here is a silent 2x
// slowdown of the processor chain.
func TestFastPathCoversThePipelineExpressions(t *testing.T) {
	s := testSpec(t, "orchestrate", "p", "x: 1\n")
	ev := fastEvents()[0]
	for _, src := range []string{
		`type == "com.acme.checkout.OrderPlaced"`,
		`event.total > 0.0 && size(event.items) > 0`,
		`event.items.all(i, i.qty > 0)`,
		`type == "com.acme.checkout.OrderPlaced" ? event.customer_id : ""`,
		`event.items.map(i, {"sku": i.sku, "qty": i.qty})`,
		`attrs.customer.tier == "gold" ? "express" : "standard"`,
		`"payment declined: " + event.reason`,
	} {
		c, err := compileCEL(s, nil, "k", src, anyResult)
		if err != nil {
			t.Fatal(err)
		}
		if c.fast == nil {
			t.Errorf("%s: not compiled by the fast path", src)
			continue
		}
		if _, ok := c.fast(newVars(ev)); !ok {
			t.Errorf("%s: fast path bailed on a typical event", src)
		}
	}
	// Super-linear expressions keep cel-go's cost limit instead.
	c, err := compileCEL(s, nil, "k", `event.items.all(a, event.items.all(b, a.qty + b.qty >= 0))`, anyResult)
	if err != nil {
		t.Fatal(err)
	}
	if c.fast != nil {
		t.Fatal("a cost-tracked expression must not use the fast path")
	}
}

// sameNatural compares natural values strictly: same Go types, decimals by
// value, NaN equal to NaN.
func sameNatural(a, b any) bool {
	if reflect.TypeOf(a) != reflect.TypeOf(b) {
		return false
	}
	switch x := a.(type) {
	case float64:
		y := b.(float64)
		return x == y || math.IsNaN(x) && math.IsNaN(y)
	case *big.Rat:
		return x.Cmp(b.(*big.Rat)) == 0
	case time.Time:
		return x.Equal(b.(time.Time))
	case []any:
		y := b.([]any)
		if len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameNatural(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y := b.(map[string]any)
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok || !sameNatural(v, w) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a, b)
}

// TestRatFloat64MatchesBigRat checks the shortcut against Rat.Float64 on
// random and boundary decimals.
func TestRatFloat64MatchesBigRat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	check := func(r *big.Rat) {
		t.Helper()
		want, _ := r.Float64()
		if got := ratFloat64(r); got != want {
			t.Fatalf("ratFloat64(%s) = %v, Rat.Float64 = %v", r.RatString(), got, want)
		}
	}
	for _, s := range []string{"0", "-0.5", "1234.56", "600.00", "9007199254740991", "9007199254740993", "-9007199254740993",
		"1/3", "2/9007199254740993", "123456789012345678901234567890.1", "0.1", "-99.99", "1e-30"} {
		r, ok := new(big.Rat).SetString(s)
		if !ok {
			t.Fatalf("bad literal %s", s)
		}
		check(r)
	}
	for range 100000 {
		num := rng.Int64N(1<<62) - 1<<61
		den := rng.Int64N(1<<uint(rng.IntN(62))) + 1
		check(big.NewRat(num, den))
		check(big.NewRat(rng.Int64N(1<<54)-1<<53, 100))
	}
}
