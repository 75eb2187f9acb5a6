package demo

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/producer"
)

// Report is the outcome of Verify. OK is true when every published record
// got exactly what it should: a valid record exactly its routed commands, a
// poison record exactly one dead letter with a reason, and no command twice.
type Report struct {
	OK                      bool     `json:"ok"`
	Published               int      `json:"published"`
	NotYetProcessed         int      `json:"not_yet_processed"`
	ValidPublished          int      `json:"valid_published"`
	PoisonPublished         int      `json:"poison_published"`
	DuplicatesPublished     int      `json:"duplicates_published"`
	CommandsExpected        int      `json:"commands_expected"`
	CommandsSeen            int      `json:"commands_seen"`
	DeadLettersSeen         int      `json:"dead_letters_seen"`
	MissingCommands         int      `json:"missing_commands"`
	DuplicateCommands       int      `json:"duplicate_commands"`
	PoisonMissingInDLQ      int      `json:"poison_missing_in_dlq"`
	DeadLetteredValid       int      `json:"dead_lettered_valid"`
	DeadLettersWithoutWhy   int      `json:"dead_letters_without_reason"`
	DuplicateDeliveriesSeen int      `json:"duplicate_deliveries_seen"`
	Problems                []string `json:"problems,omitempty"`
}

// Since returns the current end offsets of topics, to verify only output
// written after this point.
func Since(ctx context.Context, adm *kadm.Client, topics ...string) (kadm.ListedOffsets, error) {
	return adm.ListEndOffsets(ctx, topics...)
}

// Verify reads commandTopics and dlqTopic from the offsets in from (or the
// start), and checks them against published. cl must be a direct consumer
// created with kgo.FetchIsolationLevel(kgo.ReadCommitted()) and
// kgo.KeepControlRecords() (so that reading can stop exactly at the end
// offsets, which point past the transaction markers).
//
// Records at or past the group's committed offsets (published but not yet
// processed when ordo stopped) are counted as NotYetProcessed and not
// checked: the next run processes them.
func Verify(ctx context.Context, cl *kgo.Client, adm *kadm.Client, group string, published []Published, commandTopics []string, dlqTopic string, from kadm.ListedOffsets) (*Report, error) {
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return nil, fmt.Errorf("verify: committed offsets of %s: %w", group, err)
	}
	var processed []Published
	pending := 0
	for _, p := range published {
		if c, ok := committed.Lookup(p.Topic, p.Partition); ok && p.Offset < c.At {
			processed = append(processed, p)
		} else {
			pending++
		}
	}
	published = processed
	topics := append(append([]string{}, commandTopics...), dlqTopic)
	ends, err := adm.ListEndOffsets(ctx, topics...) // with read_committed these are the LSOs once no txn is open
	if err != nil {
		return nil, fmt.Errorf("verify: end offsets: %w", err)
	}
	recs, err := readRange(ctx, cl, from, ends)
	if err != nil {
		return nil, err
	}

	rep := &Report{Published: len(published) + pending, NotYetProcessed: pending}
	type input struct {
		topic string
		part  int32
		off   int64
	}
	key := func(t string, p int32, o int64) input { return input{t, p, o} }
	want := make(map[input]Published, len(published))
	for _, p := range published {
		want[key(p.Topic, p.Partition, p.Offset)] = p
		switch p.Kind {
		case Valid:
			rep.ValidPublished++
			rep.CommandsExpected += p.Commands
		case Duplicate:
			rep.DuplicatesPublished++
			rep.CommandsExpected += p.Commands
		case Poison:
			rep.PoisonPublished++
		}
	}

	commandsOf := map[input]int{}
	seenCmd := map[string]bool{}              // command ids, across every topic
	deliveries := map[string]map[input]bool{} // event id → input records that produced commands
	dead := map[input]int{}
	for _, r := range recs {
		h := headers(r)
		if r.Topic == dlqTopic {
			part, _ := strconv.Atoi(h[producer.HeaderDLQSourcePartition])
			off, _ := strconv.ParseInt(h[producer.HeaderDLQSourceOffset], 10, 64)
			in := key(h[producer.HeaderDLQSourceTopic], int32(part), off)
			if _, ours := want[in]; !ours {
				continue
			}
			rep.DeadLettersSeen++
			dead[in]++
			if h[producer.HeaderDLQError] == "" {
				rep.DeadLettersWithoutWhy++
			}
			continue
		}
		in, ok := parseInput(h[producer.HeaderInput])
		if !ok {
			rep.Problems = append(rep.Problems, fmt.Sprintf("command at %s/%d@%d has no %s header", r.Topic, r.Partition, r.Offset, producer.HeaderInput))
			continue
		}
		ii := key(in.topic, in.part, in.off)
		if _, ours := want[ii]; !ours {
			continue
		}
		rep.CommandsSeen++
		commandsOf[ii]++
		// Command ids are unique across the whole output, whatever input
		// they came from: a duplicate delivery that re-emitted its
		// commands (same deterministic ids) is caught here too.
		id := h[producer.HeaderID]
		if seenCmd[id] {
			rep.DuplicateCommands++
			if len(rep.Problems) < 20 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("command id %s at %s/%d@%d seen before", id, r.Topic, r.Partition, r.Offset))
			}
		}
		seenCmd[id] = true
		if c := h[producer.HeaderCausationID]; c != "" {
			if deliveries[c] == nil {
				deliveries[c] = map[input]bool{}
			}
			deliveries[c][ii] = true
		}
	}
	for in, p := range want {
		switch p.Kind {
		case Valid, Duplicate:
			got := commandsOf[in]
			if got < p.Commands {
				rep.MissingCommands += p.Commands - got
			}
			if got > p.Commands {
				rep.DuplicateCommands += got - p.Commands
			}
			if dead[in] > 0 {
				rep.DeadLetteredValid++
			}
		case Poison:
			switch {
			case dead[in] == 0:
				rep.PoisonMissingInDLQ++
			case dead[in] > 1:
				rep.Problems = append(rep.Problems, fmt.Sprintf("poison %s/%d@%d dead-lettered %d times", in.topic, in.part, in.off, dead[in]))
			}
			if commandsOf[in] > 0 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("poison %s/%d@%d produced commands", in.topic, in.part, in.off))
			}
		}
	}
	for _, ins := range deliveries {
		if len(ins) > 1 {
			rep.DuplicateDeliveriesSeen += len(ins) - 1
		}
	}
	rep.OK = rep.MissingCommands == 0 && rep.DuplicateCommands == 0 && rep.PoisonMissingInDLQ == 0 &&
		rep.DeadLetteredValid == 0 && rep.DeadLettersWithoutWhy == 0 && len(rep.Problems) == 0
	return rep, nil
}

