package schemas

import (
	"fmt"
	"math/big"
	"strconv"
	"time"
)

// refResolve converts a goavro native value decoded with writer into the
// native form of reader, following the Avro specification's "Schema
// Resolution" rules (goavro only decodes with the writer schema, see
// linkedin/goavro #114 and #166):
//
//   - reader fields missing in the writer take the reader's default (error
//     if there is none); writer fields unknown to the reader are dropped,
//     at any depth (e.g. inside array items or map values);
//   - int -> long -> float -> double promotion, string <-> bytes;
//   - enum symbols unknown to the reader map to the reader's enum default
//     (error if it has none);
//   - writer union vs reader non-union and vice versa, union vs union;
//   - named types (record/enum/fixed) match by unqualified name or reader
//     alias; arrays, maps and fixed recurse/compare sizes.
//
// The result is valid native for reader's goavro codec. The compiled
// resolver is cached on the writer Schema per reader, so repeated calls
// don't re-walk the schemas. When writer and reader have identical JSON the
// value is returned unchanged (and so may alias writerNative).
func refResolve(writer, reader *Schema, writerNative any) (any, error) {
	r, err := writer.resolverFor(reader)
	if err != nil {
		return nil, err
	}
	if r == nil {
		return writerNative, nil
	}
	out, err := r.run(writerNative)
	if err != nil {
		return nil, fmt.Errorf("avro: resolve %s (id %d) to reader %s: %w", writer.FullName, writer.ID, reader.FullName, err)
	}
	return out, nil
}

// resolverFor returns the compiled resolver for (s, reader); nil means the
// schemas are identical and no conversion is needed.
func (s *Schema) resolverFor(reader *Schema) (*resolver, error) {
	if v, ok := s.resolvers.Load(reader); ok {
		rr := v.(*resolverResult)
		return rr.r, rr.err
	}
	rr := &resolverResult{}
	if !jsonEqualText(s.Text, reader.Text) {
		b := &resolverBuilder{memo: map[[2]*node]*resolver{}}
		r, err := b.build(s.root, reader.root)
		if err != nil {
			rr.err = fmt.Errorf("avro: writer %s (id %d) cannot be resolved to reader %s: %w", s.FullName, s.ID, reader.FullName, err)
		} else {
			rr.r = r
		}
	}
	v, _ := s.resolvers.LoadOrStore(reader, rr)
	rr = v.(*resolverResult)
	return rr.r, rr.err
}

// resolver is a compiled writer->reader conversion. run is set after
// construction so recursive schemas can refer to themselves.
type resolver struct {
	run func(v any) (any, error)
	err error
}

type resolverBuilder struct {
	memo map[[2]*node]*resolver
}

func (b *resolverBuilder) build(w, r *node) (*resolver, error) {
	key := [2]*node{w, r}
	if res, ok := b.memo[key]; ok {
		return res, res.err
	}
	res := &resolver{}
	b.memo[key] = res
	fn, err := b.compile(w, r)
	if err != nil {
		res.err = err
		res.run = func(any) (any, error) { return nil, err }
		return res, err
	}
	res.run = fn
	return res, nil
}

func identity(v any) (any, error) { return v, nil }

// namesMatch implements the spec's named-type rule: unqualified names are
// equal, or the reader lists the writer's name as an alias.
func namesMatch(w, r *node) bool {
	if w.shortName() == r.shortName() {
		return true
	}
	for _, a := range r.aliases {
		if a == w.name || shortOf(a) == w.shortName() {
			return true
		}
	}
	return false
}

func shortOf(full string) string {
	for i := len(full) - 1; i >= 0; i-- {
		if full[i] == '.' {
			return full[i+1:]
		}
	}
	return full
}

// sameKind reports whether w and r are "the same type" for union branch
// selection (before promotions are considered).
func sameKind(w, r *node) bool {
	if w.kind != r.kind {
		return false
	}
	switch w.kind {
	case kRecord, kEnum, kFixed:
		return namesMatch(w, r)
	}
	return true
}

func (b *resolverBuilder) compile(w, r *node) (func(any) (any, error), error) {
	if w.kind == kUnion {
		return b.compileWriterUnion(w, r)
	}
	if r.kind == kUnion {
		return b.compileReaderUnion(w, r)
	}
	if w.kind == r.kind {
		if err := namedMismatch(w, r); err != nil {
			return nil, err
		}
	}
	switch {
	case w.kind == r.kind:
		switch w.kind {
		case kRecord:
			return b.compileRecord(w, r)
		case kEnum:
			return compileEnum(w, r)
		case kFixed:
			return compileLogical(w, r)
		case kArray, kMap:
			items, err := b.build(w.items, r.items)
			if err != nil {
				return nil, within(w.kind.String()+" items", err)
			}
			if w.kind == kArray {
				return func(v any) (any, error) {
					a, ok := v.([]any)
					if !ok {
						return nil, perr("array: expected []any, got %T", v)
					}
					out := make([]any, len(a))
					for i, e := range a {
						x, err := items.run(e)
						if err != nil {
							return nil, within("["+strconv.Itoa(i)+"]", err)
						}
						out[i] = x
					}
					return out, nil
				}, nil
			}
			return func(v any) (any, error) {
				m, ok := v.(map[string]any)
				if !ok {
					return nil, perr("map: expected map[string]any, got %T", v)
				}
				out := make(map[string]any, len(m))
				for k, e := range m {
					x, err := items.run(e)
					if err != nil {
						return nil, within(k, err)
					}
					out[k] = x
				}
				return out, nil
			}, nil
		default:
			return compileLogical(w, r)
		}
	case promotable(w.kind, r.kind):
		return compilePromotion(w, r), nil
	}
	return nil, perr("writer type %s cannot be read as %s", w.describe(), r.describe())
}

