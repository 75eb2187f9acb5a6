package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/singleflight"

	"github.com/ordo-dev/ordo/internal/cow"
	"github.com/ordo-dev/ordo/processors"
)

// DefaultMaxRecordBytes is franz-go's default ProducerBatchMaxBytes
// (1,000,012): the largest record batch the client sends, hence the largest
// record, whatever the topic allows. It is below the broker's default
// message.max.bytes (1,048,588), so it is the limit of a topic left at its
// defaults.
const DefaultMaxRecordBytes = 1_000_012

// Size estimate of a record batch holding one record, as the producer and
// the broker count it (both compare the uncompressed batch; franz-go only
// sends a compressed batch when it is smaller). Varints are counted at their
// largest, so the estimate never falls below the real size.
const (
	// batchOverhead is the v2 record batch header (61 bytes, what the broker
	// measures against max.message.bytes) plus the 4-byte records length
	// franz-go counts against ProducerBatchMaxBytes.
	batchOverhead = 65
	// recordOverhead: length (varint, 5) + attributes (1) + timestamp delta
	// (varlong, 10) + offset delta (5) + key length (5) + value length (5) +
	// header count (5).
	recordOverhead = 36
	// headerOverhead: key length (5) + value length (5).
	headerOverhead = 10
)

// RecordBytes is a conservative estimate of the bytes a batch holding only r
// takes on the wire: what the producer's ProducerBatchMaxBytes and the
// broker's max.message.bytes are compared against.
func RecordBytes(r *kgo.Record) int {
	n := batchOverhead + recordOverhead + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += headerOverhead + len(h.Key) + len(h.Value)
	}
	return n
}

// Dead-letter reasons ordo writes to ordo-dlq-reason. Errors from other
// packages add their own through a DeadLetterReason() string method (see
// schemas: tombstone, empty_payload, malformed, unknown_schema,
// unsupported_schema).
const (
	ReasonRecordTooLarge = "record_too_large" // a command, or the dead letter itself, exceeded its topic's limit
	ReasonProcessorError = "processor_error"  // a processor (or command encoding) failed permanently
	ReasonDecodeError    = "decode_error"     // the value could not be decoded, for no more specific reason
)

// DeadLetterReason is the short code for why cause dead-lettered an event:
// the DeadLetterReason() of the first error in its chain that has one, else
// ReasonProcessorError when a processor failed, else ReasonDecodeError.
func DeadLetterReason(cause error) string {
	var r interface{ DeadLetterReason() string }
	if errors.As(cause, &r) {
		if s := r.DeadLetterReason(); s != "" {
			return s
		}
	}
	var pe *processors.ProcessorError
	if errors.As(cause, &pe) {
		return ReasonProcessorError
	}
	return ReasonDecodeError
}

// RecordTooLargeError is a command record larger than its topic accepts.
// Permanent: the same event builds the same command again, so the event is
// dead-lettered (reason record_too_large) instead of failing its
// transaction forever.
type RecordTooLargeError struct {
	Topic string
	Type  string // the command's type
	Bytes int    // RecordBytes of the command
	Limit int    // the topic's limit
}

// Error implements error.
func (e *RecordTooLargeError) Error() string {
	return fmt.Sprintf("record_too_large: command %s for topic %s is %d bytes, over the topic's limit of %d bytes (the smaller of the producer's max batch bytes and the topic's max.message.bytes)",
		e.Type, e.Topic, e.Bytes, e.Limit)
}

// Transient reports false.
func (e *RecordTooLargeError) Transient() bool { return false }

// DeadLetterReason is ReasonRecordTooLarge.
func (e *RecordTooLargeError) DeadLetterReason() string { return ReasonRecordTooLarge }

// TopicLimits knows the largest record ordo may produce to each topic: the
// smaller of the producer's max batch bytes and the topic's
// max.message.bytes, read from the cluster with DescribeConfigs. Its For
// method is what WithMaxRecordBytes takes. Safe for concurrent use.
type TopicLimits struct {
	adm         *kadm.Client // nil: no lookups, producerMax everywhere
	producerMax int
	log         *slog.Logger
	retryAfter  time.Duration // a failed lookup is retried after this
	timeout     time.Duration // bound on one lookup
	now         func() time.Time

	known  cow.Map[string, limitEntry] // topic -> its limit
	flight singleflight.Group
}

type limitEntry struct {
	bytes int
	until time.Time // zero: known for good (until Forget)
}

