package consumer

import (
	"math"
	"testing"
	"time"
)

func TestPollPacerSizesPollsToTheTimeLeft(t *testing.T) {
	var p pollPacer
	if got := p.records(50 * time.Millisecond); got != math.MaxInt {
		t.Fatalf("before any observation the pacer must not cap polls, got %d", got)
	}
	p.observe(1000, 10*time.Millisecond) // 10 µs per record
	if got := p.records(50 * time.Millisecond); got != 5000 {
		t.Fatalf("50 ms left at 10 µs/record: got %d, want 5000", got)
	}
	if got := p.records(-time.Second); got != minPacedPoll {
		t.Fatalf("past the deadline: got %d, want the floor %d", got, minPacedPoll)
	}
	p.observe(0, time.Second) // empty polls teach nothing
	if got := p.records(50 * time.Millisecond); got != 5000 {
		t.Fatalf("an empty poll changed the estimate: %d", got)
	}
	for range 50 {
		p.observe(100, 10*time.Millisecond) // now 100 µs per record
	}
	if got := p.records(50 * time.Millisecond); got < 490 || got > 520 {
		t.Fatalf("the average should converge to 100 µs/record (500 records in 50 ms), got %d", got)
	}
}

// A cold start's small batches are mostly fixed cost: one large batch must
// be enough to size polls to it, or a burst after a quiet start is polled
// a few hundred records at a time while its backlog grows.
func TestPollPacerIsNotHeldBackBySmallBatches(t *testing.T) {
	var p pollPacer
	p.observe(36, 19*time.Millisecond) // priming: ~530 µs per record, mostly fixed cost
	if got := p.records(100 * time.Millisecond); got > 1000 {
		t.Fatalf("after one small slow batch the pacer should be cautious, got %d", got)
	}
	p.observe(5000, 40*time.Millisecond) // 8 µs per record
	if got := p.records(100 * time.Millisecond); got < 5000 {
		t.Fatalf("one batch of 5000 at 8 µs/record should size the next poll past 5000 records in 100 ms, got %d", got)
	}
	for range 4 {
		p.observe(3, 5*time.Millisecond) // idle trickle: fixed cost again
	}
	if got := p.records(100 * time.Millisecond); got < 4000 {
		t.Fatalf("a few tiny batches should barely move the estimate, got %d", got)
	}
}
