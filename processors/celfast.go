package processors

// A fast path for the CEL expressions pipelines actually write.
//
// cel-go's interpreter wraps every value it touches in a ref.Val, builds
// adapter maps for each map access and allocates for each step of a macro.
// On ordo's hot path that was most of the processor chain's CPU (see
// docs/benchmarks.md). Most pipeline expressions are small: field paths,
// comparisons, &&, ||, !, ?:, +, size(), in, has() and the all / exists /
// exists_one / map / filter macros over lists. compileFast turns the checked
// AST of such an expression into Go closures over the natural values.
//
// The fast path never decides an edge case. Every closure returns ok=false
// ("bail") whenever anything is off the happy path: a missing key, a type
// it does not handle, mixed int/double arithmetic, overflow, an index out of
// range, a function it does not know. The caller then evaluates the same
// expression with cel-go, which produces the exact CEL result or error. So a
// fast result is only ever returned where it equals cel-go's; the
// differential test in celfast_test.go checks that on many values.

import (
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/ordo-dev/ordo/schemas"

	"github.com/ordo-dev/ordo/internal/arena"

	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
)

// fastFn evaluates against the per-event variables; ok=false means "ask
// cel-go".
type fastFn func(a *vars) (v any, ok bool)

// Values built by the fast path (list literals and macro results; map
// literals are fastRecords, below) have their own types. Their elements are
// converted to the natural value CEL would return (fastResult) as they are
// added, so the container is already the result when it leaves the
// expression; original event/attrs lists and maps are deep-copied when they
// leave (see fromCEL).
type fastList []any

// fastRecord is a map literal with string-literal keys (`{"sku": i.sku,
// "qty": i.qty}`), laid out as a record: Names are the literal's keys
// (shared by every value it builds), the values slots carved from pooled
// blocks (internal/arena) instead of a map of its own per value. Its own
// type keeps it apart from the event's records, which results copy. It
// leaves an expression as a *schemas.Record where the caller encodes it
// (orchestrate's commands in slots, evalOut) and as a map elsewhere
// (see literalsOut).
type fastRecord schemas.Record

// recordOf returns the record a record-like value is: a decoded
// *schemas.Record or a record literal.
func recordOf(v any) (*schemas.Record, bool) {
	switch r := v.(type) {
	case *schemas.Record:
		return r, r != nil
	case *fastRecord:
		return (*schemas.Record)(r), r != nil
	}
	return nil, false
}

// literalsOut converts the record literals in v, a fast-path result, in
// place: to *schemas.Record when records is set, else to maps. A result's
// containers are its own (literals, macro results, or copies made by
// fastResult), so changing them in place is safe.
func literalsOut(v any, records bool) any {
	switch x := v.(type) {
	case *fastRecord:
		for i, e := range x.Values {
			x.Values[i] = literalsOut(e, records)
		}
		if records {
			return (*schemas.Record)(x)
		}
		return (*schemas.Record)(x).Natural()
	case []any:
		for i, e := range x {
			x[i] = literalsOut(e, records)
		}
	case map[string]any:
		for k, e := range x {
			x[k] = literalsOut(e, records)
		}
	}
	return v
}

// maxFastLocals bounds comprehension variables (iteration variable and
// accumulator per nesting level); vars keeps them in a fixed array.
const maxFastLocals = 8

type fastScope struct {
	names []string // local variable names, index = slot
	lits  bool     // a map literal compiled to a fastRecord
}

func (s *fastScope) lookup(name string) int {
	for i := len(s.names) - 1; i >= 0; i-- {
		if s.names[i] == name {
			return i
		}
	}
	return -1
}

// compileFast returns nil when the expression uses anything the fast path
// does not implement; it is then always evaluated by cel-go. lits tells
// whether the expression builds record literals (its results then go
// through literalsOut).
func compileFast(e ast.Expr) (f fastFn, lits bool) {
	s := &fastScope{}
	f = s.compile(e)
	return f, s.lits
}