// namedMismatch is the error for a named writer type (record, enum, fixed)
// that the reader's type of the same kind cannot read, or nil.
func namedMismatch(w, r *node) error {
	switch {
	case (w.kind == kRecord || w.kind == kEnum) && !namesMatch(w, r):
		return perr("writer %s %s does not match reader %s %s", w.kind, w.name, r.kind, r.name)
	case w.kind == kFixed && (!namesMatch(w, r) || w.size != r.size):
		return perr("writer fixed %s[%d] does not match reader fixed %s[%d]", w.name, w.size, r.name, r.size)
	}
	return nil
}

func promotable(w, r kind) bool {
	switch w {
	case kInt:
		return r == kLong || r == kFloat || r == kDouble
	case kLong:
		return r == kFloat || r == kDouble
	case kFloat:
		return r == kDouble
	case kString:
		return r == kBytes
	case kBytes:
		return r == kString
	}
	return false
}

func (b *resolverBuilder) compileWriterUnion(w, r *node) (func(any) (any, error), error) {
	subs := make(map[string]*resolver, len(w.branches))
	var nullSub *resolver
	var firstErr error
	ok := 0
	for _, wb := range w.branches {
		sub, err := b.build(wb, r)
		if err != nil {
			// Only an error if the data actually uses this branch.
			if firstErr == nil {
				firstErr = within("writer branch "+wb.branchName, err)
			}
		} else {
			ok++
		}
		if wb.kind == kNull {
			nullSub = sub
		}
		subs[wb.branchName] = sub
	}
	if ok == 0 {
		return nil, firstErr
	}
	return func(v any) (any, error) {
		if v == nil {
			if nullSub == nil {
				return nil, perr("nil value for writer union without null")
			}
			return nullSub.run(nil)
		}
		m, isMap := v.(map[string]any)
		if !isMap || len(m) != 1 {
			return nil, perr("writer union value must be a single-key map, got %T", v)
		}
		for k, inner := range m {
			sub := subs[k]
			if sub == nil {
				return nil, perr("writer union has no branch %q", k)
			}
			return sub.run(inner)
		}
		panic("unreachable")
	}, nil
}

func (b *resolverBuilder) compileReaderUnion(w, r *node) (func(any) (any, error), error) {
	var chosen *node
	var sub *resolver
	for _, rb := range r.branches {
		if sameKind(w, rb) {
			s, err := b.build(w, rb)
			if err != nil {
				return nil, within("reader branch "+rb.branchName, err)
			}
			chosen, sub = rb, s
			break
		}
	}
	if chosen == nil {
		for _, rb := range r.branches {
			if promotable(w.kind, rb.kind) {
				s, err := b.build(w, rb)
				if err == nil {
					chosen, sub = rb, s
					break
				}
			}
		}
	}
	if chosen == nil {
		return nil, perr("writer type %s matches no branch of reader %s", w.describe(), r.describe())
	}
	if chosen.kind == kNull {
		return func(any) (any, error) { return nil, nil }, nil
	}
	name := chosen.branchName
	return func(v any) (any, error) {
		x, err := sub.run(v)
		if err != nil {
			return nil, err
		}
		return map[string]any{name: x}, nil
	}, nil
}

type fieldPlan struct {
	name      string
	writer    string // writer field name; "" means use def
	sub       *resolver
	def       any
	cloneDef  bool
	hasWriter bool
}

func (b *resolverBuilder) compileRecord(w, r *node) (func(any) (any, error), error) {
	plans := make([]fieldPlan, len(r.fields))
	for i, rf := range r.fields {
		p := fieldPlan{name: rf.name}
		wf := findWriterField(w, rf)
		if wf != nil {
			sub, err := b.build(wf.typ, rf.typ)
			if err != nil {
				return nil, within(rf.name, err)
			}
			p.writer, p.sub, p.hasWriter = wf.name, sub, true
		} else {
			if !rf.hasDefault {
				return nil, within(rf.name, perr("reader field missing in writer %s and has no default", w.name))
			}
			d, err := defaultNative(rf.typ, rf.def)
			if err != nil {
				return nil, within(rf.name, fmt.Errorf("invalid default: %w", err))
			}
			p.def = d
			switch d.(type) {
			case map[string]any, []any, []byte, *big.Rat:
				p.cloneDef = true
			}
		}
		plans[i] = p
	}
	return func(v any) (any, error) {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, perr("record: expected map[string]any, got %T", v)
		}
		out := make(map[string]any, len(plans))
		for i := range plans {
			p := &plans[i]
			if !p.hasWriter {
				if p.cloneDef {
					out[p.name] = CloneNatural(p.def)
				} else {
					out[p.name] = p.def
				}
				continue
			}
			fv, ok := m[p.writer]
			if !ok {
				return nil, within(p.writer, perr("missing in writer native value"))
			}
			x, err := p.sub.run(fv)
			if err != nil {
				return nil, within(p.name, err)
			}
			out[p.name] = x
		}
		return out, nil
	}, nil
}

