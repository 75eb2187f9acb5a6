package processors

// CEL support shared by the built-in processors.
//
// Every expression in a processor config is compiled and type-checked once,
// when the pipeline is built; a compile or type error is a *ConfigError that
// points at the YAML line of the expression. Evaluation reuses the compiled
// program. An expression whose cost can grow faster than the record (e.g. a
// nested comprehension over a huge list) is bounded by a cost limit
// (celCostLimit = 100,000 CEL cost units, a few milliseconds of CPU) and
// fails that event permanently instead of stalling the partition; linear
// expressions are bounded by the record size and run untracked.
//
// Functions: the CEL standard library with its macros (has, all, exists,
// exists_one, map, filter), plus join, lowerAscii, upperAscii, trim, split and
// replace with the semantics of cel-go's ext.Strings (see stringFunctions).
//
// Variables available to every expression:
//
//	event      map(string, dyn)  the event's Avro value (Event.Value)
//	type       string            the writer schema's full name (Event.Type)
//	envelope   map(string, dyn)  id, type, source, time (timestamp),
//	                             correlation_id, causation_id ("" when absent)
//	attrs      map(string, dyn)  values set by earlier processors (Event.Attrs)
//	topic      string            input topic
//	partition  int               input partition
//	offset     int               input offset
//	key        string            the Kafka key (raw bytes as a string)
//
// Natural Go values are presented to CEL without copying; conversion happens
// lazily on access: int32 and int64 are CEL int, float32 and float64 are CEL
// double, string, bool and []byte (bytes) map directly, time.Time is a CEL
// timestamp, []any is a list and map[string]any a map, nil is null.
//
// Decimals (*big.Rat) are seen by CEL as doubles, so comparisons and
// arithmetic on decimals in CEL are floating point (`event.total > 100.0`).
// Exact values are never lost when a value is copied rather than computed:
// an orchestrate field whose expression is a plain path into the event or
// attrs (`event.total`, `event.items`, `attrs.customer["tier"]`) copies the
// original Go value, and a whole record or list returned by an expression
// (e.g. `has(event.x) ? event.items : []`) is copied from the original too, so
// decimals inside it stay *big.Rat.

import (
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ordo-dev/ordo/schemas"

	"github.com/google/cel-go/cel"
	"github.com/google/cel-go/checker"
	"github.com/google/cel-go/common/ast"
	"github.com/google/cel-go/common/types"
	"github.com/google/cel-go/common/types/ref"
	"github.com/google/cel-go/common/types/traits"
	"github.com/google/cel-go/interpreter"
	"gopkg.in/yaml.v3"
)

// celCostLimit bounds the runtime cost of a single expression evaluation (CEL
// cost units, roughly one per operation or list element visited).
const celCostLimit = 100_000

// natAdapter presents natural Go values to CEL (see the package comment
// above). It is also the adapter used for values nested inside maps and
// lists, so conversions apply at every depth.
type natAdapter struct{ reg *types.Registry }

func (a natAdapter) NativeToValue(v any) ref.Val {
	switch x := v.(type) {
	case map[string]any:
		return types.NewStringInterfaceMap(a, x)
	case []any:
		return types.NewDynamicList(a, x)
	case *big.Rat:
		if x == nil {
			return types.NullValue
		}
		f := ratFloat64(x)
		return types.Double(f)
	case time.Time:
		return types.Timestamp{Time: x}
	}
	return a.reg.NativeToValue(v)
}

// celEnvironment is built once and shared (a cel.Env is immutable).
var celEnvironment = sync.OnceValues(newCELEnv)

func newCELEnv() (*cel.Env, error) {
	reg, err := types.NewRegistry()
	if err != nil {
		return nil, err
	}
	dynMap := cel.MapType(cel.StringType, cel.DynType)
	return cel.NewEnv(
		cel.CustomTypeAdapter(natAdapter{reg: reg}),
		cel.Variable("event", dynMap),
		cel.Variable("type", cel.StringType),
		cel.Variable("envelope", dynMap),
		cel.Variable("attrs", dynMap),
		cel.Variable("topic", cel.StringType),
		cel.Variable("partition", cel.IntType),
		cel.Variable("offset", cel.IntType),
		cel.Variable("key", cel.StringType),
		stringFunctions(),
	)
}

