package consumer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The pipelined loop (on unless SerialLoop): while transaction N ends (flush,
// TxnOffsetCommit, heartbeat, EndTxn: network round trips), the records of
// the next poll are decoded and run through the chain; their outputs are
// held and produced only once transaction N+1 has begun.
//
// Why it never commits the offsets of unprocessed records. franz-go's
// GroupTransactSession.End (v1.22.3, txn.go) commits the client's
// UncommittedOffsets, the positions of everything polled, and franz-go says
// polling concurrently with End is invalid; marks (AutoCommitMarks) are not
// honoured by End (it reads the dirty offsets). So:
//  1. the next batch is polled before End, never during it;
//  2. just before that poll, the offsets End would have committed for N
//     (UncommittedOffsets: everything N polled, all processed, no rewind)
//     are captured, and End commits exactly those: the session's
//     EndCommitting rewrites End's TxnOffsetCommit request to them
//     (PreTxnCommitFnContext), and franz-go records the request as sent as
//     the client's committed offsets, so a later abort rewinds to them;
//  3. if End does not commit (a rebalance abort: franz-go rewinds the client
//     to its committed offsets; or an error: the session is recreated), the
//     prefetched work is discarded and its records are fetched again;
//  4. after a commit, a prefetched partition is kept only if the client's
//     position for it is still just past the prefetched records (it was not
//     revoked, nor revoked and assigned again, in between); the others are
//     dropped (the client no longer counts them as polled). A revocation
//     after that check makes End of N+1 abort, as in the serial loop;
//  5. the prefetched records belong to transaction N+1: their outputs are
//     produced after its Begin, and its End commits their positions (minus
//     the rewind points of records their cut left unstarted);
//  6. records N polled but did not start (its commit deadline cut them,
//     txn.carry) are not rewound with SetOffsets, which in franz-go v1.22.3
//     restarts the fetch session and drops every buffered fetch: End
//     commits their partitions' rewind points (in commitAt, commitAtCut),
//     and the records go in front of the next batch's records of their
//     partition, where the position check of 4 covers them too (the
//     client's position is past them, since they were polled). If End
//     does not commit, they are dropped with the batch and fetched again
//     from the committed offsets. The serial loop and the stateful stage
//     carry them the same way (end keeps them, stillAt checks their
//     positions after End, runSession processes them first).
//
// The stateful stage stays serial: its events read the partition's state,
// and the state of transaction N reaches the local store only when End(N)
// committed (stateLoop.finish), so processing N+1 during End(N) would read
// state without N's writes.

// prefetchWait bounds the poll of the next batch before an End: it takes
// what the client has buffered and waits no longer, so End is not delayed.
const prefetchWait = time.Millisecond

// canPipeline reports whether the end of t may overlap the processing of
// the next batch: only a commit without unfinished work, in the stateless
// stage. (Records cut by the deadline are carried over, see 6 above.)
func (p *Pipeline) canPipeline(t *txn) bool {
	return !p.cfg.SerialLoop && p.st == nil && t.open && !t.counts.incomplete
}

// heldOutputs are the outputs of prefetched work, in production order per
// processing goroutine (so per partition, or per key lane).
type heldOutputs struct {
	mu   sync.Mutex
	outs []heldOutput
}

type heldOutput struct {
	ectx      context.Context // the event's context (its span)
	topic     string          // the input record's topic and partition
	partition int32
	r         *kgo.Record
}

// commitAtCut is what End should commit for t now: the client's polled
// positions, except that partitions with records cut by the deadline
// (t.carry) commit only up to the first of them; the records are carried
// into the next transaction.
func commitAtCut(sess txnSession, t *txn) map[string]map[int32]kgo.EpochOffset {
	commitAt := sess.UncommittedOffsets()
	for topic, ps := range t.rewindPoints() {
		if commitAt == nil {
			commitAt = map[string]map[int32]kgo.EpochOffset{}
		}
		if commitAt[topic] == nil {
			commitAt[topic] = map[int32]kgo.EpochOffset{}
		}
		for part, eo := range ps {
			// A partition missing from commitAt was revoked under the
			// transaction: committing it makes End abort (restrictTxnCommit).
			commitAt[topic][part] = eo
		}
	}
	return commitAt
}

// stillAt returns the carried partitions the client still holds at the
// position after their last record, after an End: a partition revoked (or
// revoked and assigned back) during End loses its carried records, which
// its owner fetches again from the committed cut point. Every revocation
// after End makes the next End abort (the session marks it), so what is
// kept here is processed by the next transaction or by nobody.
func (p *Pipeline) stillAt(sess txnSession, carry []kgo.FetchTopicPartition) []kgo.FetchTopicPartition {
	cur := sess.UncommittedOffsets()
	kept := carry[:0:0]
	for _, ftp := range carry {
		if stillPast(cur, ftp) {
			kept = append(kept, ftp)
			continue
		}
		p.log.Info("partition moved while its carried records waited; they are dropped and fetched again by their owner",
			"topic", ftp.Topic, "partition", ftp.Partition, "from", ftp.Records[0].Offset)
	}
	return kept
}

// stillPast reports whether cur (the client's positions) still has ftp's
// partition just past its last record: not revoked, nor revoked and
// assigned again, since those records were polled.
func stillPast(cur map[string]map[int32]kgo.EpochOffset, ftp kgo.FetchTopicPartition) bool {
	eo, ok := cur[ftp.Topic][ftp.Partition]
	return ok && eo.Offset == ftp.Records[len(ftp.Records)-1].Offset+1
}

// emit produces o, the output of processing src, in t, or holds it when t
// is a prefetch.
func (p *Pipeline) emit(ectx, produceCtx context.Context, sess txnSession, src, o *kgo.Record, t *txn) {
	if h := t.held; h != nil {
		h.mu.Lock()
		h.outs = append(h.outs, heldOutput{ectx: ectx, topic: src.Topic, partition: src.Partition, r: o})
		h.mu.Unlock()
		return
	}
	p.produce(ectx, produceCtx, sess, o, t)
}

// prefetch is a batch processed before its transaction began.
type prefetch struct {
	fetches kgo.Fetches
	parts   []*partWork
	t       txn // never opened: processing context, spans, held outputs
	took    time.Duration
	err     error
	done    chan struct{}
}

// startPrefetch processes carry (records the previous transaction left
// unstarted) and then fetches on a goroutine (owned by the caller, which
// waits on done); nil when there is nothing to process.
func (p *Pipeline) startPrefetch(ctx context.Context, sess txnSession, fetches kgo.Fetches, carry []kgo.FetchTopicPartition) *prefetch {
	if len(carry) == 0 && fetches.NumRecords() == 0 {
		return nil
	}
	pf := &prefetch{fetches: fetches, done: make(chan struct{})}
	pf.t.started = time.Now()
	// The same budget as in a transaction, counted from now (earlier than
	// the Begin it will join: conservative).
	pf.t.work, pf.t.cancelWork = context.WithDeadlineCause(ctx, pf.t.started.Add(p.cfg.TransactionTimeout/2), errTxnBudget)
	if p.tracer != nil {
		pf.t.spans = &spanBuf{}
	}
	pf.t.held = &heldOutputs{outs: p.spareHeld}
	p.spareHeld = nil
	pf.parts = p.partsOf(fetches, carry, pf.t.deadline(p.cfg.CommitInterval))
	go func() {
		defer close(pf.done)
		start := time.Now()
		pf.err = p.runParts(pf.t.work, sess, pf.parts, &pf.t)
		pf.took = time.Since(start)
	}()
	return pf
}

// discard stops the prefetched work, waits for it and ends its spans.
func (pf *prefetch) discard() {
	pf.t.release()
	<-pf.done
	finishSpans(pf.t.spans, "abandoned", nil)
}

// endPipelined commits t while the next batch is processed and, if t
// committed, opens the next transaction with that batch's outputs. next is
// the batch's transient failure: the caller aborts the (open) transaction.
// err means the session must be recreated.
func (p *Pipeline) endPipelined(ctx context.Context, sess txnSession, t *txn, limits *rateLimits, pace *pollPacer) (committed bool, next, err error) {
	// What End would commit for t, captured before the next poll moves
	// the client's positions (see the comment at the top of this file).
	commitAt := commitAtCut(sess, t)
	if len(commitAt) == 0 {
		committed, err = p.end(ctx, sess, t, kgo.TryCommit, nil)
		return committed, nil, err
	}
	carry, carried := t.carry, t.carried()
	// The carried records count against the next batch's size and pace:
	// polling a full batch on top of them would let the carry grow as long
	// as processing is slower than the commit interval.
	max := p.pollSize(p.cfg.BatchSize, p.cfg.CommitInterval, carried, pace, limits)
	var fetches kgo.Fetches
	if max > 0 { // PollRecords takes max ≤ 0 as no bound
		pollCtx, cancel := context.WithTimeout(ctx, prefetchWait)
		fetches = sess.PollRecords(pollCtx, max)
		cancel()
	}
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.Debug("prefetched", "records", fetches.NumRecords(), "max", max, "carried", carried)
	}
	fatal := p.fetchError(fetches)
	var pf *prefetch
	if fatal == nil && ctx.Err() == nil {
		pf = p.startPrefetch(ctx, sess, fetches, carry)
	}
	// From here on the client's positions may include the next batch:
	// End must commit exactly commitAt.
	t.commitAt = commitAt
	committed, err = p.end(ctx, sess, t, kgo.TryCommit, nil)
	if err == nil {
		err = fatal
	}
	if pf == nil {
		return committed, nil, err
	}
	if err != nil || !committed || ctx.Err() != nil {
		// Aborted: the client rewound to its committed offsets and
		// fetches the batch again. Failed: the session is recreated.
		// Shutting down: nothing commits the batch's positions.
		pf.discard()
		return committed, nil, err
	}
	waitStart := time.Now()
	<-pf.done
	pf.t.release()
	if p.log.Enabled(ctx, slog.LevelDebug) {
		p.log.Debug("prefetch done", "took", pf.took, "waited_after_end", time.Since(waitStart))
	}

	// Keep the partitions still at the prefetched position.
	cur := sess.UncommittedOffsets()
	type tp struct {
		topic string
		part  int32
	}
	keep := map[tp]bool{}
	var kept []*partWork
	n := 0
	for _, w := range pf.parts {
		if stillPast(cur, w.ftp) {
			keep[tp{w.ftp.Topic, w.ftp.Partition}] = true
			kept = append(kept, w)
			n += len(w.ftp.Records)
			continue
		}
		p.log.Info("partition moved while its next records were processed; their work is dropped and they are fetched again by their owner",
			"topic", w.ftp.Topic, "partition", w.ftp.Partition, "from", w.ftp.Records[0].Offset)
	}
	if len(kept) == 0 {
		finishSpans(pf.t.spans, "abandoned", nil)
		return committed, nil, nil
	}
	p.health.work(time.Now())
	if err := p.begin(ctx, sess, t); err != nil {
		finishSpans(pf.t.spans, "abandoned", nil)
		return committed, nil, err
	}
	// The commit interval counts from when the batch's work began, so its
	// events wait no longer for their commit than in the serial loop.
	t.started = pf.t.started
	if pf.t.spans != nil && t.spans != nil {
		pf.t.spans.mu.Lock()
		t.spans.spans = append(t.spans.spans, pf.t.spans.spans...)
		pf.t.spans.spans = nil
		pf.t.spans.mu.Unlock()
	}
	t.records += n
	if pf.err != nil {
		// Nothing of the batch is produced; the caller aborts.
		t.counts.incomplete = true
		return committed, pf.err, nil
	}
	produceCtx := context.WithoutCancel(ctx)
	for _, h := range pf.t.held.outs {
		if keep[tp{h.topic, h.partition}] {
			p.produce(h.ectx, produceCtx, sess, h.r, t)
		}
	}
	clear(pf.t.held.outs) // the records belong to the client now
	p.spareHeld, pf.t.held.outs = pf.t.held.outs[:0], nil
	done := p.account(kept, t)
	pace.observe(done, pf.took)
	limits.charge(sess, pf.fetches, time.Now())
	return committed, nil, nil
}
