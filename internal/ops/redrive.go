package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/internal/settle"
	"github.com/ordo-dev/ordo/processors"
)

// ScanStats counts what a dead-letter scan read.
type ScanStats struct {
	Read    int // dead letters read (after --since)
	Matched int // passing the filter
}

// ScanDeadLetters reads the committed dead letters of topic (as a
// read_committed consumer, up to the last stable offset when called) and
// calls fn for each that passes f. f.Since skips ahead with a timestamp
// lookup instead of reading older records. A missing topic is a
// *TopicNotFoundError.
func ScanDeadLetters(ctx context.Context, conn []kgo.Opt, topic string, f Filter, fn func(*DeadLetter) error) (ScanStats, error) {
	var st ScanStats
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return st, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if _, err := partitionsOf(ctx, adm, topic, "dead-letter topic", "check dead_letter_topic in the config or pass --dlq-topic"); err != nil {
		return st, err
	}
	spans, err := committedSpans(ctx, adm, topic, f.Since)
	if err != nil {
		return st, err
	}
	err = readSpans(ctx, conn, topic, spans, func(r *kgo.Record) error {
		st.Read++
		d := ParseDeadLetter(r)
		if !f.Match(d) {
			return nil
		}
		st.Matched++
		return fn(d)
	})
	return st, err
}

// LedgerEntry is one record of the redrive ledger: dead letter DeadLetter
// was republished as To in the transaction that wrote this entry.
type LedgerEntry struct {
	DeadLetter      string    `json:"dead_letter"` // <dlq topic>/<partition>@<offset>
	To              string    `json:"to"`          // <source topic>/<partition>@<offset>
	Processor       string    `json:"processor"`
	Error           string    `json:"error"`
	RedrivenAt      time.Time `json:"redriven_at"`
	TransactionalID string    `json:"transactional_id"`
}

// LedgerTopic is the default redrive ledger of a dead-letter topic.
func LedgerTopic(dlqTopic string) string { return dlqTopic + ".redrive-ledger" }

// ReadLedger returns the committed entries of the redrive ledger, keyed by
// dead-letter coordinates. A ledger that does not exist yet is empty.
func ReadLedger(ctx context.Context, conn []kgo.Opt, ledger string) (map[string]LedgerEntry, error) {
	cl, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	return readLedger(ctx, conn, kadm.NewClient(cl), ledger)
}

func readLedger(ctx context.Context, conn []kgo.Opt, adm *kadm.Client, ledger string) (map[string]LedgerEntry, error) {
	out := map[string]LedgerEntry{}
	if _, err := partitionsOf(ctx, adm, ledger, "redrive ledger", ""); err != nil {
		var nf *TopicNotFoundError
		if errors.As(err, &nf) {
			return out, nil
		}
		return nil, err
	}
	spans, err := committedSpans(ctx, adm, ledger, time.Time{})
	if err != nil {
		return nil, err
	}
	err = readSpans(ctx, conn, ledger, spans, func(r *kgo.Record) error {
		if r.Value == nil {
			// A tombstone: an operator deliberately forgot this redrive
			// so that the dead letter can be redriven again.
			delete(out, string(r.Key))
			return nil
		}
		var e LedgerEntry
		if err := json.Unmarshal(r.Value, &e); err != nil || e.DeadLetter != string(r.Key) {
			return fmt.Errorf("redrive ledger %s/%d@%d is not a ledger entry (%v): is %s used by something else?", ledger, r.Partition, r.Offset, err, ledger)
		}
		out[e.DeadLetter] = e
		return nil
	})
	return out, err
}

// RedriveOptions configure Redrive.
type RedriveOptions struct {
	DLQTopic string
	// LedgerTopic records every redriven dead letter (default
	// LedgerTopic(DLQTopic)); created compacted with one partition when
	// missing.
	LedgerTopic string
	// TransactionalID of the redrive producer. Every redrive of one
	// dead-letter topic must use the same id: initialising it fences any
	// other redrive still running, which is what makes the ledger check and
	// the republish one atomic step.
	TransactionalID string
	Filter          Filter
	DryRun          bool
	// BatchSize is the number of dead letters per transaction (default 500).
	BatchSize int
	// Check, when set, is asked about each candidate before it is
	// republished (the command line decodes the payload the way the
	// pipeline does). A permanent error skips the dead letter (it would
	// only be dead-lettered again); a transient one (processors.IsTransient)
	// stops the run with nothing of the open batch written.
	Check func(ctx context.Context, d *DeadLetter) error
	// TransactionTimeout bounds each batch's transaction (default 60s).
	TransactionTimeout time.Duration
	Now                func() time.Time
}

// Skipped is a dead letter redrive left alone, and why.
type Skipped struct {
	DeadLetter string `json:"dead_letter"`
	Why        string `json:"why"`
}

// Moved is one republished dead letter.
type Moved struct {
	DeadLetter string `json:"dead_letter"`
	To         string `json:"to"` // "<topic>/<partition>" on a dry run
}

