package consumer

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
)

// txnSession is everything the EOS loop uses of a franz-go transact session
// and its client: the transaction lifecycle (Begin, Produce, Flush,
// SetOffsets, End), polling, and the fetch control of the rate limits and
// the stateful stage. It is the seam that lets the loop's commit, abort and
// shutdown decisions be tested without a broker (session_fake_test.go); in
// production it is always *kgoSession.
type txnSession interface {
	PollRecords(ctx context.Context, max int) kgo.Fetches
	Begin() error
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
	Flush(ctx context.Context) error
	// SetOffsets moves the offsets End commits (the rewind points).
	SetOffsets(offsets map[string]map[int32]kgo.EpochOffset)
	End(ctx context.Context, try kgo.TransactionEndTry) (committed bool, err error)
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

func (s kgoSession) Flush(ctx context.Context) error { return s.Client().Flush(ctx) }

func (s kgoSession) SetOffsets(offsets map[string]map[int32]kgo.EpochOffset) {
	s.Client().SetOffsets(offsets)
}

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
