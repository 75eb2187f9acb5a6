package schemas

import (
	"bytes"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"
)

func mustSchema(t testing.TB, id int, text string) *Schema {
	t.Helper()
	s, err := ParseSchema(id, text)
	if err != nil {
		t.Fatalf("ParseSchema(%s): %v", text, err)
	}
	return s
}

// resolveVia encodes natural with writer, decodes it, resolves it to reader
// and returns reader's textual JSON (checking reader codec accepts it).
func resolveVia(t *testing.T, writer, reader *Schema, natural map[string]any) (any, error) {
	t.Helper()
	body, err := writer.EncodeNatural(natural)
	if err != nil {
		t.Fatalf("encode: %v", err)
	}
	native, err := writer.refDecodeNative(body)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	out, err := refResolve(writer, reader, native)
	if err != nil {
		return nil, err
	}
	if _, err := reader.Codec().BinaryFromNative(nil, out); err != nil {
		t.Fatalf("resolved value not valid for reader codec: %v (%#v)", err, out)
	}
	return out, nil
}

func rec(fields string) string {
	return `{"type":"record","name":"R","namespace":"t","fields":[` + fields + `]}`
}

func TestResolvePromotions(t *testing.T) {
	w := mustSchema(t, 1, rec(`{"name":"i2l","type":"int"},{"name":"i2f","type":"int"},{"name":"i2d","type":"int"},
		{"name":"l2f","type":"long"},{"name":"l2d","type":"long"},{"name":"f2d","type":"float"},
		{"name":"s2b","type":"string"},{"name":"b2s","type":"bytes"}`))
	r := mustSchema(t, 0, rec(`{"name":"i2l","type":"long"},{"name":"i2f","type":"float"},{"name":"i2d","type":"double"},
		{"name":"l2f","type":"float"},{"name":"l2d","type":"double"},{"name":"f2d","type":"double"},
		{"name":"s2b","type":"bytes"},{"name":"b2s","type":"string"}`))
	out, err := resolveVia(t, w, r, map[string]any{
		"i2l": -7, "i2f": 3, "i2d": 2147483647, "l2f": int64(1 << 40), "l2d": int64(-1 << 53),
		"f2d": float32(1.5), "s2b": "héllo", "b2s": []byte("wörld"),
	})
	if err != nil {
		t.Fatal(err)
	}
	m := out.(map[string]any)
	want := map[string]any{
		"i2l": int64(-7), "i2f": float32(3), "i2d": float64(2147483647), "l2f": float32(1 << 40),
		"l2d": float64(-1 << 53), "f2d": float64(1.5),
	}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %#v (%T), want %#v (%T)", k, m[k], m[k], v, v)
		}
	}
	if !bytes.Equal(m["s2b"].([]byte), []byte("héllo")) || m["b2s"] != "wörld" {
		t.Errorf("string<->bytes: %#v %#v", m["s2b"], m["b2s"])
	}
}

func TestResolveNotPromotable(t *testing.T) {
	w := mustSchema(t, 1, rec(`{"name":"a","type":"long"}`))
	r := mustSchema(t, 0, rec(`{"name":"a","type":"int"}`))
	_, err := resolveVia(t, w, r, map[string]any{"a": 1})
	if err == nil || !strings.Contains(err.Error(), "long cannot be read as int") {
		t.Fatalf("long->int must fail, got %v", err)
	}
}

