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
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

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

// Pipeline is one ordo replica's exactly-once loop.
type Pipeline struct {
	cfg   Config
	dec   Decoder
	chain processors.Processor
	out   *producer.Output
	obs   Observer
	log   *slog.Logger
	// tracer is nil when tracing is off (see tracing.go).
	tracer trace.Tracer
	// skipTypes is Config.SkipTypes as a set (see flow.go).
	skipTypes map[string]struct{}

	newSession func() (*kgo.GroupTransactSession, error)
	// chaos, when set (tests only, see export_test.go), runs at named points
	// of the loop and may close the session's client to simulate a crash.
	chaos func(point string, sess *kgo.GroupTransactSession)
}

// New checks cfg and returns a pipeline. Nothing connects until Run.
func New(cfg Config, dec Decoder, chain processors.Processor, out *producer.Output) (*Pipeline, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	p := &Pipeline{cfg: cfg, dec: dec, chain: chain, out: out, obs: cfg.Observer, log: cfg.Logger, tracer: newTracer(cfg.TracerProvider)}
	p.skipTypes = make(map[string]struct{}, len(cfg.SkipTypes))
	for _, t := range cfg.SkipTypes {
		p.skipTypes[t] = struct{}{}
	}
	p.newSession = func() (*kgo.GroupTransactSession, error) { return kgo.NewGroupTransactSession(p.kgoOpts()...) }
	return p, nil
}

func (p *Pipeline) kgoOpts() []kgo.Opt {
	c := p.cfg
	opts := []kgo.Opt{
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
		// Bounded fetches keep memory flat under a backlog.
		kgo.FetchMaxBytes(c.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(c.FetchMaxPartitionBytes),
		// Batch outputs into fewer, larger produce requests (see
		// Config.ProducerLinger); End flushes at once.
		kgo.ProducerLinger(c.ProducerLinger),
	}
	return append(opts, c.KgoOpts...)
}

// Run consumes until ctx is cancelled. On cancellation it finishes the open
// transaction (commit if everything produced, else abort), leaves the group
// and returns nil. It returns an error only for problems that a new session
// cannot fix (none today: it recreates sessions forever, backing off).
func (p *Pipeline) Run(ctx context.Context) error {
	ctx = processors.WithProcessorHook(ctx, p.obs.ProcessorDone)
	backoff := newBackoff(p.cfg.RetryBackoffMin, p.cfg.RetryBackoffMax)
	for ctx.Err() == nil {
		sess, err := p.newSession()
		if err != nil {
			return fmt.Errorf("consumer: create transact session: %w", err)
		}
		p.log.Info("transact session started", "transactional_id", p.cfg.TransactionalID, "group", p.cfg.Group, "topics", p.cfg.Topics)
		err = p.runSession(ctx, sess)
		p.closeSession(sess)
		if err == nil || ctx.Err() != nil {
			break
		}
		p.obs.SessionRestarted(err)
		d := backoff.next()
		p.log.Warn("transact session failed; recreating it", "err", err, "backoff", d)
		if !sleep(ctx, d) {
			break
		}
	}
	return nil
}

// closeSession leaves the group. Close after a shutdown-time End is clean; a
// failed session is closed as-is (its transaction, if any, is aborted by the
// broker when the next session with the same transactional id initializes).
func (p *Pipeline) closeSession(sess *kgo.GroupTransactSession) {
	done := make(chan struct{})
	go func() { sess.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.cfg.ShutdownTimeout):
		p.log.Warn("closing the transact session timed out", "timeout", p.cfg.ShutdownTimeout)
	}
}

// txn is the state of the open transaction.
type txn struct {
	open    bool
	started time.Time
	records int
	promise *kgo.FirstErrPromise
	counts  Counts   // what becomes visible if this transaction commits
	spans   *spanBuf // event spans waiting for the outcome; nil when tracing is off
}