func (s *fastScope) compile(e ast.Expr) fastFn {
	switch e.Kind() {
	case ast.LiteralKind:
		var v any
		switch lit := e.AsLiteral().(type) {
		case types.String:
			v = string(lit)
		case types.Int:
			v = int64(lit)
		case types.Double:
			v = float64(lit)
		case types.Bool:
			v = bool(lit)
		case types.Null:
			v = nil
		default:
			return nil
		}
		return func(*vars) (any, bool) { return v, true }
	case ast.IdentKind:
		name := e.AsIdent()
		if slot := s.lookup(name); slot >= 0 {
			return func(a *vars) (any, bool) { return a.locals[slot], true }
		}
		switch name {
		case "event", "type", "envelope", "attrs", "topic", "partition", "offset", "key":
			return func(a *vars) (any, bool) { return a.resolve(name) }
		}
		return nil
	case ast.SelectKind:
		sel := e.AsSelect()
		operand := s.compile(sel.Operand())
		if operand == nil {
			return nil
		}
		field := sel.FieldName()
		if sel.IsTestOnly() {
			return func(a *vars) (any, bool) {
				v, ok := operand(a)
				if !ok {
					return nil, false
				}
				_, has, isMap := fastField(v, field)
				return has, isMap
			}
		}
		return func(a *vars) (any, bool) {
			v, ok := operand(a)
			if !ok {
				return nil, false
			}
			x, has, _ := fastField(v, field)
			return x, has
		}
	case ast.ListKind:
		l := e.AsList()
		if len(l.OptionalIndices()) > 0 {
			return nil
		}
		if len(l.Elements()) == 0 {
			// `[]` (e.g. a map macro's initial accumulator), boxed once:
			// its capacity is 0, so nothing can be written through it.
			empty := any(fastList{})
			return func(*vars) (any, bool) { return empty, true }
		}
		elems := make([]fastFn, len(l.Elements()))
		for i, el := range l.Elements() {
			if elems[i] = s.compile(el); elems[i] == nil {
				return nil
			}
		}
		return func(a *vars) (any, bool) {
			out := make(fastList, len(elems))
			for i, f := range elems {
				v, ok := f(a)
				if ok {
					v, ok = fastResult(v)
				}
				if !ok {
					return nil, false
				}
				out[i] = v
			}
			return out, true
		}
	case ast.MapKind:
		m := e.AsMap()
		keys := make([]string, 0, m.Size())
		vals := make([]fastFn, 0, m.Size())
		for _, ent := range m.Entries() {
			if ent.Kind() != ast.MapEntryKind {
				return nil
			}
			me := ent.AsMapEntry()
			if me.IsOptional() || me.Key().Kind() != ast.LiteralKind {
				return nil
			}
			k, isStr := me.Key().AsLiteral().(types.String)
			if !isStr {
				return nil
			}
			for _, prev := range keys {
				if prev == string(k) {
					return nil // duplicate key: a CEL error
				}
			}
			f := s.compile(me.Value())
			if f == nil {
				return nil
			}
			keys, vals = append(keys, string(k)), append(vals, f)
		}
		s.lits = true
		var blocks arena.Blocks[fastRecord]
		return func(a *vars) (any, bool) {
			out, slots := blocks.Take(len(keys))
			for i, f := range vals {
				v, ok := f(a)
				if ok {
					v, ok = fastResult(v)
				}
				if !ok {
					return nil, false
				}
				slots[i] = v
			}
			out.Names, out.Values = keys, slots
			return out, true
		}
	case ast.CallKind:
		return s.compileCall(e.AsCall())
	case ast.ComprehensionKind:
		return s.compileComprehension(e.AsComprehension())
	}
	return nil
}

func (s *fastScope) compileArgs(args []ast.Expr) []fastFn {
	out := make([]fastFn, len(args))
	for i, a := range args {
		if out[i] = s.compile(a); out[i] == nil {
			return nil
		}
	}
	return out
}

// binary compiles a two-argument operator: both sides are evaluated, then
// op decides (or bails).
func (s *fastScope) binary(args []ast.Expr, op func(x, y any) (any, bool)) fastFn {
	if len(args) != 2 {
		return nil
	}
	fs := s.compileArgs(args)
	if fs == nil {
		return nil
	}
	l, r := fs[0], fs[1]
	return func(a *vars) (any, bool) {
		x, ok1 := l(a)
		y, ok2 := r(a)
		if !ok1 || !ok2 {
			return nil, false
		}
		return op(x, y)
	}
}

