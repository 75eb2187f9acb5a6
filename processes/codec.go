package processes

// The encoding of natural values (processors.Event.Value's Go form) in the
// state: instance variables, recorded compensation commands and buffered
// early events must come back exactly as they went in, so that a command
// field mapped from them is the same value the event carried: a decimal
// stays an exact *big.Rat, an Avro int stays int32, bytes stay bytes.
//
// Format (version 1). Every value is a tag byte and a payload; integers are
// Go's encoding/binary varints (zig-zag for signed):
//
//	0x00 null          (no payload)
//	0x01 false, 0x02 true
//	0x03 int32         varint
//	0x04 int64         varint
//	0x05 float32       4 bytes, IEEE 754 bits, big-endian
//	0x06 float64       8 bytes, IEEE 754 bits, big-endian
//	0x07 string        uvarint length, UTF-8 bytes
//	0x08 bytes         uvarint length, bytes
//	0x09 decimal       sign byte (0 = ≥ 0, 1 = negative), numerator and
//	                   denominator magnitudes as uvarint length + big-endian
//	                   bytes (a *big.Rat, always normalized)
//	0x0A time          varint Unix seconds, uvarint nanoseconds; decoded
//	                   in UTC
//	0x0B list          uvarint count, that many values
//	0x0C map           uvarint count, then count × (uvarint key length, key
//	                   bytes, value), keys in byte order, so equal maps
//	                   encode to equal bytes (the changelog is
//	                   deterministic)
//
// Other Go kinds a CEL result or JSON attribute can have are stored as their
// natural equivalent: signed integers as int64, unsigned ones as int64 (an
// error above MaxInt64), other floats as float64, string kinds (e.g.
// json.Number) as string.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"time"

	"github.com/ordo-dev/ordo/schemas"
)

const (
	tagNull byte = iota
	tagFalse
	tagTrue
	tagInt32
	tagInt64
	tagFloat32
	tagFloat64
	tagString
	tagBytes
	tagDecimal
	tagTime
	tagList
	tagMap
)

// maxDepth bounds nesting on both sides (a value from a decoded Avro record
// is far shallower; a corrupt state value must not overflow the stack).
const maxDepth = 64

func appendValue(dst []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, errors.New("value nested too deeply")
	}
	switch x := v.(type) {
	case nil:
		return append(dst, tagNull), nil
	case bool:
		if x {
			return append(dst, tagTrue), nil
		}
		return append(dst, tagFalse), nil
	case int32:
		return binary.AppendVarint(append(dst, tagInt32), int64(x)), nil
	case int64:
		return binary.AppendVarint(append(dst, tagInt64), x), nil
	case float32:
		return binary.BigEndian.AppendUint32(append(dst, tagFloat32), math.Float32bits(x)), nil
	case float64:
		return binary.BigEndian.AppendUint64(append(dst, tagFloat64), math.Float64bits(x)), nil
	case string:
		return appendString(append(dst, tagString), x), nil
	case []byte:
		dst = binary.AppendUvarint(append(dst, tagBytes), uint64(len(x)))
		return append(dst, x...), nil
	case *big.Rat:
		if x == nil {
			return append(dst, tagNull), nil
		}
		dst = append(dst, tagDecimal)
		if x.Sign() < 0 {
			dst = append(dst, 1)
		} else {
			dst = append(dst, 0)
		}
		for _, b := range [][]byte{x.Num().Bytes(), x.Denom().Bytes()} { // Bytes is the magnitude
			dst = binary.AppendUvarint(dst, uint64(len(b)))
			dst = append(dst, b...)
		}
		return dst, nil
	case time.Time:
		dst = binary.AppendVarint(append(dst, tagTime), x.Unix())
		return binary.AppendUvarint(dst, uint64(x.Nanosecond())), nil
	case []any:
		dst = binary.AppendUvarint(append(dst, tagList), uint64(len(x)))
		var err error
		for i, e := range x {
			if dst, err = appendValue(dst, e, depth+1); err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return dst, nil
	case *schemas.Record: // e.g. an enrich_table row in attrs: stored as its map
		if x == nil {
			return append(dst, tagNull), nil
		}
		return appendValue(dst, x.Natural(), depth)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		dst = binary.AppendUvarint(append(dst, tagMap), uint64(len(x)))
		var err error
		for _, k := range keys {
			dst = appendString(dst, k)
			if dst, err = appendValue(dst, x[k], depth+1); err != nil {
				return nil, fmt.Errorf(".%s: %w", k, err)
			}
		}
		return dst, nil
	}
	// Other kinds: their natural equivalent (see the file comment).
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return appendValue(dst, rv.Int(), depth)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if rv.Uint() > math.MaxInt64 {
			return nil, fmt.Errorf("unsigned %d overflows a long", rv.Uint())
		}
		return appendValue(dst, int64(rv.Uint()), depth)
	case reflect.Float32, reflect.Float64:
		return appendValue(dst, rv.Float(), depth)
	case reflect.String:
		return appendValue(dst, rv.String(), depth)
	}
	return nil, fmt.Errorf("cannot store a %T in process state", v)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(s)))
	return append(dst, s...)
}