// stringFunctions is a small subset of cel-go's ext.Strings library with the
// same names and semantics (ext itself pulls in golang.org/x/text):
//
//	list(string).join() -> string          ["a","b"].join() == "ab"
//	list(string).join(string) -> string    ["a","b"].join(",") == "a,b"
//	string.lowerAscii() / upperAscii() -> string
//	string.trim() -> string                (Unicode white space)
//	string.split(string) -> list(string)
//	string.replace(string, string) -> string
func stringFunctions() cel.EnvOption {
	str := func(v ref.Val) (string, bool) { s, ok := v.(types.String); return string(s), ok }
	join := func(l ref.Val, sep string) ref.Val {
		lister, ok := l.(traits.Lister)
		if !ok {
			return types.NewErr("join: receiver is %s, want list(string)", l.Type())
		}
		var b strings.Builder
		it := lister.Iterator()
		for i := 0; it.HasNext() == types.True; i++ {
			e, ok := str(it.Next())
			if !ok {
				return types.NewErr("join: list element %d is not a string", i)
			}
			if i > 0 {
				b.WriteString(sep)
			}
			b.WriteString(e)
		}
		return types.String(b.String())
	}
	strFn := func(name string, f func(string) string) cel.EnvOption {
		return cel.Function(name, cel.MemberOverload("string_"+name, []*cel.Type{cel.StringType}, cel.StringType,
			cel.UnaryBinding(func(v ref.Val) ref.Val {
				s, ok := str(v)
				if !ok {
					return types.NoSuchOverloadErr()
				}
				return types.String(f(s))
			})))
	}
	return cel.Lib(funcLib{
		cel.Function("join",
			cel.MemberOverload("list_join", []*cel.Type{cel.ListType(cel.StringType)}, cel.StringType,
				cel.UnaryBinding(func(l ref.Val) ref.Val { return join(l, "") })),
			cel.MemberOverload("list_join_string", []*cel.Type{cel.ListType(cel.StringType), cel.StringType}, cel.StringType,
				cel.BinaryBinding(func(l, sep ref.Val) ref.Val {
					s, ok := str(sep)
					if !ok {
						return types.NoSuchOverloadErr()
					}
					return join(l, s)
				}))),
		strFn("lowerAscii", asciiLower),
		strFn("upperAscii", asciiUpper),
		strFn("trim", strings.TrimSpace),
		cel.Function("split", cel.MemberOverload("string_split_string", []*cel.Type{cel.StringType, cel.StringType}, cel.ListType(cel.StringType),
			cel.BinaryBinding(func(a, b ref.Val) ref.Val {
				s, ok1 := str(a)
				sep, ok2 := str(b)
				if !ok1 || !ok2 {
					return types.NoSuchOverloadErr()
				}
				return types.DefaultTypeAdapter.NativeToValue(strings.Split(s, sep))
			}))),
		cel.Function("replace", cel.MemberOverload("string_replace_string_string", []*cel.Type{cel.StringType, cel.StringType, cel.StringType}, cel.StringType,
			cel.FunctionBinding(func(args ...ref.Val) ref.Val {
				s, ok1 := str(args[0])
				old, ok2 := str(args[1])
				repl, ok3 := str(args[2])
				if !ok1 || !ok2 || !ok3 {
					return types.NoSuchOverloadErr()
				}
				return types.String(strings.ReplaceAll(s, old, repl))
			}))),
	})
}

type funcLib []cel.EnvOption

func (l funcLib) CompileOptions() []cel.EnvOption     { return l }
func (l funcLib) ProgramOptions() []cel.ProgramOption { return nil }

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func asciiUpper(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		}
	}
	return string(b)
}

