package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordo-dev/ordo/processors"
)

// Encoder turns a command's natural value into Confluent-framed Avro bytes
// for a topic. *schemas.Serde implements it.
type Encoder interface {
	Encode(ctx context.Context, topic, fullName string, v map[string]any) ([]byte, error)
}

// Output builds the records the EOS loop produces inside its transaction.
// It does not produce: the consumer owns the transactional client.
type Output struct {
	enc             Encoder
	deadLetterTopic string
	group           string
	now             func() time.Time
}

// NewOutput returns an Output that encodes commands with enc and sends dead
// letters to deadLetterTopic. group is recorded in dead-letter headers.
func NewOutput(enc Encoder, deadLetterTopic, group string) *Output {
	return &Output{enc: enc, deadLetterTopic: deadLetterTopic, group: group, now: time.Now}
}

// DeadLetterTopic is where poison events go.
func (o *Output) DeadLetterTopic() string { return o.deadLetterTopic }

// Commands encodes every command derived from the input record in. It is all
// or nothing: if one command cannot be encoded, no record is returned and the
// error is permanent (the input event is dead-lettered instead), so a poison
// event never emits half of its commands.
func (o *Output) Commands(ctx context.Context, in *kgo.Record, cmds []processors.Command) ([]*kgo.Record, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	out := make([]*kgo.Record, 0, len(cmds))
	input := in.Topic + "/" + strconv.Itoa(int(in.Partition)) + "/" + strconv.FormatInt(in.Offset, 10)
	for i := range cmds {
		c := &cmds[i]
		value, err := o.enc.Encode(ctx, c.Topic, c.Type, c.Value)
		if err != nil {
			if processors.IsTransient(err) {
				return nil, fmt.Errorf("encode command %s for %s: %w", c.Type, c.Topic, err)
			}
			return nil, &processors.ProcessorError{Processor: "encode", Err: fmt.Errorf("encode command %s for %s: %w", c.Type, c.Topic, err)}
		}
		r := &kgo.Record{Topic: c.Topic, Key: c.Key, Value: value}
		r.Headers = make([]kgo.RecordHeader, 0, 10+len(c.Headers))
		if env, ok := c.Value["envelope"].(map[string]any); ok {
			r.Headers = appendEnvelopeHeaders(r.Headers, env, input)
		} else {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderInput, Value: []byte(input)})
		}
		r.Headers = appendTraceHeaders(ctx, r.Headers, in.Headers)
		for _, h := range c.Headers {
			r.Headers = append(r.Headers, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		out = append(out, r)
	}
	return out, nil
}

// DeadLetter builds the dead-letter record for in: the original key, value
// and headers, plus ordo's reason headers.
func (o *Output) DeadLetter(in *kgo.Record, cause error) *kgo.Record {
	return o.DeadLetterContext(context.Background(), in, cause)
}

