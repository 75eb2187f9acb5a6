package processors

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestBreaker(threshold int, cooldown time.Duration) (*breaker, *fakeClock, *[]string) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	b := newBreaker(threshold, cooldown, clock.now)
	var (
		mu      sync.Mutex
		changes []string
	)
	// onChange runs outside the breaker's lock, so concurrently.
	b.onChange = func(from, to breakerState, _ int, _ error) {
		mu.Lock()
		changes = append(changes, from.String()+">"+to.String())
		mu.Unlock()
	}
	return b, clock, &changes
}

// call runs one guarded request with the given result; it reports whether
// the request was let through.
func call(b *breaker, fail bool) bool {
	probe, err := b.allow()
	if err != nil {
		return false
	}
	if fail {
		b.failure(probe, errors.New("boom"), 0)
	} else {
		b.success(probe)
	}
	return true
}

func TestBreakerOpensAfterConsecutiveFailures(t *testing.T) {
	b, clock, changes := newTestBreaker(3, 10*time.Second)
	call(b, true)
	call(b, true)
	call(b, false) // resets
	call(b, true)
	call(b, true)
	if b.snapshot() != breakerClosed {
		t.Fatal("opened on non-consecutive failures")
	}
	call(b, true)
	if b.snapshot() != breakerOpen {
		t.Fatal("not open after 3 consecutive failures")
	}
	_, err := b.allow()
	var open *circuitOpenError
	if !errors.As(err, &open) || open.Remaining != 10*time.Second || !strings.Contains(err.Error(), "next probe in 10s") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("allow while open: %v", err)
	}
	clock.add(9 * time.Second)
	if call(b, false) {
		t.Fatal("let through during the cool-down")
	}
	clock.add(time.Second)
	if !call(b, false) || b.snapshot() != breakerClosed {
		t.Fatal("probe did not close the circuit")
	}
	if got := strings.Join(*changes, " "); got != "closed>open open>half-open half-open>closed" {
		t.Fatalf("changes: %s", got)
	}
}

func TestBreakerHalfOpenOneProbe(t *testing.T) {
	b, clock, _ := newTestBreaker(1, time.Second)
	call(b, true)
	clock.add(time.Second)
	probe, err := b.allow()
	if err != nil || !probe {
		t.Fatalf("first allow after the cool-down: probe=%v err=%v", probe, err)
	}
	for range 3 {
		if p2, err := b.allow(); err == nil || p2 || !strings.Contains(err.Error(), "probe in flight") {
			t.Fatalf("second caller while probing: %v %v", p2, err)
		}
	}
	// A failed probe reopens for a full cool-down.
	b.failure(probe, errors.New("still down"), 0)
	if b.snapshot() != breakerOpen {
		t.Fatal("failed probe did not reopen")
	}
	clock.add(999 * time.Millisecond)
	if _, err := b.allow(); err == nil {
		t.Fatal("reopened circuit let a call through early")
	}
	clock.add(time.Millisecond)
	// A probe whose caller gave up (release) frees the slot for the next.
	probe, _ = b.allow()
	b.release(probe)
	probe, err = b.allow()
	if err != nil || !probe {
		t.Fatalf("after release: %v %v", probe, err)
	}
	b.success(probe)
	if b.snapshot() != breakerClosed {
		t.Fatal("not closed")
	}
}

func TestBreakerLateResultsDoNotDecide(t *testing.T) {
	b, clock, _ := newTestBreaker(2, time.Second)
	// Two requests start while closed; both fail, the circuit opens.
	p1, _ := b.allow()
	p2, _ := b.allow()
	p3, _ := b.allow()
	b.failure(p1, errors.New("x"), 0)
	b.failure(p2, errors.New("x"), 0)
	// The third, started before the circuit opened, succeeds late: only the
	// probe closes the circuit.
	b.success(p3)
	if b.snapshot() != breakerOpen {
		t.Fatal("a late success closed the circuit")
	}
	clock.add(time.Second)
	probe, _ := b.allow()
	b.failure(false, errors.New("late"), 0) // a late failure is not the probe's
	if b.snapshot() != breakerHalfOpen {
		t.Fatal("a late failure decided the half-open state")
	}
	b.success(probe)
	if b.snapshot() != breakerClosed {
		t.Fatal("probe success did not close")
	}
}

func TestBreakerRetryAfter(t *testing.T) {
	b, clock, _ := newTestBreaker(5, 10*time.Second)
	probe, _ := b.allow()
	b.failure(probe, errors.New("429"), 30*time.Second) // below the threshold, but the service asked
	if _, err := b.allow(); err == nil || !strings.Contains(err.Error(), "next probe in 30s") {
		t.Fatalf("after Retry-After: %v", err)
	}
	clock.add(30 * time.Second)
	probe, err := b.allow()
	if err != nil || !probe {
		t.Fatalf("after 30s: %v", err)
	}
	// A probe answered with a short Retry-After still waits a cool-down.
	b.failure(probe, errors.New("503"), time.Second)
	if _, err := b.allow(); err == nil || !strings.Contains(err.Error(), "next probe in 10s") {
		t.Fatalf("probe failure: %v", err)
	}
}

// Concurrent callers (key-parallel lanes) while the dependency flaps: run
// under -race; invariants: at most one probe in flight, no call through
// while open.
func TestBreakerConcurrent(t *testing.T) {
	b, clock, _ := newTestBreaker(3, time.Millisecond)
	var inProbe, maxProbe, through atomic.Int64
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				probe, err := b.allow()
				if err != nil {
					if g == 0 {
						clock.add(time.Millisecond / 4)
					}
					continue
				}
				through.Add(1)
				if probe {
					n := inProbe.Add(1)
					for m := maxProbe.Load(); n > m && !maxProbe.CompareAndSwap(m, n); m = maxProbe.Load() {
					}
					inProbe.Add(-1)
				}
				switch i % 5 {
				case 0, 1, 2:
					b.failure(probe, fmt.Errorf("f%d", i), 0)
				case 3:
					b.release(probe)
				default:
					b.success(probe)
				}
			}
		}()
	}
	wg.Wait()
	if maxProbe.Load() > 1 {
		t.Fatalf("%d probes in flight at once", maxProbe.Load())
	}
	if through.Load() == 0 || through.Load() == 8*2000 {
		t.Fatalf("%d calls went through: the breaker never opened or never closed", through.Load())
	}
}
