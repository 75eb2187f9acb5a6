package schemas

import (
	"encoding/binary"
	"math"
	"math/big"
	"math/bits"
	"reflect"
	"slices"
	"strconv"
	"time"
)

// The direct encoder writes a natural value as Avro binary in one walk of
// the schema tree. It accepts exactly what refFromNatural accepts, with the same
// guards and messages (integer overflow, exact decimals within precision,
// enum symbols, unknown or missing record fields, union branch choice), but
// builds no intermediate goavro native value. Map entries are written in key
// order, so the same value always encodes to the same bytes. Missing record
// fields take their default, encoded once when the schema is parsed.

// appendNatural appends the encoding of natural value v of type n to dst. On
// error dst may hold a partial encoding; callers discard it.
func appendNatural(dst []byte, n *node, v any) ([]byte, error) {
	switch n.kind {
	case kNull:
		if v != nil {
			return dst, perr("null: expected nil, got %T", v)
		}
		return dst, nil
	case kBoolean:
		b, ok := v.(bool)
		if !ok {
			return dst, perr("boolean: expected bool, got %T", v)
		}
		if b {
			return append(dst, 1), nil
		}
		return append(dst, 0), nil
	case kInt:
		i, err := intOf(n, v)
		if err != nil {
			return dst, err
		}
		return binary.AppendVarint(dst, int64(i)), nil
	case kLong:
		i, err := longOf(n, v)
		if err != nil {
			return dst, err
		}
		return binary.AppendVarint(dst, i), nil
	case kFloat:
		f, ok := v.(float32)
		if !ok {
			nv, err := fromNatural(n, v)
			if err != nil {
				return dst, err
			}
			f = nv.(float32)
		}
		return binary.LittleEndian.AppendUint32(dst, math.Float32bits(f)), nil
	case kDouble:
		var f float64
		switch x := v.(type) {
		case float64:
			f = x
		case float32:
			f = float64(x)
		default:
			nv, err := fromNatural(n, v)
			if err != nil {
				return dst, err
			}
			f = nv.(float64)
		}
		return binary.LittleEndian.AppendUint64(dst, math.Float64bits(f)), nil
	case kString:
		s, ok := v.(string)
		if !ok {
			return dst, perr("string: expected string, got %T", v)
		}
		dst = binary.AppendVarint(dst, int64(len(s)))
		return append(dst, s...), nil
	case kBytes, kFixed:
		if n.logical == lDecimal {
			return appendDecimal(dst, n, v)
		}
		var b []byte
		switch x := v.(type) {
		case []byte:
			b = x
		case string:
			if n.kind == kFixed && len(x) != n.size {
				return dst, perr("fixed %s: need %d bytes, got %d", n.name, n.size, len(x))
			}
			if n.kind == kBytes {
				dst = binary.AppendVarint(dst, int64(len(x)))
			}
			return append(dst, x...), nil
		default:
			return dst, perr("%s: expected []byte, got %T", n.describe(), v)
		}
		if n.kind == kFixed {
			if len(b) != n.size {
				return dst, perr("fixed %s: need %d bytes, got %d", n.name, n.size, len(b))
			}
			return append(dst, b...), nil
		}
		dst = binary.AppendVarint(dst, int64(len(b)))
		return append(dst, b...), nil
	case kEnum:
		s, ok := v.(string)
		if !ok {
			return dst, perr("enum %s: expected string symbol, got %T", n.name, v)
		}
		i, ok := n.symbolIdx[s]
		if !ok {
			return dst, perr("enum %s: %q is not one of %v", n.name, s, n.symbols)
		}
		return binary.AppendVarint(dst, int64(i)), nil
	case kArray:
		return appendArray(dst, n, v)
	case kMap:
		return appendMap(dst, n, v)
	case kRecord:
		return appendRecord(dst, n, v)
	case kUnion:
		return appendUnion(dst, n, v)
	}
	return dst, perr("unsupported kind %s", n.kind)
}

// intOf is fromNatural for int (and its logical types) without boxing.
func intOf(n *node, v any) (int32, error) {
	switch x := v.(type) {
	case int32:
		if n.logical == lNone {
			return x, nil
		}
	case time.Time:
		if n.logical == lDate {
			return toInt32(int64(math.Floor(float64(x.Unix()) / 86400)))
		}
	case time.Duration:
		if n.logical == lTimeMillis {
			return toInt32(x.Milliseconds())
		}
	}
	i, err := toInt64(v, "int")
	if err != nil {
		return 0, err
	}
	return toInt32(i)
}

