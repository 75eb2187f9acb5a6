package consumer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/ordo-dev/ordo/processors"
)

// Broker-less tests of the pipelined loop's decisions (pipeline.go) on the
// scripted session of session_fake_test.go.

// sourceChain emits one command per event keyed "partition/offset" of its
// input, so a transaction's outputs name the records it processed. fail,
// when set, may fail an event.
func sourceChain(fail func(ev *processors.Event) error) processors.Processor {
	inner := echoChain()
	return processors.Func(func(ctx context.Context, ev *processors.Event) ([]processors.Command, error) {
		if fail != nil {
			if err := fail(ev); err != nil {
				return nil, err
			}
		}
		cmds, err := inner.Process(ctx, ev)
		for i := range cmds {
			cmds[i].Key = fmt.Appendf(nil, "%d/%d", ev.Partition, ev.Offset)
		}
		return cmds, err
	})
}

// onPartition moves records to partition p.
func onPartition(p int32, recs []*kgo.Record) []*kgo.Record {
	for _, r := range recs {
		r.Partition = p
	}
	return recs
}

// fetchOfParts is one poll serving several partitions.
func fetchOfParts(parts ...[]*kgo.Record) kgo.Fetches {
	ft := kgo.FetchTopic{Topic: fakeIn}
	for _, recs := range parts {
		ft.Partitions = append(ft.Partitions, kgo.FetchPartition{Partition: recs[0].Partition, Records: recs})
	}
	return kgo.Fetches{{Topics: []kgo.FetchTopic{ft}}}
}

// committedTxns is, per committed transaction, its committed offsets and
// the sorted "partition/offset" keys of its outputs.
func committedTxns(f *fakeKafka) ([]map[int32]int64, [][]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var offs []map[int32]int64
	var outs [][]string
	for _, c := range f.commits {
		offs = append(offs, c.offsets)
		var keys []string
		for _, r := range c.outputs {
			keys = append(keys, string(r.Key))
		}
		slices.Sort(keys)
		outs = append(outs, keys)
	}
	return offs, outs
}

func keys(p int32, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%d/%d", p, i))
	}
	slices.Sort(out)
	return out
}

// checkExactlyOnce asserts that each committed transaction committed, per
// partition, exactly the offset after the last record whose outputs it
// produced, that it produced the outputs of every record from the previous
// commit on, and that no output is produced twice in committed
// transactions.
func checkExactlyOnce(t *testing.T, f *fakeKafka) {
	t.Helper()
	offs, outs := committedTxns(f)
	next := map[int32]int64{}
	seen := map[string]bool{}
	for i := range offs {
		want := map[int32]int64{}
		var wantKeys []string
		for p, o := range offs[i] {
			for off := next[p]; off < o; off++ {
				wantKeys = append(wantKeys, fmt.Sprintf("%d/%d", p, off))
			}
			want[p] = o
			next[p] = o
		}
		slices.Sort(wantKeys)
		if !slices.Equal(outs[i], wantKeys) {
			t.Fatalf("transaction %d committed offsets %v but produced the outputs of %v (want %v)", i+1, offs[i], outs[i], wantKeys)
		}
		for _, k := range outs[i] {
			if seen[k] {
				t.Fatalf("output of %s committed twice", k)
			}
			seen[k] = true
		}
	}
}

