package processors

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/schemas"
)

// FuzzCELFastPath checks the CEL fast path (celfast.go) against plain cel-go.
// An input is either an expression (src) or, when src is empty, a byte
// string that drives a small CEL grammar (celGen): field paths into a fixed
// event, literals, comparisons, arithmetic, &&/||/!/?:, in, indexing, has(),
// size(), the string functions the environment has, conversions and the
// list macros. Every expression that compiles is evaluated on each event of
// celFuzzEvents with the fast path on and off:
//
//   - whenever the fast path answers, cel-go must succeed with the same
//     natural value (floats by bit pattern, NaN equal to NaN);
//   - evalNatural, evalBool and evalKey must give the same value or the same
//     error with and without the fast path;
//   - evaluating must not change the event.
func FuzzCELFastPath(f *testing.F) {
	for _, src := range fastExprs {
		f.Add(src, []byte(nil))
	}
	for _, src := range celFuzzExprs {
		f.Add(src, []byte(nil))
	}
	for i := range 32 {
		prog := make([]byte, 24)
		for j := range prog {
			prog[j] = byte(i*37 + j*11)
		}
		f.Add("", prog)
	}
	s := testSpec(f, "orchestrate", "p", "x: 1\n")
	f.Fuzz(func(t *testing.T, src string, prog []byte) {
		if src == "" {
			src = (&celGen{in: prog}).expr(0)
		}
		if len(src) > 2000 {
			return
		}
		checkFastAgainstCEL(t, s, src)
	})
}

// celFuzzExprs are hand-picked seeds for edge cases of the fast path's
// arithmetic, comparisons and string functions.
var celFuzzExprs = []string{
	`event.big + 1`, `event.small - 1`, `event.small * -1`, `-1 * event.small`, `event.big * event.big`,
	`event.n - event.small`, `event.small - event.n`, `0 - event.small`, `event.small * 0`,
	`event.f32 * 2.0`, `event.total - 0.5`, `event.nan == event.nan`, `event.nan != 1.0`,
	`event.negzero`, `-0.0 == 0.0`, `event.negzero * -1.0`, `event.total + event.f`,
	`event.s.size()`, `size(event.s) == 11`, `event.s.startsWith("hé")`, `event.s.contains("")`,
	`event.s < event.empty`, `event.empty.endsWith("")`, `event.s + event.empty`,
	`event.mixed.exists(x, x == 1)`, `event.mixed.all(x, x != null)`, `1 in event.mixed`, `2.5 in event.mixed`,
	`event.mixed[3] == null`, `event.mixed[event.n]`, `event.items.map(i, i.qty * 2)`,
	`event.items.filter(i, i.sku.startsWith("S")).map(i, i.sku)`, `event.items.exists_one(i, i.qty > 1)`,
	`event.items.all(i, i.tags.all(t, t.size() == 1))`, `event.nested.a.b`, `has(event.nested.a)`, `has(event.nested.z)`,
	`event.nested["a"]["b"] + 1`, `"k" in event.nested`, `size(event.nested)`, `event.items[0].tags + ["z"]`,
	`[event.n, event.n32] == [1, 1]`, `{"a": 1}.a`, `{"a": event.f}["a"] * 2.0`,
	`event.s.split(" ")`, `event.items.map(i, i.sku).join("-")`, `event.s.upperAscii()`, `event.s.replace("l", "L")`,
	`string(event.n) + "x"`, `int(event.f)`, `double(event.n) / 2.0`, `event.n / 0`, `event.n % 2`,
	`event.flag ? event.n : event.f`, `event.flag ? 1 : "one"`, `event.note == null ? "none" : event.note`,
	`attrs.customer.tier`, `attrs.customer.tier.size()`, `type.endsWith("Placed")`, `key.size() + partition`,
	`envelope.time < event.ts`, `event.ts - duration("1h") < event.ts`,
	`event.u32 == 7`, `event.u32 + 1`,
}