var undeclaredRe = regexp.MustCompile(`undeclared reference to '([^']+)'`)

// celExpr is one compiled expression.
type celExpr struct {
	src  string
	prg  cel.Program
	path []pathStep // non-nil when the expression is a plain path (see copyPath)
	fast fastFn     // non-nil when the fast path implements it (celfast.go)
	lits bool       // fast builds record literals (see literalsOut)
}

type pathStep struct {
	key   string
	index int64
	isIdx bool
}

// exprKind is the result type an expression must have.
type exprKind int

const (
	anyResult exprKind = iota
	boolResult
)

// recordBound gives the cost checker the one size bound every event has:
// no list, map or string in it can be longer than the record, and Kafka
// records are at most 1 MiB by default (max.message.bytes).
type recordBound struct{}

// maxRecordBytes bounds the size of anything decoded from one record.
const maxRecordBytes = 1 << 20

// untrackedCostBound is the worst-case cost (on a 1 MiB record) under which
// an expression runs without runtime cost tracking: linear expressions such
// as `event.items.all(i, i.qty > 0)` stay well under it, nested
// comprehensions do not.
const untrackedCostBound = 100_000_000

func (recordBound) EstimateSize(checker.AstNode) *checker.SizeEstimate {
	return &checker.SizeEstimate{Min: 0, Max: maxRecordBytes}
}
func (recordBound) EstimateCallCost(string, string, *checker.AstNode, []checker.AstNode) *checker.CallEstimate {
	return nil
}

// compileCEL compiles src, located at node n of spec under key path key.
// Type errors and a wrong result type are ConfigErrors.
func compileCEL(spec Spec, n *yaml.Node, key, src string, want exprKind) (*celExpr, error) {
	if strings.TrimSpace(src) == "" {
		return nil, cfgErr(spec, n, key, "empty CEL expression", "write an expression, e.g. `event.total > 0.0`")
	}
	env, err := celEnvironment()
	vs := "event, type, envelope, attrs, topic, partition, offset, key"
	if spec.processEnv {
		env, err = celProcessEnvironment()
		vs += ", vars"
	}
	if err != nil {
		return nil, fmt.Errorf("processors: CEL environment: %w", err)
	}
	checked, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		msg := iss.Err().Error()
		fix := "variables are " + vs + "; map fields are read as event.field or event[\"field\"]; decimals compare as doubles (write 0.0, not 0)"
		if m := undeclaredRe.FindStringSubmatch(msg); m != nil {
			if strings.Contains(src, m[1]+"(") {
				fix = "no function " + m[1] + "; besides the CEL standard library ordo has join, lowerAscii, upperAscii, trim, split, replace"
			} else {
				fix = "string literals must be quoted inside the YAML value, e.g. '\"standard\"'; " + fix
			}
		}
		return nil, cfgErr(spec, n, key, "invalid CEL expression: "+oneLine(msg), fix)
	}
	if want == boolResult {
		t := checked.OutputType()
		if !t.IsExactType(cel.BoolType) && !t.IsExactType(cel.DynType) {
			return nil, cfgErr(spec, n, key, fmt.Sprintf("CEL expression %q has type %s, want bool", src, t),
				"make the expression a condition, e.g. `event.total > 0.0`")
		}
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	// Runtime cost tracking costs up to 20% of ordo's CPU (profiled in
	// docs/benchmarks.md). An expression whose worst case on the largest
	// possible record is bounded (linear in the record) needs no tracking:
	// the record size is its limit. Only super-linear ones (nested
	// comprehensions) keep the per-evaluation limit.
	tracked := false
	if est, err := env.EstimateCost(checked, recordBound{}); err != nil || est.Max > untrackedCostBound {
		opts = append(opts, cel.CostLimit(celCostLimit))
		tracked = true
	}
	prg, err := env.Program(checked, opts...)
	if err != nil {
		return nil, cfgErr(spec, n, key, "CEL program: "+oneLine(err.Error()), "")
	}
	expr := checked.NativeRep().Expr()
	c := &celExpr{src: src, prg: prg, path: plainPath(expr)}
	if !tracked {
		// The fast path has no cost meter, so only bounded expressions use it.
		c.fast, c.lits = compileFast(expr)
	}
	return c, nil
}