// reader decodes values; errors are sticky.
type reader struct {
	b   []byte
	err error
}

var errCorrupt = errors.New("corrupt value")

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{errCorrupt}, args...)...)
	}
}

func (r *reader) byte() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.fail("truncated")
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail("bad uvarint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail("bad varint")
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.fail("length %d beyond the value's end", n)
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) string() string { return string(r.bytes(r.uvarint())) }

// count reads a container length, bounded by the bytes left (every element
// takes at least one byte), so a corrupt length cannot allocate much.
func (r *reader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.fail("count %d beyond the value's end", n)
		return 0
	}
	return int(n)
}

func (r *reader) value(depth int) any {
	if depth > maxDepth {
		r.fail("nested too deeply")
		return nil
	}
	switch tag := r.byte(); tag {
	case tagNull:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagInt32:
		v := r.varint()
		if v < math.MinInt32 || v > math.MaxInt32 {
			r.fail("int32 out of range")
		}
		return int32(v)
	case tagInt64:
		return r.varint()
	case tagFloat32:
		b := r.bytes(4)
		if r.err != nil {
			return nil
		}
		return math.Float32frombits(binary.BigEndian.Uint32(b))
	case tagFloat64:
		b := r.bytes(8)
		if r.err != nil {
			return nil
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b))
	case tagString:
		return r.string()
	case tagBytes:
		return append([]byte{}, r.bytes(r.uvarint())...)
	case tagDecimal:
		neg := r.byte() == 1
		num := new(big.Int).SetBytes(r.bytes(r.uvarint()))
		den := new(big.Int).SetBytes(r.bytes(r.uvarint()))
		if r.err != nil {
			return nil
		}
		if den.Sign() == 0 {
			r.fail("decimal with denominator 0")
			return nil
		}
		if neg {
			num.Neg(num)
		}
		return new(big.Rat).SetFrac(num, den)
	case tagTime:
		sec := r.varint()
		ns := r.uvarint()
		if ns >= 1e9 {
			r.fail("nanoseconds %d out of range", ns)
		}
		return time.Unix(sec, int64(ns)).UTC()
	case tagList:
		n := r.count()
		l := make([]any, 0, n)
		for i := 0; i < n && r.err == nil; i++ {
			l = append(l, r.value(depth+1))
		}
		return l
	case tagMap:
		n := r.count()
		m := make(map[string]any, n)
		for i := 0; i < n && r.err == nil; i++ {
			k := r.string()
			m[k] = r.value(depth + 1)
		}
		return m
	default:
		r.fail("unknown tag 0x%02x", tag)
		return nil
	}
}

// EncodeValue encodes a natural value (see the file comment).
func EncodeValue(v any) ([]byte, error) { return appendValue(nil, v, 0) }

// DecodeValue decodes a value written by EncodeValue.
func DecodeValue(b []byte) (any, error) {
	r := &reader{b: b}
	v := r.value(0)
	if r.err == nil && len(r.b) > 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return nil, r.err
	}
	return v, nil
}
