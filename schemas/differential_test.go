package schemas

import (
	"fmt"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"
)

// referenceDecode is the original four-pass decode (pre-scan, goavro,
// resolver, natural conversion), kept for BenchmarkDecodeReference. It is
// not independent of the compiled decoder (they share the resolver's
// helpers and the pre-scan), so correctness is checked against hamba/avro
// instead (reference_test.go).
func referenceDecode(w, reader *Schema, body []byte) (map[string]any, error) {
	native, err := w.refDecodeNative(body)
	if err != nil {
		return nil, err
	}
	target := w
	if reader != nil {
		if native, err = refResolve(w, reader, native); err != nil {
			return nil, err
		}
		target = reader
	}
	nat, err := refToNatural(target, native)
	if err != nil {
		return nil, err
	}
	m, ok := nat.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a record")
	}
	return m, nil
}

// referenceEncode is refFromNatural + goavro, the original encoder.
func referenceEncode(s *Schema, v map[string]any) ([]byte, error) {
	native, err := refFromNatural(s, v)
	if err != nil {
		return nil, err
	}
	return s.EncodeNative(nil, native)
}

// resolutionCases pairs writers and readers covering promotions, defaults,
// skipped writer fields (including nested containers), enums, unions on
// either side, logical types and decimals.
var resolutionCases = []struct {
	name, writer, reader string
	values               []map[string]any // natural values of the writer
	// refDiffers says why the reference cannot check this resolution (the
	// encodings and as-written decodes are still compared).
	refDiffers string
}{
	{
		name:   "promotions",
		writer: rec(`{"name":"i","type":"int"},{"name":"l","type":"long"},{"name":"f","type":"float"},{"name":"s","type":"string"},{"name":"b","type":"bytes"}`),
		reader: rec(`{"name":"i","type":"double"},{"name":"l","type":"float"},{"name":"f","type":"double"},{"name":"s","type":"bytes"},{"name":"b","type":"string"}`),
		values: []map[string]any{
			{"i": int32(-7), "l": int64(1 << 40), "f": float32(1.5), "s": "héllo", "b": []byte("raw")},
			{"i": int32(2147483647), "l": int64(-1), "f": float32(-0.25), "s": "", "b": []byte{}},
		},
	},
	{
		name:   "skipped-and-defaults",
		writer: rec(`{"name":"gone","type":{"type":"array","items":{"type":"map","values":["null","string",{"type":"record","name":"G","fields":[{"name":"x","type":"double"}]}]}}},{"name":"keep","type":"string"},{"name":"attrs","type":{"type":"map","values":"string"}}`),
		reader: rec(`{"name":"keep","type":"string"},{"name":"n","type":"int","default":42},{"name":"tags","type":{"type":"array","items":"string"},"default":["a","b"]},{"name":"opt","type":["null","string"],"default":null},{"name":"amt","type":{"type":"bytes","logicalType":"decimal","precision":9,"scale":2},"default":"\u0001"}`),
		values: []map[string]any{
			{"gone": []any{map[string]any{"a": nil, "b": "x", "c": map[string]any{"x": 1.5}}}, "keep": "k", "attrs": map[string]any{"p": "q"}},
			{"gone": []any{}, "keep": "", "attrs": map[string]any{}},
		},
	},
	{
		name:   "enum-default-and-unions",
		writer: rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","NEW"]}},{"name":"u","type":["null","int","string"]},{"name":"plain","type":"long"}`),
		reader: rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","OTHER"],"default":"OTHER"}},{"name":"u","type":["null","long","string"]},{"name":"plain","type":["null","double"]}`),
		values: []map[string]any{
			{"e": "NEW", "u": int32(5), "plain": int64(9)},
			{"e": "A", "u": nil, "plain": int64(-9)},
			{"e": "B", "u": "s", "plain": int64(0)},
		},
	},
	{
		name:   "logical-types",
		writer: rec(`{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"us","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"d","type":{"type":"int","logicalType":"date"}},{"name":"tm","type":{"type":"int","logicalType":"time-millis"}},{"name":"tu","type":{"type":"long","logicalType":"time-micros"}},{"name":"raw","type":"long"},{"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":4}},{"name":"fx","type":{"type":"fixed","name":"F","size":12,"logicalType":"decimal","precision":20,"scale":2}}`),
		reader: rec(`{"name":"ts","type":"long"},{"name":"us","type":{"type":"long","logicalType":"timestamp-micros"}},{"name":"d","type":{"type":"int","logicalType":"date"}},{"name":"tm","type":{"type":"int","logicalType":"time-millis"}},{"name":"tu","type":{"type":"long","logicalType":"time-micros"}},{"name":"raw","type":{"type":"long","logicalType":"timestamp-millis"}},{"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":22,"scale":4}},{"name":"fx","type":{"type":"fixed","name":"F","size":12,"logicalType":"decimal","precision":20,"scale":2}}`),
		values: []map[string]any{
			{"ts": time.UnixMilli(-1234567).UTC(), "us": time.UnixMicro(1700000000123456).UTC(), "d": time.Unix(-86400*3, 0).UTC(), "tm": 1500 * time.Millisecond, "tu": 1500 * time.Microsecond, "raw": int64(1700000000000), "dec": big.NewRat(-123456789012345, 10000), "fx": big.NewRat(-5, 100)},
			{"ts": time.UnixMilli(0).UTC(), "us": time.UnixMicro(-1).UTC(), "d": time.Unix(0, 0).UTC(), "tm": time.Duration(0), "tu": time.Duration(0), "raw": int64(-1), "dec": new(big.Rat), "fx": big.NewRat(99999999999, 1)},
		},
	},
	{
		name:   "two-reader-fields-one-writer-field",
		writer: rec(`{"name":"a","type":"int"},{"name":"s","type":"string"}`),
		reader: rec(`{"name":"a","type":"long"},{"name":"b","type":"double","aliases":["a"]},{"name":"s","type":"string"}`),
		values: []map[string]any{{"a": int32(7), "s": "x"}, {"a": int32(-1), "s": ""}},
		// hamba resolves each writer field into one reader field only; the
		// second reader field ("b", alias of "a") gets "set default" though
		// it has none, and decoding fails. The spec allows both readings.
		refDiffers: "hamba maps a writer field to at most one reader field",
	},
	{
		name:   "recursive",
		writer: `{"type":"record","name":"L","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","L"]}]}`,
		reader: `{"type":"record","name":"L","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","L"]},{"name":"tag","type":"string","default":"t"}]}`,
		values: []map[string]any{
			{"v": int32(1), "next": map[string]any{"v": int32(2), "next": map[string]any{"v": int32(3), "next": nil}}},
		},
		refDiffers: "hamba's resolver recurses without end on recursive schemas",
	},
}

