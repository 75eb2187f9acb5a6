package avroref

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// Gen builds random Avro schemas, reader schemas derived from them by the
// evolutions the Avro spec allows (dropped and added fields with defaults,
// renames through aliases, promotions, added enum symbols or an enum
// default, a type widened into a union, logical types added or removed)
// and natural values, all from one seed. It has its own schema model and
// renders JSON itself, so it shares nothing with package schemas either.
type Gen struct {
	r     *rand.Rand
	names int
}

// NewGen returns a generator for seed.
func NewGen(seed uint64) *Gen {
	return &Gen{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// T is a type in the generator's schema model.
type T struct {
	Kind      string // Avro type name: null ... union, or "ref" (a named type used again)
	Logical   string
	Precision int
	Scale     int
	Size      int

	Name      string // full name
	Aliases   []string
	nameStyle int // 0: full name, 1: short name + namespace attribute, 2: short name in the enclosing namespace

	Fields   []*F
	Symbols  []string
	EnumDef  string
	Items    *T
	Branches []*T
	Target   *T // ref: the named type
}

// F is a record field.
type F struct {
	Name    string
	Aliases []string
	Type    *T
	Default any // natural value; rendered as Avro JSON
	HasDef  bool
}

// Pair is a generated writer schema, a reader schema derived from it and a
// writer value.
type Pair struct {
	Writer, Reader *T
	WriterJSON     string
	ReaderJSON     string
	Value          map[string]any
}

// Next generates a writer record, a derived reader and a value.
func (g *Gen) Next() (*Pair, error) {
	w := g.record(0, "gen")
	r := g.derive(w, map[*T]*T{}, false)
	wj, err := Render(w)
	if err != nil {
		return nil, err
	}
	rj, err := Render(r)
	if err != nil {
		return nil, err
	}
	v := g.Value(w, 0).(map[string]any)
	return &Pair{Writer: w, Reader: r, WriterJSON: wj, ReaderJSON: rj, Value: v}, nil
}

func (g *Gen) p(x float64) bool { return g.r.Float64() < x }

func (g *Gen) name(ns string) (full string, style int) {
	g.names++
	short := "T" + strconv.Itoa(g.names)
	switch g.r.IntN(4) {
	case 0:
		return "other" + strconv.Itoa(g.names%3) + "." + short, 0
	case 1:
		return ns + "." + short, 1
	default:
		return ns + "." + short, 2
	}
}

func nsOf(full string) string {
	if i := strings.LastIndexByte(full, '.'); i >= 0 {
		return full[:i]
	}
	return ""
}

func shortOf(full string) string { return full[strings.LastIndexByte(full, '.')+1:] }

var leafKinds = []string{"null", "boolean", "int", "long", "float", "double", "bytes", "string"}

// typ returns a random type at depth d in namespace ns.
func (g *Gen) typ(d int, ns string) *T {
	if d < 3 && g.p(0.35) {
		switch g.r.IntN(5) {
		case 0:
			return g.record(d, ns)
		case 1:
			return &T{Kind: "array", Items: g.typ(d+1, ns)}
		case 2:
			return &T{Kind: "map", Items: g.typ(d+1, ns)}
		default:
			return g.union(d, ns)
		}
	}
	switch g.r.IntN(12) {
	case 0:
		return g.enum(ns)
	case 1:
		full, style := g.name(ns)
		// Size 0 is valid Avro, but goavro (and so ordo's ParseSchema)
		// refuses it.
		t := &T{Kind: "fixed", Name: full, nameStyle: style, Size: 1 + g.r.IntN(4)}
		if g.p(0.4) {
			g.decimal(t)
		}
		return t
	case 2:
		return g.logicalLeaf()
	}
	return &T{Kind: leafKinds[1+g.r.IntN(len(leafKinds)-1)]}
}

func (g *Gen) logicalLeaf() *T {
	switch g.r.IntN(6) {
	case 0:
		t := &T{Kind: "bytes"}
		g.decimal(t)
		return t
	case 1:
		return &T{Kind: "int", Logical: "date"}
	case 2:
		return &T{Kind: "int", Logical: "time-millis"}
	case 3:
		return &T{Kind: "long", Logical: "time-micros"}
	case 4:
		return &T{Kind: "long", Logical: "timestamp-micros"}
	}
	return &T{Kind: "long", Logical: "timestamp-millis"}
}

// decimal makes t (bytes or fixed) a decimal; a fixed is sized to hold
// every value of the precision.
func (g *Gen) decimal(t *T) {
	t.Logical = "decimal"
	t.Precision = 1 + g.r.IntN(30)
	t.Scale = g.r.IntN(t.Precision + 1)
	if t.Kind == "fixed" {
		need := len(twos(new(big.Int).Neg(pow10(t.Precision))))
		t.Size = need + g.r.IntN(3)
	}
}

func (g *Gen) enum(ns string) *T {
	full, style := g.name(ns)
	n := 1 + g.r.IntN(4)
	t := &T{Kind: "enum", Name: full, nameStyle: style}
	for i := range n {
		t.Symbols = append(t.Symbols, "S"+strconv.Itoa(i))
	}
	if g.p(0.3) {
		t.EnumDef = t.Symbols[g.r.IntN(n)]
	}
	return t
}

func (g *Gen) record(d int, ns string) *T {
	full, style := g.name(ns)
	if d == 0 {
		style = 1
	}
	t := &T{Kind: "record", Name: full, nameStyle: style}
	inner := nsOf(full)
	n := g.r.IntN(5)
	if d == 0 {
		n++
	}
	for i := range n {
		f := &F{Name: "f" + strconv.Itoa(i), Type: g.typ(d+1, inner)}
		if g.p(0.2) {
			f.Default, f.HasDef = g.defaultFor(f.Type)
		}
		t.Fields = append(t.Fields, f)
	}
	if d > 0 && d < 3 && g.p(0.15) {
		// A recursive field: ["null", <this record>].
		ref := &T{Kind: "ref", Target: t}
		t.Fields = append(t.Fields, &F{Name: "next", Type: &T{Kind: "union", Branches: []*T{{Kind: "null"}, ref}}, Default: nil, HasDef: true})
	}
	return t
}

// natType names the Go type of a type's natural values; union branches
// are kept pairwise distinct in it so the branch of a value is never
// ambiguous.
func natType(t *T) string {
	if t.Kind == "ref" {
		t = t.Target
	}
	switch t.Logical {
	case "decimal":
		return "rat"
	case "date", "timestamp-millis", "timestamp-micros":
		return "time"
	case "time-millis", "time-micros":
		return "duration"
	}
	switch t.Kind {
	case "record", "map":
		return "map"
	case "enum", "string":
		return "string"
	case "fixed", "bytes":
		return "bytes"
	}
	return t.Kind
}

// avroKind is what the spec forbids twice in a union (unnamed types by
// type; named types by name).
func avroKind(t *T) string {
	if t.Kind == "ref" {
		t = t.Target
	}
	switch t.Kind {
	case "record", "enum", "fixed":
		return t.Name
	}
	return t.Kind
}

func (g *Gen) union(d int, ns string) *T {
	u := &T{Kind: "union"}
	n := 1 + g.r.IntN(4)
	for range n * 3 {
		if len(u.Branches) == n {
			break
		}
		var b *T
		if g.p(0.4) {
			b = &T{Kind: "null"}
		} else {
			b = g.typ(d+1, ns)
		}
		if b.Kind == "union" || !distinct(append(u.Branches[:len(u.Branches):len(u.Branches)], b)) {
			continue
		}
		u.Branches = append(u.Branches, b)
	}
	if len(u.Branches) == 0 {
		u.Branches = []*T{{Kind: "null"}}
	}
	sortNumeric(u.Branches)
	return u
}

// derive returns a reader type that can read t's data; wrap allows widening
// it into a union (not where the result is itself a union branch).
func (g *Gen) derive(t *T, named map[*T]*T, wrap bool) *T {
	var r *T
	switch t.Kind {
	case "ref":
		return &T{Kind: "ref", Target: named[t.Target]}
	case "record":
		r = &T{Kind: "record", Name: t.Name, nameStyle: t.nameStyle}
		if g.p(0.15) {
			r.Name, r.Aliases = t.Name+"R", []string{t.Name}
		}
		named[t] = r
		used := map[string]bool{}
		for _, f := range t.Fields {
			used[f.Name] = true
		}
		for _, f := range t.Fields {
			switch {
			case g.p(0.12):
				continue // dropped: the reader skips it
			case g.p(0.12):
				rf := &F{Name: f.Name + "_new", Aliases: []string{f.Name}, Type: g.derive(f.Type, named, true)}
				used[rf.Name] = true
				r.Fields = append(r.Fields, rf)
			default:
				rf := &F{Name: f.Name, Type: g.derive(f.Type, named, true)}
				if f.HasDef && g.p(0.5) {
					rf.Default, rf.HasDef = g.defaultFor(rf.Type)
				}
				r.Fields = append(r.Fields, rf)
			}
		}
		for i := range g.r.IntN(3) {
			name := "added" + strconv.Itoa(i)
			if used[name] {
				continue
			}
			typ := g.typ(2, nsOf(r.Name))
			def, ok := g.defaultFor(typ)
			if !ok {
				continue
			}
			r.Fields = append(r.Fields, &F{Name: name, Type: typ, Default: def, HasDef: true})
		}
		if g.p(0.3) {
			g.r.Shuffle(len(r.Fields), func(i, j int) { r.Fields[i], r.Fields[j] = r.Fields[j], r.Fields[i] })
		}
	case "enum":
		r = &T{Kind: "enum", Name: t.Name, nameStyle: t.nameStyle}
		if g.p(0.15) {
			r.Name, r.Aliases = t.Name+"R", []string{t.Name}
		}
		named[t] = r
		r.Symbols = append(r.Symbols, t.Symbols...)
		r.EnumDef = t.EnumDef
		switch {
		case g.p(0.25) && len(r.Symbols) > 1:
			// Drop a symbol; unknown writer symbols read as the default.
			i := g.r.IntN(len(r.Symbols))
			r.Symbols = append(r.Symbols[:i:i], r.Symbols[i+1:]...)
			r.EnumDef = r.Symbols[g.r.IntN(len(r.Symbols))]
		case g.p(0.25):
			r.Symbols = append(r.Symbols, "NEW")
		}
		if g.p(0.2) {
			g.r.Shuffle(len(r.Symbols), func(i, j int) { r.Symbols[i], r.Symbols[j] = r.Symbols[j], r.Symbols[i] })
		}
	case "fixed":
		c := *t
		r = &c
		r.Aliases = nil
		if g.p(0.15) {
			r.Name, r.Aliases = t.Name+"R", []string{t.Name}
		}
		named[t] = r
	case "array", "map":
		r = &T{Kind: t.Kind, Items: g.derive(t.Items, named, true)}
	case "union":
		return g.deriveUnion(t, named)
	default:
		r = g.deriveLeaf(t)
	}
	if wrap {
		return g.maybeUnion(r)
	}
	return r
}

// deriveUnion derives each writer branch; if promotions made two reader
// branches clash, the primitives are kept as they were.
func (g *Gen) deriveUnion(t *T, named map[*T]*T) *T {
	r := &T{Kind: "union"}
	for _, b := range t.Branches {
		r.Branches = append(r.Branches, g.derive(b, named, false))
	}
	sortNumeric(r.Branches)
	if !distinct(r.Branches) || !targetsAgree(t.Branches, r.Branches) {
		for i, b := range t.Branches {
			if isLeaf(b) {
				c := *b
				r.Branches[i] = &c
			}
		}
	}
	r.Branches = g.widen(r.Branches, 0.2, 0.3)
	return r
}

// widen sometimes adds a branch of a new type to a reader union (pExtra) and
// sometimes shuffles it (pShuffle); numeric branches stay in promotion order.
func (g *Gen) widen(bs []*T, pExtra, pShuffle float64) []*T {
	if g.p(pExtra) {
		extra := g.typ(3, "extra")
		if extra.Kind != "union" && distinct(append(bs[:len(bs):len(bs)], extra)) {
			bs = append(bs, extra)
		}
	}
	if g.p(pShuffle) {
		g.r.Shuffle(len(bs), func(i, j int) { bs[i], bs[j] = bs[j], bs[i] })
	}
	sortNumeric(bs)
	return bs
}

// targetsAgree reports whether every writer branch resolves to a distinct
// reader branch, and to the same one under hamba's rule (the first branch
// it can be read as) and ordo's (an exact match first, then the first
// promotion). hamba cannot build a resolved union in which two writer
// branches share a reader branch (it refuses it as a duplicate type), and
// the rules differ when a promotion target precedes the exact match.
func targetsAgree(ws, rs []*T) bool {
	used := map[int]bool{}
	for _, w := range ws {
		first, exact, promo := -1, -1, -1
		for i, r := range rs {
			switch {
			case sameType(w, r):
				if first < 0 {
					first = i
				}
				if exact < 0 {
					exact = i
				}
			case promotes(w, r):
				if first < 0 {
					first = i
				}
				if promo < 0 {
					promo = i
				}
			}
		}
		ordo := exact
		if ordo < 0 {
			ordo = promo
		}
		if ordo < 0 || ordo != first || used[ordo] {
			return false
		}
		used[ordo] = true
	}
	return true
}

func target(t *T) *T {
	if t.Kind == "ref" {
		return t.Target
	}
	return t
}

// sameType: same Avro type; named types match by name or reader alias.
func sameType(w, r *T) bool {
	w, r = target(w), target(r)
	if w.Kind != r.Kind {
		return false
	}
	switch w.Kind {
	case "record", "enum", "fixed":
		if shortOf(w.Name) == shortOf(r.Name) {
			return true
		}
		for _, a := range r.Aliases {
			if a == w.Name {
				return true
			}
		}
		return false
	}
	return true
}

func promotes(w, r *T) bool {
	w, r = target(w), target(r)
	switch w.Kind {
	case "int":
		return r.Kind == "long" || r.Kind == "float" || r.Kind == "double"
	case "long":
		return r.Kind == "float" || r.Kind == "double"
	case "float":
		return r.Kind == "double"
	case "string":
		return r.Kind == "bytes"
	case "bytes":
		return r.Kind == "string"
	}
	return false
}

func isLeaf(t *T) bool {
	switch t.Kind {
	case "record", "enum", "fixed", "array", "map", "ref", "union":
		return false
	}
	return true
}

// distinct reports whether union branches differ in natural Go type and in
// Avro type (the spec's rule).
//
// Nor does a union hold both string and bytes: each promotes to the other,
// and for a writer string the reader union [bytes, string] resolves to
// "bytes" in hamba (the first branch that matches, in union order) but to
// "string" in ordo (an exact match first, like the Java implementation).
func distinct(bs []*T) bool {
	nat, kind := map[string]bool{}, map[string]bool{}
	for _, b := range bs {
		if nat[natType(b)] || kind[avroKind(b)] {
			return false
		}
		nat[natType(b)], kind[avroKind(b)] = true, true
	}
	return !(kind["string"] && kind["bytes"])
}

// numericRank orders int < long < float < double, the promotion order.
var numericRank = map[string]int{"int": 1, "long": 2, "float": 3, "double": 4}

// sortNumeric puts a union's numeric branches in promotion order (keeping
// the positions they occupy), so no branch a writer type promotes to comes
// before the branch of that exact type; hamba and ordo differ there (see
// distinct).
func sortNumeric(bs []*T) {
	var pos []int
	var nums []*T
	for i, b := range bs {
		if numericRank[b.Kind] > 0 {
			pos = append(pos, i)
			nums = append(nums, b)
		}
	}
	for i := 1; i < len(nums); i++ {
		for j := i; j > 0 && numericRank[nums[j].Kind] < numericRank[nums[j-1].Kind]; j-- {
			nums[j], nums[j-1] = nums[j-1], nums[j]
		}
	}
	for i, p := range pos {
		bs[p] = nums[i]
	}
}

// deriveLeaf promotes a primitive or adds/drops its logical type.
func (g *Gen) deriveLeaf(t *T) *T {
	r := *t
	if !g.p(0.3) {
		return &r
	}
	switch {
	case t.Kind == "int" && t.Logical == "":
		r.Kind = []string{"long", "float", "double"}[g.r.IntN(3)]
	case t.Kind == "long" && t.Logical == "":
		if g.p(0.3) {
			r.Logical = []string{"timestamp-millis", "timestamp-micros", "time-micros"}[g.r.IntN(3)]
		} else {
			r.Kind = []string{"float", "double"}[g.r.IntN(2)]
		}
	case t.Kind == "float":
		r.Kind = "double"
	case t.Kind == "string":
		r.Kind = "bytes"
	case t.Kind == "bytes" && t.Logical == "":
		r.Kind = "string"
	case t.Logical == "decimal":
		if g.p(0.3) {
			r.Logical, r.Precision, r.Scale = "", 0, 0 // the reader sees the two's complement bytes
		} else {
			r.Precision += g.r.IntN(3) // same scale, wider precision
		}
	case t.Logical != "":
		r.Logical = "" // the reader reads the underlying number
	}
	return &r
}

// maybeUnion sometimes widens reader type r into a union.
func (g *Gen) maybeUnion(r *T) *T {
	if !g.p(0.12) {
		return r
	}
	u := &T{Kind: "union", Branches: []*T{r}}
	if natType(r) != "null" {
		u.Branches = append([]*T{{Kind: "null"}}, r)
	}
	u.Branches = g.widen(u.Branches, 0.5, 0.5)
	return u
}

// defaultFor returns a natural default for t (for a union: of its first
// branch, as the spec requires). Types whose JSON default would lose
// precision in a float64 JSON parser are avoided.
func (g *Gen) defaultFor(t *T) (any, bool) {
	if !defaultable(t, map[*T]bool{}, true) {
		return nil, false
	}
	if t.Kind == "union" {
		return g.defaultFor(t.Branches[0])
	}
	if t.Kind == "ref" {
		return nil, false
	}
	v := g.Value(t, 2)
	ok := true
	walkValue(t, v, func(t *T, v any) {
		switch x := v.(type) {
		case float32:
			ok = ok && !math.IsNaN(float64(x)) && !math.IsInf(float64(x), 0)
		case float64:
			ok = ok && !math.IsNaN(x) && !math.IsInf(x, 0)
		case int64:
			ok = ok && x < 1<<53 && x > -(1<<53)
		case time.Time:
			ok = ok && t.Logical != "timestamp-micros"
		case time.Duration:
			ok = ok && t.Logical != "time-micros"
		}
	})
	return v, ok
}

// defaultable excludes defaults that other implementations refuse although
// the spec allows them: goavro (and so ordo's ParseSchema) rejects a default
// for a fixed decimal, for a fixed with a byte >= 0x80 (it measures the
// default's UTF-8 length, not its code points) and for a union whose first
// branch is a decimal or with a decimal inside a record, array or map
// default (a bytes decimal field's own default works), and for a union
// inside a record, array or map default (it wants goavro's wrapped form);
// hamba picks the branch of a union default by the Go type of the parsed
// JSON rather than taking the first branch, so it fails to decode the
// default of a union whose first branch is not a plain primitive ("unknown
// union type long" for a timestamp, "string" for an enum).
func defaultable(t *T, seen map[*T]bool, top bool) bool {
	t = target(t)
	if t.Logical == "decimal" {
		return top && t.Kind == "bytes"
	}
	if seen[t] {
		return true
	}
	seen[t] = true
	switch t.Kind {
	case "fixed":
		return false
	case "union":
		if b := target(t.Branches[0]); !top || b.Logical != "" || !isLeaf(b) {
			return false
		}
		for _, b := range t.Branches {
			if !defaultable(b, seen, false) {
				return false
			}
		}
	case "record":
		for _, f := range t.Fields {
			if !defaultable(f.Type, seen, false) {
				return false
			}
		}
	case "array", "map":
		return defaultable(t.Items, seen, false)
	}
	return true
}

// walkValue calls fn for every leaf of natural value v of type t.
func walkValue(t *T, v any, fn func(*T, any)) {
	if t.Kind == "ref" {
		t = t.Target
	}
	switch t.Kind {
	case "record":
		m := v.(map[string]any)
		for _, f := range t.Fields {
			walkValue(f.Type, m[f.Name], fn)
		}
	case "array":
		for _, e := range v.([]any) {
			walkValue(t.Items, e, fn)
		}
	case "map":
		for _, e := range v.(map[string]any) {
			walkValue(t.Items, e, fn)
		}
	case "union":
		if b := branchOf(t, v); b != nil {
			walkValue(b, v, fn)
		}
	default:
		fn(t, v)
	}
}

// branchOf is the branch of union t holding natural value v (branches
// have distinct natural types).
func branchOf(t *T, v any) *T {
	want := "null"
	switch v.(type) {
	case bool:
		want = "boolean"
	case int32:
		want = "int"
	case int64:
		want = "long"
	case float32:
		want = "float"
	case float64:
		want = "double"
	case string:
		want = "string"
	case []byte:
		want = "bytes"
	case *big.Rat:
		want = "rat"
	case time.Time:
		want = "time"
	case time.Duration:
		want = "duration"
	case map[string]any:
		want = "map"
	case []any:
		want = "array"
	}
	for _, b := range t.Branches {
		if natType(b) == want {
			return b
		}
	}
	return nil
}

var (
	int32Edges = []int32{0, 1, -1, 63, -64, 64, math.MaxInt32, math.MinInt32}
	int64Edges = []int64{0, 1, -1, math.MaxInt64, math.MinInt64, math.MaxInt32 + 1, -1 << 53}
	strEdges   = []string{"", "a", "héllo", "🚪", "\x00", strings.Repeat("x", 130)}
)

// Value returns a random natural value of t.
func (g *Gen) Value(t *T, d int) any {
	switch t.Kind {
	case "ref":
		return g.Value(t.Target, d)
	case "null":
		return nil
	case "boolean":
		return g.p(0.5)
	case "int":
		switch t.Logical {
		case "date":
			return time.Unix(int64(g.r.IntN(200000)-100000)*86400, 0).UTC()
		case "time-millis":
			return time.Duration(g.r.Int32()-math.MaxInt32/2) * time.Millisecond
		}
		if g.p(0.5) {
			return int32Edges[g.r.IntN(len(int32Edges))]
		}
		return int32(g.r.Uint32())
	case "long":
		switch t.Logical {
		case "timestamp-millis":
			return time.UnixMilli(g.r.Int64N(1<<46) - 1<<45).UTC()
		case "timestamp-micros":
			return time.UnixMicro(g.r.Int64N(1<<56) - 1<<55).UTC()
		case "time-micros":
			return time.Duration(g.r.Int64N(1<<40)-1<<39) * time.Microsecond
		}
		if g.p(0.5) {
			return int64Edges[g.r.IntN(len(int64Edges))]
		}
		return int64(g.r.Uint64())
	case "float":
		switch g.r.IntN(6) {
		case 0:
			return float32(math.NaN())
		case 1:
			return float32(math.Inf(-1))
		case 2:
			return float32(math.Copysign(0, -1))
		}
		bits := g.r.Uint32()
		if bits>>23&0xff == 0xff {
			bits &^= 1 << 23 // keep it finite
		}
		return math.Float32frombits(bits)
	case "double":
		switch g.r.IntN(6) {
		case 0:
			return math.NaN()
		case 1:
			return math.Inf(1)
		case 2:
			return math.Copysign(0, -1)
		}
		return g.r.NormFloat64() * 1e6
	case "string":
		if g.p(0.5) {
			return strEdges[g.r.IntN(len(strEdges))]
		}
		return g.str()
	case "bytes", "fixed":
		if t.Logical == "decimal" {
			return g.decimalValue(t)
		}
		n := t.Size
		if t.Kind == "bytes" {
			n = g.r.IntN(6)
		}
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(g.r.UintN(256))
		}
		return b
	case "enum":
		return t.Symbols[g.r.IntN(len(t.Symbols))]
	case "array":
		n := g.r.IntN(4)
		if d > 4 {
			n = 0
		}
		a := make([]any, n)
		for i := range a {
			a[i] = g.Value(t.Items, d+1)
		}
		return a
	case "map":
		n := g.r.IntN(4)
		if d > 4 {
			n = 0
		}
		m := make(map[string]any, n)
		for range n {
			m[g.str()] = g.Value(t.Items, d+1)
		}
		return m
	case "record":
		m := make(map[string]any, len(t.Fields))
		for _, f := range t.Fields {
			if f.Name == "next" && d > 4 {
				m[f.Name] = nil
				continue
			}
			m[f.Name] = g.Value(f.Type, d+1)
		}
		return m
	case "union":
		b := t.Branches[g.r.IntN(len(t.Branches))]
		if d > 4 {
			for _, x := range t.Branches {
				if x.Kind == "null" {
					b = x
				}
			}
		}
		return g.Value(b, d+1)
	}
	panic("gen: unknown kind " + t.Kind)
}

func (g *Gen) str() string {
	const alphabet = "abcXYZ09 _-é€"
	rs := []rune(alphabet)
	n := g.r.IntN(8)
	var b strings.Builder
	for range n {
		b.WriteRune(rs[g.r.IntN(len(rs))])
	}
	return b.String()
}

func (g *Gen) decimalValue(t *T) *big.Rat {
	lim := pow10(t.Precision)
	u := new(big.Int)
	switch g.r.IntN(4) {
	case 0:
		u.Sub(lim, big.NewInt(1)) // largest
	case 1:
		u.Sub(big.NewInt(1), lim) // smallest
	default:
		// Up to Precision random digits, random sign.
		digits := make([]byte, 1+g.r.IntN(t.Precision))
		for i := range digits {
			digits[i] = byte('0' + g.r.IntN(10))
		}
		u.SetString(string(digits), 10)
		if g.p(0.5) {
			u.Neg(u)
		}
	}
	return new(big.Rat).SetFrac(u, pow10(t.Scale))
}

func pow10(n int) *big.Int { return new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(n)), nil) }