// RedriveResult reports a redrive.
type RedriveResult struct {
	DryRun          bool      `json:"dry_run"`
	Read            int       `json:"read"`             // dead letters read
	Matched         int       `json:"matched"`          // passing the filter
	AlreadyRedriven int       `json:"already_redriven"` // in the ledger before this run
	Redriven        []Moved   `json:"redriven"`         // republished now (would be, on a dry run)
	Skipped         []Skipped `json:"skipped"`          // matched but not redrivable or failing Check
	Transactions    int       `json:"transactions"`
	LedgerTopic     string    `json:"ledger_topic"`
	TransactionalID string    `json:"transactional_id"`
}

// Redrive republishes the dead letters that pass opts.Filter to their
// source topics, exactly once per dead letter across any number of runs and
// filters. Each batch is one Kafka transaction that writes the originals
// (with HeaderRedriveOf) and one ledger entry per dead letter; a dead letter
// whose coordinates are in the ledger is never republished again. The
// ledger is read after the producer's transactional id is initialised, which
// fences every earlier or concurrent redrive with that id and completes its
// open transaction first, so the ledger read is up to date until this run
// ends (a redrive started meanwhile fences this one, whose next commit then
// fails with nothing of that batch written).
func Redrive(ctx context.Context, conn []kgo.Opt, opts RedriveOptions) (*RedriveResult, error) {
	if opts.LedgerTopic == "" {
		opts.LedgerTopic = LedgerTopic(opts.DLQTopic)
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 500
	}
	if opts.TransactionTimeout <= 0 {
		opts.TransactionTimeout = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TransactionalID == "" && !opts.DryRun {
		return nil, errors.New("redrive needs a transactional id")
	}
	res := &RedriveResult{DryRun: opts.DryRun, LedgerTopic: opts.LedgerTopic, TransactionalID: opts.TransactionalID}

	admCl, err := kgo.NewClient(conn...)
	if err != nil {
		return nil, err
	}
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	if _, err := partitionsOf(ctx, adm, opts.DLQTopic, "dead-letter topic", "check dead_letter_topic in the config or pass --dlq-topic"); err != nil {
		return nil, err
	}

	var txn *kgo.Client
	if !opts.DryRun {
		if err := ensureLedger(ctx, adm, opts.LedgerTopic); err != nil {
			return nil, err
		}
		txn, err = kgo.NewClient(append(slices.Clone(conn),
			kgo.TransactionalID(opts.TransactionalID),
			kgo.TransactionTimeout(opts.TransactionTimeout),
			kgo.RecordPartitioner(kgo.ManualPartitioner()),
			// As in the pipeline (consumer.MetadataMinAge): a produce
			// refused with CONCURRENT_TRANSACTIONS right after the previous
			// batch's commit is retried after a metadata refresh, which
			// franz-go's default 5s min age would delay by up to 5s.
			kgo.MetadataMinAge(100*time.Millisecond),
		)...)
		if err != nil {
			return nil, err
		}
		defer txn.Close()
		// InitProducerID now, before reading the ledger: see the doc comment.
		if _, _, err := txn.ProducerID(ctx); err != nil {
			return nil, fmt.Errorf("initialise transactional id %q: %w", opts.TransactionalID, err)
		}
		// The ledger is written only by redrive's own transactional id, so
		// an open transaction there is the tail of one just fenced or
		// committed and settles within moments.
		if _, err := settle.Wait(ctx, adm, 30*time.Second, opts.LedgerTopic); err != nil {
			return nil, fmt.Errorf("%w: is another `ordo dlq redrive` running with a different transactional id?", err)
		}
	}
	done, err := readLedger(ctx, conn, adm, opts.LedgerTopic)
	if err != nil {
		return nil, err
	}

	partitions := map[string]int{} // source topic -> partition count (-1: missing)
	partitionCount := func(topic string) (int, error) {
		if n, ok := partitions[topic]; ok {
			return n, nil
		}
		ps, err := partitionsOf(ctx, adm, topic, "source topic", "")
		var nf *TopicNotFoundError
		switch {
		case errors.As(err, &nf):
			partitions[topic] = -1
		case err != nil:
			return 0, err
		default:
			partitions[topic] = len(ps)
		}
		return partitions[topic], nil
	}

	var batch []*DeadLetter
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if opts.DryRun {
			for _, d := range batch {
				res.Redriven = append(res.Redriven, Moved{DeadLetter: d.Coordinates(), To: d.SourceTopic + "/" + strconv.Itoa(int(d.SourcePartition))})
			}
			batch = batch[:0]
			return nil
		}
		moved, err := redriveBatch(ctx, txn, opts, batch)
		if err != nil {
			return err
		}
		res.Transactions++
		res.Redriven = append(res.Redriven, moved...)
		batch = batch[:0]
		return nil
	}

	st, err := ScanDeadLetters(ctx, conn, opts.DLQTopic, opts.Filter, func(d *DeadLetter) error {
		if _, ok := done[d.Coordinates()]; ok {
			res.AlreadyRedriven++
			return nil
		}
		if why := d.Redrivable(); why != "" {
			res.Skipped = append(res.Skipped, Skipped{d.Coordinates(), why})
			return nil
		}
		n, err := partitionCount(d.SourceTopic)
		if err != nil {
			return err
		}
		if n < 0 {
			res.Skipped = append(res.Skipped, Skipped{d.Coordinates(), fmt.Sprintf("source topic %s does not exist", d.SourceTopic)})
			return nil
		}
		if int(d.SourcePartition) >= n {
			res.Skipped = append(res.Skipped, Skipped{d.Coordinates(), fmt.Sprintf("source topic %s has %d partitions, not %d", d.SourceTopic, n, d.SourcePartition+1)})
			return nil
		}
		if opts.Check != nil {
			if err := opts.Check(ctx, d); err != nil {
				if processors.IsTransient(err) {
					return fmt.Errorf("checking %s: %w (a fault outside the dead letter: nothing of the open batch was written; rerun when it is fixed)", d.Coordinates(), err)
				}
				res.Skipped = append(res.Skipped, Skipped{d.Coordinates(), "would fail again: " + err.Error()})
				return nil
			}
		}
		batch = append(batch, d)
		if len(batch) >= opts.BatchSize {
			return flush()
		}
		return nil
	})
	res.Read, res.Matched = st.Read, st.Matched
	if err == nil {
		err = flush()
	}
	if err != nil {
		return res, err
	}
	return res, nil
}