// runSession is the EOS loop for one session. It returns nil when ctx is
// cancelled and an error when the session must be recreated.
func (p *Pipeline) runSession(ctx context.Context, sess *kgo.GroupTransactSession) error {
	var t txn
	// A session that fails mid-transaction never ends it here: the broker
	// aborts it. Its event spans end as "abandoned".
	defer func() { finishSpans(t.spans, "abandoned", nil) }()
	retry := newBackoff(p.cfg.RetryBackoffMin, p.cfg.RetryBackoffMax)
	limits := newRateLimits(p.cfg.RateLimits)
	var pace pollPacer
	for {
		// Poll, but never past the commit deadline of an open transaction
		// nor past the moment a rate-limited topic may resume.
		resumeAt := limits.resume(sess.Client(), time.Now())
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, ok := earliest(t.open, t.started.Add(p.cfg.CommitInterval), resumeAt); ok {
			pollCtx, cancel = context.WithDeadline(ctx, deadline)
		}
		max := p.cfg.BatchSize - t.records
		if p.cfg.PollRecords > 0 {
			max = min(max, p.cfg.PollRecords)
		} else if t.open {
			max = min(max, pace.records(time.Until(t.started.Add(p.cfg.CommitInterval))))
		}
		if c := limits.pollCap(time.Now()); c > 0 && c < max {
			max = c
		}
		fetches := sess.PollRecords(pollCtx, max)
		cancel()

		if ctx.Err() != nil { // shutting down: finish what is open
			if !fetches.Empty() {
				// Polling advanced the offsets End would commit past these
				// unprocessed records: committing now would lose them.
				t.counts.incomplete = true
			}
			return p.shutdown(sess, &t)
		}
		if err := p.fetchError(fetches); err != nil {
			return err
		}

		if !fetches.Empty() {
			if !t.open {
				if err := sess.Begin(); err != nil {
					return fmt.Errorf("begin transaction: %w", err)
				}
				t = txn{open: true, started: time.Now(), promise: kgo.AbortingFirstErrPromise(sess.Client())}
				if p.tracer != nil {
					t.spans = &spanBuf{}
				}
			}
			n := fetches.NumRecords() // walks every partition: count once
			t.records += n
			polled := time.Now()
			err := p.processFetches(ctx, sess, fetches, &t)
			pace.observe(n, time.Since(polled))
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
				if err := p.end(ctx, sess, &t, kgo.TryAbort); err != nil {
					return err
				}
				if !sleep(ctx, retry.next()) {
					return p.shutdown(sess, &t)
				}
				continue
			}
			retry.reset()
			// Over its rate? Pause the topic until its bucket refills.
			limits.charge(sess.Client(), fetches, time.Now())
		}

		if t.open && (t.records >= p.cfg.BatchSize || time.Since(t.started) >= p.cfg.CommitInterval) {
			if p.chaos != nil {
				p.chaos("before-end", sess)
			}
			if err := p.end(ctx, sess, &t, kgo.TryCommit); err != nil {
				return err
			}
		}
	}
}

// pollPacer sizes polls so that a transaction ends close to its commit
// deadline: the deadline is only checked between polls, so a poll taken just
// before it must be small, while the first polls of a transaction may be
// large (fewer, cheaper rounds). It learns the wall time per record.
type pollPacer struct {
	perRecord time.Duration // moving average of processing wall time per record
}

// minPacedPoll keeps polls near the deadline from shrinking to nothing.
const minPacedPoll = 100

func (p *pollPacer) observe(n int, took time.Duration) {
	if n <= 0 {
		return
	}
	sample := took / time.Duration(n)
	if p.perRecord == 0 {
		p.perRecord = sample
		return
	}
	p.perRecord = (7*p.perRecord + sample) / 8
}

// records is how many records fit in the time left, at least minPacedPoll.
func (p *pollPacer) records(left time.Duration) int {
	if p.perRecord <= 0 {
		return math.MaxInt
	}
	return max(minPacedPoll, int(left/p.perRecord))
}

// end ends the open transaction. A produce error turns a commit into an
// abort. It returns an error only when the session must be recreated.
func (p *Pipeline) end(ctx context.Context, sess *kgo.GroupTransactSession, t *txn, try kgo.TransactionEndTry) error {
	if !t.open {
		return nil
	}
	perr := t.promise.Err() // waits for every produce of this transaction
	if perr != nil {
		p.log.Warn("produce failed; aborting the transaction", "err", perr)
		try = kgo.TryAbort
	}
	_, span := p.startTxnSpan(ctx, t, try)
	start := time.Now()
	committed, err := sess.End(ctx, try)
	dur := time.Since(start)
	counts, spans := t.counts, t.spans
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
		p.obs.TxnAborted(dur, err)
		return fmt.Errorf("end transaction: %w", err)
	}
	if !committed {
		// (false, nil): we asked to abort, or a rebalance aborted us. The
		// session rewound to the committed offsets; keep polling.
		p.obs.TxnAborted(dur, nil)
		return nil
	}
	p.obs.TxnCommitted(dur, counts)
	return nil
}

