package state

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// GoHeapBytes (what the app adds to the soft memory limit) rests on where
// Pebble puts a store's memtables: Go slices without cgo, C memory with it.
// This checks that premise for the build under test (CI runs it both ways,
// test/run.sh), through the options the Manager opens its stores with.
//
// The heap is measured in a process of its own (the test binary run again
// for this test alone): the heap is process-wide, and in the package run the
// earlier tests' clients and stores still held a few MiB more at times,
// which made the cgo build look like the cgo-free one.
func TestStoreMemtablesAreOnTheGoHeapOnlyWithoutCgo(t *testing.T) {
	if os.Getenv(heapProbeEnv) != "1" {
		cmd := exec.Command(os.Args[0], "-test.run=^TestStoreMemtablesAreOnTheGoHeapOnlyWithoutCgo$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), heapProbeEnv+"=1")
		out, err := cmd.CombinedOutput()
		t.Logf("in its own process:\n%s", out)
		if err != nil {
			t.Fatalf("the heap probe failed in its own process: %v", err)
		}
		return
	}
	m := &Manager{
		log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
		cache:  pebble.NewCache(8 << 20),
		fcache: pebble.NewFileCache(1, 16),
	}
	defer m.cache.Unref()
	defer m.fcache.Unref()
	heap := func() int64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	db, err := m.openDB(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// 3 MiB of writes: the memtables grow toward memTableBytes, each
	// allocated whole when it is created.
	val := make([]byte, 256)
	for i := range 12 << 10 {
		if err := db.Set(fmt.Appendf(nil, "key-%08d", i), val, pebble.NoSync); err != nil {
			t.Fatal(err)
		}
	}
	grew := heap() - before
	runtime.KeepAlive(db)
	t.Logf("cgo-free build: %v; Go heap grew by %.1f MiB with the store open", storeOnGoHeap, float64(grew)/(1<<20))
	// Only the cgo-free side is asserted: with cgo (and -race, as CI runs
	// it) the heap grew by 0.2 MiB on one run and by 4.0 MiB on others, so
	// that side proves nothing either way (GoHeapBytes counts 0 there).
	switch {
	case storeOnGoHeap && grew < 3<<20:
		t.Fatalf("without cgo the memtables should be Go memory, but the heap grew only %d bytes: GoHeapBytes would raise the memory limit for nothing", grew)
	}
	if got, want := GoHeapBytes(0, 6), map[bool]int64{true: 80 << 20, false: 0}[storeOnGoHeap]; got != want {
		t.Fatalf("GoHeapBytes(default cache, 6 partitions) = %d, want %d", got, want)
	}
}

// heapProbeEnv marks the test binary run for the heap probe alone.
const heapProbeEnv = "ORDO_TEST_STATE_HEAP_PROBE" // ORDO_TEST*: reserved for tests (internal/config)
