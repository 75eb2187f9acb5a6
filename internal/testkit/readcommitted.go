package testkit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// ReadCommitted returns every committed record of topic, as a read_committed
// consumer sees them, ordered by partition then offset. It fails the test if
// that takes longer than timeout.
//
// On real Kafka EndTxn returns once the coordinator has logged PrepareCommit;
// the commit markers are written to the partitions afterwards and the last
// stable offset (LSO) moves only when they are replicated. So ReadCommitted
// first waits until every transaction on topic that its producer has ended is
// fully settled: no partition reports one as open unless its coordinator says
// it is still Ongoing, and every partition without an Ongoing transaction has
// LSO == high watermark. Then it snapshots each partition's LSO and reads up to
// it. Transactions still Ongoing are not awaited (their records are not
// returned).
func ReadCommitted(t testing.TB, brokers []string, topic string, timeout time.Duration) []*kgo.Record {
	t.Helper()
	recs, err := readCommitted(brokers, topic, timeout)
	if err != nil {
		t.Fatalf("testkit: ReadCommitted(%s): %v", topic, err)
	}
	return recs
}

// partitionRange is the span of one partition a read_committed reader gets.
type partitionRange struct{ start, end int64 }

func readCommitted(brokers []string, topic string, timeout time.Duration) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	ranges, err := settledRanges(ctx, admCl, topic)
	if err != nil {
		return nil, err
	}

	next := map[int32]int64{} // next offset to read, per unfinished partition
	assign := map[int32]kgo.Offset{}
	for p, r := range ranges {
		if r.end > r.start {
			next[p] = r.start
			assign[p] = kgo.NewOffset().At(r.start)
		}
	}
	if len(next) == 0 {
		return nil, nil
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: assign}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		// Commit/abort markers occupy offsets: keep them so we can tell
		// when a partition has been read up to its last stable offset.
		kgo.KeepControlRecords(),
	)
	if err != nil {
		return nil, err
	}
	defer cl.Close()

	var out []*kgo.Record
	for len(next) > 0 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("timed out after %v with partitions unread (partition: next/last stable offset): %s",
				timeout, describe(next, ranges))
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("fetch partition %d: %w", p, err)
			}
		})
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if _, unfinished := next[r.Partition]; !unfinished || r.Offset >= ranges[r.Partition].end {
				return // past the snapshot
			}
			next[r.Partition] = r.Offset + 1
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
			if r.Offset+1 >= ranges[r.Partition].end {
				delete(next, r.Partition)
			}
		})
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Partition != out[j].Partition {
			return out[i].Partition < out[j].Partition
		}
		return out[i].Offset < out[j].Offset
	})
	return out, nil
}

func describe(next map[int32]int64, ranges map[int32]partitionRange) string {
	ps := make([]int, 0, len(next))
	for p := range next {
		ps = append(ps, int(p))
	}
	sort.Ints(ps)
	var sb strings.Builder
	for i, p := range ps {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%d: %d/%d", p, next[int32(p)], ranges[int32(p)].end)
	}
	return sb.String()
}