// shutdown commits the open transaction if everything in it was produced
// (its work is complete) and aborts it otherwise, within ShutdownTimeout.
func (p *Pipeline) shutdown(sess *kgo.GroupTransactSession, t *txn) error {
	if !t.open {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.ShutdownTimeout)
	defer cancel()
	try := kgo.TryCommit
	if t.counts.incomplete {
		try = kgo.TryAbort
	}
	if err := p.end(ctx, sess, t, try); err != nil {
		p.log.Warn("ending the transaction at shutdown failed; the broker aborts it", "err", err)
	}
	return nil
}

// processFetches runs the chain on every partition of fetches, partitions in
// parallel on at most Workers goroutines, each partition's records in order.
// Outputs are produced as soon as each record is done. The first transient
// failure cancels the rest and is returned; the caller aborts.
func (p *Pipeline) processFetches(ctx context.Context, sess *kgo.GroupTransactSession, fetches kgo.Fetches, t *txn) error {
	var parts []kgo.FetchTopicPartition
	fetches.EachPartition(func(ftp kgo.FetchTopicPartition) {
		if len(ftp.Records) > 0 {
			parts = append(parts, ftp)
		}
	})

	// Produced records outlive this call: they are flushed by End. Their
	// context must not be the per-batch one (cancelling it fails them).
	produceCtx := context.WithoutCancel(ctx)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		mu     sync.Mutex
		wg     sync.WaitGroup
		sem    = make(chan struct{}, p.cfg.Workers)
		counts Counts
	)
	for _, ftp := range parts {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			c, err := p.processPartition(ctx, produceCtx, sess, ftp.Records, t)
			mu.Lock()
			counts.add(c)
			mu.Unlock()
			if err != nil {
				cancel(err)
			}
		}()
	}
	wg.Wait()
	t.counts.add(counts)
	if err := context.Cause(ctx); err != nil {
		t.counts.incomplete = true
		return err
	}
	return nil
}

