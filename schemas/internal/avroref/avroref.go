// Package avroref is an Avro reference implementation for ordo's tests. It
// wraps github.com/hamba/avro/v2 (its own schema parser, its own writer ->
// reader schema resolution and its own codec) and only adapts values between
// hamba's generic form and ordo's natural form (see schemas/natural.go). It
// shares no code with package schemas, so the differential tests and fuzzers
// that compare the two find bugs in either instead of agreeing with
// themselves. It is imported only from tests.
package avroref

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"reflect"
	"time"

	"github.com/hamba/avro/v2"
)

// Ref holds a hamba configuration. Caching is off: hamba caches codecs by
// schema fingerprint, which ignores defaults and aliases, and random schema
// pairs in the tests differ in exactly those.
type Ref struct {
	api avro.API
}

// New returns a reference whose decoder refuses allocations beyond
// maxAlloc items/bytes (so fuzz inputs with huge declared counts fail fast
// instead of allocating).
func New(maxAlloc int) *Ref {
	return &Ref{api: avro.Config{
		DisableCaching: true,
		// Ordo writes one block per array/map without a byte size; so does
		// this configuration, so encodings can be compared byte for byte.
		DisableBlockSizeHeader: true,
		BlockLength:            1 << 30,
		MaxByteSliceSize:       maxAlloc,
		MaxSliceAllocSize:      maxAlloc,
	}.Freeze()}
}

// Schema is a schema parsed by hamba, with a private name cache so that
// unrelated schemas reusing a name do not collide.
type Schema struct {
	s avro.Schema
}

// Parse parses schema JSON with hamba.
func Parse(text string) (*Schema, error) {
	s, err := avro.ParseWithCache(text, "", &avro.SchemaCache{})
	if err != nil {
		return nil, fmt.Errorf("hamba parse: %w", err)
	}
	return &Schema{s: s}, nil
}

// ErrIncompatible marks a writer/reader pair hamba refuses to resolve.
var ErrIncompatible = errors.New("hamba: schemas cannot be resolved")

// Resolved is a writer schema resolved against a reader (or the writer
// itself): hamba's composite schema that decodes writer data into the
// reader's shape.
type Resolved struct {
	s avro.Schema
}

// ErrRecursive: hamba's resolver recurses without end (a fatal stack
// overflow, not a panic) on recursive named types, so Resolve refuses them.
var ErrRecursive = errors.New("hamba cannot resolve recursive schemas")

// Resolve resolves writer data to reader (nil: as written).
func Resolve(writer, reader *Schema) (*Resolved, error) {
	if reader == nil {
		return &Resolved{s: writer.s}, nil
	}
	if recursive(writer.s, map[string]bool{}) || recursive(reader.s, map[string]bool{}) {
		return nil, ErrRecursive
	}
	c, err := avro.NewSchemaCompatibility().Resolve(reader.s, writer.s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrIncompatible, err)
	}
	return &Resolved{s: c}, nil
}

// ErrUnsafeInput: the body holds a varint hamba cannot be given (see
// extremeVarint); the reference has no verdict on it.
var ErrUnsafeInput = errors.New("hamba: input not safe to decode")

// extremeVarint reports whether body holds the encoding of a long within
// 2^13 of ±2^63: seven 0xff bytes then 0x01 (the last three of its ten
// bytes set every bit from 14 up). hamba negates a negative block count
// and adds counts into an int, so -2^63 or a count near 2^63 wraps around
// to a negative slice length and corrupts memory (a fatal runtime error,
// not a panic). Declining every such byte run is cruder than needed but
// never hides a verdict ordo gets wrong elsewhere.
func extremeVarint(body []byte) bool {
	run := 0
	for _, b := range body {
		if b == 0x01 && run >= 7 {
			return true
		}
		if b == 0xff {
			run++
		} else {
			run = 0
		}
	}
	return false
}

// Decode decodes one datum that must span all of body, and returns it in
// ordo's natural form. Any panic inside hamba is returned as an error;
// bodies that could make hamba corrupt memory get ErrUnsafeInput.
func (r *Ref) Decode(res *Resolved, body []byte) (any, error) {
	if extremeVarint(body) {
		return nil, ErrUnsafeInput
	}
	return r.DecodeTrusted(res, body)
}