type inputRef struct {
	topic string
	part  int32
	off   int64
}

// parseInput parses "topic/partition/offset" (the topic may contain '/').
func parseInput(s string) (inputRef, bool) {
	j := lastIndex(s, '/')
	if j < 0 {
		return inputRef{}, false
	}
	off, err := strconv.ParseInt(s[j+1:], 10, 64)
	if err != nil {
		return inputRef{}, false
	}
	i := lastIndex(s[:j], '/')
	if i < 0 {
		return inputRef{}, false
	}
	part, err := strconv.Atoi(s[i+1 : j])
	if err != nil {
		return inputRef{}, false
	}
	return inputRef{s[:i], int32(part), off}, true
}

func lastIndex(s string, c byte) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == c {
			return i
		}
	}
	return -1
}

func headers(r *kgo.Record) map[string]string {
	m := make(map[string]string, len(r.Headers))
	for _, h := range r.Headers {
		m[h.Key] = string(h.Value)
	}
	return m
}

// readRange reads [from, to) of every partition in to with a
// read_committed direct consumer.
func readRange(ctx context.Context, cl *kgo.Client, from, to kadm.ListedOffsets) ([]*kgo.Record, error) {
	offsets := map[string]map[int32]kgo.Offset{}
	remaining := 0
	want := map[string]map[int32]int64{}
	to.Each(func(o kadm.ListedOffset) {
		start := int64(0)
		if f, ok := from.Lookup(o.Topic, o.Partition); ok && f.Err == nil {
			start = f.Offset
		}
		if o.Offset <= start {
			return
		}
		if offsets[o.Topic] == nil {
			offsets[o.Topic] = map[int32]kgo.Offset{}
			want[o.Topic] = map[int32]int64{}
		}
		offsets[o.Topic][o.Partition] = kgo.NewOffset().At(start)
		want[o.Topic][o.Partition] = o.Offset
		remaining++
	})
	if remaining == 0 {
		return nil, nil
	}
	cl.AddConsumePartitions(offsets)
	defer cl.PurgeTopicsFromConsuming(keys(offsets)...)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var out []*kgo.Record
	for remaining > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("verify: reading output timed out with %d partitions unfinished: %w", remaining, err)
		}
		fs.EachError(func(t string, p int32, err error) {})
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			end, ok := want[p.Topic][p.Partition]
			if !ok {
				return
			}
			done := false
			for _, r := range p.Records {
				if r.Offset >= end-1 {
					done = true
				}
				if r.Offset < end && !r.Attrs.IsControl() {
					out = append(out, r)
				}
			}
			if done {
				delete(want[p.Topic], p.Partition)
				remaining--
			}
		})
	}
	return out, nil
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
