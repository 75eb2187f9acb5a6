package app

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ordo-dev/ordo/consumer"
)

// progress prints one live line: committed totals and the current rate. On
// a terminal it rewrites the line in place; elsewhere it prints a line every
// 5 s so logs stay readable.
type progress struct {
	w        io.Writer
	stats    *consumer.Stats
	tty      bool
	last     consumer.Snapshot
	lastAt   time.Time
	started  time.Time
	printed  int
	wroteTTY bool
}

func newProgress(w io.Writer, s *consumer.Stats) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	now := time.Now()
	return &progress{w: w, stats: s, tty: tty, lastAt: now, started: now}
}

func (p *progress) print() {
	now := time.Now()
	s := p.stats.Snapshot()
	rate := float64(s.EventsIn-p.last.EventsIn) / now.Sub(p.lastAt).Seconds()
	p.last, p.lastAt = s, now
	p.printed++
	line := fmt.Sprintf("events in %d · commands out %d · dead-lettered %d · txn commits %d · aborts %d · %.0f events/s",
		s.EventsIn, s.CommandsOut, s.DeadLettered, s.TxnCommits, s.TxnAborts, rate)
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		p.wroteTTY = true
		return
	}
	if p.printed%5 == 0 {
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) finish() {
	if p.wroteTTY {
		fmt.Fprintln(p.w)
	}
}