// DecodeTrusted is Decode without the extremeVarint guard, for bodies an
// encoder produced from a valid value (their block counts are honest; a
// long field may well hold -2^63).
func (r *Ref) DecodeTrusted(res *Resolved, body []byte) (nat any, err error) {
	defer func() {
		if p := recover(); p != nil {
			nat, err = nil, fmt.Errorf("hamba panic: %v", p)
		}
	}()
	rd := avro.NewReader(nil, 0, avro.WithReaderConfig(r.api)).Reset(body)
	var v any
	rd.ReadVal(res.s, &v)
	if rd.Error != nil {
		return nil, fmt.Errorf("hamba decode: %w", rd.Error)
	}
	// Peek sets io.EOF when the datum consumed everything.
	rd.Peek()
	if !errors.Is(rd.Error, io.EOF) {
		return nil, errors.New("hamba decode: trailing bytes after datum")
	}
	return toNatural(res.s, v)
}

// Encode encodes a natural value with hamba.
func (r *Ref) Encode(s *Schema, nat any) (out []byte, err error) {
	defer func() {
		if p := recover(); p != nil {
			out, err = nil, fmt.Errorf("hamba panic: %v", p)
		}
	}()
	v, err := fromNatural(s.s, nat)
	if err != nil {
		return nil, err
	}
	out, err = r.api.Marshal(s.s, v)
	if err != nil {
		return nil, fmt.Errorf("hamba encode: %w", err)
	}
	return out, nil
}

// recursive reports whether a named type refers to itself (onPath holds
// the records being walked).
func recursive(s avro.Schema, onPath map[string]bool) bool {
	switch x := s.(type) {
	case *avro.RefSchema:
		return onPath[x.Schema().FullName()]
	case *avro.RecordSchema:
		onPath[x.FullName()] = true
		defer delete(onPath, x.FullName())
		for _, f := range x.Fields() {
			if recursive(f.Type(), onPath) {
				return true
			}
		}
	case *avro.ArraySchema:
		return recursive(x.Items(), onPath)
	case *avro.MapSchema:
		return recursive(x.Values(), onPath)
	case *avro.UnionSchema:
		for _, t := range x.Types() {
			if recursive(t, onPath) {
				return true
			}
		}
	}
	return false
}

func deref(s avro.Schema) avro.Schema {
	for {
		ref, ok := s.(*avro.RefSchema)
		if !ok {
			return s
		}
		s = ref.Schema()
	}
}

func logicalOf(s avro.Schema) avro.LogicalType {
	if l, ok := s.(avro.LogicalTypeSchema); ok && l.Logical() != nil {
		return l.Logical().Type()
	}
	return ""
}

// branchName is the key hamba uses for a wrapped union value.
func branchName(s avro.Schema) string {
	s = deref(s)
	if n, ok := s.(avro.NamedSchema); ok {
		return n.FullName()
	}
	name := string(s.Type())
	if lt := logicalOf(s); lt != "" {
		name += "." + string(lt)
	}
	return name
}

