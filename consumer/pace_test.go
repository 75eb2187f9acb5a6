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