// settledRanges polls until the transactions on topic are settled (see
// ReadCommitted) and returns each partition's log start offset and LSO.
func settledRanges(ctx context.Context, cl *kgo.Client, topic string) (map[int32]partitionRange, error) {
	adm := kadm.NewClient(cl)
	var last string
	for {
		ranges, why, err := trySettled(ctx, cl, adm, topic)
		if err == nil && why == "" {
			return ranges, nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = why
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("transactions on %s did not settle: %s", topic, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// trySettled returns the ranges if settled, else a reason to wait.
func trySettled(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topic string) (map[int32]partitionRange, string, error) {
	md, err := adm.Metadata(ctx, topic)
	if err != nil {
		return nil, "", err
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return nil, "", fmt.Errorf("topic %s: %v", topic, td.Err)
	}
	parts := make([]int32, 0, len(td.Partitions))
	for p := range td.Partitions {
		parts = append(parts, p)
	}

	// Partitions with a transaction whose marker is not written yet.
	set := kadm.TopicsSet{}
	set.Add(topic, parts...)
	dp, err := adm.DescribeProducers(ctx, set)
	if err != nil {
		return nil, "", fmt.Errorf("describe producers: %w", err)
	}
	openBy := map[int64][]int32{} // producer id -> partitions
	var perr error
	dp.EachPartition(func(p kadm.DescribedProducersPartition) {
		if p.Err != nil && perr == nil {
			perr = fmt.Errorf("describe producers %s/%d: %w", topic, p.Partition, p.Err)
		}
		for _, pr := range p.ActiveProducers {
			if pr.CurrentTxnStartOffset >= 0 {
				openBy[pr.ProducerID] = append(openBy[pr.ProducerID], p.Partition)
			}
		}
	})
	if perr != nil {
		return nil, "", perr
	}
	ongoing := map[int32]bool{} // partitions an Ongoing transaction holds back
	if len(openBy) > 0 {
		ids := make([]int64, 0, len(openBy))
		for id := range openBy {
			ids = append(ids, id)
		}
		lt, err := adm.ListTransactions(ctx, ids, nil)
		if err != nil && !partialShardErr(err) {
			return nil, "", fmt.Errorf("list transactions: %w", err)
		}
		state := map[int64]string{}
		for _, tx := range lt {
			state[tx.ProducerID] = tx.State
		}
		var ending []string
		for id, ps := range openBy {
			if state[id] == "Ongoing" {
				for _, p := range ps {
					ongoing[p] = true
				}
				continue
			}
			ending = append(ending, fmt.Sprintf("producer %d: %s", id, or(state[id], "unknown")))
		}
		if len(ending) > 0 {
			sort.Strings(ending)
			return nil, "ending transactions " + strings.Join(ending, ", "), nil
		}
	}

	starts, err := listOffsets(ctx, cl, topic, parts, 0, -2)
	if err != nil {
		return nil, "", err
	}
	hwms, err := listOffsets(ctx, cl, topic, parts, 0, -1)
	if err != nil {
		return nil, "", err
	}
	lsos, err := listOffsets(ctx, cl, topic, parts, 1, -1) // read_committed latest = LSO
	if err != nil {
		return nil, "", err
	}
	ranges := make(map[int32]partitionRange, len(parts))
	for _, p := range parts {
		if !ongoing[p] && lsos[p] < hwms[p] {
			// marker written on the leader but not yet replicated
			return nil, fmt.Sprintf("partition %d: last stable offset %d < high watermark %d", p, lsos[p], hwms[p]), nil
		}
		ranges[p] = partitionRange{start: starts[p], end: lsos[p]}
	}
	return ranges, "", nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// listOffsets issues ListOffsets for every partition: isolation 0 is
// read_uncommitted, 1 read_committed; timestamp -1 is latest, -2 earliest.
// (kadm.ListEndOffsets always uses read_uncommitted, i.e. the high watermark.)
func listOffsets(ctx context.Context, cl *kgo.Client, topic string, parts []int32, isolation int8, ts int64) (map[int32]int64, error) {
	req := kmsg.NewPtrListOffsetsRequest()
	req.ReplicaID = -1
	req.IsolationLevel = isolation
	rt := kmsg.NewListOffsetsRequestTopic()
	rt.Topic = topic
	for _, p := range parts {
		rp := kmsg.NewListOffsetsRequestTopicPartition()
		rp.Partition = p
		rp.Timestamp = ts
		rp.CurrentLeaderEpoch = -1
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	out := map[int32]int64{}
	for _, shard := range cl.RequestSharded(ctx, req) {
		if shard.Err != nil {
			return nil, fmt.Errorf("list offsets %s: %w", topic, shard.Err)
		}
		resp := shard.Resp.(*kmsg.ListOffsetsResponse)
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if err := kerr.ErrorForCode(p.ErrorCode); err != nil {
					return nil, fmt.Errorf("list offsets %s/%d: %w", topic, p.Partition, err)
				}
				out[p.Partition] = p.Offset
			}
		}
	}
	if len(out) != len(parts) {
		return nil, fmt.Errorf("list offsets %s: %d of %d partitions answered", topic, len(out), len(parts))
	}
	return out, nil
}

// partialShardErr reports whether err only says some brokers did not answer
// (e.g. a stopped node in a fault test) while others did.
func partialShardErr(err error) bool {
	var se *kadm.ShardErrors
	return errors.As(err, &se) && !se.AllFailed
}
