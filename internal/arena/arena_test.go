package arena

import (
	"runtime"
	"sync"
	"testing"
)

type pair struct {
	a, b int
	s    string
}

// Values and slots taken at once by several goroutines are each their
// caller's: nothing handed out twice, nothing overlapping, every value
// intact after the others are written and a GC.
func TestTakeHandsOutDisjointParts(t *testing.T) {
	var b Blocks[pair]
	const workers, per = 4, 500
	type got struct {
		v     *pair
		slots []any
	}
	all := make([][]got, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				n := (i % 7) * 11 // 0..66 slots, some chunks left with a rest
				v, slots := b.Take(n)
				if *v != (pair{}) || len(slots) != n || cap(slots) != n {
					t.Errorf("worker %d take %d: value %+v, %d slots (cap %d), want zero and %d", w, i, *v, len(slots), cap(slots), n)
					return
				}
				for k := range slots {
					if slots[k] != nil {
						t.Errorf("worker %d take %d: slot %d not zero", w, i, k)
						return
					}
					slots[k] = [2]int{w, i}
				}
				*v = pair{w, i, "x"}
				all[w] = append(all[w], got{v, slots})
			}
		})
	}
	wg.Wait()
	runtime.GC()
	seen := map[*pair]bool{}
	for w := range workers {
		for i, g := range all[w] {
			if seen[g.v] {
				t.Fatalf("worker %d take %d: value handed out twice", w, i)
			}
			seen[g.v] = true
			if *g.v != (pair{w, i, "x"}) {
				t.Fatalf("worker %d take %d: value is %+v", w, i, *g.v)
			}
			for k, s := range g.slots {
				if s != [2]int{w, i} {
					t.Fatalf("worker %d take %d: slot %d is %v (overwritten by another take)", w, i, k, s)
				}
			}
		}
	}
}

// Taking from a warm pool costs a fraction of an allocation per value.
func TestTakeAllocatesPerBlock(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under -cover and -race; the plain run checks them")
	}
	var b Blocks[pair]
	b.Take(10)
	const n = PerBlock * 100
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		b.Take(10)
	}
	runtime.ReadMemStats(&after)
	allocs := float64(after.Mallocs-before.Mallocs) / n
	// One block per PerBlock takes, one slot chunk per 25 takes of 10:
	// 0.125 + 0.04; a GC emptying the pool may add a block.
	if allocs > 0.25 {
		t.Fatalf("%.2f allocations per Take, want about 1/%d", allocs, PerBlock)
	}
}
