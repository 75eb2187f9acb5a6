package schemas

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"strings"
	"time"
)

// The natural form is what processors see and produce:
//
//	record, map      map[string]any
//	array            []any
//	union            the unwrapped branch value (nil for null)
//	enum             string (the symbol)
//	bytes, fixed     []byte (never aliasing the Kafka record buffer)
//	int / long       int32 / int64
//	float / double   float32 / float64
//	decimal          *big.Rat (exact)
//	timestamp-*      time.Time in UTC
//	date             time.Time (UTC midnight); time-millis/micros time.Duration
//
// goavro's native form differs only in unions ({"branch": v} maps), so the
// conversions below are cheap tree walks over the precomputed schema tree.

// pathError accumulates the location of a conversion error ("items[2].qty").
type pathError struct {
	path string
	msg  string
}

func (e *pathError) Error() string {
	if e.path == "" {
		return e.msg
	}
	return e.path + ": " + e.msg
}

func perr(format string, args ...any) error {
	return &pathError{msg: fmt.Sprintf(format, args...)}
}

// within prefixes err's path with seg (a field name or "[i]").
func within(seg string, err error) error {
	pe, ok := err.(*pathError)
	if !ok {
		return &pathError{path: seg, msg: err.Error()}
	}
	switch {
	case pe.path == "":
		pe.path = seg
	case strings.HasPrefix(pe.path, "["):
		pe.path = seg + pe.path
	default:
		pe.path = seg + "." + pe.path
	}
	return pe
}

// refToNatural converts a goavro native value of schema s into natural form.
// The input is not modified; bytes are copied so the result never aliases
// the decoded payload.
func refToNatural(s *Schema, native any) (any, error) {
	v, err := toNatural(s.root, native, false)
	if err != nil {
		return nil, fmt.Errorf("avro: to natural %s: %w", s.FullName, err)
	}
	return v, nil
}

// toNatural converts native to natural; with inPlace it rewrites the maps
// and slices of native (used on values this package owns).
func toNatural(n *node, v any, inPlace bool) (any, error) {
	switch n.kind {
	case kUnion:
		if v == nil {
			for _, b := range n.branches {
				if b.kind == kNull {
					return nil, nil
				}
			}
			return nil, perr("nil for union without null")
		}
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return nil, perr("union value must be a single-key map, got %T", v)
		}
		for k, inner := range m {
			for _, b := range n.branches {
				if b.branchName == k {
					return toNatural(b, inner, inPlace)
				}
			}
			return nil, perr("union has no branch %q", k)
		}
	case kRecord:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, perr("record %s: expected map[string]any, got %T", n.name, v)
		}
		out := m
		if !inPlace {
			out = make(map[string]any, len(n.fields))
		}
		for _, f := range n.fields {
			fv, ok := m[f.name]
			if !ok {
				return nil, within(f.name, perr("missing in native value"))
			}
			nv, err := toNatural(f.typ, fv, inPlace)
			if err != nil {
				return nil, within(f.name, err)
			}
			out[f.name] = nv
		}
		return out, nil
	case kArray:
		a, ok := v.([]any)
		if !ok {
			return nil, perr("array: expected []any, got %T", v)
		}
		out := a
		if !inPlace {
			out = make([]any, len(a))
		}
		for i, e := range a {
			nv, err := toNatural(n.items, e, inPlace)
			if err != nil {
				return nil, within("["+strconv.Itoa(i)+"]", err)
			}
			out[i] = nv
		}
		return out, nil
	case kMap:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, perr("map: expected map[string]any, got %T", v)
		}
		out := m
		if !inPlace {
			out = make(map[string]any, len(m))
		}
		for k, e := range m {
			nv, err := toNatural(n.items, e, inPlace)
			if err != nil {
				return nil, within(k, err)
			}
			out[k] = nv
		}
		return out, nil
	case kBytes, kFixed:
		if n.logical == lDecimal {
			if r, ok := v.(*big.Rat); ok {
				if inPlace {
					return r, nil
				}
				return new(big.Rat).Set(r), nil
			}
			return nil, perr("decimal: expected *big.Rat, got %T", v)
		}
		switch b := v.(type) {
		case []byte:
			return append([]byte(nil), b...), nil
		case string:
			return []byte(b), nil
		}
		return nil, perr("%s: expected []byte, got %T", n.kind, v)
	}
	return v, nil
}

