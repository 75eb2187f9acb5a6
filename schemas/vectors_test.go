package schemas

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

const vectorsRel = "shared/vectors/avro/confluent-avro.json"

type vectorFile struct {
	Subject      string                     `json:"subject"`
	Writers      map[string]json.RawMessage `json:"writers"`
	ReaderSchema json.RawMessage            `json:"reader_schema"`
	Valid        []struct {
		Name           string          `json:"name"`
		WriterSchemaID int             `json:"writer_schema_id"`
		WriterVersion  int             `json:"writer_version"`
		PayloadHex     string          `json:"payload_hex"`
		WriterJSON     json.RawMessage `json:"writer_json"`
		ReaderJSON     json.RawMessage `json:"reader_json"`
	} `json:"valid"`
	Invalid []struct {
		Name       string `json:"name"`
		PayloadHex string `json:"payload_hex"`
		Why        string `json:"why"`
	} `json:"invalid"`
}

// vectorsCopy is the repo's copy of the shared interop vectors: the tests
// must pass in a clone without ../shared. TestVectorsCopyMatchesShared
// keeps it equal to the shared file when that is checked out.
const vectorsCopy = "testdata/vectors/confluent-avro.json"

// findVectors returns the repo's copy of the interop vectors.
func findVectors(tb testing.TB) string {
	tb.Helper()
	if _, err := os.Stat(vectorsCopy); err != nil {
		tb.Fatalf("interop vectors %s missing: copy ../shared/%s there", vectorsCopy, vectorsRel)
	}
	return vectorsCopy
}

// sharedVectors finds the shared vectors above the package directory (a
// sibling of the repo root), "" when they are not checked out.
func sharedVectors(tb testing.TB) string {
	tb.Helper()
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		p := filepath.Join(dir, vectorsRel)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		if filepath.Dir(dir) == dir {
			return ""
		}
	}
}

// TestVectorsCopyMatchesShared: the copy in testdata is byte-equal to the
// shared vectors when they are checked out next to the repo.
func TestVectorsCopyMatchesShared(t *testing.T) {
	shared := sharedVectors(t)
	if shared == "" {
		t.Skipf("../%s is not checked out next to the repo: nothing to compare %s with", vectorsRel, vectorsCopy)
	}
	a, err := os.ReadFile(shared)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(vectorsCopy)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatalf("%s differs from %s: copy the shared file again (cp %s %s)", vectorsCopy, shared, shared, vectorsCopy)
	}
}

type vectors struct {
	vectorFile
	writers map[int]*Schema
	reader  *Schema
}

func loadVectors(tb testing.TB) *vectors {
	tb.Helper()
	b, err := os.ReadFile(findVectors(tb))
	if err != nil {
		tb.Fatal(err)
	}
	v := &vectors{writers: map[int]*Schema{}}
	if err := json.Unmarshal(b, &v.vectorFile); err != nil {
		tb.Fatalf("parse vectors: %v", err)
	}
	for ids, raw := range v.Writers {
		id, err := strconv.Atoi(ids)
		if err != nil {
			tb.Fatalf("writer id %q: %v", ids, err)
		}
		s, err := ParseSchema(id, string(raw))
		if err != nil {
			tb.Fatalf("writer %d: %v", id, err)
		}
		v.writers[id] = s
	}
	if v.reader, err = ParseSchema(0, string(v.ReaderSchema)); err != nil {
		tb.Fatalf("reader schema: %v", err)
	}
	if len(v.Valid) == 0 || len(v.Invalid) == 0 || len(v.writers) == 0 {
		tb.Fatalf("vectors file is missing cases: %d valid, %d invalid, %d writers", len(v.Valid), len(v.Invalid), len(v.writers))
	}
	return v
}

func mustHex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// parseJSONExact parses JSON keeping numbers as json.Number.
func parseJSONExact(tb testing.TB, b []byte) any {
	tb.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		tb.Fatalf("parse JSON %s: %v", b, err)
	}
	return v
}

