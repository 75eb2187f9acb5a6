// Package box puts scalar values into interfaces without one heap
// allocation per value.
//
// Go boxes a string, an int64 above 255, a float64 or a time.Time into an
// `any` by copying it into a new heap object. A decoded event boxes ~10 such
// values into its map[string]any form, each its own allocation. A Slab
// instead copies the values into a chunk of memory shared by many values and
// makes each interface point at its copy: one allocation per chunk.
//
// The interface values it returns are ordinary interfaces to every reader
// (type switches, ==, reflect, fmt). What makes this safe: an interface's
// data word may point anywhere in a live object (the garbage collector keeps
// the whole chunk alive while one value in it is referenced), and a slot is
// written exactly once, before its interface exists, and never again (Go
// treats a boxed value as immutable). Only non-pointer-shaped types may be
// boxed this way; the constraint below lists the ones ordo needs.
package box

import (
	"reflect"
	"time"
	"unsafe"
)

// Scalar lists the types a Slab boxes. They are all stored indirectly in an
// interface (a pointer to a copy), which is what Slab relies on; pointer,
// map, chan and func types are stored directly and must not be added.
// []any is boxed as its slice header (what an `any` holding a slice
// points at); the elements are not copied and stay writable, as in any
// boxed slice.
type Scalar interface {
	~string | ~int64 | ~int32 | ~float64 | ~float32 | time.Time | []any
}

// eface is the runtime layout of an interface: a type (or itab) word and a
// data word.
type eface struct {
	typ  unsafe.Pointer
	data unsafe.Pointer
}

// Slab boxes values of one type into chunks of memory. The zero value is
// ready to use; a Slab must not be copied after first use, nor used by two
// goroutines at once. Values stay valid after the Slab is dropped or Reset.
type Slab[T Scalar] struct {
	_     noCopy
	chunk []T
	n     int
	// Size is the number of values per chunk (default 16). Larger chunks
	// mean fewer allocations and more memory kept alive by one long-lived
	// value.
	Size int
}

// Box returns v as an interface, as any(v) does, but stored in the slab's
// current chunk (a new chunk when it is full).
func (s *Slab[T]) Box(v T) any {
	if len(s.chunk) == cap(s.chunk) {
		n := s.Size
		if n <= 0 {
			n = 16
		}
		// The old chunk is not reused: interfaces still point into it.
		s.chunk = make([]T, 0, n)
	}
	s.chunk = append(s.chunk, v)
	s.n++
	return at(&s.chunk[len(s.chunk)-1])
}

// Count returns how many values the slab has boxed since it was created,
// Reset or Restarted (callers size later chunks with it).
func (s *Slab[T]) Count() int { return s.n }

// Room returns how many values fit in the current chunk before Box starts
// a new one (0 before the first Box and after Reset).
func (s *Slab[T]) Room() int { return cap(s.chunk) - len(s.chunk) }

// Full reports whether the next Box replaces a chunk that holds values.
func (s *Slab[T]) Full() bool { return len(s.chunk) > 0 && len(s.chunk) == cap(s.chunk) }

// Restart zeroes the count but keeps the current chunk: the next values
// share it with the ones boxed before (which stay valid). A decoder that
// boxes several datums' values in turn uses it between datums, so that a
// chunk serves many datums; what that costs is retention: one value kept
// alive keeps its whole chunk alive.
func (s *Slab[T]) Restart() { s.n = 0 }

// Reset forgets the current chunk and the count, so that the slab can be
// reused (e.g. from a sync.Pool) without its next values landing in a chunk
// that values handed out earlier keep alive. Values boxed before stay valid.
func (s *Slab[T]) Reset() { s.chunk, s.n = nil, 0 }

// In returns an interface holding *p without copying it: the interface's
// data word is p. For values that already live in memory owned by the
// caller (e.g. a per-event arena), so that boxing them allocates nothing.
// *p must never be written again while the interface may be in use.
func In[T Scalar](p *T) any { return at(p) }

// at returns an interface of type T whose data word is p. *p must never be
// written again.
func at[T Scalar](p *T) any {
	// An interface's type word is the runtime's type descriptor, the same
	// pointer a reflect.Type holds as its data word (reflect.TypeOf is built
	// on that). Boxing a zero T to read its type word instead would make the
	// compiler move that zero to the heap.
	rt := reflect.TypeFor[T]()
	e := eface{typ: (*eface)(unsafe.Pointer(&rt)).data, data: unsafe.Pointer(p)}
	return *(*any)(unsafe.Pointer(&e))
}

// noCopy makes go vet's copylocks check report a copied Slab: two copies
// would append into the same chunk and overwrite each other's values.
type noCopy struct{}

func (*noCopy) Lock()   {}
func (*noCopy) Unlock() {}