// TestFakePipelineOverlapsEndAndCommitsProcessed: the next poll is taken
// before End and processed while End runs; End commits exactly the
// offsets of the records it processed (not the next poll's), and the next
// batch's outputs are produced only after the next Begin.
func TestFakePipelineOverlapsEndAndCommitsProcessed(t *testing.T) {
	var mu sync.Mutex
	started := map[int64]time.Time{}
	w := newFakeWorld(t, sourceChain(func(ev *processors.Event) error {
		mu.Lock()
		started[ev.Offset] = time.Now()
		mu.Unlock()
		return nil
	}), BatchSize(5), CommitInterval(10*time.Second))
	w.f.endDelay = 100 * time.Millisecond
	w.script(w.records(0, 5), w.records(5, 5), w.records(10, 5))
	w.runUntil("end commit", 3)
	expectCalls(t, w.f.lifecycle(), seq(
		one("new-session", "begin"), repeat("produce "+fakeOut, 5), one("flush", "end commit"),
		one("begin"), repeat("produce "+fakeOut, 5), one("flush", "end commit"),
		one("begin"), repeat("produce "+fakeOut, 5), one("flush", "end commit", "close"),
	)...)
	// The second poll precedes the first End (it is what End must not
	// commit), and its first record was processed before that End returned.
	all := w.f.all()
	if i, j := slices.Index(all, "poll 0@5-9"), slices.Index(all, "end commit"); i < 0 || i > j {
		t.Fatalf("the next batch was not polled before End: %q", all)
	}
	endReturned := w.f.at("end commit", 0).Add(w.f.endDelay)
	mu.Lock()
	s5 := started[5]
	mu.Unlock()
	if !s5.Before(endReturned) {
		t.Fatalf("record 5 started at %v, after the first End returned (%v): no overlap", s5, endReturned)
	}
	offs, outs := committedTxns(w.f)
	if len(offs) != 3 || offs[0][0] != 5 || offs[1][0] != 10 || offs[2][0] != 15 {
		t.Fatalf("committed offsets %v, want 5, 10, 15", offs)
	}
	if !slices.Equal(outs[0], keys(0, 0, 5)) || !slices.Equal(outs[1], keys(0, 5, 10)) || !slices.Equal(outs[2], keys(0, 10, 15)) {
		t.Fatalf("committed outputs %v", outs)
	}
	checkExactlyOnce(t, w.f)
}

// TestFakeSerialLoopPollsAfterEnd: with the pipeline off, the next poll
// comes only after End.
func TestFakeSerialLoopPollsAfterEnd(t *testing.T) {
	w := newFakeWorld(t, sourceChain(nil), BatchSize(5), CommitInterval(10*time.Second), SerialLoop(true))
	w.script(w.records(0, 5), w.records(5, 5))
	w.runUntil("end commit", 2)
	all := w.f.all()
	if i, j := slices.Index(all, "poll 0@5-9"), slices.Index(all, "end commit"); i < j {
		t.Fatalf("serial loop polled the next batch before End: %q", all)
	}
	checkExactlyOnce(t, w.f)
}

// TestFakePipelineDropsRevokedPartition: a partition revoked between the
// commit of transaction N and the Begin of N+1 loses its prefetched work
// (no output for it); the other partition's prefetched work commits.
func TestFakePipelineDropsRevokedPartition(t *testing.T) {
	w := newFakeWorld(t, sourceChain(nil), BatchSize(10), CommitInterval(300*time.Millisecond))
	w.f.queue = append(w.f.queue,
		fetchOfParts(w.records(0, 5), onPartition(1, w.records(0, 5))),
		fetchOfParts(w.records(5, 5), onPartition(1, w.records(5, 5))))
	w.f.afterEnd = func(n int) {
		if n == 1 {
			w.f.revoke(1)
		}
	}
	w.runUntil("end commit", 2)
	offs, outs := committedTxns(w.f)
	if len(offs) != 2 {
		t.Fatalf("commits %v, want 2", offs)
	}
	if offs[0][0] != 5 || offs[0][1] != 5 || offs[1][0] != 10 {
		t.Fatalf("committed offsets %v", offs)
	}
	if _, ok := offs[1][1]; ok {
		t.Fatalf("the revoked partition's offset was committed by the next transaction: %v", offs[1])
	}
	if !slices.Equal(outs[1], keys(0, 5, 10)) {
		t.Fatalf("second transaction's outputs %v, want partition 0's 5-9 only", outs[1])
	}
	for _, k := range keys(1, 5, 10) {
		if producedKey(w.f, k) {
			t.Fatalf("output of revoked %s was produced", k)
		}
	}
	checkExactlyOnce(t, w.f)
}

