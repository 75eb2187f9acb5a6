package ops_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/ops"
	"github.com/ordo-dev/ordo/internal/testkit"
)

// committedOffsets returns the group's committed offset per partition of topic.
func (e *env) committedOffsets(topic string) map[int32]int64 {
	e.t.Helper()
	adm := testkit.NewAdmin(e.t, e.brokers)
	os, err := adm.FetchOffsets(e.ctx(), e.group)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[int32]int64{}
	os.Each(func(o kadm.OffsetResponse) {
		if o.Topic == topic {
			out[o.Partition] = o.At
		}
	})
	return out
}

// joinGroup starts a plain group member of e.group on e.input and waits
// until it owns partitions; instanceID != "" makes it a static member.
func (e *env) joinGroup(instanceID string, session time.Duration) *kgo.Client {
	e.t.Helper()
	assigned := make(chan struct{}, 1)
	opts := append(e.conn, kgo.ConsumerGroup(e.group), kgo.ConsumeTopics(e.input), kgo.SessionTimeout(session),
		kgo.OnPartitionsAssigned(func(context.Context, *kgo.Client, map[string][]int32) {
			select {
			case assigned <- struct{}{}:
			default:
			}
		}))
	if instanceID != "" {
		opts = append(opts, kgo.InstanceID(instanceID))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for ctx.Err() == nil {
			cl.PollFetches(ctx)
		}
	}()
	e.t.Cleanup(cancel)
	select {
	case <-assigned:
	case <-time.After(30 * time.Second):
		e.t.Fatal("the group member got no partitions in 30s")
	}
	return cl
}

// TestReplayRefusesActiveGroup: a group with a live member is refused with
// the member named and the fix; once the member leaves, replay works.
func TestReplayRefusesActiveGroup(t *testing.T) {
	e := newEnv(t, 2)
	e.publish(20, 0, 0, time.Now())
	e.runPipeline()
	before := e.committedOffsets(e.input)

	member := e.joinGroup("", 10*time.Second)
	spec, _ := ops.ParseOffsetSpec([]string{"earliest"})
	_, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToOffset: &spec})
	var ae *ops.ActiveGroupError
	if !errors.As(err, &ae) {
		t.Fatalf("replay of an active group: %v, want *ActiveGroupError", err)
	}
	if len(ae.Members) != 1 || len(ae.Members[0].Assigned) != 2 || !strings.Contains(err.Error(), "stop every replica") {
		t.Errorf("error does not name the member and the fix: %v (%+v)", err, ae.Members)
	}
	if got := e.committedOffsets(e.input); !equalOffsets(got, before) {
		t.Fatalf("a refused replay changed offsets: %v -> %v", before, got)
	}
	// The broker's own guard, which Replay relies on if a replica starts
	// between its check and its commit: an admin commit to a group with
	// members is refused.
	var os kadm.Offsets
	os.Add(kadm.Offset{Topic: e.input, Partition: 0, At: 0, LeaderEpoch: -1})
	resp, err := testkit.NewAdmin(t, e.brokers).CommitOffsets(e.ctx(), e.group, os)
	if err == nil {
		err = resp.Error()
	}
	if !errors.Is(err, kerr.UnknownMemberID) {
		t.Errorf("admin commit to an active group: %v, want UNKNOWN_MEMBER_ID", err)
	}

	member.Close() // leaves the group
	res, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToOffset: &spec, Wait: 10 * time.Second})
	if err != nil {
		t.Fatalf("replay after the member left: %v", err)
	}
	if !res.Applied {
		t.Fatal("not applied")
	}
	for p, o := range e.committedOffsets(e.input) {
		if o != 0 {
			t.Errorf("partition %d at %d after replay to earliest", p, o)
		}
	}
}

// TestReplayWaitsForStaticMember: a stopped static member stays in the group
// until its session times out; replay says so, and --wait rides it out.
func TestReplayWaitsForStaticMember(t *testing.T) {
	e := newEnv(t, 1)
	e.publish(5, 0, 0, time.Now())
	e.runPipeline()
	member := e.joinGroup("replica-1", 6*time.Second)
	member.Close() // a static member does not leave on close

	spec, _ := ops.ParseOffsetSpec([]string{"earliest"})
	_, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToOffset: &spec})
	var ae *ops.ActiveGroupError
	if !errors.As(err, &ae) || ae.Members[0].InstanceID != "replica-1" || !strings.Contains(err.Error(), "--wait") {
		t.Fatalf("replay right after a static member stopped: %v, want a refusal naming instance replica-1 and --wait", err)
	}
	start := time.Now()
	res, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToOffset: &spec, Wait: 40 * time.Second})
	if err != nil {
		t.Fatalf("replay --wait: %v", err)
	}
	t.Logf("group emptied after %v", time.Since(start).Round(100*time.Millisecond))
	if !res.Applied || e.committedOffsets(e.input)[0] != 0 {
		t.Fatalf("not reset: %+v", res)
	}
}