// refFromNatural converts a natural value into goavro native form for schema
// s, enforcing the guards goavro lacks: integer overflow is an error,
// decimals must be exact at the schema's scale and within its precision,
// enums must be symbols, records may not carry unknown fields, and missing
// fields are filled from schema defaults (or rejected when there is none).
func refFromNatural(s *Schema, natural any) (any, error) {
	v, err := fromNatural(s.root, natural)
	if err != nil {
		return nil, fmt.Errorf("avro: from natural %s: %w", s.FullName, err)
	}
	return v, nil
}

func fromNatural(n *node, v any) (any, error) {
	switch n.kind {
	case kNull:
		if v != nil {
			return nil, perr("null: expected nil, got %T", v)
		}
		return nil, nil
	case kBoolean:
		b, ok := v.(bool)
		if !ok {
			return nil, perr("boolean: expected bool, got %T", v)
		}
		return b, nil
	case kInt:
		switch n.logical {
		case lDate:
			if t, ok := v.(time.Time); ok {
				d := math.Floor(float64(t.Unix()) / 86400)
				return toInt32(int64(d))
			}
		case lTimeMillis:
			if d, ok := v.(time.Duration); ok {
				return toInt32(d.Milliseconds())
			}
		}
		i, err := toInt64(v, "int")
		if err != nil {
			return nil, err
		}
		i32, err := toInt32(i)
		if err != nil {
			return nil, err
		}
		if n.logical == lDate {
			return time.Unix(int64(i32)*86400, 0).UTC(), nil
		}
		if n.logical == lTimeMillis {
			return time.Duration(i32) * time.Millisecond, nil
		}
		return i32, nil
	case kLong:
		switch n.logical {
		case lTimestampMillis, lTimestampMicros:
			if t, ok := v.(time.Time); ok {
				return t.UTC(), nil
			}
		case lTimeMicros:
			if d, ok := v.(time.Duration); ok {
				return d, nil
			}
		}
		i, err := toInt64(v, "long")
		if err != nil {
			return nil, err
		}
		switch n.logical {
		case lTimestampMillis:
			return time.UnixMilli(i).UTC(), nil
		case lTimestampMicros:
			return time.UnixMicro(i).UTC(), nil
		case lTimeMicros:
			return time.Duration(i) * time.Microsecond, nil
		}
		return i, nil
	case kFloat:
		switch f := v.(type) {
		case float32:
			return f, nil
		case float64:
			if !math.IsInf(f, 0) && !math.IsNaN(f) && math.Abs(f) > math.MaxFloat32 {
				return nil, perr("float: %g overflows float32", f)
			}
			return float32(f), nil
		}
		i, err := toInt64(v, "float")
		if err != nil {
			return nil, err
		}
		if i > 1<<24 || i < -(1<<24) {
			return nil, perr("float: integer %d is outside the exactly representable range ±2^24", i)
		}
		return float32(i), nil
	case kDouble:
		switch f := v.(type) {
		case float64:
			return f, nil
		case float32:
			return float64(f), nil
		}
		i, err := toInt64(v, "double")
		if err != nil {
			return nil, err
		}
		if i > 1<<53 || i < -(1<<53) {
			return nil, perr("double: integer %d is not exactly representable", i)
		}
		return float64(i), nil
	case kString:
		s, ok := v.(string)
		if !ok {
			return nil, perr("string: expected string, got %T", v)
		}
		return s, nil
	case kBytes, kFixed:
		if n.logical == lDecimal {
			return toDecimal(n, v)
		}
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		case string:
			b = []byte(x)
		default:
			return nil, perr("%s: expected []byte, got %T", n.describe(), v)
		}
		if n.kind == kFixed && len(b) != n.size {
			return nil, perr("fixed %s: need %d bytes, got %d", n.name, n.size, len(b))
		}
		return b, nil
	case kEnum:
		s, ok := v.(string)
		if !ok {
			return nil, perr("enum %s: expected string symbol, got %T", n.name, v)
		}
		if _, ok := n.symbolIdx[s]; !ok {
			return nil, perr("enum %s: %q is not one of %v", n.name, s, n.symbols)
		}
		return s, nil
	case kArray:
		if a, ok := v.([]any); ok {
			out := make([]any, len(a))
			for i, e := range a {
				nv, err := fromNatural(n.items, e)
				if err != nil {
					return nil, within("["+strconv.Itoa(i)+"]", err)
				}
				out[i] = nv
			}
			return out, nil
		}
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
			return nil, perr("array: expected a slice, got %T", v)
		}
		out := make([]any, rv.Len())
		for i := range out {
			nv, err := fromNatural(n.items, rv.Index(i).Interface())
			if err != nil {
				return nil, within("["+strconv.Itoa(i)+"]", err)
			}
			out[i] = nv
		}
		return out, nil
	case kMap:
		if m, ok := v.(map[string]any); ok {
			out := make(map[string]any, len(m))
			for k, e := range m {
				nv, err := fromNatural(n.items, e)
				if err != nil {
					return nil, within(k, err)
				}
				out[k] = nv
			}
			return out, nil
		}
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
			return nil, perr("map: expected a map with string keys, got %T", v)
		}
		out := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			k := it.Key().String()
			nv, err := fromNatural(n.items, it.Value().Interface())
			if err != nil {
				return nil, within(k, err)
			}
			out[k] = nv
		}
		return out, nil
	case kRecord:
		m, ok := v.(map[string]any)
		if !ok {
			return nil, perr("record %s: expected map[string]any, got %T", n.name, v)
		}
		out := make(map[string]any, len(n.fields))
		matched := 0
		for _, f := range n.fields {
			fv, present := m[f.name]
			if !present {
				if !f.hasDefault {
					return nil, within(f.name, perr("required field missing (no default)"))
				}
				d, err := defaultNative(f.typ, f.def)
				if err != nil {
					return nil, within(f.name, err)
				}
				out[f.name] = d
				continue
			}
			matched++
			nv, err := fromNatural(f.typ, fv)
			if err != nil {
				return nil, within(f.name, err)
			}
			out[f.name] = nv
		}
		if matched != len(m) {
			for k := range m {
				if _, ok := n.fieldIdx[k]; !ok {
					return nil, perr("record %s has no field %q", n.name, k)
				}
			}
		}
		return out, nil
	case kUnion:
		return unionFromNatural(n, v)
	}
	return nil, perr("unsupported kind %s", n.kind)
}