// processPartition handles one partition's records in order, or, in
// key-parallel mode, each key's records in order with different keys
// concurrently (the transaction still ends only after all of them).
func (p *Pipeline) processPartition(ctx, produceCtx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record, t *txn) (Counts, error) {
	if !p.cfg.KeyParallel || len(recs) < 2 {
		return p.processInOrder(ctx, produceCtx, sess, recs, t)
	}
	lanes := make([][]*kgo.Record, p.cfg.KeyLanes)
	for _, r := range recs {
		i := keyLane(r.Key, len(lanes)) // one key → one lane: per-key order kept
		lanes[i] = append(lanes[i], r)
	}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		total Counts
		first error
	)
	for _, lane := range lanes {
		if len(lane) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := p.processInOrder(ctx, produceCtx, sess, lane, t)
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

// processInOrder handles records one after the other.
func (p *Pipeline) processInOrder(ctx, produceCtx context.Context, sess *kgo.GroupTransactSession, recs []*kgo.Record, t *txn) (Counts, error) {
	var c Counts
	for _, r := range recs {
		if ctx.Err() != nil {
			return c, context.Cause(ctx)
		}
		if p.skip(r) {
			// Filtered before decoding; its offset commits with the batch.
			c.Skipped++
			continue
		}
		ectx, out, dead, err := p.processRecord(ctx, r, t)
		if err != nil {
			return c, err // transient, retries exhausted
		}
		c.EventsIn++
		c.EventTimes = append(c.EventTimes, r.Timestamp)
		if dead != nil {
			c.DeadLettered++
			p.produce(ectx, produceCtx, sess, dead, t)
			continue
		}
		for _, o := range out {
			p.produce(ectx, produceCtx, sess, o, t)
		}
		c.CommandsOut += len(out)
	}
	return c, nil
}

// processRecord decodes r and runs the chain, retrying transient failures
// with backoff while the transaction has time left. It returns the output
// records, or a dead letter for a permanent failure, or an error when the
// transient retries ran out. The returned context carries the event's
// processing span (tracing on), the parent of the outputs' send spans.
func (p *Pipeline) processRecord(ctx context.Context, r *kgo.Record, t *txn) (context.Context, []*kgo.Record, *kgo.Record, error) {
	ctx, span := p.startEventSpan(ctx, r)
	if span != nil {
		defer t.spans.add(span) // ended when the transaction ends
	}
	backoff := newBackoff(p.cfg.RetryBackoffMin, p.cfg.RetryBackoffMax)
	// Retries must leave the transaction enough time to commit.
	budget := t.started.Add(p.cfg.TransactionTimeout / 2)
	for attempt := 0; ; attempt++ {
		out, err := p.runChain(ctx, r, span)
		if err == nil {
			if span != nil {
				span.SetAttributes(attribute.Int("ordo.commands", len(out)))
			}
			return ctx, out, nil, nil
		}
		if !processors.IsTransient(err) {
			p.obs.DeadLettered(r, err)
			dead := p.out.DeadLetterContext(ctx, r, err)
			if span != nil {
				failSpan(span, err)
				span.SetAttributes(attribute.Bool("ordo.dead_letter", true), attribute.String("ordo.dead_letter.processor", deadLetterProcessor(err)))
			}
			p.log.InfoContext(ctx, "event dead-lettered", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "processor", deadLetterProcessor(err), "err", err)
			return ctx, nil, dead, nil
		}
		d := backoff.next()
		if attempt >= p.cfg.TransientRetries || time.Now().Add(d).After(budget) || ctx.Err() != nil {
			err = fmt.Errorf("%s/%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
			failSpan(span, err)
			return ctx, nil, nil, err
		}
		p.obs.Retried(r, err)
		if span != nil {
			span.AddEvent("ordo.retry", trace.WithAttributes(attribute.Int("ordo.attempt", attempt+1), attribute.String("error", err.Error())))
		}
		p.log.DebugContext(ctx, "transient failure; retrying the event", "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "attempt", attempt+1, "err", err)
		if !sleep(ctx, d) {
			return ctx, nil, nil, ctx.Err()
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
func (p *Pipeline) runChain(ctx context.Context, r *kgo.Record, span trace.Span) ([]*kgo.Record, error) {
	start := time.Now()
	d, err := p.dec.Decode(ctx, r.Topic, r.Value)
	if err != nil {
		return nil, err
	}
	if span != nil {
		span.SetName("ordo process " + d.Type)
		span.SetAttributes(attribute.String("ordo.event.type", d.Type), attribute.Int("ordo.schema.id", d.SchemaID))
	}
	ev := EventFrom(r, d)
	cmds, err := p.chain.Process(ctx, ev)
	if err != nil {
		return nil, err
	}
	out, err := p.out.Commands(ctx, r, cmds)
	if err != nil {
		return nil, err
	}
	p.obs.Processed(ev, len(out), time.Since(start))
	return out, nil
}

// EventFrom builds the processors' view of a decoded record: the event the
// pipeline hands to its chain (exported for benchmarks and tools that drive
// a chain without Kafka).
func EventFrom(r *kgo.Record, d schemas.Decoded) *processors.Event {
	ev := &processors.Event{
		Topic:     r.Topic,
		Partition: r.Partition,
		Offset:    r.Offset,
		Key:       r.Key,
		Timestamp: r.Timestamp,
		SchemaID:  d.SchemaID,
		Type:      d.Type,
		Value:     d.Value,
		Attrs:     map[string]any{},
	}
	if len(r.Headers) > 0 {
		ev.Headers = make([]processors.Header, len(r.Headers))
		for i, h := range r.Headers {
			ev.Headers[i] = processors.Header{Key: h.Key, Value: h.Value}
		}
	}
	if env, ok := d.Value["envelope"].(map[string]any); ok {
		ev.Envelope = processors.EnvelopeFrom(env)
	}
	return ev
}

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
		default:
			p.log.Warn("fetch error; the client retries", "topic", topic, "partition", partition, "err", err)
		}
	})
	return fatal
}
