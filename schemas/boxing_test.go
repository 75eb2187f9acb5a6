package schemas

import (
	"fmt"
	"math/big"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"
)

// The decoder boxes scalars into chunks shared by a datum's values
// (internal/box) and takes decimals from shared chunks. These tests check
// what that must never break: every datum keeps its own values after later
// decodes and a GC, a decimal changed in place changes nothing else, and
// the allocations stay bounded.

const boxingSchema = `{"type":"record","name":"Boxed","fields":[
 {"name":"s","type":"string"},
 {"name":"l","type":"long"},
 {"name":"i","type":"int"},
 {"name":"d","type":"double"},
 {"name":"f","type":"float"},
 {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}},
 {"name":"day","type":{"type":"int","logicalType":"date"}},
 {"name":"items","type":{"type":"array","items":{"type":"record","name":"Item","fields":[
   {"name":"sku","type":"string"},
   {"name":"price","type":{"type":"bytes","logicalType":"decimal","precision":12,"scale":2}},
   {"name":"n","type":"long"}]}}}]}`

func boxingDatum(i int) map[string]any {
	items := make([]any, i%4)
	for k := range items {
		items[k] = map[string]any{
			"sku":   fmt.Sprintf("sku-%d-%d", i, k),
			"price": big.NewRat(int64(100*i+k+1), 100),
			"n":     int64(1000 + i*7 + k),
		}
	}
	return map[string]any{
		"s": fmt.Sprintf("datum-%d", i), "l": int64(1)<<40 + int64(i), "i": int32(300 + i),
		"d": float64(i) + 0.25, "f": float32(i) + 0.5,
		"t":     time.UnixMilli(1700000000000 + int64(i)).UTC(),
		"day":   time.Unix(int64(19000+i)*86400, 0).UTC(),
		"items": items,
	}
}

func TestDecodedDatumsKeepTheirOwnValues(t *testing.T) {
	s := mustSchema(t, 1, boxingSchema)
	t.Run("maps", func(t *testing.T) { datumsKeepTheirOwnValues(t, s, s.decodeNatural) })
	// Record mode: records and their slots come from chunks of the datum.
	t.Run("records", func(t *testing.T) { datumsKeepTheirOwnValues(t, s, s.decodeRecord) })
}