// unionFromNatural picks the branch for a natural value by its Go type:
// nil -> null; otherwise candidate branches are tried in preference order
// (exact Go type match first, then convertible ones) and the first that
// converts without error wins. The result is goavro's {"branch": v} form.
func unionFromNatural(n *node, v any) (any, error) {
	if v == nil {
		for _, b := range n.branches {
			if b.kind == kNull {
				return nil, nil
			}
		}
		return nil, perr("%s: nil but union has no null branch", n.describe())
	}
	var firstErr error
	for pass := 0; pass < 2; pass++ {
		for _, b := range n.branches {
			if b.kind == kNull {
				continue
			}
			exact := exactBranch(b, v)
			if (pass == 0) != exact {
				continue
			}
			nv, err := fromNatural(b, v)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			return map[string]any{b.branchName: nv}, nil
		}
	}
	if firstErr != nil {
		return nil, perr("%s: no branch accepts %T: %v", n.describe(), v, firstErr)
	}
	return nil, perr("%s: no branch accepts %T", n.describe(), v)
}

// exactBranch reports whether v's Go type is the natural type of b.
func exactBranch(b *node, v any) bool {
	switch v.(type) {
	case bool:
		return b.kind == kBoolean
	case int32:
		return b.kind == kInt && b.logical == lNone
	case int64:
		return b.kind == kLong && b.logical == lNone
	case int:
		return (b.kind == kLong || b.kind == kInt) && b.logical == lNone
	case float32:
		return b.kind == kFloat
	case float64:
		return b.kind == kDouble
	case string:
		return b.kind == kString || b.kind == kEnum
	case []byte:
		return (b.kind == kBytes || b.kind == kFixed) && b.logical == lNone
	case *big.Rat, big.Rat:
		return b.logical == lDecimal
	case time.Time:
		return b.logical == lTimestampMillis || b.logical == lTimestampMicros || b.logical == lDate
	case time.Duration:
		return b.logical == lTimeMillis || b.logical == lTimeMicros
	case map[string]any:
		return b.kind == kRecord || b.kind == kMap
	case *Record:
		return b.kind == kRecord
	case []any:
		return b.kind == kArray
	}
	return false
}

