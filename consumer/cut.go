package consumer

import (
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// partCut bounds one partition's share of a transaction in time: a record
// may start only before the transaction's deadline, so no transaction
// outlives its commit interval by more than one event's processing, however
// slow the chain. The records it does not admit are rewound (txn.rewind)
// and fetched again by the next transaction: their offsets are never
// committed unprocessed.
//
// In key-parallel mode the lanes of a partition share one cut. Lanes run
// ahead of each other, so at the deadline the cut freezes at the highest
// offset any lane started; lanes then still finish the records below it
// (filling the gaps) and start none above it. Every offset below the
// committed one is then processed, and none above it.
type partCut struct {
	mu         sync.Mutex
	deadline   time.Time
	frozen     bool
	limit      int64 // when frozen: records at or past it wait
	maxStarted int64 // highest offset started, -1 for none
	n          int   // records started
}

func newPartCut(deadline time.Time) *partCut {
	return &partCut{deadline: deadline, maxStarted: -1}
}

// admit reports whether the record at off may start now.
func (c *partCut) admit(off int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.frozen && !time.Now().Before(c.deadline) {
		c.frozen = true
		c.limit = c.maxStarted + 1
	}
	if c.frozen && off >= c.limit {
		return false
	}
	c.maxStarted = max(c.maxStarted, off)
	c.n++
	return true
}

// started is how many records were admitted.
func (c *partCut) started() int {
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