func (s *fastScope) compileCall(c ast.CallExpr) fastFn {
	fn := c.FunctionName()
	if c.IsMemberFunction() {
		target := s.compile(c.Target())
		args := s.compileArgs(c.Args())
		if target == nil || args == nil {
			return nil
		}
		switch {
		case fn == "size" && len(args) == 0:
			return func(a *vars) (any, bool) { v, ok := target(a); return fastSize(v, ok) }
		case (fn == "startsWith" || fn == "endsWith" || fn == "contains") && len(args) == 1:
			op := map[string]func(string, string) bool{"startsWith": strings.HasPrefix, "endsWith": strings.HasSuffix, "contains": strings.Contains}[fn]
			return s.binary([]ast.Expr{c.Target(), c.Args()[0]}, func(x, y any) (any, bool) {
				xs, ok1 := x.(string)
				ys, ok2 := y.(string)
				if !ok1 || !ok2 {
					return nil, false
				}
				return op(xs, ys), true
			})
		}
		return nil
	}
	args := c.Args()
	switch fn {
	case "_&&_", "_||_":
		if len(args) != 2 {
			return nil
		}
		l, r := s.compile(args[0]), s.compile(args[1])
		if l == nil || r == nil {
			return nil
		}
		// The left side decides alone when it is false (&&) or true (||);
		// CEL's result does not depend on the right side then, even if the
		// right side would fail.
		short := fn == "_||_"
		return func(a *vars) (any, bool) {
			lb, ok := evalFastBool(l, a)
			if !ok || lb == short {
				return lb, ok
			}
			rb, ok := evalFastBool(r, a)
			return rb, ok
		}
	case "!_", "@not_strictly_false":
		// @not_strictly_false (macro loop conditions) is true for errors in
		// CEL; on the fast path an error bails, so it is the identity.
		x := s.compile(args[0])
		if x == nil {
			return nil
		}
		negate := fn == "!_"
		return func(a *vars) (any, bool) {
			b, ok := evalFastBool(x, a)
			return b != negate, ok
		}
	case "_?_:_":
		fs := s.compileArgs(args)
		if fs == nil {
			return nil
		}
		return func(a *vars) (any, bool) {
			b, ok := evalFastBool(fs[0], a)
			if !ok {
				return nil, false
			}
			if b {
				return fs[1](a)
			}
			return fs[2](a)
		}
	case "_==_", "_!=_":
		want := fn == "_==_"
		return s.binary(args, func(x, y any) (any, bool) {
			eq, ok := fastEqual(x, y)
			if !ok {
				return nil, false
			}
			return eq == want, true
		})
	case "_<_", "_<=_", "_>_", "_>=_":
		return s.binary(args, func(x, y any) (any, bool) {
			cmp, ok := fastCompare(x, y)
			if !ok {
				return nil, false
			}
			switch fn {
			case "_<_":
				return cmp < 0, true
			case "_<=_":
				return cmp <= 0, true
			case "_>_":
				return cmp > 0, true
			}
			return cmp >= 0, true
		})
	case "_+_":
		if s.appendSafe(args) {
			// accumulator + [x] inside a macro: append in place. The hidden
			// accumulator (@result) is referenced only by the macro's own
			// step, so no other value can observe the shared backing array.
			slot := s.lookup(args[0].AsIdent())
			elem := s.compile(args[1].AsList().Elements()[0])
			if elem == nil {
				return nil
			}
			return func(a *vars) (any, bool) {
				acc, isList := a.locals[slot].(fastList)
				v, ok := elem(a)
				if ok {
					v, ok = fastResult(v)
				}
				if !isList || !ok {
					return nil, false
				}
				return append(acc, v), true
			}
		}
		return s.binary(args, fastAdd)
	case "_-_", "_*_":
		mul := fn == "_*_"
		return s.binary(args, func(x, y any) (any, bool) { return fastArith(x, y, mul) })
	case "size":
		if len(args) != 1 {
			return nil
		}
		x := s.compile(args[0])
		if x == nil {
			return nil
		}
		return func(a *vars) (any, bool) { v, ok := x(a); return fastSize(v, ok) }
	case "string":
		// string(int), string(bool), string(string): what messages like
		// "... " + string(size(event.missing_skus)) use. Doubles, bytes and
		// timestamps keep cel-go's formatting.
		if len(args) != 1 {
			return nil
		}
		x := s.compile(args[0])
		if x == nil {
			return nil
		}
		return func(a *vars) (any, bool) {
			v, ok := x(a)
			if !ok {
				return nil, false
			}
			switch y := v.(type) {
			case string:
				return y, true
			case int64:
				return strconv.FormatInt(y, 10), true
			case int32:
				return strconv.FormatInt(int64(y), 10), true
			case bool:
				return strconv.FormatBool(y), true
			}
			return nil, false
		}
	case "@in":
		return s.binary(args, func(x, c any) (any, bool) {
			if l, ok := fastListOf(c); ok {
				for _, e := range l {
					eq, ok := fastEqual(x, e)
					if !ok {
						return nil, false
					}
					if eq {
						return true, true
					}
				}
				return false, true
			}
			if k, isStr := x.(string); isStr {
				_, has, isMap := fastField(c, k)
				return has, isMap
			}
			return nil, false
		})
	case "_[_]":
		return s.binary(args, func(c, k any) (any, bool) {
			if l, ok := fastListOf(c); ok {
				i, isInt := k.(int64)
				if !isInt || i < 0 || i >= int64(len(l)) {
					return nil, false
				}
				return l[i], true
			}
			if ks, isStr := k.(string); isStr {
				v, has, _ := fastField(c, ks)
				return v, has
			}
			return nil, false
		})
	}
	return nil
}