func toInt32(i int64) (int32, error) {
	if i < math.MinInt32 || i > math.MaxInt32 {
		return 0, perr("int: %d overflows int32", i)
	}
	return int32(i), nil
}

// toInt64 accepts Go integer types, json.Number and integral float64/32.
func toInt64(v any, what string) (int64, error) {
	switch x := v.(type) {
	case int:
		return int64(x), nil
	case int8:
		return int64(x), nil
	case int16:
		return int64(x), nil
	case int32:
		return int64(x), nil
	case int64:
		return x, nil
	case uint:
		if uint64(x) > math.MaxInt64 {
			return 0, perr("%s: %d overflows int64", what, x)
		}
		return int64(x), nil
	case uint8:
		return int64(x), nil
	case uint16:
		return int64(x), nil
	case uint32:
		return int64(x), nil
	case uint64:
		if x > math.MaxInt64 {
			return 0, perr("%s: %d overflows int64", what, x)
		}
		return int64(x), nil
	case float64:
		// 2^63 itself is not representable as int64; the range check uses it
		// as an exclusive bound.
		if x != math.Trunc(x) || math.IsInf(x, 0) || x >= 1<<63 || x < -(1<<63) {
			return 0, perr("%s: %v is not an integral value in int64 range", what, x)
		}
		return int64(x), nil
	case float32:
		f := float64(x)
		if f != math.Trunc(f) || math.IsInf(f, 0) || f >= 1<<63 || f < -(1<<63) {
			return 0, perr("%s: %v is not an integral value in int64 range", what, x)
		}
		return int64(f), nil
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			return 0, perr("%s: %q is not an int64: %v", what, string(x), err)
		}
		return i, nil
	}
	return 0, perr("%s: expected an integer, got %T", what, v)
}

var bigTen = big.NewInt(10)

func pow10(n int) *big.Int { return new(big.Int).Exp(bigTen, big.NewInt(int64(n)), nil) }

// isDecimalLiteral accepts [+-]digits[.digits], the only string form we
// take for decimals (big.Rat.SetString also takes fractions and hex).
func isDecimalLiteral(s string) bool {
	if s != "" && (s[0] == '+' || s[0] == '-') {
		s = s[1:]
	}
	digits, dot := 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '.' && !dot && digits > 0 && i < len(s)-1:
			dot = true
		default:
			return false
		}
	}
	return digits > 0
}