// jsonDiff compares two JSON trees; numbers are compared as exact
// rationals (so 0.75 == 0.750 but 0.1 != 0.1000001), strings byte-exact.
func jsonDiff(path string, got, want any) string {
	switch w := want.(type) {
	case json.Number:
		g, ok := got.(json.Number)
		if !ok {
			return path + ": got " + reflect.TypeOf(got).String() + ", want number " + string(w)
		}
		gr, ok1 := new(big.Rat).SetString(string(g))
		wr, ok2 := new(big.Rat).SetString(string(w))
		if !ok1 || !ok2 || gr.Cmp(wr) != 0 {
			return path + ": got " + string(g) + ", want " + string(w)
		}
		return ""
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return path + ": got " + typeName(got) + ", want object"
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			gv, gok := g[k]
			wv, wok := w[k]
			if gok != wok {
				return path + "." + k + ": present in got=" + strconv.FormatBool(gok) + " want=" + strconv.FormatBool(wok)
			}
			if d := jsonDiff(path+"."+k, gv, wv); d != "" {
				return d
			}
		}
		return ""
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return path + ": array mismatch: got " + typeName(got)
		}
		for i := range w {
			if d := jsonDiff(path+"["+strconv.Itoa(i)+"]", g[i], w[i]); d != "" {
				return d
			}
		}
		return ""
	default:
		if !reflect.DeepEqual(got, want) {
			return path + ": got " + strconv.Quote(toString(got)) + ", want " + strconv.Quote(toString(want))
		}
		return ""
	}
}

