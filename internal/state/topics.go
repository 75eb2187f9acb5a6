package state

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Topic configs EnsureTopics creates the two topics with.
const (
	// ChangelogSegmentMs: the active segment is never compacted, so a short
	// segment keeps the uncompacted tail, and restore time, small.
	ChangelogSegmentMs = 60 * 60 * 1000
	// ChangelogMinCompactionLagMs keeps recent versions of a key for an
	// hour, for inspection.
	ChangelogMinCompactionLagMs = 60 * 60 * 1000
	// ProcessLogRetentionMs: the process log is consumed right away; a week
	// leaves room for a stalled stage 2.
	ProcessLogRetentionMs = 7 * 24 * 60 * 60 * 1000
)

// ErrTopicMissing is wrapped by the errors about a missing changelog or
// process log.
var ErrTopicMissing = errors.New("topic does not exist")

func missingTopic(role, topic string) error {
	return fmt.Errorf("state: %s topic %q: %w: create it with the same partition count as the other one"+
		" (state.EnsureTopics does at startup; by hand: kafka-topics.sh --create --topic %s --partitions N%s)",
		role, topic, ErrTopicMissing, topic, map[bool]string{true: " --config cleanup.policy=compact", false: ""}[role == "changelog"])
}

// EnsureTopics creates whichever of the process log and the changelog does
// not exist, with partitions partitions and replication factor rf (-1: the
// broker's default). The changelog is compacted (cleanup.policy=compact,
// segment.ms and min.compaction.lag.ms one hour); the process log is a
// delete topic kept seven days. Existing topics are left as they are: check
// them with CheckCoPartitioned.
func EnsureTopics(ctx context.Context, adm *kadm.Client, processLog, changelog string, partitions int, rf int16) error {
	if processLog == "" || changelog == "" || processLog == changelog {
		return fmt.Errorf("state: process log %q and changelog %q must be two different, non-empty topic names", processLog, changelog)
	}
	if partitions < 1 || partitions > 1<<20 {
		return fmt.Errorf("state: %d partitions for %q and %q: use at least 1", partitions, processLog, changelog)
	}
	if rf == 0 || rf < -1 {
		return fmt.Errorf("state: replication factor %d for %q and %q: use -1 (broker default) or at least 1", rf, processLog, changelog)
	}
	tds, err := adm.ListTopics(ctx, processLog, changelog)
	if err != nil {
		return fmt.Errorf("state: listing topics %q and %q: %w", processLog, changelog, err)
	}
	str := func(v int64) *string { s := strconv.FormatInt(v, 10); return &s }
	configs := map[string]map[string]*string{
		changelog: {
			"cleanup.policy":        kadm.StringPtr("compact"),
			"segment.ms":            str(ChangelogSegmentMs),
			"min.compaction.lag.ms": str(ChangelogMinCompactionLagMs),
		},
		processLog: {
			"cleanup.policy": kadm.StringPtr("delete"),
			"retention.ms":   str(ProcessLogRetentionMs),
		},
	}
	for _, topic := range []string{processLog, changelog} {
		td, ok := tds[topic]
		if ok && td.Err == nil {
			continue
		}
		if ok && !errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			return fmt.Errorf("state: describing topic %q: %w", topic, td.Err)
		}
		resp, err := adm.CreateTopic(ctx, int32(partitions), rf, configs[topic], topic)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			msg := resp.ErrMessage
			if msg != "" {
				msg = " (" + msg + ")"
			}
			return fmt.Errorf("state: creating topic %q with %d partitions, replication factor %d: %w%s", topic, partitions, rf, err, msg)
		}
	}
	return nil
}

// CheckCoPartitioned fails unless both topics exist, have the same number
// of partitions (process-log partition p is restored from changelog
// partition p) and the changelog is compacted (a delete policy loses state
// when segments expire).
func CheckCoPartitioned(ctx context.Context, adm *kadm.Client, processLog, changelog string) error {
	tds, err := adm.ListTopics(ctx, processLog, changelog)
	if err != nil {
		return fmt.Errorf("state: listing topics %q and %q: %w", processLog, changelog, err)
	}
	count := map[string]int{}
	for role, topic := range map[string]string{"process log": processLog, "changelog": changelog} {
		td, ok := tds[topic]
		if !ok || errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			return missingTopic(role, topic)
		}
		if td.Err != nil {
			return fmt.Errorf("state: describing %s %q: %w", role, topic, td.Err)
		}
		count[topic] = len(td.Partitions)
	}
	if count[processLog] != count[changelog] {
		return fmt.Errorf("state: process log %q has %d partitions but changelog %q has %d: partition p of the process log is"+
			" restored from partition p of the changelog, so both need the same count; add partitions to the smaller one"+
			" (kafka-topics.sh --alter --partitions %d) only before any state exists: new process-log partitions move correlation ids",
			processLog, count[processLog], changelog, count[changelog], max(count[processLog], count[changelog]))
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, changelog)
	if err != nil {
		return fmt.Errorf("state: reading changelog %q's config: %w", changelog, err)
	}
	rc, err := rcs.On(changelog, nil)
	if err == nil {
		err = rc.Err
	}
	if err != nil {
		return fmt.Errorf("state: reading changelog %q's config: %w", changelog, err)
	}
	policy := "delete" // Kafka's default
	for _, c := range rc.Configs {
		if c.Key == "cleanup.policy" && c.Value != nil {
			policy = *c.Value
		}
	}
	if policy != "compact" {
		return fmt.Errorf("state: changelog %q has cleanup.policy=%s: it must be compact, or state is lost when old segments are deleted"+
			" (kafka-configs.sh --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact)", changelog, policy, changelog)
	}
	return nil
}

// Partitioner returns the producer's partitioner for stage 2: records to
// the changelog and the process log go to Record.Partition as set (a store
// key or a trigger is not hashed: it belongs to the partition whose state it
// is), records to any other topic use kgo.StickyKeyPartitioner(nil)
// (Kafka's murmur2 key hashing).
func Partitioner(changelog, processLog string) kgo.Partitioner {
	return partitioner{
		manual: map[string]bool{changelog: true, processLog: true},
		man:    kgo.ManualPartitioner(),
		def:    kgo.StickyKeyPartitioner(nil),
	}
}

type partitioner struct {
	manual   map[string]bool
	man, def kgo.Partitioner
}

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if p.manual[topic] {
		return p.man.ForTopic(topic)
	}
	return p.def.ForTopic(topic)
}