// TestReplayToTimeReemitsSameCommands is the replay contract end to end: a
// real pipeline processed two waves of events; replay to a time between
// them rewinds every partition to the first record of the second wave, and
// running the pipeline again re-emits exactly the second wave's commands
// with the same ordo-id as the first time (ids are derived from the event
// id, so downstream can deduplicate).
func TestReplayToTimeReemitsSameCommands(t *testing.T) {
	e := newEnv(t, 3)
	t0 := time.Now().Add(-2 * time.Hour).Truncate(time.Millisecond)
	t1 := t0.Add(time.Hour)
	first := e.publish(30, 0, 0, t0)
	second := e.publish(30, 0, 0, t1)
	e.runPipeline()
	cmds := e.commands()
	if len(cmds) != 60 {
		t.Fatalf("%d events caused commands, want 60", len(cmds))
	}
	before := e.committedOffsets(e.input)

	// Dry run: the table, no change.
	at := t0.Add(30 * time.Minute)
	dry, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToTime: at, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if dry.Applied || !equalOffsets(e.committedOffsets(e.input), before) {
		t.Fatal("dry run changed offsets")
	}
	if again, _ := dry.Reprocessed(); again != 30 {
		t.Errorf("dry run: %d records to process again, want 30", again)
	}
	var buf bytes.Buffer
	ops.WriteReplayTable(&buf, dry)
	if !strings.Contains(buf.String(), "dry run: no offsets changed") || !strings.Contains(buf.String(), "LAG-AFTER") {
		t.Errorf("table:\n%s", buf.String())
	}
	t.Logf("dry run:\n%s", buf.String())

	res, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToTime: at})
	if err != nil {
		t.Fatal(err)
	}
	after := e.committedOffsets(e.input)
	total := int64(0)
	for _, row := range res.Rows {
		if row.Before != before[row.Partition] || after[row.Partition] != row.After {
			t.Errorf("row %+v disagrees with the offsets before %v / after %v", row, before, after)
		}
		total += row.Before - row.After
	}
	if total != 30 {
		t.Fatalf("rewound %d records, want the 30 of the second wave", total)
	}

	e.runPipeline()
	again := e.commands()
	for _, id := range first.ids {
		if len(again[id]) != 1 {
			t.Errorf("first-wave event %s caused %d commands after the replay, want 1 (not replayed)", id, len(again[id]))
		}
	}
	for _, id := range second.ids {
		got := again[id]
		if len(got) != 2 || got[0] != got[1] || got[0] != cmds[id][0] {
			t.Errorf("second-wave event %s: commands %v, want its original command %v twice (same ordo-id)", id, got, cmds[id])
		}
	}
}

// TestReplayOffsets covers --to-offset: per partition, clamping, latest,
// and a time that only rewinds.
func TestReplayOffsets(t *testing.T) {
	e := newEnv(t, 2)
	e.publish(40, 0, 0, time.Now())
	e.runPipeline()
	before := e.committedOffsets(e.input)

	spec, err := ops.ParseOffsetSpec([]string{e.input + ":0=3", e.input + ":1=100000"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToOffset: &spec})
	if err != nil {
		t.Fatal(err)
	}
	got := e.committedOffsets(e.input)
	if got[0] != 3 || got[1] != before[1] {
		t.Fatalf("offsets %v, want partition 0 at 3 and partition 1 clamped to its end %d", got, before[1])
	}
	if !strings.Contains(res.Rows[1].Note, "clamped") {
		t.Errorf("row %+v lacks the clamp note", res.Rows[1])
	}

	// A time in the future finds no record: the time only rewinds, so
	// partition 0 (behind) keeps its offset instead of skipping.
	res, err = ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToTime: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if got := e.committedOffsets(e.input); got[0] != 3 {
		t.Fatalf("a replay to the future moved partition 0 to %d", got[0])
	}
	if res.Rows[0].Note != "not yet at the time: kept" {
		t.Errorf("row %+v", res.Rows[0])
	}

	// Partition on a topic that is not replayed.
	bad, _ := ops.ParseOffsetSpec([]string{"other-topic:0=1"})
	if _, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToOffset: &bad}); err == nil || !strings.Contains(err.Error(), "add --topic") {
		t.Errorf("unknown topic in --to-offset: %v", err)
	}
	missing, _ := ops.ParseOffsetSpec([]string{e.input + ":7=1"})
	if _, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToOffset: &missing}); err == nil || !strings.Contains(err.Error(), "no partition 7") {
		t.Errorf("missing partition: %v", err)
	}
}

// TestReplayUnknownGroup: a typo in --group is a clear error, not a new
// group; --create-group sets offsets for a group whose offsets expired.
func TestReplayUnknownGroup(t *testing.T) {
	e := newEnv(t, 1)
	e.publish(5, 0, 0, time.Now())
	spec, _ := ops.ParseOffsetSpec([]string{"latest"})
	_, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group + "-typo", ToOffset: &spec, DefaultTopics: []string{e.input}})
	var ue *ops.UnknownGroupError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--group") {
		t.Fatalf("unknown group: %v", err)
	}
	res, err := ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToOffset: &spec, Topics: []string{e.input}, CreateGroup: true})
	if err != nil || !res.Applied {
		t.Fatalf("--create-group: %v %+v", err, res)
	}
	if got := e.committedOffsets(e.input); got[0] != 5 {
		t.Fatalf("offsets %v, want 5", got)
	}
	_, err = ops.Replay(e.ctx(), e.conn, ops.ReplayOptions{Group: e.group, ToOffset: &spec, Topics: []string{"no-such-topic-" + e.group}})
	var nf *ops.TopicNotFoundError
	if !errors.As(err, &nf) {
		t.Fatalf("unknown topic: %v", err)
	}
}

func equalOffsets(a, b map[int32]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
