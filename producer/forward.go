package producer

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/processors"
)

// Headers of a process-log record (the stateful stage's input; see
// docs/processes.md).
const (
	// HeaderOrigin names the upstream record an event came from, as
	// "topic/partition/offset".
	HeaderOrigin = "ordo-origin"
	// HeaderAttrs carries the enrichment attrs computed before the event
	// was forwarded, as a JSON object.
	HeaderAttrs = "ordo-attrs"
)

// Forward builds the process-log record for an input event: the original
// value (Confluent-framed Avro, decoded again by the stateful stage), key
// replaced by the correlation id so that every event of one process lands
// on one partition, the original headers with ordo's trace context, the
// origin coordinates and the attrs. Its timestamp is the input's, so that
// the stateful stage's timers and dedupe window see event time. Like a
// command, a record over the process log's limit fails the event
// permanently (dead-lettered, reason record_too_large) instead of failing
// the transaction.
func (o *Output) Forward(ctx context.Context, in *kgo.Record, topic string, key []byte, attrs map[string]any) (*kgo.Record, error) {
	r := &kgo.Record{Topic: topic, Key: key, Value: in.Value, Timestamp: in.Timestamp}
	r.Headers = make([]kgo.RecordHeader, 0, len(in.Headers)+4)
	for _, h := range in.Headers {
		switch h.Key {
		case HeaderTraceparent, HeaderTracestate, HeaderBaggage, HeaderOrigin, HeaderAttrs:
			continue // replaced below
		}
		r.Headers = append(r.Headers, h)
	}
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderOrigin, Value: []byte(in.Topic + "/" + strconv.Itoa(int(in.Partition)) + "/" + strconv.FormatInt(in.Offset, 10))})
	if len(attrs) > 0 {
		b, err := json.Marshal(attrs)
		if err != nil {
			return nil, &processors.ProcessorError{Processor: "forward", Err: fmt.Errorf("attrs are not JSON-encodable: %w", err)}
		}
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderAttrs, Value: b})
	}
	r.Headers = appendTraceHeaders(ctx, r.Headers, in.Headers)
	if size, limit := RecordBytes(r), o.limit(ctx, topic); size > limit {
		return nil, &processors.ProcessorError{Processor: "forward", Err: &RecordTooLargeError{Topic: topic, Type: "process-log record", Bytes: size, Limit: limit}}
	}
	return r, nil
}

// ForwardedAttrs decodes the attrs a process-log record carries (nil when
// it has none). JSON numbers become float64.
func ForwardedAttrs(headers []kgo.RecordHeader) (map[string]any, error) {
	for _, h := range headers {
		if h.Key == HeaderAttrs {
			var m map[string]any
			if err := json.Unmarshal(h.Value, &m); err != nil {
				return nil, fmt.Errorf("header %s is not a JSON object: %w", HeaderAttrs, err)
			}
			return m, nil
		}
	}
	return nil, nil
}