// appendSafe reports whether args of _+_ are (hidden accumulator, [x]).
func (s *fastScope) appendSafe(args []ast.Expr) bool {
	if len(args) != 2 || args[0].Kind() != ast.IdentKind || args[1].Kind() != ast.ListKind {
		return false
	}
	name := args[0].AsIdent()
	l := args[1].AsList()
	return strings.HasPrefix(name, "@") && s.lookup(name) >= 0 && len(l.Elements()) == 1 && len(l.OptionalIndices()) == 0
}

func (s *fastScope) compileComprehension(c ast.ComprehensionExpr) fastFn {
	if c.HasIterVar2() || len(s.names)+2 > maxFastLocals {
		return nil
	}
	rng := s.compile(c.IterRange())
	init := s.compile(c.AccuInit())
	if rng == nil || init == nil {
		return nil
	}
	accuSlot := len(s.names)
	s.names = append(s.names, c.AccuVar())
	iterSlot := len(s.names)
	s.names = append(s.names, c.IterVar())
	cond := s.compile(c.LoopCondition())
	step := s.compile(c.LoopStep())
	// A map macro (`accu + [elem]` with a true loop condition) appends
	// into a typed list without boxing the accumulator per element.
	var appendElem fastFn
	if st := c.LoopStep(); st.Kind() == ast.CallKind && isTrueLiteral(c.LoopCondition()) {
		call := st.AsCall()
		if args := call.Args(); call.FunctionName() == "_+_" && s.appendSafe(args) && s.lookup(args[0].AsIdent()) == accuSlot {
			appendElem = s.compile(args[1].AsList().Elements()[0])
		}
	}
	// The result sees the accumulator but not the iteration variable.
	s.names[iterSlot] = "\x00"
	result := s.compile(c.Result())
	s.names = s.names[:accuSlot]
	if cond == nil || step == nil || result == nil {
		return nil
	}
	return func(a *vars) (any, bool) {
		r, ok := rng(a)
		if !ok {
			return nil, false
		}
		items, ok := fastListOf(r)
		if !ok {
			return nil, false // maps iterate in CEL's order; leave them to cel-go
		}
		acc, ok := init(a)
		if !ok {
			return nil, false
		}
		if l, isList := acc.(fastList); isList && appendElem != nil {
			if len(l) == 0 {
				l = make(fastList, 0, len(items))
			}
			// The element cannot see the hidden accumulator (CEL names
			// cannot start with @), so it is not kept in its slot.
			for _, it := range items {
				a.locals[iterSlot] = it
				v, ok := appendElem(a)
				if ok {
					v, ok = fastResult(v)
				}
				if !ok {
					return nil, false
				}
				l = append(l, v)
			}
			items, acc = nil, l
		} else if isList && len(l) == 0 {
			acc = make(fastList, 0, len(items))
		}
		for _, it := range items {
			a.locals[accuSlot], a.locals[iterSlot] = acc, it
			b, ok := evalFastBool(cond, a)
			if !ok {
				return nil, false
			}
			if !b {
				break
			}
			if acc, ok = step(a); !ok {
				return nil, false
			}
		}
		a.locals[accuSlot], a.locals[iterSlot] = acc, nil
		v, ok := result(a)
		a.locals[accuSlot] = nil
		return v, ok
	}
}