// plainPath recognizes `event.a.b`, `attrs["x"].y`, `event.items[0]`.
func plainPath(e ast.Expr) []pathStep {
	var rev []pathStep
	for {
		switch e.Kind() {
		case ast.IdentKind:
			switch e.AsIdent() {
			case "event", "attrs", "vars":
				steps := []pathStep{{key: e.AsIdent()}}
				for i := len(rev) - 1; i >= 0; i-- {
					steps = append(steps, rev[i])
				}
				return steps
			}
			return nil
		case ast.SelectKind:
			s := e.AsSelect()
			if s.IsTestOnly() {
				return nil
			}
			rev = append(rev, pathStep{key: s.FieldName()})
			e = s.Operand()
		case ast.CallKind:
			c := e.AsCall()
			if c.FunctionName() != "_[_]" || len(c.Args()) != 2 || c.Args()[1].Kind() != ast.LiteralKind {
				return nil
			}
			switch lit := c.Args()[1].AsLiteral().(type) {
			case types.String:
				rev = append(rev, pathStep{key: string(lit)})
			case types.Int:
				rev = append(rev, pathStep{index: int64(lit), isIdx: true})
			default:
				return nil
			}
			e = c.Args()[0]
		default:
			return nil
		}
	}
}

// vars is the lazy activation for one event: nothing is converted until an
// expression asks for it, and the envelope map is built at most once.
type vars struct {
	ev  *Event
	env map[string]any
	// typ is ev.Type boxed once per event (CEL rules test `type` often),
	// and typFor the Type it boxes, in case a processor changed it.
	typ    any
	typFor string
	// proc is a process instance's variables, CEL's `vars` (celapi.go).
	proc map[string]any
	// locals holds the fast path's comprehension variables (celfast.go).
	locals [maxFastLocals]any
}

// newVars returns the event's CEL activation. It is made once per event and
// reused by the processors of the chain (they run one after another); the
// envelope map is rebuilt per processor, in case one changed the envelope.
func newVars(ev *Event) *vars {
	if ev.cel.ev != ev {
		// First use, or ev is a copy of another event (its activation
		// would read the original).
		ev.cel = vars{ev: ev}
	} else {
		ev.cel.env = nil
	}
	return &ev.cel
}

// resolve is ResolveName for ordo's own readers (the fast path, plain
// paths): `event` is the *schemas.Record while the event has one, which
// they read in place; cel-go gets the map (ResolveName).
func (v *vars) resolve(name string) (any, bool) {
	switch {
	case name == "event" && v.ev.Record != nil && v.ev.Value == nil:
		return v.ev.Record, true
	case name == "attrs" && v.ev.Attrs != nil:
		return v.ev.Attrs, true // records in it are read in place too
	}
	return v.ResolveName(name)
}

// naturalAttrs is attrs as cel-go can read it: a copy with the records in
// it (enrich_table's rows) as maps, or attrs itself when it holds none.
// Only cel-go's path pays for the copy.
func naturalAttrs(attrs map[string]any) map[string]any {
	for _, x := range attrs {
		if _, ok := x.(*schemas.Record); ok {
			m := make(map[string]any, len(attrs))
			for k, x := range attrs {
				if r, ok := x.(*schemas.Record); ok && r != nil {
					x = r.Natural()
				}
				m[k] = x
			}
			return m
		}
	}
	return attrs
}