// TestFakePipelineAbortDropsNextBatch: End(N) aborted by a rebalance: the
// work already done on batch N+1 is dropped (nothing of it is produced in
// the aborted transaction's place), both batches are served again and
// each commits exactly once.
func TestFakePipelineAbortDropsNextBatch(t *testing.T) {
	w := newFakeWorld(t, sourceChain(nil), BatchSize(5), CommitInterval(10*time.Second))
	w.f.ends = []endResult{{committed: false}}
	w.script(w.records(0, 5), w.records(5, 5))
	w.runUntil("end commit", 3)
	expectCalls(t, w.f.lifecycle(), seq(
		one("new-session", "begin"), repeat("produce "+fakeOut, 5), one("flush", "end commit"), // aborted
		one("begin"), repeat("produce "+fakeOut, 5), one("flush", "end commit"),
		one("begin"), repeat("produce "+fakeOut, 5), one("flush", "end commit", "close"),
	)...)
	offs, outs := committedTxns(w.f)
	if len(offs) != 2 || !slices.Equal(outs[0], keys(0, 0, 5)) || !slices.Equal(outs[1], keys(0, 5, 10)) {
		t.Fatalf("committed %v with outputs %v", offs, outs)
	}
	checkExactlyOnce(t, w.f)
}

// TestFakePipelineEndErrorDropsNextBatch: an End error recreates the
// session and drops the prefetched work; everything commits once in the
// new session.
func TestFakePipelineEndErrorDropsNextBatch(t *testing.T) {
	w := newFakeWorld(t, sourceChain(nil), BatchSize(5), CommitInterval(10*time.Second))
	w.f.ends = []endResult{{err: fmt.Errorf("broker gone")}}
	w.script(w.records(0, 5), w.records(5, 5))
	w.runUntil("end commit", 3)
	if n := w.f.count("new-session"); n != 2 {
		t.Fatalf("%d sessions, want 2: %q", n, w.f.lifecycle())
	}
	checkExactlyOnce(t, w.f)
	offs, _ := committedTxns(w.f)
	if len(offs) != 2 || offs[1][0] != 10 {
		t.Fatalf("committed %v", offs)
	}
}

// TestFakePipelineTransientFailureInNextBatchAborts: a transient failure
// of the prefetched batch (retries exhausted) aborts its transaction after
// the previous one committed; the batch is served again and commits once.
func TestFakePipelineTransientFailureInNextBatchAborts(t *testing.T) {
	var w *fakeWorld
	w = newFakeWorld(t, sourceChain(func(ev *processors.Event) error {
		if ev.Offset == 7 && w.f.count("end abort") == 0 { // down until the abort
			return processors.Transient(fmt.Errorf("dependency down"))
		}
		return nil
	}), BatchSize(5), CommitInterval(10*time.Second), TransientRetries(1))
	w.script(w.records(0, 5), w.records(5, 5))
	w.runUntil("end commit", 2)
	life := strings.Join(w.f.lifecycle(), "\n")
	if !strings.Contains(life, "end commit\nbegin\nend abort\n") {
		t.Fatalf("the failed next batch was not aborted (without producing) after the commit:\n%s", life)
	}
	offs, outs := committedTxns(w.f)
	if len(offs) != 2 || !slices.Equal(outs[1], keys(0, 5, 10)) {
		t.Fatalf("committed %v with outputs %v", offs, outs)
	}
	checkExactlyOnce(t, w.f)
}

func producedKey(f *fakeKafka, key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, r := range f.produced {
		if string(r.Key) == key {
			return true
		}
	}
	return false
}