// toDecimal converts a natural decimal (see refFromNatural) into a *big.Rat
// that is exact at n's scale and within n's precision.
func toDecimal(n *node, v any) (any, error) {
	r := new(big.Rat)
	switch x := v.(type) {
	case *big.Rat:
		if x == nil {
			return nil, perr("decimal: nil *big.Rat")
		}
		r.Set(x)
	case big.Rat:
		r.Set(&x)
	case string:
		if !isDecimalLiteral(x) {
			return nil, perr("decimal: %q is not a decimal literal", x)
		}
		r.SetString(x)
	case json.Number:
		if !isDecimalLiteral(string(x)) {
			return nil, perr("decimal: %q is not a decimal literal", string(x))
		}
		r.SetString(string(x))
	case float64:
		if n.precision > 15 {
			return nil, perr("decimal(%d,%d): float64 input refused for precision > 15; pass *big.Rat or a string", n.precision, n.scale)
		}
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, perr("decimal: %v is not finite", x)
		}
		// The shortest representation that round-trips is the value the
		// author meant (at most 15 significant digits map 1:1 to float64).
		s := strconv.FormatFloat(x, 'f', -1, 64)
		if i := strings.IndexByte(s, '.'); i >= 0 && len(s)-i-1 > n.scale {
			return nil, perr("decimal(%d,%d): float64 %s is not exact at scale %d; pass *big.Rat or a string", n.precision, n.scale, s, n.scale)
		}
		r.SetString(s)
	default:
		i, err := toInt64(v, "decimal")
		if err != nil {
			return nil, perr("decimal: expected *big.Rat, decimal string, integer or float64, got %T", v)
		}
		r.SetInt64(i)
	}
	unscaled := new(big.Rat).Mul(r, new(big.Rat).SetInt(pow10(n.scale)))
	if !unscaled.IsInt() {
		return nil, perr("decimal(%d,%d): %s has more than %d fractional digits", n.precision, n.scale, r.RatString(), n.scale)
	}
	if new(big.Int).Abs(unscaled.Num()).Cmp(pow10(n.precision)) >= 0 {
		return nil, perr("decimal(%d,%d): %s exceeds precision %d", n.precision, n.scale, r.FloatString(n.scale), n.precision)
	}
	if n.kind == kFixed {
		// Two's complement must fit in size bytes.
		bits := unscaled.Num().BitLen() + 1
		if bits > 8*n.size {
			return nil, perr("decimal: %s does not fit fixed %s of %d bytes", r.FloatString(n.scale), n.name, n.size)
		}
	}
	return r, nil
}

// decimalFromTwos converts two's complement big-endian bytes at scale into
// a *big.Rat (the Avro decimal encoding).
func decimalFromTwos(b []byte, scale int) *big.Rat {
	i := new(big.Int).SetBytes(b)
	if len(b) > 0 && b[0]&0x80 != 0 {
		i.Sub(i, new(big.Int).Lsh(big.NewInt(1), uint(len(b))*8))
	}
	return new(big.Rat).SetFrac(i, pow10(scale))
}

// decimalToTwos encodes r (which must be exact at scale) as minimal two's
// complement big-endian bytes.
func decimalToTwos(r *big.Rat, scale int) []byte {
	u := new(big.Rat).Mul(r, new(big.Rat).SetInt(pow10(scale)))
	i := new(big.Int).Quo(u.Num(), u.Denom())
	if i.Sign() >= 0 {
		b := i.Bytes()
		if len(b) == 0 || b[0]&0x80 != 0 {
			b = append([]byte{0}, b...)
		}
		return b
	}
	// negative: 2^(8n) + i with n minimal so that the top bit is set.
	n := (i.BitLen() + 8) / 8
	t := new(big.Int).Add(new(big.Int).Lsh(big.NewInt(1), uint(n)*8), i)
	b := t.Bytes()
	for len(b) < n {
		b = append([]byte{0xff}, b...)
	}
	return b
}

