package ops

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// span is the offsets [from, to) of one partition to read.
type span struct{ from, to int64 }

// TopicNotFoundError says a topic the operator named does not exist.
type TopicNotFoundError struct {
	Topic string
	What  string // e.g. "dead-letter topic"
	Fix   string
}

func (e *TopicNotFoundError) Error() string {
	msg := fmt.Sprintf("%s %q does not exist on the cluster", e.What, e.Topic)
	if e.Fix != "" {
		msg += " (" + e.Fix + ")"
	}
	return msg
}

// partitionsOf returns the sorted partitions of topic, or a
// *TopicNotFoundError.
func partitionsOf(ctx context.Context, adm *kadm.Client, topic, what, fix string) ([]int32, error) {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	td, ok := md.Topics[topic]
	if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
		return nil, &TopicNotFoundError{Topic: topic, What: what, Fix: fix}
	}
	if td.Err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, td.Err)
	}
	ps := make([]int32, 0, len(td.Partitions))
	for p := range td.Partitions {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps, nil
}

// committedSpans returns, per partition of topic, [start, last stable
// offset): what a read_committed reader can see now. A non-zero since moves
// each start to the first record written at or after it.
func committedSpans(ctx context.Context, adm *kadm.Client, topic string, since time.Time) (map[int32]span, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list start offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListCommittedOffsets(ctx, topic) // read_committed: the LSO
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list last stable offsets of %s: %w", topic, err)
	}
	var after kadm.ListedOffsets
	if !since.IsZero() {
		if after, err = adm.ListOffsetsAfterMilli(ctx, since.UnixMilli(), topic); err == nil {
			err = after.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("list offsets of %s after %s: %w", topic, since.Format(time.RFC3339), err)
		}
	}
	out := map[int32]span{}
	ends.Each(func(o kadm.ListedOffset) {
		s := span{to: o.Offset}
		if st, ok := starts.Lookup(o.Topic, o.Partition); ok {
			s.from = st.Offset
		}
		if a, ok := after.Lookup(o.Topic, o.Partition); ok && a.Offset > s.from {
			s.from = a.Offset
		}
		if s.from > s.to {
			s.from = s.to
		}
		out[o.Partition] = s
	})
	return out, nil
}

// readSpans reads spans of topic as a read_committed consumer and calls fn
// for every data record, in offset order within a partition. Records of
// aborted transactions are never seen (a dead letter written by a
// transaction that later aborted is not a dead letter: the event was
// processed again). fn may stop the read early by returning ErrStop.
func readSpans(ctx context.Context, conn []kgo.Opt, topic string, spans map[int32]span, fn func(*kgo.Record) error) error {
	next := map[int32]int64{}
	assign := map[int32]kgo.Offset{}
	for p, s := range spans {
		if s.to > s.from {
			next[p] = s.from
			assign[p] = kgo.NewOffset().At(s.from)
		}
	}
	if len(next) == 0 {
		return nil
	}
	opts := append(slices.Clone(conn),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Commit/abort markers occupy offsets: keeping them tells us when a
		// partition has been read up to its snapshot end.
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(500*time.Millisecond),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("consumer for %s: %w", topic, err)
	}
	defer cl.Close()
	for len(next) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("reading %s: %w (unread: %s)", topic, err, describeNext(next, spans))
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("fetch %s/%d: %w", topic, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		var stop error
		fs.EachRecord(func(r *kgo.Record) {
			if stop != nil {
				return
			}
			s := spans[r.Partition]
			if _, open := next[r.Partition]; !open || r.Offset >= s.to {
				return // past the snapshot
			}
			next[r.Partition] = r.Offset + 1
			if r.Offset+1 >= s.to {
				delete(next, r.Partition)
			}
			if !r.Attrs.IsControl() {
				stop = fn(r)
			}
		})
		if errors.Is(stop, ErrStop) {
			return nil
		}
		if stop != nil {
			return stop
		}
	}
	return nil
}

// ErrStop, returned by a scan callback, ends the scan early without an
// error.
var ErrStop = errors.New("stop scanning")

func describeNext(next map[int32]int64, spans map[int32]span) string {
	ps := make([]int32, 0, len(next))
	for p := range next {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	parts := make([]string, 0, len(ps))
	for _, p := range ps {
		parts = append(parts, fmt.Sprintf("partition %d at %d of %d", p, next[p], spans[p].to))
	}
	return strings.Join(parts, ", ")
}