// twos is the minimal big-endian two's complement of i.
func twos(i *big.Int) []byte {
	if i.Sign() >= 0 {
		b := i.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	n := 1
	for {
		lim := new(big.Int).Lsh(big.NewInt(1), uint(8*n-1))
		if new(big.Int).Neg(lim).Cmp(i) <= 0 {
			break
		}
		n++
	}
	b := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), uint(8*n)), i).Bytes()
	for len(b) < n {
		b = append([]byte{0xff}, b...)
	}
	return b
}

// Render writes t as schema JSON: each named type is defined where it first
// occurs and referenced by name after that.
func Render(t *T) (string, error) {
	v, err := (&renderer{defined: map[*T]bool{}}).render(t, "")
	if err != nil {
		return "", err
	}
	b, err := json.Marshal(v)
	return string(b), err
}

type renderer struct {
	defined map[*T]bool
}

func (rd *renderer) render(t *T, ns string) (any, error) {
	switch t.Kind {
	case "ref":
		if nsOf(t.Target.Name) == ns {
			return shortOf(t.Target.Name), nil
		}
		return t.Target.Name, nil
	case "null", "boolean", "int", "long", "float", "double", "bytes", "string":
		if t.Logical == "" {
			return t.Kind, nil
		}
		m := map[string]any{"type": t.Kind, "logicalType": t.Logical}
		if t.Logical == "decimal" {
			m["precision"], m["scale"] = t.Precision, t.Scale
		}
		return m, nil
	case "array":
		it, err := rd.render(t.Items, ns)
		return map[string]any{"type": "array", "items": it}, err
	case "map":
		it, err := rd.render(t.Items, ns)
		return map[string]any{"type": "map", "values": it}, err
	case "union":
		out := make([]any, len(t.Branches))
		for i, b := range t.Branches {
			var err error
			if out[i], err = rd.render(b, ns); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if rd.defined[t] {
		return t.Name, nil
	}
	rd.defined[t] = true
	m := map[string]any{"type": t.Kind}
	switch {
	case t.nameStyle == 1 || t.nameStyle == 2 && nsOf(t.Name) != ns:
		m["name"], m["namespace"] = shortOf(t.Name), nsOf(t.Name)
	case t.nameStyle == 2:
		m["name"] = shortOf(t.Name)
	default:
		m["name"] = t.Name
	}
	if len(t.Aliases) > 0 {
		m["aliases"] = t.Aliases
	}
	inner := nsOf(t.Name)
	switch t.Kind {
	case "record":
		fs := make([]any, len(t.Fields))
		for i, f := range t.Fields {
			ft, err := rd.render(f.Type, inner)
			if err != nil {
				return nil, err
			}
			fm := map[string]any{"name": f.Name, "type": ft}
			if len(f.Aliases) > 0 {
				fm["aliases"] = f.Aliases
			}
			if f.HasDef {
				d, err := defaultJSON(f.Type, f.Default)
				if err != nil {
					return nil, fmt.Errorf("field %s: %w", f.Name, err)
				}
				fm["default"] = d
			}
			fs[i] = fm
		}
		m["fields"] = fs
	case "enum":
		m["symbols"] = t.Symbols
		if t.EnumDef != "" {
			m["default"] = t.EnumDef
		}
	case "fixed":
		m["size"] = t.Size
		if t.Logical == "decimal" {
			m["logicalType"], m["precision"], m["scale"] = "decimal", t.Precision, t.Scale
		}
	}
	return m, nil
}

// defaultJSON renders natural value v of t as an Avro JSON default (a union
// default is its first branch's value, unwrapped).
func defaultJSON(t *T, v any) (any, error) {
	if t.Kind == "ref" {
		t = t.Target
	}
	switch t.Kind {
	case "union":
		return defaultJSON(t.Branches[0], v)
	case "null":
		return nil, nil
	case "boolean", "string", "enum":
		return v, nil
	case "int":
		switch x := v.(type) {
		case time.Time:
			return json.Number(strconv.FormatInt(x.Unix()/86400, 10)), nil
		case time.Duration:
			return json.Number(strconv.FormatInt(x.Milliseconds(), 10)), nil
		}
		return json.Number(strconv.FormatInt(int64(v.(int32)), 10)), nil
	case "long":
		switch x := v.(type) {
		case time.Time:
			if t.Logical == "timestamp-micros" {
				return json.Number(strconv.FormatInt(x.UnixMicro(), 10)), nil
			}
			return json.Number(strconv.FormatInt(x.UnixMilli(), 10)), nil
		case time.Duration:
			return json.Number(strconv.FormatInt(x.Microseconds(), 10)), nil
		}
		return json.Number(strconv.FormatInt(v.(int64), 10)), nil
	case "float":
		return json.Number(strconv.FormatFloat(float64(v.(float32)), 'g', -1, 32)), nil
	case "double":
		return json.Number(strconv.FormatFloat(v.(float64), 'g', -1, 64)), nil
	case "bytes", "fixed":
		var b []byte
		if t.Logical == "decimal" {
			r := v.(*big.Rat)
			u := new(big.Int).Mul(r.Num(), pow10(t.Scale))
			u.Quo(u, r.Denom())
			b = twos(u)
			if t.Kind == "fixed" {
				pad := byte(0)
				if u.Sign() < 0 {
					pad = 0xff
				}
				for len(b) < t.Size {
					b = append([]byte{pad}, b...)
				}
			}
		} else {
			b = v.([]byte)
		}
		rs := make([]rune, len(b))
		for i, c := range b {
			rs[i] = rune(c)
		}
		return string(rs), nil
	case "array":
		a := v.([]any)
		out := make([]any, len(a))
		for i, e := range a {
			var err error
			if out[i], err = defaultJSON(t.Items, e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case "map":
		m := v.(map[string]any)
		out := make(map[string]any, len(m))
		for k, e := range m {
			var err error
			if out[k], err = defaultJSON(t.Items, e); err != nil {
				return nil, err
			}
		}
		return out, nil
	case "record":
		m := v.(map[string]any)
		out := make(map[string]any, len(t.Fields))
		for _, f := range t.Fields {
			var err error
			if out[f.Name], err = defaultJSON(f.Type, m[f.Name]); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("no default for %s", t.Kind)
}
