// Package consumer is ordo's exactly-once loop. The whole loop is in this
// file: poll → begin → run the processor chain on each partition's records
// (partitions in parallel, records of one partition in order) → produce
// commands and dead letters → end the transaction, which commits the outputs
// and the input offsets atomically (KIP-447, franz-go GroupTransactSession).
//
// The rules it follows, each learned the hard way:
//   - read_committed always, so ordo never acts on an aborted upstream event;
//   - one transactional id per live replica, stable across its restarts, so a
//     restarted replica fences its own zombie;
//   - End returning (false, nil) means a rebalance aborted the transaction:
//     the session rewound to the committed offsets, keep polling;
//   - any error from End means the producer is in an unknown state: close the
//     session and build a new one;
//   - any produce error aborts the transaction (AbortingFirstErrPromise);
//   - End is never called from a rebalance callback;
//   - the transaction timeout is below the session timeout.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordo-dev/ordo/internal/arena"
	"github.com/ordo-dev/ordo/internal/state"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/schemas"
)

// Decoder turns a record value into an event value. *schemas.Serde
// implements it. Errors are permanent (dead-letter) unless they are
// transient (processors.IsTransient), e.g. the registry is unreachable.
type Decoder interface {
	Decode(ctx context.Context, topic string, value []byte) (schemas.Decoded, error)
}

// RecordDecoder is a Decoder that can also leave records as
// *schemas.Record (Decoded.Record; schemas.Serde is one). The pipeline
// uses it when its chain is a processors.RecordReader (a Chain is): fields
// are then read without a map per record (see processors.Event.Record).
type RecordDecoder interface {
	Decoder
	DecodeRecord(ctx context.Context, topic string, value []byte) (schemas.Decoded, error)
}

// Pipeline is one ordo replica's exactly-once loop.
type Pipeline struct {
	cfg config
	dec Decoder
	// decode is dec.Decode, or DecodeRecord when dec and chain allow it.
	decode func(ctx context.Context, topic string, value []byte) (schemas.Decoded, error)
	chain  processors.Processor
	// events builds the chain's events from blocks shared by several.
	events EventBuilder
	out    *producer.Output
	obs    *hooks
	log    *slog.Logger
	// tracer is nil when tracing is off (see tracing.go).
	tracer trace.Tracer
	// skipTypes is config.SkipTypes as a set (see flow.go).
	skipTypes map[string]struct{}

	// health is the loop's progress, for Live and Ready (health.go).
	health health
	// served orders partitions fairly across polls (loop goroutine only).
	served servedOrder
	// spareHeld is the last prefetch's held-output slice, emptied, for the
	// next one (loop goroutine only): a batch holds thousands of outputs,
	// and growing a new slice for each cost ~2% of the loop's CPU.
	spareHeld []heldOutput
	// st is the stateful stage's bookkeeping (stateful.go); nil when
	// stateless.
	st *stateLoop

	newSession func() (txnSession, error)
	// chaos, when set (tests only, see export_test.go), runs at named points
	// of the loop and may close the session's client to simulate a crash.
	chaos func(point string, sess txnSession)
}

// New checks the options and returns a pipeline: dec decodes inputs, chain
// processes them, out writes commands and dead letters. Brokers, Group,
// Topics and TransactionalID are required; every other option has a default
// (options.go). Nothing connects until Run.
func New(dec Decoder, chain processors.Processor, out *producer.Output, opts ...Opt) (*Pipeline, error) {
	var cfg config
	for _, o := range opts {
		if o != nil { // a nil option (an unset variable) changes nothing
			o(&cfg)
		}
	}
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	obs, err := newHooks(cfg.Hooks)
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	p := &Pipeline{cfg: cfg, dec: dec, chain: chain, out: out, obs: obs, log: cfg.Logger, tracer: newTracer(cfg.TracerProvider)}
	if rd, ok := dec.(RecordDecoder); ok && processors.ReadsRecords(chain) {
		p.decode = rd.DecodeRecord
	} else if dec != nil {
		p.decode = dec.Decode
	}
	p.skipTypes = make(map[string]struct{}, len(cfg.SkipTypes))
	for _, t := range cfg.SkipTypes {
		p.skipTypes[t] = struct{}{}
	}
	if cfg.State != nil {
		p.st = newStateLoop(cfg.State, cfg.Topics[0])
	}
	p.newSession = func() (txnSession, error) { return newKgoSession(p.kgoOpts()...) }
	return p, nil
}

func (p *Pipeline) kgoOpts() []kgo.Opt {
	c := p.cfg
	// ordo's defaults for client settings a caller may change, then the
	// caller's options, then ordo's exactly-once options, which must win.
	opts := []kgo.Opt{kgo.MetadataMinAge(c.MetadataMinAge)}
	opts = append(opts, c.KgoOpts...)
	opts = append(opts,
		kgo.SeedBrokers(c.Brokers...),
		kgo.ConsumerGroup(c.Group),
		kgo.ConsumeTopics(c.Topics...),
		kgo.TransactionalID(c.TransactionalID),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.RequireStableFetchOffsets(),
		kgo.SessionTimeout(c.SessionTimeout),
		kgo.TransactionTimeout(c.TransactionTimeout),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Upstream transaction markers come back as control records, so
		// the committed offset moves past a partition's final marker and
		// the lag of an idle, caught-up partition is 0, not 1.
		kgo.KeepControlRecords(),
		// Bounded fetches keep memory flat under a backlog.
		kgo.FetchMaxBytes(c.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(c.FetchMaxPartitionBytes),
		// Batch outputs into fewer, larger produce requests (see
		// ProducerLinger); End flushes at once.
		kgo.ProducerLinger(c.ProducerLinger),
	)
	if c.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(c.InstanceID))
	}
	if p.st != nil {
		opts = append(opts, p.st.callbacks()...)
	}
	return opts
}

