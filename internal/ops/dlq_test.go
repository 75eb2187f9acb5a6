package ops_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/ops"
	"github.com/ordo-dev/ordo/internal/testkit"
)

// deadLetters scans the whole DLQ.
func (e *env) deadLetters(f ops.Filter) []*ops.DeadLetter {
	e.t.Helper()
	var out []*ops.DeadLetter
	if _, err := ops.ScanDeadLetters(e.ctx(), e.conn, e.dlq, f, func(d *ops.DeadLetter) error {
		out = append(out, d)
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// redriven returns, per ordo-redrive-of value, how many committed records
// of the input topic carry it.
func (e *env) redriven() map[string]int {
	e.t.Helper()
	out := map[string]int{}
	for _, r := range testkit.ReadCommitted(e.t, e.brokers, e.input, 30*time.Second) {
		if v := headers(r)[ops.HeaderRedriveOf]; v != "" {
			out[v]++
		}
	}
	return out
}

// decodeCheck is the check the command line runs: decode like the pipeline.
func (e *env) decodeCheck(ctx context.Context, d *ops.DeadLetter) error {
	_, err := e.serde.Decode(ctx, d.SourceTopic, d.Value)
	return err
}

// TestDeadLettersFromPipeline lists a DLQ that a real pipeline wrote: the
// reasons group by processor, source coordinates point at the originals.
func TestDeadLettersFromPipeline(t *testing.T) {
	e := newEnv(t, 3)
	e.gate.Store(true)
	pub := e.publish(60, 6, 10, time.Now())
	e.runPipeline()

	dls := e.deadLetters(ops.Filter{})
	if len(dls) != len(pub.cheap)+pub.poison {
		t.Fatalf("%d dead letters, want %d cheap + %d poison", len(dls), len(pub.cheap), pub.poison)
	}
	sums := ops.Summarize(dls, nil)
	byProc := map[string]ops.Summary{}
	for _, s := range sums {
		byProc[s.Processor] = s
	}
	if len(sums) != 2 || byProc["gate"].Count != len(pub.cheap) || byProc["decode"].Count != pub.poison {
		t.Fatalf("summary %+v, want gate=%d decode=%d in two groups", sums, len(pub.cheap), pub.poison)
	}
	if !strings.Contains(byProc["gate"].Reason, `below the minimum "…"`) || byProc["gate"].SourceTopics[0] != e.input {
		t.Errorf("gate group %+v", byProc["gate"])
	}
	// The source coordinates lead back to the original record.
	orig := map[string]*kgo.Record{}
	for _, r := range testkit.ReadCommitted(t, e.brokers, e.input, 30*time.Second) {
		orig[ops.TopicPartition{Topic: r.Topic, Partition: r.Partition}.String()+"@"+strconv.FormatInt(r.Offset, 10)] = r
	}
	for _, d := range dls {
		r := orig[d.Source()]
		if r == nil || !bytes.Equal(r.Value, d.Value) || d.Group != e.group || d.ErrorClass != "permanent" {
			t.Errorf("dead letter %s: source %s does not hold its value (group %q)", d.Coordinates(), d.Source(), d.Group)
		}
	}
	var buf bytes.Buffer
	ops.WriteSummaryTable(&buf, e.dlq, len(dls), sums)
	t.Logf("\n%s", buf.String())
	if !strings.Contains(buf.String(), "gate") || !strings.Contains(buf.String(), "decode") {
		t.Errorf("table lacks the processors:\n%s", buf.String())
	}

	// Filters.
	where, _ := ops.ParseWhere([]string{"processor=decode"})
	if got := e.deadLetters(ops.Filter{Where: where}); len(got) != pub.poison {
		t.Errorf("processor=decode: %d, want %d", len(got), pub.poison)
	}
	if got := e.deadLetters(ops.Filter{Since: time.Now().Add(time.Hour)}); len(got) != 0 {
		t.Errorf("--since in the future: %d dead letters", len(got))
	}
}

// TestRedriveExactlyOnce: after the "bug" is fixed, redrive republishes
// the gate's dead letters once, a second redrive does nothing, and the
// pipeline turns each redriven event into exactly one command.
func TestRedriveExactlyOnce(t *testing.T) {
	e := newEnv(t, 3)
	e.gate.Store(true)
	pub := e.publish(60, 5, 12, time.Now())
	e.runPipeline()
	cheap := map[string]bool{}
	for _, id := range pub.cheap {
		cheap[id] = true
	}
	if n := len(e.commands()); n != len(pub.ids)-len(pub.cheap) {
		t.Fatalf("%d events with commands before the redrive, want %d", n, len(pub.ids)-len(pub.cheap))
	}

	where, _ := ops.ParseWhere([]string{"processor=gate"})
	opts := ops.RedriveOptions{DLQTopic: e.dlq, TransactionalID: e.group + "-redrive", Filter: ops.Filter{Where: where}, BatchSize: 4, Check: e.decodeCheck}

	dry := opts
	dry.DryRun = true
	res, err := ops.Redrive(e.ctx(), e.conn, dry)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Redriven) != len(pub.cheap) || len(e.redriven()) != 0 {
		t.Fatalf("dry run: would redrive %d (want %d), wrote %d", len(res.Redriven), len(pub.cheap), len(e.redriven()))
	}

	res, err = ops.Redrive(e.ctx(), e.conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Redriven) != len(pub.cheap) || res.Matched != len(pub.cheap) || res.Read != len(pub.cheap)+pub.poison || res.Transactions < 2 {
		t.Fatalf("first redrive: %+v", res)
	}
	res2, err := ops.Redrive(e.ctx(), e.conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(res2.Redriven) != 0 || res2.AlreadyRedriven != len(pub.cheap) {
		t.Fatalf("second redrive: %+v, want nothing redriven and %d already redriven", res2, len(pub.cheap))
	}
	// A different filter that also matches them does not redrive them again.
	all, err := ops.Redrive(e.ctx(), e.conn, ops.RedriveOptions{DLQTopic: e.dlq, TransactionalID: opts.TransactionalID, Check: e.decodeCheck})
	if err != nil {
		t.Fatal(err)
	}
	if len(all.Redriven) != 0 || all.AlreadyRedriven != len(pub.cheap) || len(all.Skipped) != pub.poison {
		t.Fatalf("unfiltered redrive after the filtered one: %+v", all)
	}
	for _, s := range all.Skipped {
		if !strings.Contains(s.Why, "would fail again: avro") {
			t.Errorf("poison skipped for %q", s.Why)
		}
	}

	got := e.redriven()
	dls := e.deadLetters(ops.Filter{Where: where})
	for _, d := range dls {
		if got[d.Coordinates()] != 1 {
			t.Errorf("dead letter %s is in the input %d times, want 1", d.Coordinates(), got[d.Coordinates()])
		}
	}
	if len(got) != len(dls) {
		t.Errorf("%d redriven records, %d dead letters", len(got), len(dls))
	}

	// The fix: the gate lets them through. The pipeline processes each
	// redriven event once, as an ordinary input.
	e.gate.Store(false)
	e.runPipeline()
	cmds := e.commands()
	for _, id := range pub.ids {
		if len(cmds[id]) != 1 {
			t.Errorf("event %s (cheap %v) caused %d commands, want 1", id, cheap[id], len(cmds[id]))
		}
	}
	if n := len(e.deadLetters(ops.Filter{})); n != len(pub.cheap)+pub.poison {
		t.Errorf("%d dead letters after processing the redriven events, want still %d", n, len(pub.cheap)+pub.poison)
	}
}

// TestRedriveFailsAgain: a forced redrive of poison (no check) is
// dead-lettered again by the pipeline, and the new dead letter names the
// one it was redriven from.
func TestRedriveFailsAgain(t *testing.T) {
	e := newEnv(t, 1)
	pub := e.publish(9, 0, 3, time.Now())
	e.runPipeline()
	where, _ := ops.ParseWhere([]string{"processor=decode"})
	res, err := ops.Redrive(e.ctx(), e.conn, ops.RedriveOptions{DLQTopic: e.dlq, TransactionalID: e.group + "-redrive", Filter: ops.Filter{Where: where}})
	if err != nil || len(res.Redriven) != pub.poison {
		t.Fatalf("forced redrive: %v %+v", err, res)
	}
	e.runPipeline()
	dls := e.deadLetters(ops.Filter{})
	if len(dls) != 2*pub.poison {
		t.Fatalf("%d dead letters, want %d", len(dls), 2*pub.poison)
	}
	first := map[string]bool{}
	var again []*ops.DeadLetter
	for _, d := range dls {
		if d.RedriveOf == "" {
			first[d.Coordinates()] = true
		} else {
			again = append(again, d)
		}
	}
	if len(first) != pub.poison || len(again) != pub.poison {
		t.Fatalf("%d first dead letters and %d after the redrive, want %d each", len(first), len(again), pub.poison)
	}
	for _, d := range again {
		if !first[d.RedriveOf] {
			t.Errorf("second dead letter %s: redrive-of %q, want one of %v", d.Coordinates(), d.RedriveOf, first)
		}
		if slices.ContainsFunc(d.Headers, func(h kgo.RecordHeader) bool { return h.Key == ops.HeaderRedriveOf && string(h.Value) != d.RedriveOf }) {
			t.Errorf("dead letter %s carries two redrive-of headers", d.Coordinates())
		}
	}
	ledger, err := ops.ReadLedger(e.ctx(), e.conn, ops.LedgerTopic(e.dlq))
	if err != nil {
		t.Fatal(err)
	}
	sums := ops.Summarize(dls, ledger)
	if len(sums) != 1 || sums[0].Redriven != pub.poison || sums[0].RedriveAgain != pub.poison {
		t.Fatalf("summary %+v, want %d redriven and %d failed again", sums, pub.poison, pub.poison)
	}

	// A tombstone in the ledger forgets one redrive on purpose: the next
	// run redrives that dead letter again, plus the new ones.
	cl, err := kgo.NewClient(e.conn...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var forgotten string
	for c := range first {
		forgotten = c
		break
	}
	if err := cl.ProduceSync(e.ctx(), &kgo.Record{Topic: ops.LedgerTopic(e.dlq), Key: []byte(forgotten)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	res, err = ops.Redrive(e.ctx(), e.conn, ops.RedriveOptions{DLQTopic: e.dlq, TransactionalID: e.group + "-redrive", Filter: ops.Filter{Where: where}})
	if err != nil || len(res.Redriven) != pub.poison+1 || res.AlreadyRedriven != pub.poison-1 {
		t.Fatalf("redrive after a tombstone: %v %+v", err, res)
	}
	if !slices.ContainsFunc(res.Redriven, func(m ops.Moved) bool { return m.DeadLetter == forgotten }) {
		t.Errorf("the forgotten dead letter %s was not redriven again: %+v", forgotten, res.Redriven)
	}
}

// TestConcurrentRedrives: two redrives of one DLQ at the same time (same
// transactional id, one record per transaction) never republish a dead
// letter twice: the later one fences the earlier, whose open batch is
// aborted, and reads the ledger only after that.
func TestConcurrentRedrives(t *testing.T) {
	e := newEnv(t, 2)
	e.gate.Store(true)
	pub := e.publish(80, 2, 0, time.Now())
	e.runPipeline()
	opts := ops.RedriveOptions{DLQTopic: e.dlq, TransactionalID: e.group + "-redrive", BatchSize: 1}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	results := make([]*ops.RedriveResult, 2)
	for i := range 2 {
		wg.Go(func() {
			if i == 1 {
				time.Sleep(300 * time.Millisecond) // let the first get going
			}
			results[i], errs[i] = ops.Redrive(e.ctx(), e.conn, opts)
		})
	}
	wg.Wait()
	for i, err := range errs {
		t.Logf("redrive %d: err=%v redriven=%d", i, err, len(results[i].Redriven))
	}
	// Finish whatever a fenced run left.
	final, err := ops.Redrive(e.ctx(), e.conn, opts)
	if err != nil {
		t.Fatal(err)
	}
	got := e.redriven()
	if len(got) != len(pub.cheap) {
		t.Fatalf("%d distinct dead letters redriven, want %d", len(got), len(pub.cheap))
	}
	for k, n := range got {
		if n != 1 {
			t.Errorf("%s republished %d times", k, n)
		}
	}
	total := len(final.Redriven)
	for _, r := range results {
		if r != nil {
			total += len(r.Redriven)
		}
	}
	if total != len(pub.cheap) {
		t.Errorf("runs report %d redriven in all, want %d", total, len(pub.cheap))
	}
}

// TestRedriveBadInput: a missing DLQ is a clear error, an empty one
// redrives nothing, a dry run writes nothing (not even the ledger).
func TestRedriveBadInput(t *testing.T) {
	e := newEnv(t, 1)
	_, err := ops.Redrive(e.ctx(), e.conn, ops.RedriveOptions{DLQTopic: e.dlq + "-missing", TransactionalID: "x"})
	var nf *ops.TopicNotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), "dead-letter topic") {
		t.Fatalf("missing DLQ: %v", err)
	}
	res, err := ops.Redrive(e.ctx(), e.conn, ops.RedriveOptions{DLQTopic: e.dlq, DryRun: true})
	if err != nil || res.Read != 0 || len(res.Redriven) != 0 {
		t.Fatalf("empty DLQ dry run: %v %+v", err, res)
	}
	adm := testkit.NewAdmin(t, e.brokers)
	td, err := adm.ListTopics(e.ctx(), ops.LedgerTopic(e.dlq))
	if err != nil {
		t.Fatal(err)
	}
	if td.Has(ops.LedgerTopic(e.dlq)) {
		t.Error("a dry run created the ledger topic")
	}
	res, err = ops.Redrive(e.ctx(), e.conn, ops.RedriveOptions{DLQTopic: e.dlq, TransactionalID: e.group + "-redrive"})
	if err != nil || res.Read != 0 || res.Transactions != 0 {
		t.Fatalf("empty DLQ: %v %+v", err, res)
	}
}
