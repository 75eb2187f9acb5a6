// Package cow is a map for the hot path's lookups of values written once
// per key (schemas by id, compiled programs, metric children, topic
// limits): a read is a plain Go map lookup through an atomic pointer, with
// no lock and no interface hashing; a write copies the map.
//
// Against sync.Map, whose reads hash the key as an interface and walk a
// trie, a read costs about a fifth less (BenchmarkLoad, one goroutine) and
// each write costs a copy of the whole map: use it for a few hundred keys
// written rarely, never for keys that grow with the traffic.
package cow

import (
	"maps"
	"sync"
	"sync/atomic"
)

// Map is a copy-on-write map. The zero value is empty and ready to use; a
// Map must not be copied after first use.
type Map[K comparable, V any] struct {
	mu sync.Mutex // serialises writers
	m  atomic.Pointer[map[K]V]
}

// Load returns the value for k.
func (c *Map[K, V]) Load(k K) (v V, ok bool) {
	if p := c.m.Load(); p != nil {
		v, ok = (*p)[k]
	}
	return v, ok
}

// Store sets k to v.
func (c *Map[K, V]) Store(k K, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.write(func(m map[K]V) { m[k] = v })
}

// LoadOrStore returns the value for k if there is one (loaded true), else
// stores v and returns it.
func (c *Map[K, V]) LoadOrStore(k K, v V) (actual V, loaded bool) {
	if actual, ok := c.Load(k); ok {
		return actual, true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if actual, ok := c.Load(k); ok {
		return actual, true
	}
	c.write(func(m map[K]V) { m[k] = v })
	return v, false
}

// Delete removes k.
func (c *Map[K, V]) Delete(k K) {
	if _, ok := c.Load(k); !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.write(func(m map[K]V) { delete(m, k) })
}

// write publishes a changed copy of the map; called with mu held.
func (c *Map[K, V]) write(change func(map[K]V)) {
	var m map[K]V
	if p := c.m.Load(); p != nil {
		m = maps.Clone(*p)
	}
	if m == nil {
		m = map[K]V{}
	}
	change(m)
	c.m.Store(&m)
}