// evalFastBool evaluates f, which must give a bool.
func evalFastBool(f fastFn, a *vars) (bool, bool) {
	v, ok := f(a)
	b, isBool := v.(bool)
	return b, ok && isBool
}

// fastField is v[k] for the map-like values: a map (has: k is a key) or a
// decoded *schemas.Record (has: the record has field k). isMap is false
// for other values (the caller bails to cel-go).
func fastField(v any, k string) (x any, has, isMap bool) {
	if r, ok := recordOf(v); ok {
		x, has = r.Get(k)
		return x, has, true
	}
	m, ok := fastMapOf(v)
	if !ok {
		return nil, false, false
	}
	x, has = m[k]
	return x, has, true
}

func fastMapOf(v any) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	return m, ok
}

func fastListOf(v any) ([]any, bool) {
	switch l := v.(type) {
	case []any:
		return l, true
	case fastList:
		return l, true
	}
	return nil, false
}

// fastNumber classifies a value as CEL int (int32, int64) or double
// (float32, float64, and decimals, which CEL sees as doubles).
func fastNumber(v any) (i int64, f float64, isInt, ok bool) {
	switch x := v.(type) {
	case int64:
		return x, 0, true, true
	case int32:
		return int64(x), 0, true, true
	case float64:
		return 0, x, false, true
	case float32:
		return 0, float64(x), false, true
	case *big.Rat:
		if x == nil {
			return 0, 0, false, false
		}
		f := ratFloat64(x)
		return 0, f, false, true
	}
	return 0, 0, false, false
}

// fastEqual handles equality of same-kind values only; everything else
// (null against a value, int against double, lists, maps, timestamps) is
// left to cel-go.
func fastEqual(x, y any) (bool, bool) {
	switch a := x.(type) {
	case string:
		b, ok := y.(string)
		return a == b, ok
	case bool:
		b, ok := y.(bool)
		return a == b, ok
	case nil:
		return true, y == nil
	}
	i, f, isInt, ok := fastNumber(x)
	j, g, isInt2, ok2 := fastNumber(y)
	if !ok || !ok2 || isInt != isInt2 {
		return false, false
	}
	if isInt {
		return i == j, true
	}
	return f == g, true
}

func fastCompare(x, y any) (int, bool) {
	if a, ok := x.(string); ok {
		b, ok := y.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(a, b), true
	}
	i, f, isInt, ok := fastNumber(x)
	j, g, isInt2, ok2 := fastNumber(y)
	if !ok || !ok2 || isInt != isInt2 {
		return 0, false
	}
	if isInt {
		switch {
		case i < j:
			return -1, true
		case i > j:
			return 1, true
		}
		return 0, true
	}
	if math.IsNaN(f) || math.IsNaN(g) {
		return 0, false
	}
	switch {
	case f < g:
		return -1, true
	case f > g:
		return 1, true
	}
	return 0, true
}