// TestRestrictTxnCommit: End's offset commit request, built by franz-go from
// everything polled, is cut down to exactly the captured offsets; a
// captured partition missing from it is an error (End then aborts).
func TestRestrictTxnCommit(t *testing.T) {
	build := func() *kmsg.TxnOffsetCommitRequest {
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		for _, topic := range []string{"a", "b"} {
			rt := kmsg.NewTxnOffsetCommitRequestTopic()
			rt.Topic = topic
			for p := int32(0); p < 3; p++ {
				rp := kmsg.NewTxnOffsetCommitRequestTopicPartition()
				rp.Partition, rp.Offset, rp.LeaderEpoch = p, 100+int64(p), 7
				rt.Partitions = append(rt.Partitions, rp)
			}
			req.Topics = append(req.Topics, rt)
		}
		return req
	}
	req := build()
	err := restrictTxnCommit(req, map[string]map[int32]kgo.EpochOffset{"a": {1: {Epoch: 6, Offset: 50}, 2: {Epoch: 7, Offset: 60}}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, rt := range req.Topics {
		for _, rp := range rt.Partitions {
			got = append(got, fmt.Sprintf("%s/%d@%d e%d", rt.Topic, rp.Partition, rp.Offset, rp.LeaderEpoch))
		}
	}
	if want := []string{"a/1@50 e6", "a/2@60 e7"}; !slices.Equal(got, want) {
		t.Fatalf("request commits %q, want %q", got, want)
	}
	if err := restrictTxnCommit(build(), map[string]map[int32]kgo.EpochOffset{"a": {1: {Offset: 50}}, "c": {0: {Offset: 1}}}); err == nil {
		t.Fatal("a captured partition missing from the request was accepted")
	}
}

// slowFirst is a sourceChain whose first event at offset 0 of partition
// part takes d (past a short commit deadline), so the records after it are
// cut from its transaction.
func slowFirst(part int32, d time.Duration) processors.Processor {
	var once sync.Once
	return sourceChain(func(ev *processors.Event) error {
		if ev.Partition == part && ev.Offset == 0 {
			once.Do(func() { time.Sleep(d) })
		}
		return nil
	})
}

// TestFakePipelineCarriesCutRecords: records the commit deadline left
// unstarted are not rewound (no SetOffsets, which in franz-go drops the
// whole fetch buffer) nor polled again: End commits up to the first of
// them, and they are processed first in the next transaction.
func TestFakePipelineCarriesCutRecords(t *testing.T) {
	w := newFakeWorld(t, slowFirst(0, 300*time.Millisecond), CommitInterval(100*time.Millisecond), Workers(1))
	w.script(w.records(0, 4), w.records(4, 2))
	w.runUntil("end commit", 2)
	all := w.f.all()
	if w.f.count("poll 0@1-3") != 0 {
		t.Fatalf("the cut records were polled again: %q", all)
	}
	offs, outs := committedTxns(w.f)
	if len(offs) < 2 || offs[0][0] != 1 || !slices.Equal(outs[0], keys(0, 0, 1)) {
		t.Fatalf("first commit %v with outputs %v, want offset 1 with 0/0's output only", offs, outs)
	}
	// The carried records 1-3 precede 4-5 in the next transaction.
	if offs[1][0] != 6 || !slices.Equal(outs[1], keys(0, 1, 6)) {
		t.Fatalf("second commit %v with outputs %v, want offset 6 with 0/1..0/5", offs[1], outs[1])
	}
	w.f.mu.Lock()
	var order []string
	for _, r := range w.f.commits[1].outputs {
		order = append(order, string(r.Key))
	}
	w.f.mu.Unlock()
	if !slices.Equal(order, []string{"0/1", "0/2", "0/3", "0/4", "0/5"}) {
		t.Fatalf("second transaction produced %v, want the partition's order", order)
	}
	if s := w.stats.Snapshot(); s.Rewound != 3 || s.EventsIn != 6 {
		t.Errorf("stats %+v, want 6 events and the 3 cut records counted as rewound", s)
	}
	checkExactlyOnce(t, w.f)
}

// TestFakePipelineCarryDroppedWhenRevoked: a partition revoked after the
// commit that cut it loses its carried records (never produced here; its
// next owner fetches them from the committed cut point); the other
// partition goes on.
func TestFakePipelineCarryDroppedWhenRevoked(t *testing.T) {
	checkCarryDroppedWhenRevoked(t)
}

// checkCarryDroppedWhenRevoked runs the revocation scenario of
// TestFakePipelineCarryDroppedWhenRevoked with opts added (the serial loop
// runs it too).
func checkCarryDroppedWhenRevoked(t *testing.T, opts ...Opt) {
	t.Helper()
	w := newFakeWorld(t, slowFirst(0, 300*time.Millisecond), append([]Opt{CommitInterval(100 * time.Millisecond), Workers(2)}, opts...)...)
	w.f.queue = append(w.f.queue,
		fetchOfParts(w.records(0, 4), onPartition(1, w.records(0, 4))),
		fetchOf(onPartition(1, w.records(4, 2))...))
	w.f.afterEnd = func(n int) {
		if n == 1 {
			w.f.revoke(0)
		}
	}
	w.runUntil("end commit", 2)
	offs, outs := committedTxns(w.f)
	if offs[0][0] != 1 || offs[0][1] != 4 {
		t.Fatalf("first commit %v, want partition 0 at its cut (1) and 1 at 4", offs[0])
	}
	if _, ok := offs[1][0]; ok || offs[1][1] != 6 || !slices.Equal(outs[1], keys(1, 4, 6)) {
		t.Fatalf("second commit %v with outputs %v, want partition 1's 4-5 only", offs[1], outs[1])
	}
	for _, k := range keys(0, 1, 4) {
		if producedKey(w.f, k) {
			t.Fatalf("carried %s of the revoked partition was produced", k)
		}
	}
	checkExactlyOnce(t, w.f)
}

// TestFakePipelineCarryAbortServesAgain: an End that aborts after a cut
// drops the carried records with the next batch; everything is served
// again from the committed offsets and commits exactly once.
func TestFakePipelineCarryAbortServesAgain(t *testing.T) {
	w := newFakeWorld(t, slowFirst(0, 300*time.Millisecond), CommitInterval(100*time.Millisecond), Workers(1))
	w.f.ends = []endResult{{committed: false}}
	w.script(w.records(0, 4))
	w.runUntil("end commit", 2)
	if n := w.f.count("poll 0@0-3"); n != 2 {
		t.Fatalf("the aborted records were served %d times, want 2: %q", n, w.f.all())
	}
	offs, outs := committedTxns(w.f)
	if len(offs) != 1 || offs[0][0] != 4 || !slices.Equal(outs[0], keys(0, 0, 4)) {
		t.Fatalf("commits %v with outputs %v, want one commit of 0-3", offs, outs)
	}
	checkExactlyOnce(t, w.f)
}

// TestFakePipelineCarryCountsAgainstTheBatch: the poll that follows a cut
// asks only for what the batch has room for beside the carried records, so
// the carry cannot grow while processing is slower than the commit
// interval.
func TestFakePipelineCarryCountsAgainstTheBatch(t *testing.T) {
	w := newFakeWorld(t, slowFirst(0, 300*time.Millisecond), CommitInterval(100*time.Millisecond), Workers(1), BatchSize(5))
	w.script(w.records(0, 4), w.records(4, 2))
	w.runUntil("end commit", 2)
	w.f.mu.Lock()
	maxes := slices.Clone(w.f.maxes)
	w.f.mu.Unlock()
	// Poll 1 takes 0-3 (max 5); the prefetch after the cut at 1 carries
	// 1-3 and may take 5-3 = 2 more.
	if len(maxes) < 2 || maxes[0] != 5 || maxes[1] != 2 {
		t.Fatalf("poll maxes %v, want 5 and then 2 (the batch minus 3 carried)", maxes)
	}
	checkExactlyOnce(t, w.f)
}
