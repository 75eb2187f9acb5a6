package schemas

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/big"
	"strings"
	"testing"
	"time"
)

const guardSchema = `{"type":"record","name":"G","namespace":"t","fields":[
 {"name":"i","type":"int","default":0},
 {"name":"l","type":"long","default":0},
 {"name":"f","type":"float","default":0},
 {"name":"d","type":"double","default":0},
 {"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":13,"scale":2},"default":"\u0000"},
 {"name":"fdec","type":["null",{"type":"fixed","name":"FD","size":3,"logicalType":"decimal","precision":6,"scale":1}],"default":null},
 {"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"},"default":0},
 {"name":"tsu","type":{"type":"long","logicalType":"timestamp-micros"},"default":0},
 {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]},"default":"A"},
 {"name":"u","type":["null","int","string",{"type":"enum","name":"U","symbols":["X"]},{"type":"bytes","logicalType":"decimal","precision":4,"scale":1}],"default":null}
]}`

func guard(t *testing.T) *Schema { return mustSchema(t, 1, guardSchema) }

func roundTrip(t *testing.T, s *Schema, in map[string]any) map[string]any {
	t.Helper()
	body, err := s.EncodeNatural(in)
	if err != nil {
		t.Fatalf("encode %v: %v", in, err)
	}
	native, err := s.refDecodeNative(body)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	nat, err := refToNatural(s, native)
	if err != nil {
		t.Fatal(err)
	}
	return nat.(map[string]any)
}

func TestFromNaturalIntGuards(t *testing.T) {
	s := guard(t)
	bad := []map[string]any{
		{"i": int64(math.MaxInt32) + 1},
		{"i": math.MinInt32 - 1},
		{"i": 1.5},
		{"i": "1"},
		{"l": uint64(math.MaxUint64)},
		{"l": float64(1 << 63)},
		{"l": math.Inf(1)},
		{"f": 1e39},
		{"f": int64(1<<24) + 1},
		{"d": int64(1<<53) + 1},
	}
	for _, in := range bad {
		if _, err := s.EncodeNatural(in); err == nil {
			t.Errorf("EncodeNatural(%v) should fail", in)
		}
	}
	m := roundTrip(t, s, map[string]any{"i": int64(math.MinInt32), "l": float64(-1 << 53), "f": 2, "d": int32(7)})
	if m["i"] != int32(math.MinInt32) || m["l"] != int64(-1<<53) || m["f"] != float32(2) || m["d"] != float64(7) {
		t.Fatalf("accepted ints: %#v", m)
	}
	if _, err := s.EncodeNatural(map[string]any{"i": uint8(3), "l": 12.0}); err != nil {
		t.Fatal(err)
	}
}

