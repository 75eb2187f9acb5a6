package consumer

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// txnSession is everything the EOS loop uses of a franz-go transact session
// and its client: the transaction lifecycle (Begin, Produce, Flush, End),
// polling, and the fetch control of the rate limits and
// the stateful stage. It is the seam that lets the loop's commit, abort and
// shutdown decisions be tested without a broker (session_fake_test.go); in
// production it is always *kgoSession.
type txnSession interface {
	PollRecords(ctx context.Context, max int) kgo.Fetches
	Begin() error
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	Flush(ctx context.Context) error
	End(ctx context.Context, try kgo.TransactionEndTry) (committed bool, err error)
	// EndCommitting is End committing exactly offsets (topic → partition
	// → next offset to consume) instead of the client's uncommitted
	// offsets: the pipelined loop has already polled the next batch, whose
	// positions the client's uncommitted offsets include (see
	// Pipeline.endPipelined). A partition of offsets that End would not
	// commit aborts the transaction.
	EndCommitting(ctx context.Context, try kgo.TransactionEndTry, offsets map[string]map[int32]kgo.EpochOffset) (committed bool, err error)
	Close()
	// newPromise returns the transaction's produce promise: the first
	// produce error aborts the records still buffered (real session).
	newPromise() *kgo.FirstErrPromise
	fetchControl
}

// fetchControl is the part of the client the rate limits (flow.go) and the
// stateful stage (stateful.go) use.
type fetchControl interface {
	PauseFetchTopics(topics ...string) []string
	ResumeFetchTopics(topics ...string)
	ResumeFetchPartitions(partitions map[string][]int32)
	CommittedOffsets() map[string]map[int32]kgo.EpochOffset
	UncommittedOffsets() map[string]map[int32]kgo.EpochOffset
}

// kgoSession is the real txnSession.
type kgoSession struct {
	*kgo.GroupTransactSession
}

func newKgoSession(opts ...kgo.Opt) (txnSession, error) {
	s, err := kgo.NewGroupTransactSession(opts...)
	if err != nil {
		return nil, err
	}
	return kgoSession{s}, nil
}

// initProducerID registers the transactional id with the coordinator now,
// not at the first Begin. A predecessor killed during End (its
// TxnOffsetCommit sent, its EndTxn not) leaves pending offsets that make the
// group's offset fetch (require_stable, KIP-447) wait; InitProducerID aborts
// that transaction at once. Left to the first Begin, it would come only after
// the first poll, which waits on that offset fetch: the restarted replica
// would sit out the whole transaction timeout. Errors are only logged: the
// first Begin meets them again and the loop handles them there.
func (s kgoSession) initProducerID(ctx context.Context, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, _, err := s.Client().ProducerID(ctx); err != nil && ctx.Err() == nil {
		log.Warn("initializing the transactional producer id failed; the first transaction retries it", "err", err)
	}
}

// EndCommitting rewrites End's TxnOffsetCommit request (franz-go v1.22.3:
// End builds it from UncommittedOffsets, i.e. everything polled, then runs
// the PreTxnCommitFnContext fn, sends the request and, on commit, records
// the request as sent as the client's committed offsets). So the broker
// commits exactly offsets, and an abort of a later transaction rewinds the
// client to them, never to the positions of records polled after them.
func (s kgoSession) EndCommitting(ctx context.Context, try kgo.TransactionEndTry, offsets map[string]map[int32]kgo.EpochOffset) (bool, error) {
	ctx = kgo.PreTxnCommitFnContext(ctx, func(req *kmsg.TxnOffsetCommitRequest) error {
		return restrictTxnCommit(req, offsets)
	})
	return s.GroupTransactSession.End(ctx, try)
}

// restrictTxnCommit makes req commit exactly offsets: partitions not in
// offsets are removed (their polled records belong to the next
// transaction), the others get the offset of offsets. A partition of offsets
// missing from req (revoked under us) is an error, which makes End abort.
func restrictTxnCommit(req *kmsg.TxnOffsetCommitRequest, offsets map[string]map[int32]kgo.EpochOffset) error {
	want := 0
	for _, ps := range offsets {
		want += len(ps)
	}
	found := 0
	topics := req.Topics[:0]
	for _, t := range req.Topics {
		ps := offsets[t.Topic]
		parts := t.Partitions[:0]
		for _, p := range t.Partitions {
			eo, ok := ps[p.Partition]
			if !ok {
				continue
			}
			p.Offset, p.LeaderEpoch = eo.Offset, eo.Epoch
			parts = append(parts, p)
			found++
		}
		if len(parts) > 0 {
			t.Partitions = parts
			topics = append(topics, t)
		}
	}
	req.Topics = topics
	if found != want {
		return fmt.Errorf("pipelined commit: %d of the %d partitions to commit are not in the transaction's offset commit (revoked?)", want-found, want)
	}
	return nil
}

func (s kgoSession) Flush(ctx context.Context) error { return s.Client().Flush(ctx) }

func (s kgoSession) newPromise() *kgo.FirstErrPromise { return kgo.AbortingFirstErrPromise(s.Client()) }

func (s kgoSession) PauseFetchTopics(topics ...string) []string {
	return s.Client().PauseFetchTopics(topics...)
}

func (s kgoSession) ResumeFetchTopics(topics ...string) { s.Client().ResumeFetchTopics(topics...) }

func (s kgoSession) ResumeFetchPartitions(partitions map[string][]int32) {
	s.Client().ResumeFetchPartitions(partitions)
}

func (s kgoSession) CommittedOffsets() map[string]map[int32]kgo.EpochOffset {
	return s.Client().CommittedOffsets()
}

func (s kgoSession) UncommittedOffsets() map[string]map[int32]kgo.EpochOffset {
	return s.Client().UncommittedOffsets()
}