// toNatural converts hamba's generic decoded value of (resolved) schema s
// into ordo's natural form. Unions: hamba returns either the bare value (all
// branches have registered Go types, i.e. primitives) or {"branch": value};
// ordo unwraps both.
func toNatural(s avro.Schema, v any) (any, error) {
	s = deref(s)
	lt := logicalOf(s)
	switch s.Type() {
	case avro.Null:
		if v != nil {
			return nil, fmt.Errorf("null: got %T", v)
		}
		return nil, nil
	case avro.Boolean:
		return want[bool](v, "boolean")
	case avro.Int:
		switch lt {
		case avro.Date:
			return utc(v, "date")
		case avro.TimeMillis:
			return want[time.Duration](v, "time-millis")
		}
		switch x := v.(type) {
		case int:
			return int32(x), nil
		case int32:
			return x, nil
		}
		return nil, fmt.Errorf("int: got %T", v)
	case avro.Long:
		switch lt {
		case avro.TimestampMillis, avro.TimestampMicros:
			return utc(v, string(lt))
		case avro.TimeMicros:
			return want[time.Duration](v, "time-micros")
		case avro.LocalTimestampMillis, avro.LocalTimestampMicros:
			// ordo ignores these logical types (the underlying long).
			t, err := want[time.Time](v, string(lt))
			if err != nil {
				return nil, err
			}
			if lt == avro.LocalTimestampMillis {
				return t.UnixMilli(), nil
			}
			return t.UnixMicro(), nil
		}
		switch x := v.(type) {
		case int64:
			return x, nil
		case int:
			return int64(x), nil
		}
		return nil, fmt.Errorf("long: got %T", v)
	case avro.Float:
		return want[float32](v, "float")
	case avro.Double:
		return want[float64](v, "double")
	case avro.String:
		return want[string](v, "string")
	case avro.Bytes:
		if lt == avro.Decimal {
			return rat(v)
		}
		b, err := want[[]byte](v, "bytes")
		if err != nil {
			return nil, err
		}
		return append([]byte{}, b...), nil
	case avro.Fixed:
		if lt == avro.Decimal {
			return rat(v)
		}
		rv := reflect.ValueOf(v)
		if rv.Kind() != reflect.Array || rv.Type().Elem().Kind() != reflect.Uint8 {
			return nil, fmt.Errorf("fixed: got %T", v)
		}
		out := make([]byte, rv.Len())
		reflect.Copy(reflect.ValueOf(out), rv)
		return out, nil
	case avro.Enum:
		return want[string](v, "enum")
	case avro.Array:
		return eachItem(s.(*avro.ArraySchema).Items(), v, toNatural)
	case avro.Map:
		return eachValue(s.(*avro.MapSchema).Values(), v, toNatural)
	case avro.Record:
		m, err := want[map[string]any](v, "record")
		if err != nil {
			return nil, err
		}
		// A resolved record lists ignored writer fields too; hamba leaves
		// them out of the map, so walk the map and look each key up.
		byName := map[string]*avro.Field{}
		for _, f := range s.(*avro.RecordSchema).Fields() {
			byName[f.Name()] = f
		}
		out := make(map[string]any, len(m))
		for k, e := range m {
			f := byName[k]
			if f == nil {
				return nil, fmt.Errorf("record %s: unexpected field %q", s.(*avro.RecordSchema).FullName(), k)
			}
			if out[k], err = toNatural(f.Type(), e); err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
		}
		return out, nil
	case avro.Union:
		types := s.(*avro.UnionSchema).Types()
		if v == nil {
			for _, t := range types {
				if deref(t).Type() == avro.Null {
					return nil, nil
				}
			}
			return nil, errors.New("union: nil without a null branch")
		}
		if m, ok := v.(map[string]any); ok {
			// Wrapped: no registered branch type produces a map.
			if len(m) != 1 {
				return nil, fmt.Errorf("union: wrapped value with %d keys", len(m))
			}
			for k, e := range m {
				for _, t := range types {
					if branchName(t) == k {
						return toNatural(t, e)
					}
				}
				return nil, fmt.Errorf("union: no branch %q", k)
			}
		}
		// Bare: a registered primitive/logical Go type; the branch is the
		// one whose generic Go type it is.
		for _, t := range types {
			if goTypeMatches(t, v) {
				return toNatural(t, v)
			}
		}
		return nil, fmt.Errorf("union: bare %T matches no branch", v)
	}
	return nil, fmt.Errorf("unsupported schema type %s", s.Type())
}

// eachItem converts every element of list v with conv.
func eachItem(items avro.Schema, v any, conv func(avro.Schema, any) (any, error)) (any, error) {
	a, err := want[[]any](v, "array")
	if err != nil {
		return nil, err
	}
	out := make([]any, len(a))
	for i, e := range a {
		if out[i], err = conv(items, e); err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
	}
	return out, nil
}

// eachValue converts every value of map v with conv.
func eachValue(values avro.Schema, v any, conv func(avro.Schema, any) (any, error)) (any, error) {
	m, err := want[map[string]any](v, "map")
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(m))
	for k, e := range m {
		if out[k], err = conv(values, e); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
	}
	return out, nil
}