func TestResolveDefaultsAndIgnoredFields(t *testing.T) {
	w := mustSchema(t, 1, rec(`{"name":"keep","type":"string"},{"name":"dropme","type":"int"},
		{"name":"items","type":{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"a","type":"int"},{"name":"gone","type":"string"}]}}},
		{"name":"m","type":{"type":"map","values":{"type":"record","name":"V","fields":[{"name":"x","type":"int"},{"name":"y","type":"int"}]}}}`))
	r := mustSchema(t, 0, rec(`{"name":"keep","type":"string"},
		{"name":"items","type":{"type":"array","items":{"type":"record","name":"I","fields":[{"name":"a","type":"long"},{"name":"added","type":"string","default":"d"}]}}},
		{"name":"m","type":{"type":"map","values":{"type":"record","name":"V","fields":[{"name":"y","type":"int"}]}}},
		{"name":"n","type":"int","default":42},
		{"name":"dec","type":{"type":"bytes","logicalType":"decimal","precision":5,"scale":2},"default":"\u0001\u0000"},
		{"name":"ts","type":{"type":"long","logicalType":"timestamp-millis"},"default":1000},
		{"name":"arr","type":{"type":"array","items":"int"},"default":[1,2]},
		{"name":"opt","type":["null","string"],"default":null},
		{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]},"default":"B"},
		{"name":"sub","type":{"type":"record","name":"S","fields":[{"name":"q","type":"int","default":5}]},"default":{}}`))
	out, err := resolveVia(t, w, r, map[string]any{
		"keep": "k", "dropme": 1,
		"items": []any{map[string]any{"a": 1, "gone": "x"}, map[string]any{"a": 2, "gone": "y"}},
		"m":     map[string]any{"k": map[string]any{"x": 1, "y": 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	nat, err := refToNatural(r, out)
	if err != nil {
		t.Fatal(err)
	}
	m := nat.(map[string]any)
	if _, ok := m["dropme"]; ok {
		t.Error("ignored writer field present")
	}
	items := m["items"].([]any)
	if it := items[1].(map[string]any); it["a"] != int64(2) || it["added"] != "d" || it["gone"] != nil {
		t.Errorf("nested array item: %#v", it)
	}
	if v := m["m"].(map[string]any)["k"].(map[string]any); len(v) != 1 || v["y"] != int32(2) {
		t.Errorf("nested map value: %#v", v)
	}
	if m["n"] != int32(42) || m["opt"] != nil || m["e"] != "B" {
		t.Errorf("defaults: n=%#v opt=%#v e=%#v", m["n"], m["opt"], m["e"])
	}
	if d := m["dec"].(*big.Rat); d.FloatString(2) != "2.56" {
		t.Errorf("decimal default = %s, want 2.56 (0x0100 at scale 2)", d.FloatString(2))
	}
	if ts := m["ts"].(time.Time); !ts.Equal(time.UnixMilli(1000)) {
		t.Errorf("ts default = %v", ts)
	}
	if a := m["arr"].([]any); len(a) != 2 || a[0] != int32(1) {
		t.Errorf("array default = %#v", a)
	}
	if s := m["sub"].(map[string]any); s["q"] != int32(5) {
		t.Errorf("record default = %#v", s)
	}
	// Defaults must not be shared between results.
	m["arr"].([]any)[0] = int32(99)
	out2, _ := resolveVia(t, w, r, map[string]any{"keep": "k", "dropme": 1, "items": []any{}, "m": map[string]any{}})
	if out2.(map[string]any)["arr"].([]any)[0] != int32(1) {
		t.Error("default value aliased across resolutions")
	}
}

func TestResolveMissingDefaultIsError(t *testing.T) {
	w := mustSchema(t, 1, rec(`{"name":"a","type":"int"}`))
	r := mustSchema(t, 0, rec(`{"name":"a","type":"int"},{"name":"b","type":"string"}`))
	_, err := resolveVia(t, w, r, map[string]any{"a": 1})
	if err == nil || !strings.Contains(err.Error(), "b: reader field missing in writer") {
		t.Fatalf("want missing-default error naming field b, got %v", err)
	}
}

func TestResolveEnum(t *testing.T) {
	w := mustSchema(t, 1, rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}}`))
	withDef := mustSchema(t, 0, rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","Z"],"default":"Z"}}`))
	noDef := mustSchema(t, 0, rec(`{"name":"e","type":{"type":"enum","name":"E","symbols":["A","Z"]}}`))
	out, err := resolveVia(t, w, withDef, map[string]any{"e": "C"})
	if err != nil || out.(map[string]any)["e"] != "Z" {
		t.Fatalf("unknown symbol -> reader default: %v %v", out, err)
	}
	out, err = resolveVia(t, w, noDef, map[string]any{"e": "A"})
	if err != nil || out.(map[string]any)["e"] != "A" {
		t.Fatalf("known symbol: %v %v", out, err)
	}
	if _, err = resolveVia(t, w, noDef, map[string]any{"e": "B"}); err == nil || !strings.Contains(err.Error(), `"B"`) {
		t.Fatalf("unknown symbol without default must fail, got %v", err)
	}
}

func TestResolveUnions(t *testing.T) {
	// writer non-union -> reader union (with promotion into a later branch)
	w := mustSchema(t, 1, rec(`{"name":"a","type":"int"},{"name":"b","type":"string"}`))
	r := mustSchema(t, 0, rec(`{"name":"a","type":["null","string","long"]},{"name":"b","type":["null","string"]}`))
	out, err := resolveVia(t, w, r, map[string]any{"a": 5, "b": "x"})
	if err != nil {
		t.Fatal(err)
	}
	m := out.(map[string]any)
	if a := m["a"].(map[string]any); a["long"] != int64(5) {
		t.Errorf("int -> [null,string,long] = %#v", m["a"])
	}
	if b := m["b"].(map[string]any); b["string"] != "x" {
		t.Errorf("string -> [null,string] = %#v", m["b"])
	}

	// writer union -> reader non-union: works for matching branches, errors
	// only when the data uses a branch the reader cannot take.
	w2 := mustSchema(t, 2, rec(`{"name":"a","type":["null","int","string"]}`))
	r2 := mustSchema(t, 0, rec(`{"name":"a","type":"long"}`))
	out, err = resolveVia(t, w2, r2, map[string]any{"a": int32(9)})
	if err != nil || out.(map[string]any)["a"] != int64(9) {
		t.Fatalf("[null,int,string] int -> long: %v %v", out, err)
	}
	if _, err = resolveVia(t, w2, r2, map[string]any{"a": "s"}); err == nil {
		t.Fatal("string branch -> long must fail")
	}
	if _, err = resolveVia(t, w2, r2, map[string]any{"a": nil}); err == nil {
		t.Fatal("null branch -> long must fail")
	}

	// union -> union with named types matched by unqualified name.
	w3 := mustSchema(t, 3, `{"type":"record","name":"R","namespace":"w","fields":[{"name":"a","type":["null",{"type":"record","name":"P","fields":[{"name":"x","type":"int"}]}]}]}`)
	r3 := mustSchema(t, 0, `{"type":"record","name":"R","namespace":"r","fields":[{"name":"a","type":["null","string",{"type":"record","name":"P","fields":[{"name":"x","type":"double"}]}]}]}`)
	out, err = resolveVia(t, w3, r3, map[string]any{"a": map[string]any{"x": 3}})
	if err != nil {
		t.Fatal(err)
	}
	if p := out.(map[string]any)["a"].(map[string]any)["r.P"].(map[string]any); p["x"] != float64(3) {
		t.Errorf("union record: %#v", p)
	}
	out, err = resolveVia(t, w3, r3, map[string]any{"a": nil})
	if err != nil || out.(map[string]any)["a"] != nil {
		t.Fatalf("null branch: %v %v", out, err)
	}
}

func TestResolveNamedMismatchAndFixed(t *testing.T) {
	w := mustSchema(t, 1, rec(`{"name":"f","type":{"type":"fixed","name":"F","size":2}}`))
	ok := mustSchema(t, 0, rec(`{"name":"f","type":{"type":"fixed","name":"F","size":2}}`))
	size := mustSchema(t, 0, rec(`{"name":"f","type":{"type":"fixed","name":"F","size":3}}`))
	name := mustSchema(t, 0, rec(`{"name":"f","type":{"type":"fixed","name":"G","size":2}}`))
	alias := mustSchema(t, 0, rec(`{"name":"f","type":{"type":"fixed","name":"G","aliases":["F"],"size":2}}`))
	if out, err := resolveVia(t, w, ok, map[string]any{"f": []byte("ab")}); err != nil || string(out.(map[string]any)["f"].([]byte)) != "ab" {
		t.Fatalf("fixed: %v %v", out, err)
	}
	if _, err := resolveVia(t, w, alias, map[string]any{"f": []byte("ab")}); err != nil {
		t.Fatalf("fixed via alias: %v", err)
	}
	for _, r := range []*Schema{size, name} {
		if _, err := resolveVia(t, w, r, map[string]any{"f": []byte("ab")}); err == nil {
			t.Fatalf("fixed mismatch must fail: %s", r.Text)
		}
	}
}

func TestResolveRecursive(t *testing.T) {
	w := mustSchema(t, 1, `{"type":"record","name":"L","fields":[{"name":"v","type":"int"},{"name":"next","type":["null","L"]}]}`)
	r := mustSchema(t, 0, `{"type":"record","name":"L","fields":[{"name":"v","type":"long"},{"name":"next","type":["null","L"]}]}`)
	out, err := resolveVia(t, w, r, map[string]any{"v": 1, "next": map[string]any{"v": 2, "next": nil}})
	if err != nil {
		t.Fatal(err)
	}
	nat, _ := refToNatural(r, out)
	b, _ := json.Marshal(nat)
	if string(b) != `{"next":{"next":null,"v":2},"v":1}` {
		t.Fatalf("recursive: %s", b)
	}
}

func TestResolveIdenticalIsCachedNoop(t *testing.T) {
	s := mustSchema(t, 1, rec(`{"name":"a","type":"int"}`))
	s2 := mustSchema(t, 0, rec(`{"name":"a","type":"int"}`))
	native := map[string]any{"a": int32(1)}
	out, err := refResolve(s, s2, native)
	if err != nil || out.(map[string]any)["a"] != int32(1) {
		t.Fatal(out, err)
	}
	r1, _ := s.resolverFor(s2)
	if r1 != nil {
		t.Fatal("identical schemas should need no resolver")
	}
}