// DeadLetterContext is DeadLetter, except that when ctx carries a span (the
// event's processing span, tracing on) its context replaces the input's
// trace headers, so the dead letter continues ordo's trace.
func (o *Output) DeadLetterContext(ctx context.Context, in *kgo.Record, cause error) *kgo.Record {
	processor := "decode"
	var pe *processors.ProcessorError
	if errors.As(cause, &pe) {
		processor = pe.Processor
	}
	headers := make([]kgo.RecordHeader, 0, len(in.Headers)+8)
	headers = append(headers, in.Headers...)
	headers = append(headers,
		kgo.RecordHeader{Key: HeaderDLQErrorClass, Value: []byte("permanent")},
		kgo.RecordHeader{Key: HeaderDLQError, Value: []byte(truncate(cause.Error(), 4096))},
		kgo.RecordHeader{Key: HeaderDLQProcessor, Value: []byte(processor)},
		kgo.RecordHeader{Key: HeaderDLQSourceTopic, Value: []byte(in.Topic)},
		kgo.RecordHeader{Key: HeaderDLQSourcePartition, Value: []byte(strconv.Itoa(int(in.Partition)))},
		kgo.RecordHeader{Key: HeaderDLQSourceOffset, Value: []byte(strconv.FormatInt(in.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQTime, Value: []byte(o.now().UTC().Format(time.RFC3339Nano))},
		kgo.RecordHeader{Key: HeaderDLQGroup, Value: []byte(o.group)},
	)
	InjectTrace(ctx, &headers)
	return &kgo.Record{Topic: o.deadLetterTopic, Key: in.Key, Value: in.Value, Headers: headers}
}

// appendEnvelopeHeaders adds the envelope headers, and the input header when
// input is set. All values share one backing array (one allocation per record
// instead of one per header); each value is capped at its length, so an
// append by a later reader cannot run into its neighbour.
func appendEnvelopeHeaders(h []kgo.RecordHeader, env map[string]any, input string) []kgo.RecordHeader {
	str := func(k string) string { s, _ := env[k].(string); return s }
	id, typ, src, corr, cause := str("id"), str("type"), str("source"), str("correlation_id"), str("causation_id")
	t, hasTime := env["time"].(time.Time)
	buf := make([]byte, 0, len(id)+len(typ)+len(src)+len(corr)+len(cause)+len(input)+len(headerTimeLayout)+8)
	var start int
	value := func() []byte { v := buf[start:len(buf):len(buf)]; start = len(buf); return v }
	buf = append(buf, id...)
	h = append(h, kgo.RecordHeader{Key: HeaderID, Value: value()})
	buf = append(buf, typ...)
	h = append(h, kgo.RecordHeader{Key: HeaderType, Value: value()})
	buf = append(buf, src...)
	h = append(h, kgo.RecordHeader{Key: HeaderSource, Value: value()})
	buf = append(buf, corr...)
	h = append(h, kgo.RecordHeader{Key: HeaderCorrelationID, Value: value()})
	if hasTime {
		buf = appendHeaderTime(buf, t)
		h = append(h, kgo.RecordHeader{Key: HeaderTime, Value: value()})
	}
	if cause != "" {
		buf = append(buf, cause...)
		h = append(h, kgo.RecordHeader{Key: HeaderCausationID, Value: value()})
	}
	if input != "" {
		buf = append(buf, input...)
		h = append(h, kgo.RecordHeader{Key: HeaderInput, Value: value()})
	}
	return h
}

// headerTimeLayout is RFC 3339 with milliseconds.
const headerTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// appendHeaderTime appends t in UTC as headerTimeLayout. Years 0–9999 are
// written digit by digit (time.AppendFormat was 4% of ordo's CPU); others
// fall back to AppendFormat.
func appendHeaderTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.AppendFormat(b, headerTimeLayout)
	}
	hour, minute, sec := t.Clock()
	ms := t.Nanosecond() / 1e6
	d2 := func(b []byte, v int) []byte { return append(b, byte('0'+v/10), byte('0'+v%10)) }
	b = append(b, byte('0'+year/1000), byte('0'+year/100%10), byte('0'+year/10%10), byte('0'+year%10), '-')
	b = append(d2(b, int(month)), '-')
	b = append(d2(b, day), 'T')
	b = append(d2(b, hour), ':')
	b = append(d2(b, minute), ':')
	b = append(d2(b, sec), '.', byte('0'+ms/100), byte('0'+ms/10%10), byte('0'+ms%10), 'Z')
	return b
}

// appendTraceHeaders sets an output's W3C trace context: the span of ctx
// (ordo's processing span, when tracing is on) or else a copy of the input's
// traceparent/tracestate/baggage, so a trace is carried even with tracing off.
func appendTraceHeaders(ctx context.Context, dst, in []kgo.RecordHeader) []kgo.RecordHeader {
	if trace.SpanContextFromContext(ctx).IsValid() {
		Propagator.Inject(ctx, HeaderCarrier{H: &dst})
		return dst
	}
	for _, h := range in {
		switch h.Key {
		case HeaderTraceparent, HeaderTracestate, HeaderBaggage:
			dst = append(dst, h)
		}
	}
	return dst
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