// Run consumes until ctx is cancelled. On cancellation it finishes the open
// transaction (commit what was processed, else abort), leaves the group and
// returns nil. It returns an error only for problems that a new session
// cannot fix (none today: it recreates sessions forever, backing off).
func (p *Pipeline) Run(ctx context.Context) error {
	ctx = processors.WithProcessorHook(ctx, p.obs.ProcessorDone)
	backoff := newBackoff(p.cfg.RetryBackoffMin, p.cfg.RetryBackoffMax)
	p.health.loop(time.Now())
	for ctx.Err() == nil {
		sess, err := p.newSession()
		if err != nil {
			return fmt.Errorf("consumer: create transact session: %w", err)
		}
		p.log.Info("transact session started", "transactional_id", p.cfg.TransactionalID, "instance_id", p.cfg.InstanceID, "group", p.cfg.Group, "topics", p.cfg.Topics)
		if ks, ok := sess.(kgoSession); ok {
			ks.initProducerID(ctx, p.log)
		}
		err = p.runSession(ctx, sess)
		p.closeSession(sess)
		if p.st != nil {
			// Whatever ended the session, its partitions are gone: a new
			// session restores (catches up) what it is assigned.
			p.st.st.Store.Reset()
			p.st.forgetTriggers()
		}
		p.health.loop(time.Now())
		var refused errStateRefused
		if errors.As(err, &refused) {
			return err
		}
		if err == nil || ctx.Err() != nil {
			break
		}
		p.obs.SessionRestarted(err)
		d := backoff.next()
		p.log.Warn("transact session failed; recreating it", "err", err, "backoff", d)
		if !sleep(ctx, d) {
			break
		}
		p.health.loop(time.Now())
	}
	return nil
}

// closeSession leaves the group. Close after a shutdown-time End is clean; a
// failed session is closed as-is (its transaction, if any, is aborted by the
// broker when the next session with the same transactional id initializes).
func (p *Pipeline) closeSession(sess txnSession) {
	done := make(chan struct{})
	go func() { sess.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.cfg.ShutdownTimeout):
		p.log.Warn("closing the transact session timed out", "timeout", p.cfg.ShutdownTimeout)
	}
}

// idlePoll bounds a poll while no transaction is open, so the loop comes
// round (liveness) even when no input arrives.
const idlePoll = time.Second

// txn is the state of the open transaction.
type txn struct {
	open    bool
	started time.Time
	records int
	promise *kgo.FirstErrPromise
	counts  Counts   // what becomes visible if this transaction commits
	spans   *spanBuf // event spans waiting for the outcome; nil when tracing is off
	// carry holds the polled records this transaction did not process (it
	// ran out of time, or is shutting down): each partition's tail of a
	// poll. End commits their partitions only up to the first of them
	// (rewindPoints) and keeps them: the next transaction processes them
	// first, without fetching them again. Between a serial End and the
	// next transaction (txn not open) carry holds what that End kept.
	carry []kgo.FetchTopicPartition
	// work is the context of the transaction's processing: it ends
	// (errTxnBudget) half a transaction timeout after the start.
	work       context.Context
	cancelWork context.CancelFunc
	// commitAt, when set, is exactly what End commits (the pipelined
	// loop, see endPipelined); otherwise End commits the client's
	// uncommitted offsets (minus rewind).
	commitAt map[string]map[int32]kgo.EpochOffset
	// held, when set, collects the outputs instead of producing them: the
	// work of a batch processed before its transaction began (prefetch).
	held *heldOutputs
}

// errTxnBudget cancels processing that would leave its transaction too
// little time to commit.
var errTxnBudget = errors.New("the transaction's processing budget (half the transaction timeout) is spent")

// release frees the processing context's timer.
func (t *txn) release() {
	if t.cancelWork != nil {
		t.cancelWork()
	}
}

// deadline is when the transaction should end: records not started by then
// wait for the next transaction.
func (t *txn) deadline(interval time.Duration) time.Time { return t.started.Add(interval) }

// carried counts the records of the carry.
func (t *txn) carried() int {
	n := 0
	for _, c := range t.carry {
		n += len(c.Records)
	}
	return n
}

// rewindPoints is, per partition of the carry, its first unprocessed
// record: what End commits for it instead of the polled position. nil when
// nothing is carried.
func (t *txn) rewindPoints() map[string]map[int32]kgo.EpochOffset {
	if len(t.carry) == 0 {
		return nil
	}
	points := map[string]map[int32]kgo.EpochOffset{}
	for _, ftp := range t.carry {
		r := ftp.Records[0]
		ps := points[r.Topic]
		if ps == nil {
			ps = map[int32]kgo.EpochOffset{}
			points[r.Topic] = ps
		}
		if cur, ok := ps[r.Partition]; !ok || r.Offset < cur.Offset {
			ps[r.Partition] = kgo.EpochOffset{Epoch: r.LeaderEpoch, Offset: r.Offset}
		}
	}
	return points
}

