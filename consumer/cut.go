package consumer

import (
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// partCut bounds one partition's share of a transaction in time: a record
// may start only before the transaction's deadline, so no transaction
// outlives its commit interval by more than one event's processing, however
// slow the chain. The records it does not admit are left for the next
// transaction (txn.carry): their offsets are never committed
// unprocessed.
//
// In key-parallel mode the lanes of a partition share one cut. Lanes run
// ahead of each other (by at most window records past the lowest one in
// flight), so at the deadline the cut freezes at the highest offset any
// lane started; lanes then still finish the records below it (filling the
// gaps) and start none above it. Every offset below the committed one is
// then processed, and none above it.
type partCut struct {
	mu         sync.Mutex
	deadline   time.Time
	frozen     bool
	limit      int64 // when frozen: records at or past it wait
	maxStarted int64 // highest offset started, -1 for none
	n          int   // records started
	// window, in key-parallel mode, bounds how far a lane may run ahead
	// of the lowest record still in flight, which bounds the gaps the
	// lanes must fill after the freeze (a hot key behind fast lanes would
	// otherwise have a whole poll to catch up). 0: no bound.
	window int64
	heads  map[int]int64 // per key lane: the offset of its first unfinished record
	moved  *sync.Cond    // a lane moved on or the cut froze
}

func newPartCut(deadline time.Time) *partCut {
	c := &partCut{deadline: deadline, maxStarted: -1}
	c.moved = sync.NewCond(&c.mu)
	return c
}

// admit reports whether the record at off may start now. In key-parallel
// mode (window > 0) it may first wait until off is within window records of
// the lowest unfinished record of any lane.
func (c *partCut) admit(off int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		c.freezeIfDue()
		if c.frozen && off >= c.limit {
			return false
		}
		if c.window <= 0 || c.frozen || off < c.lowestHead()+c.window {
			break
		}
		c.waitUntilDeadline()
	}
	c.maxStarted = max(c.maxStarted, off)
	c.n++
	return true
}

func (c *partCut) freezeIfDue() {
	// time.Until reads only the monotonic clock (the deadline has a
	// monotonic reading): this runs once per record, time.Now costs twice
	// as much.
	if !c.frozen && time.Until(c.deadline) <= 0 {
		c.frozen = true
		c.limit = c.maxStarted + 1
		c.moved.Broadcast()
	}
}

// waitUntilDeadline waits for a record to finish, or the deadline to pass
// (a timer wakes the waiters then). Called with c.mu held.
func (c *partCut) waitUntilDeadline() {
	t := time.AfterFunc(time.Until(c.deadline), func() {
		c.mu.Lock()
		c.moved.Broadcast()
		c.mu.Unlock()
	})
	c.moved.Wait()
	t.Stop()
}

// lowestHead is the lowest unfinished offset of any lane (MaxInt64: none).
// The lane that holds it never waits, so the lanes cannot deadlock.
func (c *partCut) lowestHead() int64 {
	low := int64(math.MaxInt64 - c.window)
	for _, off := range c.heads {
		low = min(low, off)
	}
	return low
}

// lanes sets up the window over key lanes: first[i] is lane i's first
// record's offset (lanes without records are left out).
func (c *partCut) lanes(window int64, first map[int]int64) {
	c.window, c.heads = window, first
}

// advance records that lane finished its record and moves on to the
// record at next (-1: the lane is done).
func (c *partCut) advance(lane int, next int64) {
	if c.window <= 0 {
		return
	}
	c.mu.Lock()
	if next < 0 {
		delete(c.heads, lane)
	} else {
		c.heads[lane] = next
	}
	c.moved.Broadcast()
	c.mu.Unlock()
}

// stopAt freezes the cut at off: off and everything after it wait for the
// next transaction. Only for a partition processed by one goroutine (every
// record before off is done, none after it started).
func (c *partCut) stopAt(off int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen || off < c.limit {
		c.frozen, c.limit = true, off
	}
}

// count is how many records were admitted.
func (c *partCut) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// rewindTo returns the first of recs (in offset order) the cut did not
// admit, or nil when every record was admitted.
func (c *partCut) rewindTo(recs []*kgo.Record) *kgo.Record {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen {
		return nil
	}
	for _, r := range recs {
		if r.Offset >= c.limit {
			return r
		}
	}
	return nil
}

// servedOrder remembers when each partition last made progress, so that the
// partitions served longest ago start first when there are more partitions
// than workers.
type servedOrder struct {
	turn uint64
	last map[string]map[int32]uint64
}

func (s *servedOrder) at(topic string, partition int32) uint64 {
	return s.last[topic][partition]
}

// order sorts parts, least recently served first (stable, so fetch order
// breaks ties).
func (s *servedOrder) order(parts []*partWork) {
	s.turn++ // one turn per poll
	if len(s.last) == 0 {
		return
	}
	slices.SortStableFunc(parts, func(a, b *partWork) int {
		x, y := s.at(a.ftp.Topic, a.ftp.Partition), s.at(b.ftp.Topic, b.ftp.Partition)
		switch {
		case x < y:
			return -1
		case x > y:
			return 1
		}
		return 0
	})
}

// mark records that a partition made progress in this turn.
func (s *servedOrder) mark(topic string, partition int32) {
	if s.last == nil {
		s.last = map[string]map[int32]uint64{}
	}
	ps := s.last[topic]
	if ps == nil {
		ps = map[int32]uint64{}
		s.last[topic] = ps
	}
	ps[partition] = s.turn
}
