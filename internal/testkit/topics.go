package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

// UniqueName returns a name for a topic, group or transactional id that is
// unique to this test run: prefix, the test name and a random suffix, using
// only characters legal in Kafka topic names.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("testkit: rand: %v", err)
	}
	name := sanitize(t.Name())
	if len(name) > 120 {
		name = name[:120]
	}
	parts := []string{}
	if p := sanitize(prefix); p != "" {
		parts = append(parts, p)
	}
	parts = append(parts, name, hex.EncodeToString(b[:]))
	return strings.Join(parts, "-")
}

func sanitize(s string) string {
	var sb strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			sb.WriteRune(r)
		default:
			sb.WriteByte('-') // '.' and '_' collide in Kafka metric names
		}
	}
	return strings.Trim(sb.String(), "-")
}

// NewAdmin returns a kadm client for brokers, closed when the test ends.
func NewAdmin(t testing.TB, brokers []string) *kadm.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatalf("testkit: kgo.NewClient: %v", err)
	}
	t.Cleanup(cl.Close)
	return kadm.NewClient(cl)
}

// CreateTopics creates topics with the given partition count and the
// cluster's default replication factor (1 on one node, 3 on three), ignoring
// TopicAlreadyExists, and waits until every partition has a leader: a real
// broker creates topics asynchronously, kfake immediately.
func CreateTopics(t testing.TB, brokers []string, partitions int32, topics ...string) {
	t.Helper()
	if len(topics) == 0 {
		return
	}
	adm := NewAdmin(t, brokers)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := adm.CreateTopics(ctx, partitions, -1, nil, topics...)
	if err != nil {
		t.Fatalf("testkit: create topics %v: %v", topics, err)
	}
	for _, r := range resp.Sorted() {
		if r.Err != nil && !errors.Is(r.Err, kerr.TopicAlreadyExists) {
			t.Fatalf("testkit: create topic %s: %v (%s)", r.Topic, r.Err, r.ErrMessage)
		}
	}
	for {
		md, err := adm.Metadata(ctx, topics...)
		if err == nil && topicsReady(md, topics) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("testkit: topics %v have no leaders after 30s (last error: %v)", topics, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func topicsReady(md kadm.Metadata, topics []string) bool {
	for _, name := range topics {
		td, ok := md.Topics[name]
		if !ok || td.Err != nil || len(td.Partitions) == 0 {
			return false
		}
		for _, p := range td.Partitions {
			if p.Err != nil || p.Leader < 0 {
				return false
			}
		}
	}
	return true
}

// partitionRange is the committed span of one partition.
type partitionRange struct{ start, end int64 }

// committedRanges returns, per partition of topic, the log start offset and
// the last stable offset (ListOffsets with read_committed isolation; kadm's
// ListEndOffsets returns the high watermark, which an open transaction keeps
// ahead of what a read_committed consumer can reach).
func committedRanges(ctx context.Context, cl *kgo.Client, topic string) (map[int32]partitionRange, error) {
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		return nil, err
	}
	td, ok := md.Topics[topic]
	if !ok || td.Err != nil {
		return nil, fmt.Errorf("topic %s: %v", topic, td.Err)
	}
	list := func(isolation int8, ts int64) (map[int32]int64, error) {
		req := kmsg.NewPtrListOffsetsRequest()
		req.ReplicaID = -1
		req.IsolationLevel = isolation
		rt := kmsg.NewListOffsetsRequestTopic()
		rt.Topic = topic
		for p := range td.Partitions {
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
				return nil, shard.Err
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
		if len(out) != len(td.Partitions) {
			return nil, fmt.Errorf("list offsets %s: %d of %d partitions answered", topic, len(out), len(td.Partitions))
		}
		return out, nil
	}
	starts, err := list(0, -2)
	if err != nil {
		return nil, err
	}
	ends, err := list(1, -1) // read_committed latest = last stable offset
	if err != nil {
		return nil, err
	}
	ranges := make(map[int32]partitionRange, len(ends))
	for p, end := range ends {
		ranges[p] = partitionRange{start: starts[p], end: end}
	}
	return ranges, nil
}

// ReadCommitted returns every committed record of topic (as a read_committed
// consumer sees them), ordered by partition then offset. It snapshots each
// partition's last stable offset first and returns once every partition was
// read up to it; records of transactions still open then are not awaited.
// It fails the test if that takes longer than timeout.
func ReadCommitted(t testing.TB, brokers []string, topic string, timeout time.Duration) []*kgo.Record {
	t.Helper()
	recs, err := readCommitted(brokers, topic, timeout)
	if err != nil {
		t.Fatalf("testkit: ReadCommitted(%s): %v", topic, err)
	}
	return recs
}

func readCommitted(brokers []string, topic string, timeout time.Duration) ([]*kgo.Record, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	ranges, err := committedRanges(ctx, admCl, topic)
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
			return nil, fmt.Errorf("timed out after %v with partitions unfinished (partition: next offset / last stable offset): %s",
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