// runSession is the EOS loop for one session. It returns nil when ctx is
// cancelled and an error when the session must be recreated.
func (p *Pipeline) runSession(ctx context.Context, sess txnSession) error {
	var t txn
	// A session that fails mid-transaction never ends it here: the broker
	// aborts it. Its event spans end as "abandoned".
	defer func() { t.release(); finishSpans(t.spans, "abandoned", nil) }()
	// Every abort backs off (a record that cannot be written, a dependency
	// that refuses, a rebalance storm); a commit resets it.
	aborts := newBackoff(p.cfg.RetryBackoffMin, p.cfg.RetryBackoffMax)
	limits := newRateLimits(p.cfg.RateLimits)
	var pace pollPacer
	for {
		p.health.loop(time.Now())
		if p.st != nil {
			if err := p.st.resumeRestored(sess); err != nil {
				return err
			}
		}
		// Poll, but never past the commit deadline of an open transaction
		// nor past the moment a rate-limited topic may resume; when idle,
		// come round every idlePoll.
		resumeAt := limits.resume(sess, time.Now())
		deadline, _ := earliest(t.open, t.deadline(p.cfg.CommitInterval), resumeAt)
		if !t.open {
			if idle := time.Now().Add(idlePoll); deadline.IsZero() || idle.Before(deadline) {
				deadline = idle
			}
		}
		// Records the last End kept (t.carry while no transaction is
		// open) are work at hand: do not wait for more.
		carried := 0
		if !t.open {
			if carried = t.carried(); carried > 0 {
				deadline = time.Now().Add(prefetchWait)
			}
		}
		pollCtx, cancel := context.WithDeadline(ctx, deadline)
		left := p.cfg.CommitInterval
		if t.open {
			left = time.Until(t.deadline(p.cfg.CommitInterval))
		}
		max := p.pollSize(p.cfg.BatchSize-t.records, left, carried, &pace, limits)
		pollStart := time.Now()
		var fetches kgo.Fetches
		if max > 0 { // PollRecords takes max ≤ 0 as no bound
			fetches = sess.PollRecords(pollCtx, max)
		}
		cancel()
		if p.log.Enabled(ctx, slog.LevelDebug) {
			p.log.Debug("polled", "records", fetches.NumRecords(), "max", max, "carried", carried, "waited", time.Since(pollStart), "txn_open", t.open, "txn_age", txnAge(&t))
		}

		if ctx.Err() != nil { // shutting down: finish what is open
			// Polling advanced the offsets End would commit past these
			// unprocessed records: rewind their partitions to them.
			if t.open {
				fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
					if len(ftp.Records) > 0 {
						t.carry = append(t.carry, ftp)
					}
				})
			}
			return p.shutdown(sess, &t)
		}
		if err := p.fetchError(fetches); err != nil {
			return err
		}
		if fetches.Empty() && !t.open && carried == 0 {
			// Nothing open and nothing new: no work waits (work polled by
			// an aborted transaction may have moved to another replica).
			p.health.idle()
		}

		if !fetches.Empty() || carried > 0 {
			p.health.work(time.Now())
			var carry []kgo.FetchTopicPartition
			if !t.open {
				carry = t.carry // begin starts t afresh
			}
			if err := p.begin(ctx, sess, &t); err != nil {
				return err
			}
			n := fetches.NumRecords() + carried // walks every partition: count once
			t.records += n
			polled := time.Now()
			done, err := p.processFetches(t.work, sess, fetches, carry, &t)
			pace.observe(done, time.Since(polled))
			if p.chaos != nil {
				p.chaos("after-produce", sess)
			}
			if err != nil {
				if ctx.Err() != nil {
					return p.shutdown(sess, &t)
				}
				// Transient failure that outlived its retries: abort, which
				// rewinds to the committed offsets, back off, and re-run.
				p.log.Warn("transient failure; aborting the transaction and retrying", "err", err)
				if _, err := p.end(ctx, sess, &t, kgo.TryAbort, err); err != nil {
					return err
				}
				if !sleep(ctx, aborts.next()) {
					return p.shutdown(sess, &t)
				}
				continue
			}
			// Over its rate? Pause the topic until its bucket refills.
			limits.charge(sess, fetches, time.Now())
		}

		if p.st != nil {
			if err := p.fireTimers(ctx, sess, &t); err != nil {
				return err
			}
		}

		// A loop, not an if: a pipelined end may open the next
		// transaction with the prefetched batch, which may itself be due
		// (a rewind from its cut must end it before anything more is
		// polled for it).
		for t.open && (len(t.carry) > 0 || t.records >= p.cfg.BatchSize || time.Since(t.started) >= p.cfg.CommitInterval) {
			if p.chaos != nil {
				p.chaos("before-end", sess)
			}
			var (
				committed bool
				next      error // the prefetched batch failed transiently
				err       error
			)
			if p.canPipeline(&t) && ctx.Err() == nil {
				committed, next, err = p.endPipelined(ctx, sess, &t, limits, &pace)
			} else {
				committed, err = p.end(ctx, sess, &t, kgo.TryCommit, nil)
			}
			if err != nil {
				return err
			}
			if committed {
				aborts.reset()
			} else if !sleep(ctx, aborts.next()) {
				return p.shutdown(sess, &t)
			}
			if next != nil {
				// As in the serial path: abort (rewinding to what the
				// previous transaction committed), back off, re-run.
				p.log.Warn("transient failure; aborting the transaction and retrying", "err", next)
				if _, err := p.end(ctx, sess, &t, kgo.TryAbort, next); err != nil {
					return err
				}
				if !sleep(ctx, aborts.next()) {
					return p.shutdown(sess, &t)
				}
			}
		}
	}
}

// pollSize is how many records the next poll may take: room (what is left
// of the batch), paced to the time left unless PollRecords fixes it, minus
// the carried records, within the rate limits. ≤ 0 means do not poll. The
// carried records take their share of the batch and of the time: polling a
// full paced batch on top of them would overrun the deadline and cut (and
// carry) again, every transaction.
func (p *Pipeline) pollSize(room int, left time.Duration, carried int, pace *pollPacer, limits *rateLimits) int {
	n := room
	if p.cfg.PollRecords > 0 {
		n = min(n, p.cfg.PollRecords)
	} else {
		n = min(n, pace.records(left))
	}
	n -= carried
	if c := limits.pollCap(time.Now()); c > 0 && c < n {
		n = c
	}
	return n
}

// txnAge is how long t has been open (0 when it is not), for logs.
func txnAge(t *txn) time.Duration {
	if !t.open {
		return 0
	}
	return time.Since(t.started)
}