// redriveBatch writes one transaction: the originals, then (once their
// offsets are known) one ledger entry each, then commits.
func redriveBatch(ctx context.Context, cl *kgo.Client, opts RedriveOptions, batch []*DeadLetter) (moved []Moved, err error) {
	if err := cl.BeginTransaction(); err != nil {
		return nil, fmt.Errorf("begin redrive transaction: %w", err)
	}
	defer func() {
		if err != nil {
			// Nothing of this batch becomes visible.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			defer cancel()
			_ = cl.AbortBufferedRecords(actx)
			if aerr := cl.EndTransaction(actx, kgo.TryAbort); aerr != nil {
				err = fmt.Errorf("%w (and aborting failed: %v; the transaction times out after %v)", err, aerr, opts.TransactionTimeout)
			}
		}
	}()
	recs := make([]*kgo.Record, len(batch))
	for i, d := range batch {
		recs[i] = RedriveRecord(d)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return nil, fmt.Errorf("republish: %w", err)
	}
	now := opts.Now().UTC()
	ledger := make([]*kgo.Record, len(batch))
	moved = make([]Moved, len(batch))
	for i, d := range batch {
		to := recs[i].Topic + "/" + strconv.Itoa(int(recs[i].Partition)) + "@" + strconv.FormatInt(recs[i].Offset, 10)
		e := LedgerEntry{DeadLetter: d.Coordinates(), To: to, Processor: d.Processor, Error: d.Error, RedrivenAt: now, TransactionalID: opts.TransactionalID}
		v, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		ledger[i] = &kgo.Record{Topic: opts.LedgerTopic, Partition: 0, Key: []byte(e.DeadLetter), Value: v}
		moved[i] = Moved{DeadLetter: e.DeadLetter, To: to}
	}
	if err := cl.ProduceSync(ctx, ledger...).FirstErr(); err != nil {
		return nil, fmt.Errorf("write redrive ledger %s: %w", opts.LedgerTopic, err)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		// A redrive started meanwhile bumped the epoch: depending on the
		// broker's transaction protocol the fenced producer sees one of these.
		if errors.Is(err, kerr.ProducerFenced) || errors.Is(err, kerr.InvalidProducerEpoch) || errors.Is(err, kerr.InvalidTxnState) {
			return nil, fmt.Errorf("commit redrive transaction: %w: most likely another `ordo dlq redrive` with transactional id %q started and took over; this batch was not written (rerun to redrive what is left)", err, opts.TransactionalID)
		}
		return nil, fmt.Errorf("commit redrive transaction: %w (this batch was not written; rerun to retry)", err)
	}
	return moved, nil
}

// ensureLedger creates the ledger topic (compacted, one partition) when it
// does not exist.
func ensureLedger(ctx context.Context, adm *kadm.Client, topic string) error {
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"cleanup.policy": &compact}, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create redrive ledger topic %s: %w (fix: create it yourself, compacted with one partition, or pass --ledger-topic)", topic, err)
	}
	// A new topic has no leader for a moment; wait so the first produce
	// does not race it.
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := adm.Metadata(ctx, topic)
		if err == nil {
			if td, ok := md.Topics[topic]; ok && td.Err == nil && len(td.Partitions) > 0 {
				ready := true
				for _, p := range td.Partitions {
					ready = ready && p.Err == nil && p.Leader >= 0
				}
				if ready {
					return nil
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redrive ledger topic %s has no leader after 30s", topic)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