// NewTopicLimits returns limits that look topics up with adm (nil: never;
// every topic gets producerMax). producerMax is the producer's
// ProducerBatchMaxBytes (0 or less: DefaultMaxRecordBytes); pass the same
// value the producing client is configured with. log receives lookup
// failures (nil: discarded).
func NewTopicLimits(adm *kadm.Client, producerMax int, log *slog.Logger) *TopicLimits {
	if producerMax <= 0 {
		producerMax = DefaultMaxRecordBytes
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &TopicLimits{adm: adm, producerMax: producerMax, log: log, retryAfter: time.Minute, timeout: 5 * time.Second, now: time.Now}
}

// Describe looks topics up now (call it at start with the dead-letter topic
// and the command topics, so the first events do not wait for it). A topic
// that cannot be described (missing, not authorized, cluster unreachable)
// gets the producer's limit, is logged, and is looked up again on use after
// a minute. The returned error lists the failures; the limits are usable
// either way.
func (l *TopicLimits) Describe(ctx context.Context, topics ...string) error {
	if len(topics) == 0 {
		return nil
	}
	if l.adm == nil {
		for _, t := range topics {
			l.known.Store(t, limitEntry{bytes: l.producerMax})
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	rcs, err := l.adm.DescribeTopicConfigs(ctx, topics...)
	var errs []error
	if err != nil {
		// A *kadm.ShardErrors may come with partial results: use them.
		errs = append(errs, fmt.Errorf("describe topics %v: %w", topics, err))
	}
	found := make(map[string]bool, len(rcs))
	for _, rc := range rcs {
		found[rc.Name] = true
		limit, err := l.fromConfig(rc)
		if err != nil {
			errs = append(errs, err)
			l.fallback(rc.Name, err)
			continue
		}
		l.known.Store(rc.Name, limitEntry{bytes: limit})
	}
	for _, t := range topics {
		if found[t] {
			continue
		}
		miss := fmt.Errorf("topic %s: not in the DescribeConfigs answer", t)
		if err != nil {
			miss = fmt.Errorf("topic %s: %w", t, err)
		} else {
			errs = append(errs, miss)
		}
		l.fallback(t, miss)
	}
	return errors.Join(errs...)
}

// fromConfig is the limit a described topic's configs allow.
func (l *TopicLimits) fromConfig(rc kadm.ResourceConfig) (int, error) {
	if rc.Err != nil {
		return 0, fmt.Errorf("describe topic %s: %w %s", rc.Name, rc.Err, rc.ErrMessage)
	}
	for _, c := range rc.Configs {
		if c.Key != "max.message.bytes" {
			continue
		}
		n, err := strconv.Atoi(c.MaybeValue())
		if err != nil || n <= 0 {
			return 0, fmt.Errorf("topic %s: max.message.bytes %q is not a positive number", rc.Name, c.MaybeValue())
		}
		return min(n, l.producerMax), nil
	}
	// Not reported: the broker default (1,048,588) is above producerMax's default.
	return l.producerMax, nil
}

// fallback records the producer's limit for topic until the retry time.
func (l *TopicLimits) fallback(topic string, err error) {
	l.log.Warn("cannot read the topic's max.message.bytes; using the producer's limit until the next lookup",
		"topic", topic, "limit_bytes", l.producerMax, "retry_in", l.retryAfter, "err", err)
	l.known.Store(topic, limitEntry{bytes: l.producerMax, until: l.now().Add(l.retryAfter)})
}

// For returns the limit for topic. A topic not looked up yet (or whose last
// lookup failed a while ago) is looked up now, once for all concurrent
// callers, bounded by ctx and five seconds.
func (l *TopicLimits) For(ctx context.Context, topic string) int {
	if e, ok := l.known.Load(topic); ok {
		if e.until.IsZero() || l.now().Before(e.until) {
			return e.bytes
		}
	}
	if l.adm == nil {
		return l.producerMax
	}
	ch := l.flight.DoChan(topic, func() (any, error) {
		_ = l.Describe(context.WithoutCancel(ctx), topic) // failures are logged and fall back
		return nil, nil
	})
	select {
	case <-ch:
	case <-ctx.Done():
		return l.producerMax
	}
	if e, ok := l.known.Load(topic); ok {
		return e.bytes
	}
	return l.producerMax
}

// Forget drops topic's limit, so the next For looks it up again. Call it
// when the broker refuses a record of topic as too large: its
// max.message.bytes may have been lowered since it was read.
func (l *TopicLimits) Forget(topic string) { l.known.Delete(topic) }