// begin opens a transaction unless one is open.
func (p *Pipeline) begin(ctx context.Context, sess txnSession, t *txn) error {
	if t.open {
		return nil
	}
	if err := sess.Begin(); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	*t = txn{open: true, started: time.Now(), promise: sess.newPromise()}
	// Processing must leave the transaction time to commit: past half the
	// transaction timeout its work is cancelled and it aborts (never a dead
	// letter).
	t.work, t.cancelWork = context.WithDeadlineCause(ctx, t.started.Add(p.cfg.TransactionTimeout/2), errTxnBudget)
	if p.tracer != nil {
		t.spans = &spanBuf{}
	}
	return nil
}

// fireTimers produces the triggers of due timers (stateful stage), in the
// open transaction or a new one.
func (p *Pipeline) fireTimers(ctx context.Context, sess txnSession, t *txn) error {
	now := time.Now()
	p.st.refreshCaughtUp(ctx, sess, now)
	var err error
	produceCtx := context.WithoutCancel(ctx)
	_, ferr := p.st.fireDue(now, func(r *kgo.Record) {
		if err != nil {
			return
		}
		if err = p.begin(ctx, sess, t); err != nil {
			return
		}
		p.obs.Produced(r)
		sess.Produce(produceCtx, r, t.promise.Promise())
		t.counts.TimersTriggered++
	})
	if err != nil {
		return err
	}
	return ferr
}

// pollPacer sizes polls so that a transaction ends close to its commit
// deadline: records not started by the deadline wait for the next
// transaction (carried over, or in the serial loop rewound and fetched
// again), so a poll much larger than what fits only holds memory or wastes
// work, while the first polls of a transaction may be large (fewer, cheaper
// rounds). It learns the wall time per processed record.
//
// The estimate is a ratio of decayed sums (time over records), not an
// average of per-batch ratios: a small batch's time is mostly fixed cost
// (goroutines, spans, the first lookups of a cold replica), and as a
// sample of its own it taught the pacer a per-record cost many times too
// high. After a quiet start (the benchmark's priming, a replica that was
// idle) that capped polls at 100-1,100 records for the first half second
// of a burst (bench/findings.md, 2026-12-05, late night). Weighted by
// their records, small batches barely move it.
type pollPacer struct {
	took time.Duration // decayed sum of processing wall time
	n    float64       // decayed sum of records processed
}

// minPacedPoll keeps polls from shrinking to nothing: a poll feeds every
// partition with work (they run in parallel), and records that do not fit
// wait for the next transaction.
const minPacedPoll = 100

// pacerDecay is the weight the past keeps at each observation.
const pacerDecay = 7.0 / 8

func (p *pollPacer) observe(n int, took time.Duration) {
	if n <= 0 {
		return
	}
	p.took = time.Duration(pacerDecay*float64(p.took)) + took
	p.n = pacerDecay*p.n + float64(n)
}

// perRecord is the learnt processing wall time per record (0: none yet).
func (p *pollPacer) perRecord() time.Duration {
	if p.n == 0 {
		return 0
	}
	return time.Duration(float64(p.took) / p.n)
}

// records is how many records fit in the time left, at least minPacedPoll.
func (p *pollPacer) records(left time.Duration) int {
	per := p.perRecord()
	if per <= 0 {
		return math.MaxInt
	}
	return max(minPacedPoll, int(left/per))
}

// endContext bounds one End: it survives the shutdown of ctx (a SIGTERM
// during End must not leave the transaction to the broker's timeout) but
// not the transaction timeout, after which the broker aborts it anyway.
func (p *Pipeline) endContext(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(p.cfg.TransactionTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d // shutdown's own bound (ShutdownTimeout) is shorter
	}
	return context.WithDeadline(context.WithoutCancel(ctx), deadline)
}