func datumsKeepTheirOwnValues(t *testing.T, s *Schema, decode func(*Schema, []byte) (any, error)) {
	const n = 200
	got := make([]any, n)
	// Four goroutines decode at once through the pooled scanners, whose
	// chunks the datums they decode in turn share (see decProgram.scanner).
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < n; i += 4 {
				body, err := s.EncodeNatural(boxingDatum(i))
				if err == nil {
					got[i], err = decode(s, body)
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	runtime.GC()
	for i := range n {
		got[i] = naturalSlot(got[i]) // maps for records (scalars shared)
		if want := boxingDatum(i); !naturalEqual(got[i], want) {
			t.Fatalf("datum %d after %d later decodes and a GC:\n got %v\nwant %v", i, n-i-1, got[i], want)
		}
	}
	// A decimal changed in place (processors may do arithmetic on the
	// *big.Rat they get) leaves every other decimal as it was.
	var rats []*big.Rat
	for i := range n {
		for _, it := range got[i].(map[string]any)["items"].([]any) {
			rats = append(rats, it.(map[string]any)["price"].(*big.Rat))
		}
	}
	before := make([]string, len(rats))
	for k, r := range rats {
		before[k] = r.String()
	}
	huge := new(big.Rat).SetFrac(new(big.Int).Lsh(big.NewInt(1), 200), big.NewInt(3)) // needs many words
	rats[0].Add(rats[0], huge)
	for k := 1; k < len(rats); k++ {
		if rats[k].String() != before[k] {
			t.Fatalf("decimal %d changed from %s to %s when decimal 0 was changed in place", k, before[k], rats[k])
		}
	}
}

// Datums decoded one after another share chunks; a record's slots are
// still its own: setting every field of some datums' records changes no
// other datum.
func TestRecordSetChangesOnlyItsDatum(t *testing.T) {
	s := mustSchema(t, 1, boxingSchema)
	const n = 40
	got := make([]*Record, n)
	for i := range n {
		body, err := s.EncodeNatural(boxingDatum(i))
		if err != nil {
			t.Fatal(err)
		}
		v, err := s.decodeRecord(s, body)
		if err != nil {
			t.Fatal(err)
		}
		got[i] = v.(*Record)
	}
	for i := 0; i < n; i += 2 {
		// Arrays' elements share the slot chunk too: writing and appending
		// to one reaches no neighbour.
		items, _ := got[i].Get("items")
		if l := items.([]any); len(l) > 0 {
			l[0] = "changed"
			if cap(l) != len(l) {
				t.Fatalf("datum %d: items has capacity %d > length %d: an append would write into a neighbour's slots", i, cap(l), len(l))
			}
			_ = append(l, "appended")
		}
		for _, name := range []string{"s", "l", "i", "d", "f", "t", "day", "items"} {
			if !got[i].Set(name, "changed") {
				t.Fatalf("datum %d: no field %q", i, name)
			}
		}
	}
	runtime.GC()
	for i := 1; i < n; i += 2 {
		if v, want := got[i].Natural(), boxingDatum(i); !naturalEqual(v, want) {
			t.Fatalf("datum %d changed when its neighbours' fields were set:\n got %v\nwant %v", i, v, want)
		}
	}
}

// naturalEqual is reflect.DeepEqual with decimals compared by value.
func naturalEqual(a, b any) bool {
	switch x := a.(type) {
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if !naturalEqual(v, y[k]) {
				return false
			}
		}
		return true
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k := range x {
			if !naturalEqual(x[k], y[k]) {
				return false
			}
		}
		return true
	case *big.Rat:
		y, ok := b.(*big.Rat)
		return ok && x.Cmp(y) == 0
	}
	return reflect.TypeOf(a) == reflect.TypeOf(b) && a == b
}

func TestDecodeAllocationsPerDatum(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under -cover and -race; the plain run checks them")
	}
	s := mustSchema(t, 1, boxingSchema)
	body, err := s.EncodeNatural(boxingDatum(3)) // 3 items
	if err != nil {
		t.Fatal(err)
	}
	var sink any
	allocs := testing.AllocsPerRun(200, func() { sink, _ = s.decodeNatural(s, body) })
	_ = sink
	// 4 record maps (2 each: header and one group) and each decimal's
	// denominator (3): 11. The body's string copy, the chunk per boxed
	// kind (strings, longs, ints, doubles, floats, times, the items
	// slice's header), the items' slots and the decimals' cells are shared
	// by the datums a scanner decodes in turn (8 per chunk): about one
	// more. Boxed one by one, without a pooled scanner, the same datum took
	// 34 (b6ac789); with chunks of its own, 21 (712f0b9).
	const want = 13
	if allocs > want {
		t.Fatalf("decoding a datum of 3 items took %.0f allocations, want <= %d", allocs, want)
	}
	t.Logf("%.0f allocations per datum", allocs)

	// Record mode: the 4 records take slots of the shared chunks of
	// records and values instead of 8 map allocations: 4 (15 with chunks
	// of the datum's own).
	allocs = testing.AllocsPerRun(200, func() { sink, _ = s.decodeRecord(s, body) })
	const wantRecords = 5
	if allocs > wantRecords {
		t.Fatalf("decoding a datum of 3 items as records took %.0f allocations, want <= %d", allocs, wantRecords)
	}
	t.Logf("%.0f allocations per datum as records", allocs)
}

// One outsized datum must not make every later small datum allocate large
// chunks: the learned chunk sizes decay back (a reviewer measured 8x the
// bytes per small datum, for good, when the hint only grew).
func TestOutsizedDatumDoesNotInflateLaterChunks(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation sizes differ under -cover and -race; the plain run checks them")
	}
	s := mustSchema(t, 1, boxingSchema)
	small, err := s.EncodeNatural(boxingDatum(1)) // 1 item
	if err != nil {
		t.Fatal(err)
	}
	outsized := boxingDatum(4)
	items := make([]any, 100)
	for k := range items {
		items[k] = map[string]any{"sku": fmt.Sprintf("sku-%d", k), "price": new(big.Rat).SetFrac64(int64(k+1), 100), "n": int64(1000 + k)}
	}
	outsized["items"] = items
	large, err := s.EncodeNatural(outsized)
	if err != nil {
		t.Fatal(err)
	}
	bytesPer := func(body []byte, n int) float64 {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range n {
			if _, err := s.decodeNatural(s, body); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		return float64(after.TotalAlloc-before.TotalAlloc) / float64(n)
	}
	bytesPer(small, 100)
	base := bytesPer(small, 200)
	bytesPer(large, 1)
	bytesPer(small, 300) // the hint decays by 1/64 per datum
	after := bytesPer(small, 200)
	if after > 1.25*base {
		t.Fatalf("a small datum takes %.0f B after one 100-item datum, %.0f B before: the chunk sizes did not come back", after, base)
	}
	t.Logf("small datum: %.0f B before, %.0f B after one 100-item datum", base, after)
}