func TestCompiledDecoderReportsFieldPath(t *testing.T) {
	s := mustSchema(t, 9, rec(`{"name":"items","type":{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"sku","type":"string"},{"name":"qty","type":"int"}]}}}`))
	body, err := s.EncodeNatural(map[string]any{"items": []any{
		map[string]any{"sku": "a", "qty": int32(1)},
		map[string]any{"sku": "b", "qty": int32(2)},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// Cut inside items[1].qty.
	_, err = s.decodeNatural(nil, body[:len(body)-2])
	if err == nil || !strings.Contains(err.Error(), "items[1].qty: truncated body reading int at offset") {
		t.Fatalf("want a field path in the error, got %v", err)
	}
}

// TestDirectEncoderMatchesReference checks that the direct encoder accepts
// and rejects exactly what refFromNatural + goavro do, with the same message.
func TestDirectEncoderMatchesReference(t *testing.T) {
	s := mustSchema(t, 3, guardSchema)
	cases := []map[string]any{
		{"i": int64(1) << 40},
		{"i": 1.5},
		{"l": "x"},
		{"e": "NOPE"},
		{"extra": 1},
		{"dec": 0.001},
		{"dec": "123456789012"},
		{"dec": big.NewRat(123456789012, 1)},
		{"fdec": big.NewRat(1000000, 1)},
		{"dec": big.NewRat(1, 3)},
		{"f": 1e39},
		{"u": struct{}{}},
	}
	for i, c := range cases {
		_, rerr := referenceEncode(s, c)
		_, derr := s.EncodeNatural(c)
		if rerr == nil || derr == nil {
			t.Fatalf("case %d (%v): reference err=%v, direct err=%v; both must reject", i, c, rerr, derr)
		}
		if rerr.Error() != derr.Error() {
			t.Fatalf("case %d: messages differ:\nreference: %v\ndirect:    %v", i, rerr, derr)
		}
	}
}

func BenchmarkDecodeReference(b *testing.B) {
	v := loadVectors(b)
	_, body, _ := ParseHeader(mustHex(b, v.Valid[0].PayloadHex))
	w := v.writers[v.Valid[0].WriterSchemaID]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := referenceDecode(w, v.reader, body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncodeReference(b *testing.B) {
	v := loadVectors(b)
	_, body, _ := ParseHeader(mustHex(b, v.Valid[0].PayloadHex))
	d, err := referenceDecode(v.writers[v.Valid[0].WriterSchemaID], v.reader, body)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := referenceEncode(v.reader, d); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSmallRatIsNormalizedAndExact(t *testing.T) {
	for _, c := range [][2]int64{{0, 100}, {5, 100}, {-5, 100}, {129999, 100}, {100, 100}, {-300, 100}, {7, 1}, {123456789, 1000000000000000000}, {math.MaxInt64, 10}, {math.MinInt64 + 1, 1000}} {
		var s scanner
		got := s.smallRat(c[0], c[1])
		want := big.NewRat(c[0], c[1])
		if got.Cmp(want) != 0 || got.Num().Cmp(want.Num()) != 0 || got.Denom().Cmp(want.Denom()) != 0 {
			t.Errorf("smallRat(%d, %d) = %s, want %s", c[0], c[1], got, want)
		}
		if got.FloatString(4) != want.FloatString(4) || got.IsInt() != want.IsInt() {
			t.Errorf("smallRat(%d, %d) behaves differently from big.NewRat", c[0], c[1])
		}
	}
}