func fastAdd(x, y any) (any, bool) {
	if a, ok := x.(string); ok {
		b, ok := y.(string)
		if !ok {
			return nil, false
		}
		return a + b, true
	}
	if l1, ok := fastListOf(x); ok {
		l2, ok := fastListOf(y)
		if !ok {
			return nil, false
		}
		out := make(fastList, 0, len(l1)+len(l2))
		for _, l := range [2][]any{l1, l2} {
			for _, e := range l {
				r, ok := fastResult(e)
				if !ok {
					return nil, false
				}
				out = append(out, r)
			}
		}
		return out, true
	}
	i, f, isInt, ok := fastNumber(x)
	j, g, isInt2, ok2 := fastNumber(y)
	if !ok || !ok2 || isInt != isInt2 {
		return nil, false
	}
	if isInt {
		s := i + j
		if (s > i) != (j > 0) { // overflow: CEL errors
			return nil, false
		}
		return s, true
	}
	return f + g, true
}

func fastArith(x, y any, mul bool) (any, bool) {
	i, f, isInt, ok := fastNumber(x)
	j, g, isInt2, ok2 := fastNumber(y)
	if !ok || !ok2 || isInt != isInt2 {
		return nil, false
	}
	if !isInt {
		if mul {
			return f * g, true
		}
		return f - g, true
	}
	if mul {
		if i != 0 && j != 0 {
			p := i * j
			if p/j != i || (i == -1 && j == math.MinInt64) || (j == -1 && i == math.MinInt64) {
				return nil, false
			}
			return p, true
		}
		return int64(0), true
	}
	d := i - j
	if (d < i) != (j > 0) {
		return nil, false
	}
	return d, true
}

func fastSize(v any, ok bool) (any, bool) {
	if !ok {
		return nil, false
	}
	switch x := v.(type) {
	case string:
		return int64(utf8.RuneCountInString(x)), true
	case []byte:
		return int64(len(x)), true
	}
	if l, ok := fastListOf(v); ok {
		return int64(len(l)), true
	}
	if r, ok := recordOf(v); ok {
		n := 0
		for _, x := range r.Values {
			if x != schemas.Unset {
				n++
			}
		}
		return int64(n), true
	}
	if m, ok := fastMapOf(v); ok {
		return int64(len(m)), true
	}
	return nil, false
}

// fastResult converts a fast-path value to the natural value fromCEL would
// return for the same CEL result; ok is false for values it does not know.
func fastResult(v any) (any, bool) {
	switch x := v.(type) {
	case nil, bool, string, int64, float64:
		return x, true
	case int32:
		return int64(x), true
	case float32:
		return float64(x), true
	case *big.Rat:
		if x == nil {
			return nil, true
		}
		f := ratFloat64(x)
		return f, true
	case []byte:
		return append([]byte(nil), x...), true
	case time.Time:
		return x, true
	case map[string]any, []any, *schemas.Record:
		return schemas.CloneNatural(x), true // a record becomes its map
	case fastList:
		return []any(x), true // elements were converted when added
	case *fastRecord:
		return x, true // its values were converted when set
	}
	return nil, false
}

// ratFloat64 is x.Float64() (the nearest double) without big-number
// arithmetic when numerator and denominator are exact doubles: IEEE
// division of exact operands is correctly rounded, so the quotient is the
// same nearest double. Decimals of the hot path (prices, totals) all take
// this branch; Rat.Float64 allocated three times per comparison.
func ratFloat64(x *big.Rat) float64 {
	const exact = 1 << 53
	if n := x.Num(); n.IsInt64() {
		a := n.Int64()
		if a > -exact && a < exact {
			if x.IsInt() { // Denom would allocate for an integer
				return float64(a)
			}
			if d := x.Denom(); d.IsInt64() && d.Int64() < exact {
				return float64(a) / float64(d.Int64())
			}
		}
	}
	f, _ := x.Float64()
	return f
}

// isTrueLiteral reports whether e is the literal true.
func isTrueLiteral(e ast.Expr) bool {
	if e.Kind() != ast.LiteralKind {
		return false
	}
	b, ok := e.AsLiteral().(types.Bool)
	return ok && bool(b)
}
