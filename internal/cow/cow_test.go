package cow

import (
	"fmt"
	"sync"
	"testing"
)

func TestMapLoadStoreDelete(t *testing.T) {
	var m Map[string, int]
	if _, ok := m.Load("a"); ok {
		t.Fatal("the zero Map has a key")
	}
	m.Store("a", 1)
	if v, ok := m.Load("a"); !ok || v != 1 {
		t.Fatalf("Load(a) = %d, %v after Store(a, 1)", v, ok)
	}
	if v, loaded := m.LoadOrStore("a", 2); !loaded || v != 1 {
		t.Fatalf("LoadOrStore(a, 2) = %d, %v: want the stored 1, loaded", v, loaded)
	}
	if v, loaded := m.LoadOrStore("b", 3); loaded || v != 3 {
		t.Fatalf("LoadOrStore(b, 3) = %d, %v: want 3, stored", v, loaded)
	}
	m.Delete("a")
	m.Delete("missing")
	if _, ok := m.Load("a"); ok {
		t.Fatal("a is still there after Delete")
	}
	if v, ok := m.Load("b"); !ok || v != 3 {
		t.Fatalf("Delete(a) lost b: %d, %v", v, ok)
	}
}

// A reader holding the map from before a write still sees its values, and
// concurrent writers lose no key (run with -race).
func TestMapConcurrentWriters(t *testing.T) {
	var m Map[int, string]
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				k := w*100 + i
				m.LoadOrStore(k, fmt.Sprint(k))
				if v, ok := m.Load(k); !ok || v != fmt.Sprint(k) {
					t.Errorf("key %d: %q, %v right after storing it", k, v, ok)
					return
				}
			}
		}()
	}
	wg.Wait()
	for k := range 800 {
		if v, ok := m.Load(k); !ok || v != fmt.Sprint(k) {
			t.Fatalf("key %d lost: %q, %v", k, v, ok)
		}
	}
}

// BenchmarkLoad compares a read of a few keys with sync.Map's, on one
// goroutine (with two in parallel this 2-vCPU machine's noise swamps both).
func BenchmarkLoad(b *testing.B) {
	keys := []string{"orders.commands.v1", "payments.commands.v1", "warehouse.commands.v1", "notifications.v1"}
	var c Map[string, *int]
	var s sync.Map
	for i, k := range keys {
		c.Store(k, &i)
		s.Store(k, &i)
	}
	b.Run("cow", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok := c.Load(keys[i&3]); !ok {
				b.Fatal("missing")
			}
		}
	})
	b.Run("sync.Map", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, ok := s.Load(keys[i&3]); !ok {
				b.Fatal("missing")
			}
		}
	})
}