// celFuzzEvents returns fresh copies of the fuzz events (fresh on every
// call, so one evaluation cannot affect another and mutations are visible).
func celFuzzEvents() []*Event {
	evs := fastEvents()
	for i, ev := range evs {
		if ev.Value == nil {
			ev.Value = map[string]any{}
		}
		ev.Value["small"] = int64(math.MinInt64)
		ev.Value["f32"] = float32(1.25)
		ev.Value["negzero"] = math.Copysign(0, -1)
		ev.Value["s"] = "héllo wörld"
		ev.Value["empty"] = ""
		ev.Value["mixed"] = []any{int64(1), "a", 2.5, nil}
		ev.Value["nested"] = map[string]any{"a": map[string]any{"b": int64(i)}, "k": true}
		ev.Value["u32"] = uint32(7) // not a natural type: both paths must agree anyway
		if i%2 == 1 {
			ev.Value["s"] = ""
			ev.Value["mixed"] = []any{}
		}
	}
	return evs
}

// checkFastAgainstCEL returns how many events the fast path answered.
func checkFastAgainstCEL(t *testing.T, s Spec, src string) (answered int) {
	t.Helper()
	c, err := compileCEL(s, nil, "k", src, anyResult)
	if err != nil || c.fast == nil {
		return 0 // not a (fast-path) expression: nothing to compare
	}
	slow := *c
	slow.fast = nil
	fresh := celFuzzEvents()
	for i, ev := range celFuzzEvents() {
		a := newVars(ev)
		if got, ok := c.fastNatural(a, false); ok {
			answered++
			want, err := celReference(&slow, newVars(fresh[i]))
			if err != nil {
				t.Fatalf("%s on event %d: fast path returned %#v, cel-go failed: %v", src, i, got, err)
			}
			if d := celDiff(got, want); d != "" {
				t.Fatalf("%s on event %d: fast path %#v, cel-go %#v: %s", src, i, got, want, d)
			}
			// With records kept (orchestrate's slots), the same value.
			rec, _ := c.fastNatural(newVars(ev), true)
			if d := celDiff(schemas.CloneNatural(rec), want); d != "" {
				t.Fatalf("%s on event %d: fast path keeping records %#v, cel-go %#v: %s", src, i, rec, want, d)
			}
		}
		// The entry points the processors use, fast path on and off.
		v1, e1 := c.evalNatural(newVars(ev))
		v2, e2 := slow.evalNatural(newVars(fresh[i]))
		if errText(e1) != errText(e2) || (e1 == nil && celDiff(v1, v2) != "") {
			t.Fatalf("%s on event %d: evalNatural fast (%#v, %v), cel-go (%#v, %v)", src, i, v1, e1, v2, e2)
		}
		b1, e1 := c.evalBool(newVars(ev))
		b2, e2 := slow.evalBool(newVars(fresh[i]))
		if errText(e1) != errText(e2) || b1 != b2 {
			t.Fatalf("%s on event %d: evalBool fast (%v, %v), cel-go (%v, %v)", src, i, b1, e1, b2, e2)
		}
		k1, ok1, e1 := c.evalKey(newVars(ev))
		k2, ok2, e2 := slow.evalKey(newVars(fresh[i]))
		if errText(e1) != errText(e2) || k1 != k2 || ok1 != ok2 {
			t.Fatalf("%s on event %d: evalKey fast (%q, %v, %v), cel-go (%q, %v, %v)", src, i, k1, ok1, e1, k2, ok2, e2)
		}
		if d := celDiff(ev.Value, fresh[i].Value); d != "" {
			t.Fatalf("%s on event %d: evaluation changed the event: %s", src, i, d)
		}
		if d := celDiff(ev.Attrs, fresh[i].Attrs); d != "" {
			t.Fatalf("%s on event %d: evaluation changed the attrs: %s", src, i, d)
		}
	}
	return answered
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// celDiff compares natural values strictly: same Go types, floats by bit
// pattern (NaN equals NaN), decimals by value, times by instant. "" means
// equal.
func celDiff(a, b any) string {
	if reflect.TypeOf(a) != reflect.TypeOf(b) {
		return fmt.Sprintf("types %T and %T", a, b)
	}
	switch x := a.(type) {
	case float64:
		y := b.(float64)
		if math.Float64bits(x) != math.Float64bits(y) && !(math.IsNaN(x) && math.IsNaN(y)) {
			return fmt.Sprintf("%v != %v", x, y)
		}
		return ""
	case float32:
		y := b.(float32)
		if math.Float32bits(x) != math.Float32bits(y) && !(x != x && y != y) {
			return fmt.Sprintf("%v != %v", x, y)
		}
		return ""
	case *big.Rat:
		if x.Cmp(b.(*big.Rat)) != 0 {
			return fmt.Sprintf("%v != %v", x, b)
		}
		return ""
	case time.Time:
		if !x.Equal(b.(time.Time)) {
			return fmt.Sprintf("%v != %v", x, b)
		}
		return ""
	case []any:
		y := b.([]any)
		if len(x) != len(y) {
			return fmt.Sprintf("lengths %d and %d", len(x), len(y))
		}
		for i := range x {
			if d := celDiff(x[i], y[i]); d != "" {
				return fmt.Sprintf("[%d]: %s", i, d)
			}
		}
		return ""
	case map[string]any:
		y := b.(map[string]any)
		if len(x) != len(y) {
			return fmt.Sprintf("sizes %d and %d", len(x), len(y))
		}
		for k, v := range x {
			w, ok := y[k]
			if !ok {
				return fmt.Sprintf("key %q missing", k)
			}
			if d := celDiff(v, w); d != "" {
				return k + ": " + d
			}
		}
		return ""
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Sprintf("%#v != %#v", a, b)
	}
	return ""
}

// celGen builds a CEL expression from fuzz bytes. Running out of bytes
// picks the first (simplest) choice everywhere, so every input gives a
// finite expression.
type celGen struct {
	in   []byte
	vars []string // macro variables in scope
}

func (g *celGen) pick(n int) int {
	if len(g.in) == 0 {
		return 0
	}
	b := g.in[0]
	g.in = g.in[1:]
	return int(b) % n
}

var (
	celFields = []string{"n", "n32", "f", "f32", "total", "currency", "note", "flag", "items", "blob", "ts",
		"big", "small", "nan", "negzero", "s", "empty", "mixed", "nested", "reason", "missing", "u32", "customer_id"}
	celItemFields = []string{"sku", "qty", "tags", "nope"}
	celInts       = []string{"0", "1", "-1", "2", "7", "9223372036854775807", "-9223372036854775807", "3000000000"}
	celDoubles    = []string{"0.0", "-0.0", "1.5", "-2.25", "1e308", "0.1"}
	celStrings    = []string{`""`, `"a"`, `"EUR"`, `"é"`, `" "`, `"S"`, `"héllo wörld"`, `"l"`}
	celBinOps     = []string{"==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "&&", "||", "in"}
	celStrFuncs   = []string{"startsWith", "endsWith", "contains", "split", "replace", "lowerAscii", "upperAscii", "trim", "size", "join"}
	celMacros     = []string{"all", "exists", "exists_one", "map", "filter", "map3"}
)

func (g *celGen) expr(d int) string {
	if d > 4 {
		return g.leaf()
	}
	switch g.pick(14) {
	case 0, 1, 2:
		return g.leaf()
	case 3:
		return "(" + g.expr(d+1) + " " + celBinOps[g.pick(len(celBinOps))] + " " + g.expr(d+1) + ")"
	case 4:
		return []string{"!", "-"}[g.pick(2)] + "(" + g.expr(d+1) + ")"
	case 5:
		return "(" + g.expr(d+1) + " ? " + g.expr(d+1) + " : " + g.expr(d+1) + ")"
	case 6:
		return g.expr(d+1) + "[" + g.expr(d+1) + "]"
	case 7:
		return "has(" + g.path() + ")"
	case 8:
		return "size(" + g.expr(d+1) + ")"
	case 9:
		return g.strFunc(d)
	case 10:
		return g.macro(d)
	case 11:
		n := g.pick(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = g.expr(d + 1)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case 12:
		n := g.pick(3)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = strconv.Quote(string(rune('a'+g.pick(3)))) + ": " + g.expr(d+1)
		}
		return "{" + strings.Join(parts, ", ") + "}"
	default:
		return []string{"string", "int", "double"}[g.pick(3)] + "(" + g.expr(d+1) + ")"
	}
}

func (g *celGen) strFunc(d int) string {
	fn := celStrFuncs[g.pick(len(celStrFuncs))]
	recv := g.expr(d + 1)
	switch fn {
	case "lowerAscii", "upperAscii", "trim", "size":
		return recv + "." + fn + "()"
	case "replace":
		return recv + ".replace(" + g.expr(d+1) + ", " + g.expr(d+1) + ")"
	case "join":
		if g.pick(2) == 0 {
			return recv + ".join()"
		}
	}
	return recv + "." + fn + "(" + g.expr(d+1) + ")"
}

func (g *celGen) macro(d int) string {
	m := celMacros[g.pick(len(celMacros))]
	rng := g.expr(d + 1)
	v := []string{"i", "j"}[len(g.vars)%2]
	g.vars = append(g.vars, v)
	defer func() { g.vars = g.vars[:len(g.vars)-1] }()
	if m == "map3" {
		return rng + ".map(" + v + ", " + g.expr(d+1) + ", " + g.expr(d+1) + ")"
	}
	return rng + "." + m + "(" + v + ", " + g.expr(d+1) + ")"
}

// path is a select chain for has(): event.f, event.items[0].sku, a macro
// variable's field, attrs.customer.tier, event.nested.a.b.
func (g *celGen) path() string {
	switch g.pick(5) {
	case 0:
		return "event." + celFields[g.pick(len(celFields))]
	case 1:
		return "event.items[" + strconv.Itoa(g.pick(3)) + "]." + celItemFields[g.pick(len(celItemFields))]
	case 2:
		if len(g.vars) > 0 {
			return g.vars[len(g.vars)-1] + "." + celItemFields[g.pick(len(celItemFields))]
		}
		return "attrs.customer.tier"
	case 3:
		return "attrs.customer." + []string{"tier", "nope"}[g.pick(2)]
	}
	return "event.nested." + []string{"a", "k", "z"}[g.pick(3)] + ".b"
}

func (g *celGen) leaf() string {
	switch g.pick(10) {
	case 0:
		return "event." + celFields[g.pick(len(celFields))]
	case 1:
		return g.path()
	case 2:
		return celInts[g.pick(len(celInts))]
	case 3:
		return celDoubles[g.pick(len(celDoubles))]
	case 4:
		return celStrings[g.pick(len(celStrings))]
	case 5:
		return []string{"true", "false", "null"}[g.pick(3)]
	case 6:
		if len(g.vars) > 0 {
			return g.vars[g.pick(len(g.vars))]
		}
		return "event.items"
	case 7:
		return []string{"type", "topic", "partition", "offset", "key", "envelope.id", "envelope.time", "attrs"}[g.pick(8)]
	case 8:
		return "event.items[" + strconv.Itoa(g.pick(4)) + "]"
	}
	return "event"
}

// TestCELFastPathOnGeneratedExpressions runs the fuzz target's check on a
// fixed number of generated expressions, so plain `go test` covers more
// than the seed corpus.
func TestCELFastPathOnGeneratedExpressions(t *testing.T) {
	s := testSpec(t, "orchestrate", "p", "x: 1\n")
	compiled, fast, answered := 0, 0, 0
	n := 3000
	if testing.Short() {
		n = 300
	}
	for seed := range n {
		prog := make([]byte, 64)
		x := uint64(seed)*0x9e3779b97f4a7c15 + 1
		for i := range prog {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
			prog[i] = byte(x)
		}
		src := (&celGen{in: prog}).expr(0)
		if c, err := compileCEL(s, nil, "k", src, anyResult); err == nil {
			compiled++
			if c.fast != nil {
				fast++
			}
		}
		answered += checkFastAgainstCEL(t, s, src)
	}
	t.Logf("%d generated expressions: %d compile, %d of those on the fast path, %d (expression, event) answers by it", n, compiled, fast, answered)
	if fast < n/10 || answered < n/10 {
		t.Fatalf("only %d of %d generated expressions reach the fast path (%d answers); the generator is not exercising it", fast, n, answered)
	}
}
