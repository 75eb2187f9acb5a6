package consumer

import (
	"hash/fnv"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Flow control for event storms: early filters, per-topic rate limits and
// key lanes. Memory is bounded by design: the loop polls at most BatchSize
// records per transaction and processes them before polling again, and
// fetches are bounded by FetchMaxBytes/FetchMaxPartitionBytes.

// skip reports whether r is filtered out before decoding by its type header
// (SkipHeader, e.g. ordo-type set by publish.Publisher).
func (p *Pipeline) skip(r *kgo.Record) bool {
	if len(p.skipTypes) == 0 {
		return false
	}
	for _, h := range r.Headers {
		if h.Key == p.cfg.SkipHeader {
			_, ok := p.skipTypes[string(h.Value)]
			return ok
		}
	}
	return false
}

// keyLane maps a key to one of n lanes.
func keyLane(key []byte, n int) int {
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % uint32(n))
}

// rateLimits are token buckets per input topic (events per second, burst of
// one second). Each poll takes at most what the emptiest bucket holds, and a
// topic that goes into debt is paused until its bucket is back to zero: the
// waiting records stay in Kafka, not in memory.
type rateLimits struct {
	buckets map[string]*bucket
}

type bucket struct {
	rate, tokens float64
	last         time.Time
	pausedUntil  time.Time // zero when not paused
}

func newRateLimits(rates map[string]float64) *rateLimits {
	l := &rateLimits{buckets: map[string]*bucket{}}
	now := time.Now()
	for topic, r := range rates {
		if r > 0 {
			l.buckets[topic] = &bucket{rate: r, tokens: r, last: now}
		}
	}
	return l
}

// charge takes the polled records from their topics' buckets and pauses the
// topics that went into debt.
func (l *rateLimits) charge(cl fetchControl, fetches kgo.Fetches, now time.Time) {
	if len(l.buckets) == 0 {
		return
	}
	fetches.EachTopic(func(ft kgo.FetchTopic) {
		b, ok := l.buckets[ft.Topic]
		if !ok {
			return
		}
		n := 0
		for _, p := range ft.Partitions {
			n += len(p.Records)
		}
		b.tokens = math.Min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate) - float64(n)
		b.last = now
		if b.tokens < 0 {
			b.pausedUntil = now.Add(time.Duration(-b.tokens / b.rate * float64(time.Second)))
			cl.PauseFetchTopics(ft.Topic)
		}
	})
}

// pollCap bounds the next poll by the smallest bucket of an unpaused
// limited topic, so one poll cannot take more than a topic may have (other
// topics share the cap: poll size is per poll, not per topic). 0 = no cap.
func (l *rateLimits) pollCap(now time.Time) int {
	limit := 0
	for _, b := range l.buckets {
		if !b.pausedUntil.IsZero() {
			continue
		}
		avail := int(math.Min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate))
		if avail < 1 {
			avail = 1
		}
		if limit == 0 || avail < limit {
			limit = avail
		}
	}
	return limit
}

// resume un-pauses topics whose debt is paid and returns the earliest time a
// still-paused topic may resume (zero if none).
func (l *rateLimits) resume(cl fetchControl, now time.Time) time.Time {
	var next time.Time
	for topic, b := range l.buckets {
		if b.pausedUntil.IsZero() {
			continue
		}
		if !now.Before(b.pausedUntil) {
			b.pausedUntil = time.Time{}
			cl.ResumeFetchTopics(topic)
			continue
		}
		if next.IsZero() || b.pausedUntil.Before(next) {
			next = b.pausedUntil
		}
	}
	return next
}

// earliest returns the earlier of the commit deadline (if a transaction is
// open) and the resume time (if set).
func earliest(open bool, commitAt, resumeAt time.Time) (time.Time, bool) {
	switch {
	case open && !resumeAt.IsZero():
		if resumeAt.Before(commitAt) {
			return resumeAt, true
		}
		return commitAt, true
	case open:
		return commitAt, true
	case !resumeAt.IsZero():
		return resumeAt, true
	}
	return time.Time{}, false
}
