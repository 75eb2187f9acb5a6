package consumer

import (
	"testing"
	"time"
)

// TestTimersFireOnStreamTimeWhileBusy: while records keep arriving, a
// partition's timers fire only up to its stream time (a backlog's old
// events first), and by wall time once it has been idle.
func TestTimersFireOnStreamTimeWhileBusy(t *testing.T) {
	s := newStateLoop(&Stateful{}, "log")
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	if got := s.fireTime(3, now); !got.Equal(now) {
		t.Fatalf("a partition that never had a record fires by wall time, got %v", got)
	}
	backlog := now.Add(-time.Minute)
	s.observe(3, backlog, now)
	if got := s.fireTime(3, now.Add(time.Second)); !got.Equal(backlog) {
		t.Fatalf("busy partition: fire time %v, want its stream time %v", got, backlog)
	}
	s.observe(3, backlog.Add(-time.Hour), now) // an older record does not move stream time back
	if got := s.fireTime(3, now.Add(time.Second)); !got.Equal(backlog) {
		t.Fatalf("stream time moved back to %v", got)
	}
	if got := s.fireTime(3, now.Add(idleFire)); !got.Equal(now.Add(idleFire)) {
		t.Fatalf("idle partition: fire time %v, want wall time", got)
	}
	s.observe(4, now.Add(time.Hour), now) // producer clock ahead: never beyond wall time
	if got := s.fireTime(4, now); !got.Equal(now) {
		t.Fatalf("fire time %v beyond wall time", got)
	}
}