// ResolveName implements cel-go's Activation. cel-go reads `event` as a
// map: an event still in Record form gets its Value built (Event.Map).
func (v *vars) ResolveName(name string) (any, bool) {
	switch name {
	case "event":
		if m := v.ev.Map(); m != nil {
			return m, true
		}
		return map[string]any{}, true
	case "type":
		if v.typ == nil || v.typFor != v.ev.Type {
			// The decoded envelope holds the type already boxed (the
			// publisher makes envelope.type the schema's name).
			v.typ, v.typFor = boxedString(envelopeField(v.ev, "type"), v.ev.Type), v.ev.Type
		}
		return v.typ, true
	case "envelope":
		if v.env == nil {
			e := v.ev.Envelope
			v.env = map[string]any{
				"id": e.ID, "type": e.Type, "source": e.Source, "time": e.Time,
				"correlation_id": e.CorrelationID, "causation_id": e.CausationID,
			}
		}
		return v.env, true
	case "attrs":
		if v.ev.Attrs == nil {
			return map[string]any{}, true
		}
		return naturalAttrs(v.ev.Attrs), true
	case "topic":
		return v.ev.Topic, true
	case "partition":
		return int64(v.ev.Partition), true
	case "offset":
		return v.ev.Offset, true
	case "key":
		return string(v.ev.Key), true
	case "vars":
		if v.proc == nil {
			return map[string]any{}, true
		}
		return v.proc, true
	}
	return nil, false
}

func (v *vars) Parent() interpreter.Activation { return nil }

// eval evaluates the expression. Errors name the expression.
func (c *celExpr) eval(a *vars) (ref.Val, error) {
	out, _, err := c.prg.Eval(a)
	if err != nil {
		return nil, fmt.Errorf("evaluating `%s`: %v", c.src, err)
	}
	return out, nil
}

// evalBool evaluates a condition.
func (c *celExpr) evalBool(a *vars) (bool, error) {
	if c.fast != nil {
		if v, ok := c.fast(a); ok {
			if b, isBool := v.(bool); isBool {
				return b, nil
			}
		}
	}
	out, err := c.eval(a)
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("evaluating `%s`: result is %s, want bool", c.src, out.Type())
	}
	return bool(b), nil
}

// evalNatural evaluates the expression and returns a natural Go value; plain
// paths copy the original value (keeping decimals exact).
func (c *celExpr) evalNatural(a *vars) (any, error) {
	return c.evalOut(a, false)
}

// evalOut is evalNatural, and with records set it is for a value the
// caller encodes with a schema (orchestrate's commands in slots): records
// the expression builds (`{"sku": i.sku}` map literals) stay
// *schemas.Record instead of maps.
func (c *celExpr) evalOut(a *vars, records bool) (any, error) {
	if c.path != nil {
		v, err := walkPath(a, c.path)
		if err != nil {
			return nil, fmt.Errorf("evaluating `%s`: %v", c.src, err)
		}
		return schemas.CloneNatural(v), nil
	}
	if c.fast != nil {
		if r, ok := c.fastNatural(a, records); ok {
			return r, nil
		}
	}
	out, err := c.eval(a)
	if err != nil {
		return nil, err
	}
	v, err := fromCEL(out)
	if err != nil {
		return nil, fmt.Errorf("evaluating `%s`: %v", c.src, err)
	}
	return v, nil
}

// fastNatural is the fast path's result in natural form (records as in
// evalOut); ok is false when the fast path does not answer.
func (c *celExpr) fastNatural(a *vars, records bool) (any, bool) {
	v, ok := c.fast(a)
	if !ok {
		return nil, false
	}
	r, ok := fastResult(v)
	if ok && c.lits {
		r = literalsOut(r, records)
	}
	return r, ok
}