// defaultNative converts a JSON default (parsed with UseNumber) into goavro
// native form for n. Union defaults use the first branch per the spec, then
// the other branches for leniency.
func defaultNative(n *node, raw any) (any, error) {
	switch n.kind {
	case kNull:
		if raw != nil {
			return nil, perr("default for null must be null")
		}
		return nil, nil
	case kBoolean:
		b, ok := raw.(bool)
		if !ok {
			return nil, perr("default for boolean must be true/false")
		}
		return b, nil
	case kInt, kLong, kFloat, kDouble:
		num, ok := raw.(json.Number)
		if !ok {
			return nil, perr("default for %s must be a number, got %T", n.kind, raw)
		}
		if n.kind == kFloat || n.kind == kDouble {
			f, err := num.Float64()
			if err != nil {
				return nil, perr("default %q: %v", string(num), err)
			}
			if n.kind == kFloat {
				return float32(f), nil
			}
			return f, nil
		}
		return fromNatural(n, num)
	case kString:
		s, ok := raw.(string)
		if !ok {
			return nil, perr("default for string must be a string")
		}
		return s, nil
	case kBytes, kFixed:
		s, ok := raw.(string)
		if !ok {
			return nil, perr("default for %s must be a string", n.kind)
		}
		b, err := codePointBytes(s)
		if err != nil {
			return nil, err
		}
		if n.kind == kFixed && len(b) != n.size {
			return nil, perr("default for fixed %s must have %d bytes", n.name, n.size)
		}
		if n.logical == lDecimal {
			return decimalFromTwos(b, n.scale), nil
		}
		return b, nil
	case kEnum:
		return fromNatural(n, raw)
	case kArray:
		a, ok := raw.([]any)
		if !ok {
			return nil, perr("default for array must be an array")
		}
		out := make([]any, len(a))
		for i, e := range a {
			v, err := defaultNative(n.items, e)
			if err != nil {
				return nil, within("["+strconv.Itoa(i)+"]", err)
			}
			out[i] = v
		}
		return out, nil
	case kMap:
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, perr("default for map must be an object")
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			v, err := defaultNative(n.items, e)
			if err != nil {
				return nil, within(k, err)
			}
			out[k] = v
		}
		return out, nil
	case kRecord:
		m, ok := raw.(map[string]any)
		if !ok {
			return nil, perr("default for record %s must be an object", n.name)
		}
		out := make(map[string]any, len(n.fields))
		for _, f := range n.fields {
			fv, ok := m[f.name]
			var v any
			var err error
			switch {
			case ok:
				v, err = defaultNative(f.typ, fv)
			case f.hasDefault:
				v, err = defaultNative(f.typ, f.def)
			default:
				err = perr("missing in record default")
			}
			if err != nil {
				return nil, within(f.name, err)
			}
			out[f.name] = v
		}
		return out, nil
	case kUnion:
		var firstErr error
		for _, b := range n.branches {
			v, err := defaultNative(b, raw)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			if b.kind == kNull {
				return nil, nil
			}
			return map[string]any{b.branchName: v}, nil
		}
		return nil, firstErr
	}
	return nil, perr("unsupported default for %s", n.kind)
}

// codePointBytes decodes the Avro JSON encoding of bytes: each code point
// 0-255 is one byte.
func codePointBytes(s string) ([]byte, error) {
	b := make([]byte, 0, len(s))
	for _, r := range s {
		if r > 255 {
			return nil, perr("bytes default contains code point U+%04X > 255", r)
		}
		b = append(b, byte(r))
	}
	return b, nil
}

// CloneNatural deep-copies the mutable parts of a natural value (maps,
// slices, bytes, decimals), so that a copy never aliases its source: shared
// defaults are never aliased by decoded records, and processors that put
// event values into commands or attrs cannot change the event through them.
// A *Record copies to its natural map. It is ordo's one natural-form copy
// helper (Detach is its variant for values kept after their event).
func CloneNatural(v any) any { return cloneNatural(v, false) }

// Detach is CloneNatural for a value kept after its event: the copy shares
// no memory with the decoder at all. Decoded strings are substrings of a
// body copy, and decoded scalars are boxed in chunks, both shared with the
// events decoded next to it (see decProgram.scanner); CloneNatural keeps
// those (they are immutable), so a value it copies still keeps the chunks
// alive. Detach copies strings (map keys too) and re-boxes scalars as
// well. It costs an allocation per value: use it for what is kept (a
// cache, state held in memory), not on the hot path.
func Detach(v any) any { return cloneNatural(v, true) }

func cloneNatural(v any, detach bool) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			if detach {
				k = strings.Clone(k)
			}
			out[k] = cloneNatural(e, detach)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = cloneNatural(e, detach)
		}
		return out
	case []byte:
		return append([]byte(nil), x...)
	case *big.Rat:
		return new(big.Rat).Set(x)
	case *Record:
		if x == nil {
			return nil
		}
		// Its natural map (as Natural: Unset slots left out), copied.
		out := make(map[string]any, len(x.Names))
		for i, n := range x.Names[:min(len(x.Names), len(x.Values))] {
			if e := x.Values[i]; e != Unset {
				out[n] = cloneNatural(e, detach)
			}
		}
		return out
	}
	if !detach {
		return v // immutable: shared
	}
	// Returning x puts it in a new interface: a fresh copy (or the
	// runtime's static one for small integers), not the decoder's chunk.
	switch x := v.(type) {
	case string:
		return strings.Clone(x)
	case int64:
		return x
	case int32:
		return x
	case float64:
		return x
	case float32:
		return x
	case time.Time:
		return x
	}
	return v
}