// end ends the open transaction and reports whether it committed. A
// produce error turns a commit into an abort. It returns an error only when
// the session must be recreated. why is the reason for an abort the caller
// asked for (health and logs).
func (p *Pipeline) end(ctx context.Context, sess txnSession, t *txn, try kgo.TransactionEndTry, why error) (bool, error) {
	if !t.open {
		return false, nil
	}
	t.release()
	endStart := time.Now()
	ectx, cancel := p.endContext(ctx)
	defer cancel()
	if try == kgo.TryCommit && p.st != nil {
		// The state written by this transaction's events goes into the
		// changelog, inside the transaction.
		if err := p.st.housekeep(time.Now()); err != nil {
			p.log.Warn("state housekeeping failed; aborting the transaction", "err", err)
			try, why = kgo.TryAbort, err
		} else {
			produceCtx := context.WithoutCancel(ctx)
			for _, r := range p.st.st.Store.ChangelogRecords() {
				sess.Produce(produceCtx, r, t.promise.Promise())
			}
		}
	}
	if try == kgo.TryCommit {
		// Flush first: the produce results are only known once the
		// lingering batches are sent, and waiting on them unflushed would
		// sit out the linger.
		if err := sess.Flush(ectx); err != nil {
			return false, fmt.Errorf("flush before commit: %w", err)
		}
		if perr := t.promise.Err(); perr != nil { // every produce of this transaction
			p.log.Warn("produce failed; aborting the transaction", "err", perr)
			try, why = kgo.TryAbort, perr
		}
	}
	var keep []kgo.FetchTopicPartition
	if try == kgo.TryCommit && len(t.carry) > 0 && t.commitAt == nil {
		// Commit each cut partition only up to its first unprocessed
		// record, and keep the records for the next transaction (a
		// pipelined end has done both already, see endPipelined). The
		// client is not moved back: SetOffsets would drop every
		// buffered fetch, and each cut would cost a fetch round trip.
		t.commitAt = commitAtCut(sess, t)
		keep = t.carry
	}
	_, span := p.startTxnSpan(ctx, t, try)
	start := time.Now()
	var (
		committed bool
		err       error
	)
	if t.commitAt != nil {
		committed, err = sess.EndCommitting(ectx, try, t.commitAt)
	} else {
		committed, err = sess.End(ectx, try)
	}
	dur := time.Since(start)
	if p.st != nil {
		// The batch reaches the local store only if End committed; after
		// an End error the outcome is unknown, so it is discarded and the
		// session's end resets the store (the next owner catches up from
		// the committed changelog).
		if ferr := p.st.finish(committed && err == nil); ferr != nil && err == nil {
			err = fmt.Errorf("apply committed state to the local store: %w", ferr)
		}
	}
	counts, spans := t.counts, t.spans
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.Debug("transaction ended", "try", try == kgo.TryCommit, "committed", committed, "err", err, "records", t.records, "events", counts.EventsIn, "rewound", counts.Rewound,
			"age", time.Since(t.started), "flush_and_end", time.Since(endStart), "end", dur)
	}
	*t = txn{}
	outcome := "committed"
	switch {
	case err != nil:
		outcome = "failed"
		failSpan(span, err)
	case !committed:
		outcome = "aborted"
	}
	if span != nil {
		span.SetAttributes(attribute.String("ordo.txn.outcome", outcome), attribute.Int("ordo.txn.events", counts.EventsIn))
		span.End()
	}
	finishSpans(spans, outcome, span)
	if err != nil {
		p.health.aborted("end transaction: " + err.Error())
		p.obs.TxnAborted(dur, err)
		return false, fmt.Errorf("end transaction: %w", err)
	}
	if !committed {
		// (false, nil): we asked to abort, or a rebalance aborted us. The
		// session rewound to the committed offsets; keep polling.
		reason := "aborted by a rebalance"
		if why != nil {
			reason = why.Error()
		}
		p.health.aborted(reason)
		p.obs.TxnAborted(dur, nil)
		return false, nil
	}
	p.health.committed(time.Now())
	p.obs.TxnCommitted(dur, counts)
	if keep != nil {
		// The next transaction processes them first (runSession), unless
		// their partition moved during End.
		t.carry = p.stillAt(sess, keep)
	}
	return true, nil
}

// shutdown commits the open transaction if everything in it that was not
// rewound was processed, and aborts it otherwise, within ShutdownTimeout.
func (p *Pipeline) shutdown(sess txnSession, t *txn) error {
	if !t.open {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
	defer cancel()
	try := kgo.TryCommit
	var why error
	if t.counts.incomplete {
		try, why = kgo.TryAbort, errors.New("shutdown with unfinished work")
	}
	if _, err := p.end(ctx, sess, t, try, why); err != nil {
		p.log.Warn("ending the transaction at shutdown failed; the broker aborts it", "err", err)
	}
	return nil
}

// partWork is one partition's share of a poll.
type partWork struct {
	ftp  kgo.FetchTopicPartition
	cut  *partCut
	done Counts
	n    int // records started (processed, skipped or control)
}

// processFetches runs the chain on every partition of fetches, partitions in
// parallel on at most Workers goroutines, each partition's records in order.
// Outputs are produced as soon as each record is done. Records not started
// by the transaction's deadline are left for the next transaction
// (txn.carry). The first transient failure cancels the rest and is
// returned; the caller aborts. It returns how many records were started.
func (p *Pipeline) processFetches(ctx context.Context, sess txnSession, fetches kgo.Fetches, carry []kgo.FetchTopicPartition, t *txn) (int, error) {
	parts := p.partsOf(fetches, carry, t.deadline(p.cfg.CommitInterval))
	err := p.runParts(ctx, sess, parts, t)
	n := p.account(parts, t)
	if err != nil {
		t.counts.incomplete = true
		return n, err
	}
	return n, nil
}

// partsOf splits fetches into partition work, cut at deadline, in the
// order they should be served (loop goroutine only). A partition's carried
// records (left unstarted by the previous transaction, see txn.carry) come
// before its fetched ones.
func (p *Pipeline) partsOf(fetches kgo.Fetches, carry []kgo.FetchTopicPartition, deadline time.Time) []*partWork {
	var parts []*partWork
	type tp struct {
		topic string
		part  int32
	}
	carried := map[tp]*partWork{}
	for _, ftp := range carry {
		w := &partWork{ftp: ftp, cut: newPartCut(deadline)}
		w.ftp.Records = slices.Clip(ftp.Records) // an append copies
		carried[tp{ftp.Topic, ftp.Partition}] = w
		parts = append(parts, w)
	}
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) == 0 {
			return
		}
		if w := carried[tp{ftp.Topic, ftp.Partition}]; w != nil {
			// The client's position was past the carried records, so
			// the fetched ones follow them. Offsets name records, so
			// skipping any at or below the last carried one is safe
			// if that ever did not hold.
			last := w.ftp.Records[len(w.ftp.Records)-1].Offset
			for _, r := range ftp.Records {
				if r.Offset > last {
					w.ftp.Records = append(w.ftp.Records, r)
				}
			}
			w.ftp.HighWatermark, w.ftp.LastStableOffset = ftp.HighWatermark, ftp.LastStableOffset
			return
		}
		parts = append(parts, &partWork{ftp: ftp, cut: newPartCut(deadline)})
	})
	// Partitions served longest ago go first: with more partitions than
	// workers, a slow chain would otherwise starve the last ones. Carried
	// records go before all of them: they were cut last time, and cutting
	// them again would carry the same partitions from batch to batch.
	p.served.order(parts)
	if len(carried) > 0 {
		slices.SortStableFunc(parts, func(a, b *partWork) int {
			_, ca := carried[tp{a.ftp.Topic, a.ftp.Partition}]
			_, cb := carried[tp{b.ftp.Topic, b.ftp.Partition}]
			switch {
			case ca && !cb:
				return -1
			case cb && !ca:
				return 1
			}
			return 0
		})
	}
	return parts
}