// longOf is fromNatural for long (and its logical types) without boxing.
func longOf(n *node, v any) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case time.Time:
		switch n.logical {
		case lTimestampMillis:
			return x.UnixMilli(), nil
		case lTimestampMicros:
			return x.UnixMicro(), nil
		}
	case time.Duration:
		if n.logical == lTimeMicros {
			return x.Microseconds(), nil
		}
	}
	return toInt64(v, "long")
}

func appendArray(dst []byte, n *node, v any) ([]byte, error) {
	if a, ok := v.([]any); ok {
		if len(a) > 0 {
			dst = binary.AppendVarint(dst, int64(len(a)))
			for i, e := range a {
				var err error
				if dst, err = appendNatural(dst, n.items, e); err != nil {
					return dst, within("["+strconv.Itoa(i)+"]", err)
				}
			}
		}
		return append(dst, 0), nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Slice && rv.Kind() != reflect.Array {
		return dst, perr("array: expected a slice, got %T", v)
	}
	if l := rv.Len(); l > 0 {
		dst = binary.AppendVarint(dst, int64(l))
		for i := range l {
			var err error
			if dst, err = appendNatural(dst, n.items, rv.Index(i).Interface()); err != nil {
				return dst, within("["+strconv.Itoa(i)+"]", err)
			}
		}
	}
	return append(dst, 0), nil
}

func appendMap(dst []byte, n *node, v any) ([]byte, error) {
	if m, ok := v.(map[string]any); ok {
		if len(m) > 0 {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			dst = binary.AppendVarint(dst, int64(len(keys)))
			for _, k := range keys {
				dst = binary.AppendVarint(dst, int64(len(k)))
				dst = append(dst, k...)
				var err error
				if dst, err = appendNatural(dst, n.items, m[k]); err != nil {
					return dst, within(k, err)
				}
			}
		}
		return append(dst, 0), nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Map || rv.Type().Key().Kind() != reflect.String {
		return dst, perr("map: expected a map with string keys, got %T", v)
	}
	if rv.Len() > 0 {
		keys := rv.MapKeys()
		slices.SortFunc(keys, func(a, b reflect.Value) int {
			switch {
			case a.String() < b.String():
				return -1
			case a.String() > b.String():
				return 1
			}
			return 0
		})
		dst = binary.AppendVarint(dst, int64(len(keys)))
		for _, k := range keys {
			ks := k.String()
			dst = binary.AppendVarint(dst, int64(len(ks)))
			dst = append(dst, ks...)
			var err error
			if dst, err = appendNatural(dst, n.items, rv.MapIndex(k).Interface()); err != nil {
				return dst, within(ks, err)
			}
		}
	}
	return append(dst, 0), nil
}

func appendRecord(dst []byte, n *node, v any) ([]byte, error) {
	m, ok := v.(map[string]any)
	if !ok {
		if r, ok := v.(*Record); ok && r != nil {
			return appendSlots(dst, n, r)
		}
		return dst, perr("record %s: expected map[string]any, got %T", n.name, v)
	}
	dst, matched, err := appendFields(dst, n, naturalFields(m))
	if err != nil {
		return dst, err
	}
	if matched != len(m) {
		for k := range m {
			if _, ok := n.fieldIdx[k]; !ok {
				return dst, perr("record %s has no field %q", n.name, k)
			}
		}
	}
	return dst, nil
}

// fieldSource is a record value as appendFields reads it: the value of
// field name, the schema's i-th field, and whether it is present.
type fieldSource interface {
	field(i int, name string) (any, bool)
}

type naturalFields map[string]any

func (m naturalFields) field(_ int, name string) (any, bool) { v, ok := m[name]; return v, ok }

// appendFields writes n's fields in schema order from src, a missing field
// as its default (an error when it has none), and returns how many fields
// src had, for the caller's unknown-field check.
func appendFields[S fieldSource](dst []byte, n *node, src S) ([]byte, int, error) {
	matched := 0
	for i, f := range n.fields {
		fv, present := src.field(i, f.name)
		if !present {
			if !f.hasDefault {
				return dst, matched, within(f.name, perr("required field missing (no default)"))
			}
			enc, err := f.encodedDefault()
			if err != nil {
				return dst, matched, within(f.name, err)
			}
			dst = append(dst, enc...)
			continue
		}
		matched++
		var err error
		if dst, err = appendNatural(dst, f.typ, fv); err != nil {
			return dst, matched, within(f.name, err)
		}
	}
	return dst, matched, nil
}

// appendUnion picks the branch like unionFromNatural: nil -> null; else
// branches whose natural Go type matches exactly first, then the others, and
// the first that encodes without error wins.
func appendUnion(dst []byte, n *node, v any) ([]byte, error) {
	if v == nil {
		for i, b := range n.branches {
			if b.kind == kNull {
				return binary.AppendVarint(dst, int64(i)), nil
			}
		}
		return dst, perr("%s: nil but union has no null branch", n.describe())
	}
	mark := len(dst)
	var firstErr error
	for pass := 0; pass < 2; pass++ {
		for i, b := range n.branches {
			if b.kind == kNull {
				continue
			}
			if (pass == 0) != exactBranch(b, v) {
				continue
			}
			out, err := appendNatural(binary.AppendVarint(dst[:mark], int64(i)), b, v)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			return out, nil
		}
	}
	if firstErr != nil {
		return dst[:mark], perr("%s: no branch accepts %T: %v", n.describe(), v, firstErr)
	}
	return dst[:mark], perr("%s: no branch accepts %T", n.describe(), v)
}

// appendDecimal encodes a decimal as two's complement bytes (minimal for
// bytes, sign-extended to the size for fixed). Values whose unscaled form
// fits an int64 skip big-number arithmetic; everything else, including every
// error, goes through toDecimal.
func appendDecimal(dst []byte, n *node, v any) ([]byte, error) {
	if r, ok := v.(*big.Rat); ok && r != nil && n.scale < len(pow10Int64) {
		if u, ok := smallUnscaled(r, n); ok {
			var buf [8]byte
			binary.BigEndian.PutUint64(buf[:], uint64(u))
			l := minTwosLen(u)
			if n.kind == kFixed {
				if l <= n.size {
					pad := byte(0)
					if u < 0 {
						pad = 0xff
					}
					for range n.size - min(n.size, 8) {
						dst = append(dst, pad)
					}
					return append(dst, buf[8-min(n.size, 8):]...), nil
				}
			} else {
				dst = binary.AppendVarint(dst, int64(l))
				return append(dst, buf[8-l:]...), nil
			}
		}
	}
	nv, err := toDecimal(n, v)
	if err != nil {
		return dst, err
	}
	b := decimalToTwos(nv.(*big.Rat), n.scale)
	if n.kind == kFixed {
		if b, err = padTwos(b, n.size); err != nil {
			return dst, err
		}
		return append(dst, b...), nil
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...), nil
}

// smallUnscaled returns r × 10^scale when that is an exact integer that fits
// an int64 and lies within n's precision.
func smallUnscaled(r *big.Rat, n *node) (int64, bool) {
	num, den := r.Num(), r.Denom()
	if !num.IsInt64() || !den.IsInt64() {
		return 0, false
	}
	p := pow10Int64[n.scale]
	d := den.Int64()
	if p%d != 0 {
		return 0, false // more fractional digits than the scale: toDecimal reports it
	}
	x := num.Int64()
	neg := x < 0
	mag := uint64(x)
	if neg {
		mag = uint64(-x) // -MinInt64 wraps to itself, which as uint64 is its magnitude
	}
	hi, lo := bits.Mul64(mag, uint64(p/d))
	if hi != 0 || lo > math.MaxInt64 {
		return 0, false
	}
	if n.precision < len(pow10Int64) && lo >= uint64(pow10Int64[n.precision]) {
		return 0, false // beyond precision: toDecimal reports it
	}
	if neg {
		return -int64(lo), true
	}
	return int64(lo), true
}

// minTwosLen is the fewest bytes holding u in two's complement (at least 1).
func minTwosLen(u int64) int {
	if u < 0 {
		u = ^u
	}
	return (bits.Len64(uint64(u)) + 8) / 8
}

// encodedDefault returns the binary encoding of the field's default,
// computed once (defaults are part of the immutable schema).
func (f *field) encodedDefault() ([]byte, error) {
	f.defOnce.Do(func() {
		nat, err := naturalDefault(f)
		if err != nil {
			f.defErr = err
			return
		}
		f.defEnc, f.defErr = appendNatural(nil, f.typ, nat)
	})
	return f.defEnc, f.defErr
}