// evalKey evaluates a lookup key to a string; ok is false for null.
func (c *celExpr) evalKey(a *vars) (string, bool, error) {
	if c.fast != nil {
		if v, ok := c.fast(a); ok {
			switch x := v.(type) {
			case string:
				return x, true, nil
			case int64:
				return strconv.FormatInt(x, 10), true, nil
			case int32:
				return strconv.FormatInt(int64(x), 10), true, nil
			case bool:
				return strconv.FormatBool(x), true, nil
			case nil:
				return "", false, nil
			}
		}
	}
	out, err := c.eval(a)
	if err != nil {
		return "", false, err
	}
	switch v := out.(type) {
	case types.String:
		return string(v), true, nil
	case types.Int:
		return strconv.FormatInt(int64(v), 10), true, nil
	case types.Uint:
		return strconv.FormatUint(uint64(v), 10), true, nil
	case types.Bool:
		return strconv.FormatBool(bool(v)), true, nil
	case types.Bytes:
		return string(v), true, nil
	case types.Double:
		return strconv.FormatFloat(float64(v), 'f', -1, 64), true, nil
	case types.Null:
		return "", false, nil
	}
	return "", false, fmt.Errorf("evaluating `%s`: lookup key is %s, want string or int", c.src, out.Type())
}

func walkPath(a *vars, path []pathStep) (any, error) {
	cur, _ := a.resolve(path[0].key)
	for _, s := range path[1:] {
		switch x := cur.(type) {
		case *schemas.Record, map[string]any:
			if s.isIdx {
				return nil, fmt.Errorf("no such key: %d", s.index)
			}
			v, ok, _ := fastField(x, s.key)
			if !ok {
				return nil, fmt.Errorf("no such key: %s", s.key)
			}
			cur = v
		case []any:
			if !s.isIdx {
				return nil, fmt.Errorf("no such key: %s", s.key)
			}
			if s.index < 0 || s.index >= int64(len(x)) {
				return nil, fmt.Errorf("index out of range: %d", s.index)
			}
			cur = x[s.index]
		default:
			if s.isIdx {
				return nil, fmt.Errorf("cannot index %T with %d", cur, s.index)
			}
			return nil, fmt.Errorf("cannot select field %q from %T", s.key, cur)
		}
	}
	return cur, nil
}

// fromCEL converts a CEL result to a natural Go value: null -> nil, bool,
// int -> int64, uint -> int64 (error when it overflows), double -> float64,
// string, bytes -> []byte, timestamp -> time.Time, list -> []any,
// map -> map[string]any (keys must be strings). Lists and maps that are
// original event/attrs values are deep-copied as they are, so decimals in
// them stay exact.
func fromCEL(v ref.Val) (any, error) {
	switch x := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(x), nil
	case types.Int:
		return int64(x), nil
	case types.Uint:
		if uint64(x) > math.MaxInt64 {
			return nil, fmt.Errorf("uint %d overflows long", uint64(x))
		}
		return int64(x), nil
	case types.Double:
		return float64(x), nil
	case types.String:
		return string(x), nil
	case types.Bytes:
		return append([]byte(nil), x...), nil
	case types.Timestamp:
		return x.Time, nil
	case *types.Err:
		return nil, x
	case traits.Lister:
		if orig, ok := x.Value().([]any); ok {
			return schemas.CloneNatural(orig), nil
		}
		n, _ := x.Size().(types.Int)
		out := make([]any, 0, int(n))
		it := x.Iterator()
		for it.HasNext() == types.True {
			e, err := fromCEL(it.Next())
			if err != nil {
				return nil, err
			}
			out = append(out, e)
		}
		return out, nil
	case traits.Mapper:
		if orig, ok := x.Value().(map[string]any); ok {
			return schemas.CloneNatural(orig), nil
		}
		n, _ := x.Size().(types.Int)
		out := make(map[string]any, int(n))
		it := x.Iterator()
		for it.HasNext() == types.True {
			k := it.Next()
			ks, ok := k.(types.String)
			if !ok {
				return nil, fmt.Errorf("map key %v is %s, want string", k, k.Type())
			}
			e, err := fromCEL(x.Get(k))
			if err != nil {
				return nil, err
			}
			out[string(ks)] = e
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported result type %s", v.Type())
}

// oneLine flattens multi-line CEL error text (which includes a caret
// diagram) into a single line for config error messages.
func oneLine(s string) string {
	lines := strings.Split(s, "\n")
	var keep []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.Trim(t, "|.^ ") == "" {
			continue
		}
		keep = append(keep, t)
	}
	return strings.Join(keep, " ")
}