// goTypeMatches reports whether v is what hamba decodes branch t into when
// the branch's type is registered (primitives and their logical types).
func goTypeMatches(t avro.Schema, v any) bool {
	t = deref(t)
	lt := logicalOf(t)
	switch v.(type) {
	case bool:
		return t.Type() == avro.Boolean
	case int, int32:
		return t.Type() == avro.Int && lt == ""
	case int64:
		return t.Type() == avro.Long && lt == ""
	case float32:
		return t.Type() == avro.Float
	case float64:
		return t.Type() == avro.Double
	case string:
		return t.Type() == avro.String
	case []byte:
		return t.Type() == avro.Bytes && lt == ""
	case *big.Rat:
		return t.Type() == avro.Bytes && lt == avro.Decimal
	case time.Time:
		return lt == avro.Date || lt == avro.TimestampMillis || lt == avro.TimestampMicros
	case time.Duration:
		return lt == avro.TimeMillis || lt == avro.TimeMicros
	}
	return false
}

func want[T any](v any, what string) (T, error) {
	x, ok := v.(T)
	if !ok {
		var zero T
		return zero, fmt.Errorf("%s: got %T, want %T", what, v, zero)
	}
	return x, nil
}

func utc(v any, what string) (any, error) {
	t, err := want[time.Time](v, what)
	if err != nil {
		return nil, err
	}
	return t.UTC(), nil
}

func rat(v any) (any, error) {
	r, ok := v.(*big.Rat)
	if !ok || r == nil {
		return nil, fmt.Errorf("decimal: got %T", v)
	}
	return new(big.Rat).Set(r), nil
}

// fromNatural converts an ordo natural value into what hamba encodes for
// schema s. Unions become {"branch": value}: the branch is the first (in
// schema order) whose natural Go type is exactly v's and which accepts v,
// which is ordo's documented rule for values of exact natural types.
func fromNatural(s avro.Schema, v any) (any, error) {
	s = deref(s)
	lt := logicalOf(s)
	switch s.Type() {
	case avro.Null:
		if v != nil {
			return nil, fmt.Errorf("null: got %T", v)
		}
		return nil, nil
	case avro.Boolean:
		return want[bool](v, "boolean")
	case avro.Int:
		switch lt {
		case avro.Date:
			return want[time.Time](v, "date")
		case avro.TimeMillis:
			return want[time.Duration](v, "time-millis")
		}
		return want[int32](v, "int")
	case avro.Long:
		switch lt {
		case avro.TimestampMillis, avro.TimestampMicros:
			return want[time.Time](v, string(lt))
		case avro.TimeMicros:
			return want[time.Duration](v, "time-micros")
		case avro.LocalTimestampMillis, avro.LocalTimestampMicros:
			return nil, fmt.Errorf("%s: not part of ordo's natural form", lt)
		}
		return want[int64](v, "long")
	case avro.Float:
		return want[float32](v, "float")
	case avro.Double:
		return want[float64](v, "double")
	case avro.String:
		return want[string](v, "string")
	case avro.Bytes:
		if lt == avro.Decimal {
			return wantRat(v)
		}
		return want[[]byte](v, "bytes")
	case avro.Fixed:
		if lt == avro.Decimal {
			return wantRat(v)
		}
		b, err := want[[]byte](v, "fixed")
		if err != nil {
			return nil, err
		}
		size := s.(*avro.FixedSchema).Size()
		if len(b) != size {
			return nil, fmt.Errorf("fixed: %d bytes, want %d", len(b), size)
		}
		arr := reflect.New(reflect.ArrayOf(size, reflect.TypeFor[byte]())).Elem()
		reflect.Copy(arr, reflect.ValueOf(b))
		return arr.Interface(), nil
	case avro.Enum:
		sym, err := want[string](v, "enum")
		if err != nil {
			return nil, err
		}
		for _, x := range s.(*avro.EnumSchema).Symbols() {
			if x == sym {
				return sym, nil
			}
		}
		return nil, fmt.Errorf("enum: %q is not a symbol", sym)
	case avro.Array:
		return eachItem(s.(*avro.ArraySchema).Items(), v, fromNatural)
	case avro.Map:
		return eachValue(s.(*avro.MapSchema).Values(), v, fromNatural)
	case avro.Record:
		m, err := want[map[string]any](v, "record")
		if err != nil {
			return nil, err
		}
		fields := s.(*avro.RecordSchema).Fields()
		if len(m) != len(fields) {
			return nil, fmt.Errorf("record: %d fields, want %d", len(m), len(fields))
		}
		out := make(map[string]any, len(fields))
		for _, f := range fields {
			e, ok := m[f.Name()]
			if !ok {
				return nil, fmt.Errorf("record: field %s missing", f.Name())
			}
			if out[f.Name()], err = fromNatural(f.Type(), e); err != nil {
				return nil, fmt.Errorf("%s: %w", f.Name(), err)
			}
		}
		return out, nil
	case avro.Union:
		types := s.(*avro.UnionSchema).Types()
		if v == nil {
			return map[string]any{"null": nil}, nil
		}
		var firstErr error
		for _, t := range types {
			if !naturalTypeOf(t, v) {
				continue
			}
			x, err := fromNatural(t, v)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				continue
			}
			return map[string]any{branchName(t): x}, nil
		}
		if firstErr != nil {
			return nil, firstErr
		}
		return nil, fmt.Errorf("union: no branch for %T", v)
	}
	return nil, fmt.Errorf("unsupported schema type %s", s.Type())
}

