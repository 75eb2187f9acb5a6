package box

import (
	"fmt"
	"reflect"
	"runtime"
	"testing"
	"time"
)

type name string

func TestBoxedValuesAreOrdinaryInterfaces(t *testing.T) {
	var ss Slab[string]
	var is Slab[int64]
	var fs Slab[float64]
	var ts Slab[time.Time]
	var ns Slab[name]
	now := time.Now()
	var got []any
	var want []any
	for i := range 100 { // several chunks
		s := fmt.Sprintf("value-%d", i)
		got = append(got, ss.Box(s), is.Box(int64(1000+i)), fs.Box(float64(i)+0.5), ts.Box(now.Add(time.Duration(i))), ns.Box(name(s)))
		want = append(want, s, int64(1000+i), float64(i)+0.5, now.Add(time.Duration(i)), name(s))
	}
	runtime.GC() // the chunks stay alive through the interfaces alone
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("value %d: %#v != %#v", i, got[i], want[i])
		}
		if reflect.TypeOf(got[i]) != reflect.TypeOf(want[i]) {
			t.Fatalf("value %d: type %T, want %T", i, got[i], want[i])
		}
		if fmt.Sprint(got[i]) != fmt.Sprint(want[i]) {
			t.Fatalf("value %d prints %v, want %v", i, got[i], want[i])
		}
	}
	if _, ok := got[4].(string); ok {
		t.Fatal("a named string type boxed as string")
	}
	if s, ok := got[0].(string); !ok || s != "value-0" {
		t.Fatalf("type switch: %v %v", s, ok)
	}
}

func TestSlabAllocatesPerChunk(t *testing.T) {
	var sink []any
	allocs := testing.AllocsPerRun(100, func() {
		var s Slab[string]
		s.Size = 8
		sink = sink[:0]
		for i := range 8 {
			sink = append(sink, s.Box([]string{"a", "b", "c", "d", "e", "f", "g", "h"}[i]))
		}
	})
	if allocs > 1 {
		t.Fatalf("8 strings boxed with %.1f allocations, want 1 (the chunk)", allocs)
	}
	allocs = testing.AllocsPerRun(100, func() {
		var s Slab[time.Time]
		sink = sink[:0]
		for range 16 {
			sink = append(sink, s.Box(time.Unix(1700000000, 5)))
		}
	})
	if allocs > 1 {
		t.Fatalf("16 times boxed with %.1f allocations, want 1 (the chunk)", allocs)
	}
	sink = sink[:cap(sink)]
	for i := range sink {
		sink[i] = nil
	}
}

func TestValuesSurviveReset(t *testing.T) {
	var s Slab[string]
	a := s.Box("first")
	s.Reset()
	b := s.Box("second")
	runtime.GC()
	if a != "first" || b != "second" {
		t.Fatalf("after Reset: %v %v", a, b)
	}
}

// Restart starts a new count and keeps the chunk: the values boxed after it
// land next to the earlier ones, which keep their values.
func TestRestartSharesTheChunk(t *testing.T) {
	s := Slab[int64]{Size: 8}
	a := s.Box(1 << 40)
	s.Restart()
	if s.Count() != 0 {
		t.Fatalf("Count after Restart = %d, want 0", s.Count())
	}
	allocs := testing.AllocsPerRun(1, func() { _ = s.Box(2 << 40) })
	if allocs != 0 {
		t.Fatalf("boxing after Restart allocated %.0f times: the chunk was not kept", allocs)
	}
	b := s.Box(3 << 40)
	runtime.GC()
	// AllocsPerRun boxed twice (a warm-up and the measured run).
	if a != int64(1<<40) || b != int64(3<<40) || s.Count() != 3 {
		t.Fatalf("after Restart: %v %v count %d", a, b, s.Count())
	}
}

// A slice header boxed by a Slab reads as the slice: same elements, same
// length, and an `any` comparison by type switch works as for any([]any).
func TestBoxSliceHeader(t *testing.T) {
	var s Slab[[]any]
	backing := []any{"a", int64(2)}
	v := s.Box(backing[:2:2])
	s.Box([]any{}) // a neighbour in the same chunk
	runtime.GC()
	l, ok := v.([]any)
	if !ok || len(l) != 2 || cap(l) != 2 || l[0] != "a" || l[1] != int64(2) {
		t.Fatalf("boxed slice reads as %#v (ok %v)", v, ok)
	}
	l[0] = "changed" // elements are shared, as with any boxed slice
	if backing[0] != "changed" {
		t.Fatal("the boxed header does not point at the original elements")
	}
}

func TestRoomAndFull(t *testing.T) {
	s := Slab[int64]{Size: 2}
	if s.Room() != 0 || s.Full() {
		t.Fatalf("a new slab: room %d, full %v; want 0, false (no chunk to replace)", s.Room(), s.Full())
	}
	s.Box(1)
	if s.Room() != 1 || s.Full() {
		t.Fatalf("one of two boxed: room %d, full %v; want 1, false", s.Room(), s.Full())
	}
	s.Box(2)
	if s.Room() != 0 || !s.Full() {
		t.Fatalf("two of two boxed: room %d, full %v; want 0, true", s.Room(), s.Full())
	}
	s.Reset()
	if s.Room() != 0 || s.Full() {
		t.Fatalf("after Reset: room %d, full %v; want 0, false", s.Room(), s.Full())
	}
}