// Detach copies a decoded value out of the decoder's shared chunks: equal
// values, no string or boxed scalar pointing into memory the decoder shares
// with other datums.
func TestDetachSharesNothingWithTheDecoder(t *testing.T) {
	s := mustSchema(t, 1, boxingSchema)
	body, err := s.EncodeNatural(boxingDatum(3))
	if err != nil {
		t.Fatal(err)
	}
	v, err := s.decodeRecord(s, body)
	if err != nil {
		t.Fatal(err)
	}
	rec := v.(*Record)
	got := Detach(rec).(map[string]any)
	if !naturalEqual(got, boxingDatum(3)) {
		t.Fatalf("Detach changed the value:\n got %v\nwant %v", got, boxingDatum(3))
	}
	dataWord := func(x any) uintptr { return (*[2]uintptr)(unsafe.Pointer(&x))[1] }
	for _, name := range []string{"l", "d", "f", "t"} {
		orig, _ := rec.Get(name)
		if dataWord(orig) == dataWord(got[name]) {
			t.Errorf("field %s: the detached value is the decoder's boxed copy", name)
		}
	}
	origS, _ := rec.Get("s")
	if unsafe.StringData(origS.(string)) == unsafe.StringData(got["s"].(string)) {
		t.Error("the detached string still points into the decoder's body copy")
	}
	items, _ := rec.Get("items")
	sku, _ := fieldOf(items.([]any)[0], "sku")
	if unsafe.StringData(sku.(string)) == unsafe.StringData(got["items"].([]any)[0].(map[string]any)["sku"].(string)) {
		t.Error("a nested string still points into the decoder's body copy")
	}
}

// fieldOf reads a field of a record or a map (test helper).
func fieldOf(v any, k string) (any, bool) {
	if r, ok := v.(*Record); ok {
		return r.Get(k)
	}
	m, _ := v.(map[string]any)
	x, ok := m[k]
	return x, ok
}

// Record mode reads strings in place: a decoded string is a substring of
// the body it was decoded from, not of a copy (the fetched value is never
// written, see decodeRecord). Map mode, whose maps users keep, copies.
func TestRecordModeStringsPointIntoTheBody(t *testing.T) {
	s := mustSchema(t, 1, boxingSchema)
	body, err := s.EncodeNatural(boxingDatum(5))
	if err != nil {
		t.Fatal(err)
	}
	inBody := func(x string) bool {
		p, lo := uintptr(unsafe.Pointer(unsafe.StringData(x))), uintptr(unsafe.Pointer(&body[0]))
		return p >= lo && p+uintptr(len(x)) <= lo+uintptr(len(body))
	}
	v, err := s.decodeRecord(s, body)
	if err != nil {
		t.Fatal(err)
	}
	str, _ := v.(*Record).Get("s")
	if str.(string) == "" || !inBody(str.(string)) {
		t.Fatalf("record mode: string %q is not read in place from the body", str)
	}
	items, _ := v.(*Record).Get("items")
	sku, _ := fieldOf(items.([]any)[0], "sku")
	if !inBody(sku.(string)) {
		t.Fatalf("record mode: nested string %q is not read in place from the body", sku)
	}
	m, err := s.decodeNatural(s, body)
	if err != nil {
		t.Fatal(err)
	}
	if ms := m.(map[string]any)["s"].(string); ms != str.(string) || inBody(ms) {
		t.Fatalf("map mode: string %q (record mode %q) points into the body: it must be a copy", ms, str)
	}
}