func TestFromNaturalDecimal(t *testing.T) {
	s := guard(t)
	pointOne, pointTwo := 0.1, 0.2 // runtime floats: constant 0.1+0.2 is exactly 0.3
	cases := []struct {
		in   any
		want string // "" = must fail
	}{
		{"12345678901.23", "12345678901.23"},
		{"-0.05", "-0.05"},
		{"1", "1.00"},
		{new(big.Rat).SetFrac64(1, 4), "0.25"},
		{*big.NewRat(3, 2), "1.50"},
		{7, "7.00"},
		{12.34, "12.34"},
		{pointOne + pointTwo, ""}, // 0.30000000000000004: not exact at scale 2
		{"0.001", ""},             // too many fractional digits
		{"1e3", ""},               // only plain decimal literals
		{"1/3", ""},               // no fractions
		{"99999999999.99", "99999999999.99"},
		{"100000000000.00", ""}, // 12 integer digits > precision 13 - scale 2
		{big.NewRat(1, 3), ""},
		{math.NaN(), ""},
	}
	for _, c := range cases {
		body, err := s.EncodeNatural(map[string]any{"dec": c.in})
		if c.want == "" {
			if err == nil {
				t.Errorf("decimal %v should be rejected", c.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("decimal %v: %v", c.in, err)
			continue
		}
		native, err := s.refDecodeNative(body)
		if err != nil {
			t.Fatal(err)
		}
		if got := native.(map[string]any)["dec"].(*big.Rat).FloatString(2); got != c.want {
			t.Errorf("decimal %v round trip = %s, want %s", c.in, got, c.want)
		}
	}
	// Precision > 15 refuses float64 entirely.
	hp := mustSchema(t, 1, rec(`{"name":"x","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":2}}`))
	if _, err := hp.EncodeNatural(map[string]any{"x": 1.5}); err == nil || !strings.Contains(err.Error(), "precision > 15") {
		t.Errorf("float64 into decimal(20,2) must fail, got %v", err)
	}
	// Fixed decimal: value must fit and round trip.
	m := roundTrip(t, s, map[string]any{"fdec": "-12345.6"})
	if m["fdec"].(*big.Rat).FloatString(1) != "-12345.6" {
		t.Errorf("fixed decimal = %v", m["fdec"])
	}
	if _, err := s.EncodeNatural(map[string]any{"fdec": "123456.7"}); err == nil {
		t.Error("fixed decimal beyond precision must fail")
	}
}

func TestFromNaturalTimestamps(t *testing.T) {
	s := guard(t)
	ts := time.Date(2025, 11, 27, 10, 40, 0, 123_000_000, time.FixedZone("CET", 3600))
	tsu := time.Date(1969, 12, 31, 23, 59, 59, 999_999_000, time.UTC)
	m := roundTrip(t, s, map[string]any{"ts": ts, "tsu": tsu})
	got := m["ts"].(time.Time)
	if !got.Equal(ts) || got.Location() != time.UTC {
		t.Errorf("timestamp-millis = %v, want %v in UTC", got, ts)
	}
	if g := m["tsu"].(time.Time); !g.Equal(tsu) {
		t.Errorf("timestamp-micros = %v, want %v", g, tsu)
	}
	m = roundTrip(t, s, map[string]any{"ts": int64(-1), "tsu": 1})
	if g := m["ts"].(time.Time); g.UnixMilli() != -1 {
		t.Errorf("ts from millis = %v", g)
	}
	if _, err := s.EncodeNatural(map[string]any{"ts": "2025-01-01"}); err == nil {
		t.Error("string timestamp must fail")
	}
}

func TestFromNaturalEnumUnionRecord(t *testing.T) {
	s := guard(t)
	if _, err := s.EncodeNatural(map[string]any{"e": "C"}); err == nil || !strings.Contains(err.Error(), "not one of") {
		t.Errorf("bad enum symbol: %v", err)
	}
	if _, err := s.EncodeNatural(map[string]any{"nope": 1}); err == nil || !strings.Contains(err.Error(), `no field "nope"`) {
		t.Errorf("unknown field: %v", err)
	}
	req := mustSchema(t, 1, rec(`{"name":"a","type":"int"}`))
	if _, err := req.EncodeNatural(map[string]any{}); err == nil || !strings.Contains(err.Error(), "a: required field missing") {
		t.Errorf("missing field: %v", err)
	}
	// Union branch selection by Go type.
	for _, c := range []struct {
		in     any
		branch string
	}{
		{nil, ""}, {int32(4), "int"}, {5, "int"}, {"hi", "string"}, {"X", "string"},
		{big.NewRat(5, 2), "bytes.decimal"},
	} {
		native, err := refFromNatural(s, map[string]any{"u": c.in})
		if err != nil {
			t.Errorf("union %v: %v", c.in, err)
			continue
		}
		u := native.(map[string]any)["u"]
		if c.branch == "" {
			if u != nil {
				t.Errorf("nil -> %#v", u)
			}
			continue
		}
		if _, ok := u.(map[string]any)[c.branch]; !ok {
			t.Errorf("union %#v chose %#v, want %s", c.in, u, c.branch)
		}
	}
	// float64 has no exact branch; the decimal(4,1) branch takes 1.5 but
	// not 1.55 (inexact at scale 1).
	native, err := refFromNatural(s, map[string]any{"u": 1.5})
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := native.(map[string]any)["u"].(map[string]any)["bytes.decimal"].(*big.Rat); !ok || r.FloatString(1) != "1.5" {
		t.Errorf("1.5 -> %#v", native.(map[string]any)["u"])
	}
	if _, err := refFromNatural(s, map[string]any{"u": 1.55}); err == nil || !strings.Contains(err.Error(), "no branch accepts float64") {
		t.Errorf("1.55 must fit no branch: %v", err)
	}
	m := roundTrip(t, s, map[string]any{"u": "hi"})
	if m["u"] != "hi" {
		t.Errorf("union natural = %#v", m["u"])
	}
}

func TestDecodeNativeGuards(t *testing.T) {
	s := mustSchema(t, 3, rec(`{"name":"a","type":{"type":"array","items":"null"}},{"name":"i","type":"int"}`))
	// array<null> with a huge count of zero-width items: must be rejected
	// without allocating.
	body := binary.AppendVarint(nil, 1<<40)
	body = append(body, 0, 2)
	if _, err := s.refDecodeNative(body); err == nil || !strings.Contains(err.Error(), "zero-width") {
		t.Fatalf("zero-width bomb: %v", err)
	}
	// small legit count is fine
	body = append(binary.AppendVarint(nil, 3), 0, 2)
	if v, err := s.refDecodeNative(body); err != nil || len(v.(map[string]any)["a"].([]any)) != 3 {
		t.Fatalf("array<null>: %v %v", v, err)
	}
	// int varint overflowing 32 bits (goavro would silently wrap)
	body = append([]byte{0}, 0xff, 0xff, 0xff, 0xff, 0x1f)
	if _, err := s.refDecodeNative(body); err == nil || !strings.Contains(err.Error(), "32 bits") {
		t.Fatalf("int overflow: %v", err)
	}
	// Deeply nested recursive payload is bounded.
	l := mustSchema(t, 4, `{"type":"record","name":"L","fields":[{"name":"next","type":["null","L"]}]}`)
	deep := bytes.Repeat([]byte{2}, 10000)
	deep = append(deep, 0)
	if _, err := l.refDecodeNative(deep); err == nil || !strings.Contains(err.Error(), "nesting") {
		t.Fatalf("deep nesting: %v", err)
	}
	// Bytes are copied by refToNatural, not aliased to the payload.
	bs := mustSchema(t, 5, rec(`{"name":"b","type":"bytes"}`))
	payload := []byte{4, 'a', 'b'}
	native, _ := bs.refDecodeNative(payload)
	nat, _ := refToNatural(bs, native)
	payload[1] = 'z'
	if string(nat.(map[string]any)["b"].([]byte)) != "ab" {
		t.Fatal("natural bytes alias the payload")
	}
}

func TestDecodeRejectsDecimalBeyondPrecision(t *testing.T) {
	s := mustSchema(t, 6, rec(`{"name":"d","type":{"type":"bytes","logicalType":"decimal","precision":3,"scale":0}}`))
	ok := []byte{4, 0x03, 0xe7}  // 999
	bad := []byte{4, 0x03, 0xe8} // 1000
	if _, err := s.refDecodeNative(ok); err != nil {
		t.Fatal(err)
	}
	if _, err := s.refDecodeNative(bad); err == nil || !strings.Contains(err.Error(), "exceeds precision 3") {
		t.Fatalf("want precision error, got %v", err)
	}
}