func findWriterField(w *node, rf *field) *field {
	if i, ok := w.fieldIdx[rf.name]; ok {
		return w.fields[i]
	}
	for _, a := range rf.aliases {
		if i, ok := w.fieldIdx[a]; ok {
			return w.fields[i]
		}
	}
	return nil
}

func compileEnum(w, r *node) (func(any) (any, error), error) {
	mapping := make(map[string]string, len(w.symbols))
	for _, s := range w.symbols {
		if _, ok := r.symbolIdx[s]; ok {
			mapping[s] = s
		} else if r.hasEnumDef {
			mapping[s] = r.enumDef
		}
	}
	return func(v any) (any, error) {
		s, ok := v.(string)
		if !ok {
			return nil, perr("enum %s: expected string, got %T", w.name, v)
		}
		out, ok := mapping[s]
		if !ok {
			return nil, perr("enum symbol %q of writer %s is unknown to reader %s, which has no default", s, w.name, r.name)
		}
		return out, nil
	}, nil
}

// compileLogical handles same-kind primitives and fixed whose logical types
// may differ (e.g. writer plain long, reader timestamp-millis). Decimals
// keep their value (not their unscaled integer) across differing scales.
func compileLogical(w, r *node) (func(any) (any, error), error) {
	if w.logical == r.logical && (w.logical != lDecimal || w.scale == r.scale && w.precision <= r.precision) {
		return identity, nil
	}
	if w.logical == lDecimal && r.logical == lDecimal {
		return func(v any) (any, error) { return toDecimal(r, v) }, nil
	}
	return func(v any) (any, error) {
		base, err := toBase(w, v)
		if err != nil {
			return nil, err
		}
		return fromBase(r, base)
	}, nil
}

func compilePromotion(w, r *node) func(any) (any, error) {
	return func(v any) (any, error) {
		base, err := toBase(w, v)
		if err != nil {
			return nil, err
		}
		var p any
		switch x := base.(type) {
		case int32:
			switch r.kind {
			case kLong:
				p = int64(x)
			case kFloat:
				p = float32(x)
			case kDouble:
				p = float64(x)
			}
		case int64:
			switch r.kind {
			case kFloat:
				p = float32(x)
			case kDouble:
				p = float64(x)
			}
		case float32:
			p = float64(x)
		case string:
			p = []byte(x)
		case []byte:
			p = string(x)
		}
		if p == nil {
			return nil, perr("cannot promote %T from %s to %s", base, w.describe(), r.describe())
		}
		return fromBase(r, p)
	}
}

// toBase strips a logical type, returning the underlying Avro value
// (int32, int64, []byte, ...).
func toBase(n *node, v any) (any, error) {
	switch n.logical {
	case lTimestampMillis:
		if t, ok := v.(time.Time); ok {
			return t.UnixMilli(), nil
		}
	case lTimestampMicros:
		if t, ok := v.(time.Time); ok {
			return t.UnixMicro(), nil
		}
	case lDate:
		if t, ok := v.(time.Time); ok {
			return int32(t.Unix() / 86400), nil
		}
	case lTimeMillis:
		if d, ok := v.(time.Duration); ok {
			return int32(d.Milliseconds()), nil
		}
	case lTimeMicros:
		if d, ok := v.(time.Duration); ok {
			return d.Microseconds(), nil
		}
	case lDecimal:
		if r, ok := v.(*big.Rat); ok {
			b := decimalToTwos(r, n.scale)
			if n.kind == kFixed {
				return padTwos(b, n.size)
			}
			return b, nil
		}
	case lNone:
		return v, nil
	}
	return nil, perr("%s: unexpected native %T", n.describe(), v)
}

func padTwos(b []byte, size int) ([]byte, error) {
	if len(b) > size {
		return nil, perr("decimal needs %d bytes, fixed holds %d", len(b), size)
	}
	pad := byte(0)
	if len(b) > 0 && b[0]&0x80 != 0 {
		pad = 0xff
	}
	out := make([]byte, size)
	for i := 0; i < size-len(b); i++ {
		out[i] = pad
	}
	copy(out[size-len(b):], b)
	return out, nil
}

// fromBase applies n's logical type to an underlying Avro value.
func fromBase(n *node, v any) (any, error) {
	switch n.logical {
	case lNone:
		return v, nil
	case lDecimal:
		b, ok := v.([]byte)
		if !ok {
			return nil, perr("decimal: expected bytes, got %T", v)
		}
		return decimalFromTwos(b, n.scale), nil
	}
	return fromNatural(n, v)
}