// runParts runs the chain on parts, partitions in parallel on at most
// Workers goroutines; it returns the first failure.
func (p *Pipeline) runParts(ctx context.Context, sess txnSession, parts []*partWork, t *txn) error {
	// Produced records outlive this call: they are flushed by End. Their
	// context must not be the per-batch one (cancelling it fails them).
	produceCtx := context.WithoutCancel(ctx)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		wg    sync.WaitGroup
		sem   = make(chan struct{}, p.cfg.Workers)
		errMu sync.Mutex
		first error // the first failure; the budget running out is not one
	)
	for _, w := range parts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := p.processPartition(ctx, produceCtx, sess, w.ftp.Records, w.cut, t)
			w.done = c
			w.n = w.cut.count()
			if err != nil {
				errMu.Lock()
				if first == nil {
					first = err
				}
				errMu.Unlock()
				cancel(err)
			}
		}()
	}
	wg.Wait()
	return first
}

// account adds the work done on parts to t: counts, rewind points, fairness
// (loop goroutine only). It returns how many records were started.
func (p *Pipeline) account(parts []*partWork, t *txn) int {
	n := 0
	now := time.Now()
	for _, w := range parts {
		t.counts.add(w.done)
		n += w.n
		if p.st != nil && w.n > 0 {
			p.st.observe(w.ftp.Partition, w.ftp.Records[w.n-1].Timestamp, now)
		}
		if r := w.cut.rewindTo(w.ftp.Records); r != nil {
			left := recordsFrom(w.ftp.Records, r.Offset)
			t.counts.Rewound += left
			tail := w.ftp
			tail.Records = w.ftp.Records[len(w.ftp.Records)-left:]
			t.carry = append(t.carry, tail)
		}
		if w.n > 0 {
			p.served.mark(w.ftp.Topic, w.ftp.Partition)
		}
	}
	return n
}

// recordsFrom counts the records of recs (in offset order) at or past off.
func recordsFrom(recs []*kgo.Record, off int64) int {
	n := 0
	for i := len(recs) - 1; i >= 0 && recs[i].Offset >= off; i-- {
		n++
	}
	return n
}

// processPartition handles one partition's records in order, or, in
// key-parallel mode, each key's records in order with different keys
// concurrently (the transaction still ends only after all of them).
func (p *Pipeline) processPartition(ctx, produceCtx context.Context, sess txnSession, recs []*kgo.Record, cut *partCut, t *txn) (Counts, error) {
	if !p.cfg.KeyParallel || len(recs) < 2 {
		return p.processInOrder(ctx, produceCtx, sess, recs, cut, t, -1)
	}
	lanes := make([][]*kgo.Record, p.cfg.KeyLanes)
	for _, r := range recs {
		i := keyLane(r.Key, len(lanes)) // one key → one lane: per-key order kept
		lanes[i] = append(lanes[i], r)
	}
	// Lanes may run at most KeyLanes records ahead of the slowest one, so
	// that the gaps they fill after the deadline stay small.
	heads := map[int]int64{}
	for i, lane := range lanes {
		if len(lane) > 0 {
			heads[i] = lane[0].Offset
		}
	}
	cut.lanes(int64(p.cfg.KeyLanes), heads)
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		total Counts
		first error
	)
	for i, lane := range lanes {
		if len(lane) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.processInOrder(ctx, produceCtx, sess, lane, cut, t, i)
			mu.Lock()
			defer mu.Unlock()
			total.add(c)
			if err != nil && first == nil {
				first = err
			}
		}()
	}
	wg.Wait()
	return total, first
}