// naturalTypeOf reports whether v's Go type is the natural type of t.
func naturalTypeOf(t avro.Schema, v any) bool {
	t = deref(t)
	lt := logicalOf(t)
	switch v.(type) {
	case bool:
		return t.Type() == avro.Boolean
	case int32:
		return t.Type() == avro.Int && lt == ""
	case int64:
		return t.Type() == avro.Long && lt == ""
	case float32:
		return t.Type() == avro.Float
	case float64:
		return t.Type() == avro.Double
	case string:
		return t.Type() == avro.String || t.Type() == avro.Enum
	case []byte:
		return (t.Type() == avro.Bytes || t.Type() == avro.Fixed) && lt == ""
	case *big.Rat:
		return lt == avro.Decimal
	case time.Time:
		return lt == avro.Date || lt == avro.TimestampMillis || lt == avro.TimestampMicros
	case time.Duration:
		return lt == avro.TimeMillis || lt == avro.TimeMicros
	case map[string]any:
		return t.Type() == avro.Record || t.Type() == avro.Map
	case []any:
		return t.Type() == avro.Array
	}
	return false
}

func wantRat(v any) (any, error) {
	r, ok := v.(*big.Rat)
	if !ok || r == nil {
		return nil, fmt.Errorf("decimal: got %T", v)
	}
	return r, nil
}

// HasMultiEntryMap reports whether natural value v of s holds an Avro map
// with two or more entries, whose encoding order is up to the encoder.
func (s *Schema) HasMultiEntryMap(v any) bool { return multiEntry(s.s, v) }

func multiEntry(s avro.Schema, v any) bool {
	s = deref(s)
	switch s.Type() {
	case avro.Map:
		m, _ := v.(map[string]any)
		if len(m) > 1 {
			return true
		}
		for _, e := range m {
			if multiEntry(s.(*avro.MapSchema).Values(), e) {
				return true
			}
		}
	case avro.Record:
		m, _ := v.(map[string]any)
		for _, f := range s.(*avro.RecordSchema).Fields() {
			if multiEntry(f.Type(), m[f.Name()]) {
				return true
			}
		}
	case avro.Array:
		a, _ := v.([]any)
		for _, e := range a {
			if multiEntry(s.(*avro.ArraySchema).Items(), e) {
				return true
			}
		}
	case avro.Union:
		for _, t := range s.(*avro.UnionSchema).Types() {
			if v != nil && naturalTypeOf(t, v) && multiEntry(t, v) {
				return true
			}
		}
	}
	return false
}