func typeName(v any) string {
	if v == nil {
		return "null"
	}
	return reflect.TypeOf(v).String()
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestVectorsValid: every valid vector decodes with its writer schema,
// renders to exactly writer_json, resolves to the reader schema and renders
// to exactly reader_json (Avro JSON encoding: bytes as code points, unions
// wrapped, decimals as their two's complement bytes).
func TestVectorsValid(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.Valid {
		t.Run(c.Name, func(t *testing.T) {
			frame := mustHex(t, c.PayloadHex)
			id, body, err := ParseHeader(frame)
			if err != nil {
				t.Fatal(err)
			}
			if id != c.WriterSchemaID {
				t.Fatalf("header id %d, want %d", id, c.WriterSchemaID)
			}
			w := v.writers[id]
			native, err := w.refDecodeNative(body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			wtext, err := w.Codec().TextualFromNative(nil, native)
			if err != nil {
				t.Fatalf("writer textual: %v", err)
			}
			if d := jsonDiff("$", parseJSONExact(t, wtext), parseJSONExact(t, c.WriterJSON)); d != "" {
				t.Fatalf("writer JSON mismatch: %s\n got: %s\nwant: %s", d, wtext, c.WriterJSON)
			}
			// Re-encoding the writer native must give back the same datum
			// (bytes may differ only in map entry order, which Go randomizes).
			re, err := w.EncodeNative(nil, native)
			if err != nil || len(re) != len(body) {
				t.Fatalf("writer re-encode: err=%v\n got %x\nwant %x", err, re, body)
			}
			reNative, err := w.refDecodeNative(re)
			if err != nil {
				t.Fatal(err)
			}
			reText, _ := w.Codec().TextualFromNative(nil, reNative)
			if d := jsonDiff("$", parseJSONExact(t, reText), parseJSONExact(t, c.WriterJSON)); d != "" {
				t.Fatalf("writer re-encode changed value: %s", d)
			}

			rnative, err := refResolve(w, v.reader, native)
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			rtext, err := v.reader.Codec().TextualFromNative(nil, rnative)
			if err != nil {
				t.Fatalf("reader textual: %v", err)
			}
			if d := jsonDiff("$", parseJSONExact(t, rtext), parseJSONExact(t, c.ReaderJSON)); d != "" {
				t.Fatalf("reader JSON mismatch: %s\n got: %s\nwant: %s", d, rtext, c.ReaderJSON)
			}
			// The resolved native is valid for the reader codec in binary too.
			rb, err := v.reader.EncodeNative(nil, rnative)
			if err != nil {
				t.Fatalf("reader binary encode: %v", err)
			}
			back, err := v.reader.refDecodeNative(rb)
			if err != nil {
				t.Fatalf("reader binary decode: %v", err)
			}
			btext, _ := v.reader.Codec().TextualFromNative(nil, back)
			if d := jsonDiff("$", parseJSONExact(t, btext), parseJSONExact(t, rtext)); d != "" {
				t.Fatalf("reader binary round trip changed value: %s", d)
			}
		})
	}
}

// TestVectorsDecimalValues pins the decimal interpretation: goavro renders
// bytes.decimal textually as raw two's complement bytes, which the JSON
// comparison checks; here the *big.Rat values are checked directly.
func TestVectorsDecimalValues(t *testing.T) {
	v := loadVectors(t)
	want := map[string]string{"typical": "1299.99", "edge-values": "-0.05"}
	for _, c := range v.Valid {
		exp, ok := want[c.Name]
		if !ok {
			continue
		}
		_, body, _ := ParseHeader(mustHex(t, c.PayloadHex))
		native, err := v.writers[c.WriterSchemaID].refDecodeNative(body)
		if err != nil {
			t.Fatal(err)
		}
		got := native.(map[string]any)["total"].(*big.Rat)
		if got.FloatString(2) != exp {
			t.Errorf("%s: total = %s, want %s", c.Name, got.FloatString(2), exp)
		}
	}
}

// newFakeSR starts an srfake registry seeded with the vector writers at
// their ids.
func newFakeSR(t testing.TB, v *vectors) (*srfake.Registry, *sr.Client) {
	t.Helper()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	if v != nil {
		for _, c := range v.Valid {
			if _, ok := fake.GetSchema(v.Subject, c.WriterVersion); ok {
				continue
			}
			fake.SeedSchema(v.Subject, c.WriterVersion, c.WriterSchemaID, sr.Schema{Schema: v.writers[c.WriterSchemaID].Text})
		}
	}
	cl, err := sr.NewClient(sr.URLs(fake.URL()))
	if err != nil {
		t.Fatal(err)
	}
	return fake, cl
}

// TestVectorsSerde runs the valid vectors through the full Serde path
// (registry fetch, decode, resolve, natural) and checks natural values.
func TestVectorsSerde(t *testing.T) {
	v := loadVectors(t)
	_, cl := newFakeSR(t, v)
	s := NewSerde(NewRegistry(cl), map[string]*Schema{v.reader.FullName: v.reader}, WithAutoRegister(false))
	ctx := context.Background()
	for _, c := range v.Valid {
		d, err := s.Decode(ctx, "checkout.orders.v1", mustHex(t, c.PayloadHex))
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		if d.SchemaID != c.WriterSchemaID || d.Type != "com.acme.checkout.OrderPlaced" {
			t.Fatalf("%s: got id %d type %s", c.Name, d.SchemaID, d.Type)
		}
		// Natural form must re-encode with the reader schema and render to
		// exactly reader_json.
		body, err := v.reader.EncodeNatural(d.Value)
		if err != nil {
			t.Fatalf("%s: re-encode natural: %v", c.Name, err)
		}
		native, err := v.reader.refDecodeNative(body)
		if err != nil {
			t.Fatal(err)
		}
		text, _ := v.reader.Codec().TextualFromNative(nil, native)
		if diff := jsonDiff("$", parseJSONExact(t, text), parseJSONExact(t, c.ReaderJSON)); diff != "" {
			t.Fatalf("%s: natural round trip: %s", c.Name, diff)
		}
	}
	// Spot-check natural types on the first two vectors.
	d0, _ := s.Decode(ctx, "checkout.orders.v1", mustHex(t, v.Valid[0].PayloadHex))
	m := d0.Value
	if got := m["total"].(*big.Rat).FloatString(2); got != "1299.99" {
		t.Errorf("total = %s", got)
	}
	if got := m["occurred_at"].(time.Time); !got.Equal(time.UnixMilli(1764240000123)) || got.Location() != time.UTC {
		t.Errorf("occurred_at = %v", got)
	}
	if m["note"] != "leave at door 🚪" || m["channel"] != nil || m["priority"] != int32(3) || m["score"] != float64(0.75) || m["weight_grams"] != int64(1200) {
		t.Errorf("unexpected natural values: note=%#v channel=%#v priority=%#v score=%#v weight=%#v", m["note"], m["channel"], m["priority"], m["score"], m["weight_grams"])
	}
	items := m["items"].([]any)
	if it := items[0].(map[string]any); it["qty"] != int64(2) || len(it) != 2 {
		t.Errorf("items[0] = %#v", it)
	}
	if _, ok := m["shipping"]; ok {
		t.Errorf("writer-only field leaked into reader view")
	}
	d1, _ := s.Decode(ctx, "checkout.orders.v1", mustHex(t, v.Valid[1].PayloadHex))
	if d1.Value["currency"] != "OTHER" {
		t.Errorf("CHF should resolve to reader enum default OTHER, got %v", d1.Value["currency"])
	}
	for _, c := range v.Valid {
		if c.Name == "v2-defaults" {
			d, _ := s.Decode(ctx, "checkout.orders.v1", mustHex(t, c.PayloadHex))
			if d.Value["channel"] != "OTHER" {
				t.Errorf("STORE should resolve to OTHER inside reader union, got %v", d.Value["channel"])
			}
		}
	}
}

// TestVectorsInvalid: every invalid vector fails through Serde with a
// non-empty error, never panics, and allocates little (the allocation bomb
// must not allocate its declared size).
func TestVectorsInvalid(t *testing.T) {
	v := loadVectors(t)
	_, cl := newFakeSR(t, v)
	s := NewSerde(NewRegistry(cl), map[string]*Schema{v.reader.FullName: v.reader}, WithAutoRegister(false))
	ctx := context.Background()
	// Warm the schema cache so allocation numbers measure decoding only.
	for id := range v.writers {
		if _, err := s.reg.SchemaByID(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range v.Invalid {
		t.Run(c.Name, func(t *testing.T) {
			payload := mustHex(t, c.PayloadHex)
			var ms0, ms1 runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&ms0)
			var err error
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("panic: %v", r)
					}
				}()
				_, err = s.Decode(ctx, "checkout.orders.v1", payload)
			}()
			runtime.ReadMemStats(&ms1)
			if err == nil || err.Error() == "" {
				t.Fatalf("%s (%s): want error, got %v", c.Name, c.Why, err)
			}
			t.Logf("%s: %v", c.Name, err)
			if alloc := ms1.TotalAlloc - ms0.TotalAlloc; alloc > 1<<20 {
				t.Fatalf("allocated %d bytes decoding %s", alloc, c.Name)
			}
			var unknown *UnknownSchemaError
			var malformed *MalformedError
			if c.Name == "unknown-schema-id" {
				if !errors.As(err, &unknown) || unknown.ID != 999999 {
					t.Fatalf("want *UnknownSchemaError for id 999999, got %T %v", err, err)
				}
			} else if !errors.As(err, &malformed) {
				t.Fatalf("want *MalformedError, got %T %v", err, err)
			}
			if te, ok := err.(interface{ Transient() bool }); !ok || te.Transient() {
				t.Fatalf("invalid payload must be a permanent error, got %T", err)
			}
			wantSub := map[string]string{
				"empty":                  "empty payload",
				"magic-byte-1":           "magic byte 0x01",
				"header-only":            "body missing",
				"truncated-body":         "truncated",
				"string-length-negative": "negative length",
				"array-length-huge":      "block count",
				"varint-overlong":        "longer than 10 bytes",
				"garbage-body":           "offset",
				"trailing-bytes":         "trailing bytes",
			}[c.Name]
			if wantSub != "" && !strings.Contains(err.Error(), wantSub) {
				t.Fatalf("error %q should mention %q", err, wantSub)
			}
			if malformed != nil && malformed.Offset > 0 && malformed.SchemaID == 1 && c.Name != "header-only" && !strings.Contains(err.Error(), "schema id 1 (com.acme.checkout.OrderPlaced)") {
				t.Fatalf("error %q should name the writer schema", err)
			}
		})
	}
}