// processInOrder handles records one after the other, until the first
// record the partition's cut does not admit (out of time). lane is the key
// lane (-1: this goroutine is the partition's only one); then a record cut
// off by the processing budget, and every record after it, is simply left
// for the next transaction instead of aborting this one, so one event
// slower than the budget stalls only its own partition.
func (p *Pipeline) processInOrder(ctx, produceCtx context.Context, sess txnSession, recs []*kgo.Record, cut *partCut, t *txn, lane int) (Counts, error) {
	var c Counts
	outOfBudget := func() bool { return lane < 0 && errors.Is(context.Cause(ctx), errTxnBudget) }
	if lane >= 0 {
		defer cut.advance(lane, -1) // however the lane ends, it holds back no one
	}
	for i, r := range recs {
		if ctx.Err() != nil {
			if outOfBudget() {
				cut.stopAt(r.Offset)
				return c, nil
			}
			return c, context.Cause(ctx)
		}
		if !cut.admit(r.Offset) {
			return c, nil // the rest waits for the next transaction
		}
		done := func() {
			if lane >= 0 && i+1 < len(recs) {
				cut.advance(lane, recs[i+1].Offset)
			}
		}
		if r.Attrs.IsControl() {
			// A transaction marker of an upstream producer: nothing to
			// process, but committing past it keeps the lag at 0 on a
			// partition that ends in a marker.
			done()
			continue
		}
		if p.skip(r) {
			// Filtered before decoding; its offset commits with the batch.
			done()
			c.Skipped++
			continue
		}
		ectx, res, err := p.processRecord(ctx, r, t)
		out, dead := res.out, res.dead
		done()
		if err != nil {
			if outOfBudget() {
				// Nothing of r was produced: rewind to it.
				p.log.Warn("event processing outlived half the transaction timeout; it is retried in the next transaction (raise kafka.transaction_timeout for a dependency this slow)",
					"topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "budget", p.cfg.TransactionTimeout/2)
				cut.stopAt(r.Offset)
				return c, nil
			}
			return c, err // transient, retries exhausted
		}
		c.EventsIn++
		c.EventTimes = append(c.EventTimes, r.Timestamp)
		for _, m := range res.marks {
			if c.Marks == nil {
				c.Marks = map[processors.Mark]int{}
			}
			c.Marks[m]++
		}
		if res.dropped {
			c.Dropped++
			continue
		}
		if res.forwarded {
			c.Forwarded++
		}
		if dead != nil {
			c.DeadLettered++
			p.emit(ectx, produceCtx, sess, r, dead, t)
			continue
		}
		for _, o := range out {
			p.emit(ectx, produceCtx, sess, r, o, t)
		}
		c.CommandsOut += len(out)
		if res.forwarded {
			c.CommandsOut-- // the process-log record is not a command
		}
	}
	return c, nil
}

// recResult is what processing one record produced.
type recResult struct {
	out       []*kgo.Record // commands (and the process-log record when forwarding)
	dead      *kgo.Record   // the dead letter, when the event failed permanently
	marks     []processors.Mark
	dropped   bool // processors.ErrDrop: no effect
	forwarded bool // out ends with the process-log record
}

// processRecord decodes r and runs the chain, retrying transient failures
// with backoff while the transaction has time left. It returns the output
// records, or a dead letter for a permanent failure, or an error when the
// transient retries ran out. The returned context carries the event's
// processing span (tracing on), the parent of the outputs' send spans.
func (p *Pipeline) processRecord(ctx context.Context, r *kgo.Record, t *txn) (context.Context, recResult, error) {
	ctx, span := p.startEventSpan(ctx, r)
	if span != nil {
		defer t.spans.add(span) // ended when the transaction ends
	}
	backoff := newBackoff(p.cfg.RetryBackoffMin, p.cfg.RetryBackoffMax)
	// Retries must leave the transaction enough time to commit (ctx, the
	// transaction's work context, ends at the same budget).
	budget := t.started.Add(p.cfg.TransactionTimeout / 2)
	for attempt := 0; ; attempt++ {
		res, err := p.runChain(ctx, r, span)
		if err == nil {
			if span != nil {
				span.SetAttributes(attribute.Int("ordo.commands", len(res.out)))
				markSpan(span, res)
			}
			return ctx, res, nil
		}
		if errors.Is(context.Cause(ctx), errTxnBudget) {
			// Out of transaction time, whatever the processor made of
			// its cancelled context: transient, the event is re-run.
			err = processors.Transient(fmt.Errorf("%s/%d@%d: processing ran out of transaction time (%s after the transaction began): %w",
				r.Topic, r.Partition, r.Offset, p.cfg.TransactionTimeout/2, err))
			failSpan(span, err)
			return ctx, recResult{}, err
		}
		if !processors.IsTransient(err) {
			p.obs.DeadLettered(r, err)
			dead := p.out.DeadLetterContext(ctx, r, err)
			if span != nil {
				failSpan(span, err)
				span.SetAttributes(attribute.Bool("ordo.dead_letter", true), attribute.String("ordo.dead_letter.processor", deadLetterProcessor(err)))
			}
			p.log.InfoContext(ctx, "event dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "processor", deadLetterProcessor(err), "err", err)
			return ctx, recResult{dead: dead}, nil
		}
		d := backoff.next()
		if attempt >= p.cfg.TransientRetries || time.Now().Add(d).After(budget) || ctx.Err() != nil {
			err = fmt.Errorf("%s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			failSpan(span, err)
			return ctx, recResult{}, err
		}
		p.obs.Retried(r, err)
		if span != nil {
			span.AddEvent("ordo.retry", trace.WithAttributes(attribute.Int("ordo.attempt", attempt+1), attribute.String("error", err.Error())))
		}
		p.log.DebugContext(ctx, "transient failure; retrying the event", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "attempt", attempt+1, "err", err)
		if !sleep(ctx, d) {
			return ctx, recResult{}, ctx.Err()
		}
	}
}

// deadLetterProcessor is the failing processor's name ("decode" when no
// processor failed), as in the dead-letter headers.
func deadLetterProcessor(err error) string {
	var pe *processors.ProcessorError
	if errors.As(err, &pe) {
		return pe.Processor
	}
	return "decode"
}

// runChain decodes one record, runs the processors and encodes the commands.
// In the stateful stage the processors see the partition's state through a
// per-event overlay, which joins the transaction's batch only when the
// whole event succeeded; when forwarding, the event's process-log record is
// appended to the outputs.
func (p *Pipeline) runChain(ctx context.Context, r *kgo.Record, span trace.Span) (recResult, error) {
	start := time.Now()
	var (
		ev  *processors.Event
		ov  *state.Overlay
		err error
	)
	if p.st != nil {
		if ov, err = p.st.st.Store.Event(r.Partition); err != nil {
			// Revoked (or not restored) under us: this transaction aborts.
			return recResult{}, processors.Transient(fmt.Errorf("state of partition %d: %w", r.Partition, err))
		}
		ctx = state.WithTxn(ctx, ov)
		if err := p.st.misrouted(r); err != nil && !p.st.st.Processes.IsTrigger(r) {
			return recResult{}, processors.Permanent(err)
		}
		if p.st.st.Processes.IsTrigger(r) {
			if ev, err = p.st.st.Processes.TriggerEvent(r); err != nil {
				return recResult{}, processors.Permanent(fmt.Errorf("timer trigger: %w", err))
			}
		}
	}
	if ev == nil {
		d, err := p.decode(ctx, r.Topic, r.Value)
		if err != nil {
			return recResult{}, err
		}
		ev = p.events.From(r, d)
		if p.st != nil {
			attrs, err := producer.ForwardedAttrs(r.Headers)
			if err != nil {
				return recResult{}, processors.Permanent(err)
			}
			if len(attrs) > 0 && ev.Attrs == nil {
				ev.Attrs = make(map[string]any, len(attrs))
			}
			for k, v := range attrs {
				ev.Attrs[k] = v
			}
		}
	}
	if span != nil {
		span.SetName("ordo process " + ev.Type)
		span.SetAttributes(attribute.String("ordo.event.type", ev.Type), attribute.Int("ordo.schema.id", ev.SchemaID))
	}
	cmds, err := p.chain.Process(ctx, ev)
	if errors.Is(err, processors.ErrDrop) {
		p.obs.Processed(ev, 0, time.Since(start))
		return recResult{dropped: true, marks: ev.Marks}, nil
	}
	if err != nil {
		return recResult{}, err
	}
	out, err := p.out.Commands(ctx, r, cmds)
	if err != nil {
		return recResult{}, err
	}
	res := recResult{out: out, marks: ev.Marks}
	if p.cfg.Forward != nil {
		key := []byte(ev.Envelope.CorrelationID)
		if len(key) == 0 {
			key = r.Key
		}
		fwd, err := p.out.Forward(ctx, r, p.cfg.Forward.Topic, key, ev.Attrs)
		if err != nil {
			return recResult{}, err
		}
		res.out = append(res.out, fwd)
		res.forwarded = true
	}
	if ov != nil && ov.Len() > 0 {
		if err := p.st.st.Store.Apply(r.Partition, ov); err != nil {
			return recResult{}, processors.Transient(fmt.Errorf("state of partition %d: %w", r.Partition, err))
		}
	}
	if p.st != nil {
		p.st.touch(r.Partition)
	}
	p.obs.Processed(ev, len(out), time.Since(start))
	return res, nil
}

// markSpan adds the stateful processors' decisions to the event's span.
func markSpan(span trace.Span, res recResult) {
	if res.dropped {
		span.SetAttributes(attribute.Bool("ordo.dropped", true))
	}
	for _, m := range res.marks {
		span.AddEvent("ordo.process."+m.Outcome, trace.WithAttributes(attribute.String("ordo.process", m.Process)))
	}
}

// EventFrom builds the processors' view of a decoded record: the event the
// pipeline hands to its chain (exported for benchmarks and tools that drive
// a chain without Kafka). The event is an allocation of its own; an
// EventBuilder shares one among several events.
func EventFrom(r *kgo.Record, d schemas.Decoded) *processors.Event {
	return fillEvent(&eventAlloc{}, r, d)
}

// EventBuilder builds events as EventFrom does, taking each from a block
// that several events built in turn share (internal/arena): a fraction of
// an allocation per event instead of one. The zero value is ready to use
// and is safe for concurrent use. What sharing costs is retention: an
// event kept after its transaction keeps its block alive (about 5 KiB).
type EventBuilder struct {
	blocks arena.Blocks[eventAlloc]
}

// From is EventFrom with the event taken from a shared block.
func (b *EventBuilder) From(r *kgo.Record, d schemas.Decoded) *processors.Event {
	a, _ := b.blocks.Take(0)
	return fillEvent(a, r, d)
}

// eventAlloc is an event and room for its headers in one allocation (most
// records carry a few: traceparent, ordo's envelope headers).
type eventAlloc struct {
	ev  processors.Event
	hdr [inlineHeaders]processors.Header
}

func fillEvent(a *eventAlloc, r *kgo.Record, d schemas.Decoded) *processors.Event {
	ev := &a.ev
	*ev = processors.Event{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Key:       r.Key,
		Timestamp: r.Timestamp,
		SchemaID:  d.SchemaID,
		Type:      d.Type,
		Value:     d.Value,
		Record:    d.Record,
		// Attrs stays nil until a processor sets one (Chain.Process makes
		// it for processors that may write it without checking).
	}
	if n := len(r.Headers); n > 0 {
		if n <= inlineHeaders {
			ev.Headers = a.hdr[:n:n] // capped: an append copies out
		} else {
			ev.Headers = make([]processors.Header, n)
		}
		for i, h := range r.Headers {
			ev.Headers[i] = processors.Header{Key: h.Key, Value: h.Value}
		}
	}
	if d.Record != nil {
		if v, _ := d.Record.Get("envelope"); v != nil {
			switch env := v.(type) {
			case *schemas.Record:
				ev.Envelope = processors.EnvelopeFromRecord(env)
			case map[string]any: // a reader default
				ev.Envelope = processors.EnvelopeFrom(env)
			}
		}
	} else if env, ok := d.Value["envelope"].(map[string]any); ok {
		ev.Envelope = processors.EnvelopeFrom(env)
	}
	return ev
}

// inlineHeaders is how many input headers EventFrom keeps next to the event
// without a separate allocation.
const inlineHeaders = 8

// fetchError returns an error that requires recreating the session. Context
// expiry (our own commit-interval deadline) is not an error, and neither are
// per-partition fetch errors: the client keeps retrying those itself.
func (p *Pipeline) fetchError(fetches kgo.Fetches) error {
	var fatal error
	fetches.EachError(func(topic string, partition int32, err error) {
		switch {
		case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		case errors.Is(err, kgo.ErrClientClosed):
			fatal = err
		case errors.Is(err, kerr.FencedInstanceID):
			// Static membership: the broker lets one member per instance
			// id in; the other waits (franz-go retries the join).
			p.log.Error("another live replica uses this replica id: it holds the group membership and this replica waits; replica ids must be unique per live replica (fix: give each replica its own kafka.replica_id / ORDO_REPLICA_ID)",
				"instance_id", p.cfg.InstanceID, "err", err)
		default:
			p.log.Warn("fetch error; the client retries", "topic", topic, "partition", partition, "err", err)
		}
	})
	return fatal
}
