package producer

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
)

// Encoder turns a command's natural value into Confluent-framed Avro bytes
// for a topic. *schemas.Serde implements it.
type Encoder interface {
	// AppendEncoded appends the framed encoding of v, a natural
	// map[string]any or a *schemas.Record, to dst; on error it returns dst
	// unchanged.
	AppendEncoded(ctx context.Context, dst []byte, topic, fullName string, v any) ([]byte, error)
}

// Output builds the records the EOS loop produces inside its transaction.
// It does not produce: the consumer owns the transactional client.
//
// It never builds a record the broker would refuse as too large (a refused
// record fails its transaction, and the rerun would refuse it again,
// forever): a command over its topic's limit fails its event permanently
// (the event is dead-lettered, reason record_too_large), and a dead letter
// over the dead-letter topic's limit is replaced by a bounded one (see
// DeadLetterContext).
type Output struct {
	enc             Encoder
	deadLetterTopic string
	group           string
	now             func() time.Time
	maxBytes        func(ctx context.Context, topic string) int
}

// OutputOpt configures NewOutput.
type OutputOpt func(*Output)

// WithMaxRecordBytes sets the largest record, as estimated by RecordBytes,
// that Output builds for a topic (default: DefaultMaxRecordBytes for every
// topic). *TopicLimits.For fits: the smaller of the producer's max batch
// bytes and the topic's max.message.bytes. A result of 0 or less means
// DefaultMaxRecordBytes. limit is called for every output record, so it must
// be cheap once a topic is known.
func WithMaxRecordBytes(limit func(ctx context.Context, topic string) int) OutputOpt {
	return func(o *Output) {
		if limit != nil {
			o.maxBytes = limit
		}
	}
}

// NewOutput returns an Output that encodes commands with enc and sends dead
// letters to deadLetterTopic. group is recorded in dead-letter headers.
func NewOutput(enc Encoder, deadLetterTopic, group string, opts ...OutputOpt) *Output {
	o := &Output{enc: enc, deadLetterTopic: deadLetterTopic, group: group, now: time.Now}
	for _, opt := range opts {
		opt(o)
	}
	return o
}

// limit is the record size limit for topic.
func (o *Output) limit(ctx context.Context, topic string) int {
	if o.maxBytes != nil {
		if n := o.maxBytes(ctx, topic); n > 0 {
			return n
		}
	}
	return DefaultMaxRecordBytes
}

// DeadLetterTopic is where poison events go.
func (o *Output) DeadLetterTopic() string { return o.deadLetterTopic }

// Commands encodes every command derived from the input record in. It is all
// or nothing: if one command cannot be encoded, or its record is larger than
// its topic's limit (a *RecordTooLargeError), no record is returned and the
// error is permanent (the input event is dead-lettered instead), so a poison
// event never emits half of its commands. Transient encoding errors
// (registry) stay transient.
func (o *Output) Commands(ctx context.Context, in *kgo.Record, cmds []processors.Command) ([]*kgo.Record, error) {
	if len(cmds) == 0 {
		return nil, nil
	}
	// The records of an event share their allocations: one slice of
	// records, one of headers and one byte arena for values and header
	// values. Each value and header slice is capped at its length, so an
	// append by a later reader cannot run into its neighbour; an arena that
	// grows leaves the earlier slices in the old array, which stays valid.
	// Headers per record: 7 of the envelope at most, the trace context
	// (copied from the input, or traceparent, tracestate and baggage
	// injected), the command's own.
	tr := 0
	for _, h := range in.Headers {
		switch h.Key {
		case HeaderTraceparent, HeaderTracestate, HeaderBaggage:
			tr++
		}
	}
	nh := 0
	for i := range cmds {
		nh += 7 + max(tr, 3) + len(cmds[i].Headers)
	}
	var out []*kgo.Record
	var recs []kgo.Record
	var hdrs []kgo.RecordHeader
	var arena []byte
	switch n := len(cmds); {
	case n == 1 && nh <= len(batch1{}.hdrs):
		b := new(batch1)
		out, recs, hdrs, arena = b.ptrs[:], b.recs[:], b.hdrs[:0], b.bytes[:0]
	case n == 2 && nh <= len(batch2{}.hdrs):
		b := new(batch2)
		out, recs, hdrs, arena = b.ptrs[:], b.recs[:], b.hdrs[:0], b.bytes[:0]
	default:
		out, recs = make([]*kgo.Record, n), make([]kgo.Record, n)
		hdrs, arena = make([]kgo.RecordHeader, 0, nh), make([]byte, 0, 384*n)
	}
	var ob [128]byte // the origin is copied into each record's header buffer: no string per event
	input := appendOrigin(ob[:0], in)
	spanned := trace.SpanContextFromContext(ctx).IsValid() // one context lookup per event, not per record
	for i := range cmds {
		c := &cmds[i]
		var v any = c.Value
		if c.Value == nil && c.Record != nil {
			v = c.Record
		}
		start := len(arena)
		var err error
		arena, err = o.enc.AppendEncoded(ctx, arena, c.Topic, c.Type, v)
		if err != nil {
			if processors.IsTransient(err) {
				return nil, fmt.Errorf("encode command %s for %s: %w", c.Type, c.Topic, err)
			}
			return nil, &processors.ProcessorError{Processor: "encode", Err: fmt.Errorf("encode command %s for %s: %w", c.Type, c.Topic, err)}
		}
		r := &recs[i]
		r.Topic, r.Key, r.Value = c.Topic, c.Key, arena[start:len(arena):len(arena)]
		h0 := len(hdrs)
		if env, ok := envelopeOf(c); ok {
			hdrs, arena = appendEnvelope(hdrs, arena, &env, input)
		} else {
			start := len(arena)
			arena = append(arena, input...)
			hdrs = append(hdrs, kgo.RecordHeader{Key: HeaderInput, Value: arena[start:len(arena):len(arena)]})
		}
		// The trace context goes through a carrier that replaces a header
		// of the same key: give it this record's headers only, not the
		// event's (it would find the previous record's traceparent).
		own := appendTraceHeadersIf(ctx, spanned, hdrs[h0:], in.Headers)
		hdrs = append(hdrs[:h0], own...)
		for _, h := range c.Headers {
			hdrs = append(hdrs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
		}
		r.Headers = hdrs[h0:len(hdrs):len(hdrs)]
		if size, limit := RecordBytes(r), o.limit(ctx, c.Topic); size > limit {
			return nil, &processors.ProcessorError{Processor: "encode", Err: &RecordTooLargeError{Topic: c.Topic, Type: c.Type, Bytes: size, Limit: limit}}
		}
		out[i] = r
	}
	return out, nil
}

// batch1 and batch2 are the records of an event with one or two commands
// (the demo routes' most per event) in one allocation instead of four: the
// records, their pointers, headers and bytes (values and header values;
// what outgrows the array goes to a new one, as with a separate arena).
type batch1 struct {
	ptrs  [1]*kgo.Record
	recs  [1]kgo.Record
	hdrs  [12]kgo.RecordHeader
	bytes [384]byte
}

type batch2 struct {
	ptrs  [2]*kgo.Record
	recs  [2]kgo.Record
	hdrs  [24]kgo.RecordHeader
	bytes [768]byte
}

// envelopeOf reads a command's "envelope" record, from Value or Record,
// with processors' readers (one pass over a record's fields). A zero time
// counts as no time: it gets no ordo-time header.
func envelopeOf(c *processors.Command) (processors.Envelope, bool) {
	switch {
	case c.Value != nil:
		m, ok := c.Value["envelope"].(map[string]any)
		if !ok {
			return processors.Envelope{}, false
		}
		return processors.EnvelopeFrom(m), true
	case c.Record != nil:
		v, _ := c.Record.Get("envelope")
		r, ok := v.(*schemas.Record)
		if !ok {
			return processors.Envelope{}, false
		}
		return processors.EnvelopeFromRecord(r), true
	}
	return processors.Envelope{}, false
}

// DeadLetter builds the dead-letter record for in: the original key, value
// and headers, plus ordo's reason headers.
func (o *Output) DeadLetter(in *kgo.Record, cause error) *kgo.Record {
	return o.DeadLetterContext(context.Background(), in, cause)
}

// DeadLetterContext is DeadLetter, except that when ctx carries a span (the
// event's processing span, tracing on) its context replaces the input's
// trace headers, so the dead letter continues ordo's trace.
//
// A dead letter larger than the dead-letter topic's limit is replaced by a
// bounded one, in up to three steps, each taken only if the previous one
// still does not fit: (1) the value and the key are cut to their first
// DeadLetterPrefixBytes; (2) the original headers are dropped (trace headers
// kept); (3) the value and key are omitted (an empty value, never null) and
// ordo-dlq-error is cut to 256 bytes. The bounded dead letter has
// ordo-dlq-reason record_too_large, ordo-dlq-original-reason (why the event
// was dead-lettered), ordo-dlq-truncated (what was cut: value, key,
// headers, error), ordo-dlq-record-size (the full dead letter's estimated
// size), ordo-dlq-value-size and ordo-dlq-key-size (the original lengths),
// and the usual source topic/partition/offset, where the full record stays
// until retention removes it.
func (o *Output) DeadLetterContext(ctx context.Context, in *kgo.Record, cause error) *kgo.Record {
	reason := DeadLetterReason(cause)
	errText := truncate(cause.Error(), 4096)
	headers := make([]kgo.RecordHeader, 0, len(in.Headers)+10)
	headers = append(headers, in.Headers...)
	headers = o.appendDLQHeaders(headers, in, cause, reason, errText)
	InjectTrace(ctx, &headers)
	r := &kgo.Record{Topic: o.deadLetterTopic, Key: in.Key, Value: in.Value, Headers: headers}
	size, limit := RecordBytes(r), o.limit(ctx, o.deadLetterTopic)
	if size <= limit {
		return r
	}
	return o.boundedDeadLetter(ctx, in, cause, reason, errText, size, limit)
}

// DeadLetterPrefixBytes is how much of an oversized dead letter's value (and
// key) is kept: enough for the Confluent header (schema id) and the start of
// the body, to tell what the record was.
const DeadLetterPrefixBytes = 1024

// boundedDeadLetter builds the smallest-first replacement for a dead letter
// of size bytes that exceeds limit (see DeadLetterContext).
func (o *Output) boundedDeadLetter(ctx context.Context, in *kgo.Record, cause error, reason, errText string, size, limit int) *kgo.Record {
	var r *kgo.Record
	for step := 1; step <= 3; step++ {
		key, value, keepHeaders := in.Key, in.Value, step < 2
		var cut []string
		if step < 3 {
			if len(value) > DeadLetterPrefixBytes {
				value, cut = value[:DeadLetterPrefixBytes:DeadLetterPrefixBytes], append(cut, "value")
			}
			if len(key) > DeadLetterPrefixBytes {
				key, cut = key[:DeadLetterPrefixBytes:DeadLetterPrefixBytes], append(cut, "key")
			}
		} else {
			value, cut = []byte{}, append(cut, "value")
			if len(key) > 0 {
				key, cut = nil, append(cut, "key")
			}
		}
		var headers []kgo.RecordHeader
		if keepHeaders {
			headers = append(headers, in.Headers...)
		} else {
			for _, h := range in.Headers {
				switch h.Key {
				case HeaderTraceparent, HeaderTracestate, HeaderBaggage:
					headers = append(headers, h)
				}
			}
			if len(headers) < len(in.Headers) {
				cut = append(cut, "headers")
			}
		}
		msg := errText
		if step == 3 && len(msg) > 256 {
			msg, cut = truncate(msg, 256), append(cut, "error")
		}
		headers = o.appendDLQHeaders(headers, in, cause, ReasonRecordTooLarge, msg)
		headers = append(headers,
			kgo.RecordHeader{Key: HeaderDLQOriginalReason, Value: []byte(reason)},
			kgo.RecordHeader{Key: HeaderDLQTruncated, Value: []byte(strings.Join(cut, ","))},
			kgo.RecordHeader{Key: HeaderDLQRecordSize, Value: []byte(strconv.Itoa(size))},
			kgo.RecordHeader{Key: HeaderDLQValueSize, Value: []byte(strconv.Itoa(len(in.Value)))},
			kgo.RecordHeader{Key: HeaderDLQKeySize, Value: []byte(strconv.Itoa(len(in.Key)))},
		)
		InjectTrace(ctx, &headers)
		r = &kgo.Record{Topic: o.deadLetterTopic, Key: key, Value: value, Headers: headers}
		if RecordBytes(r) <= limit {
			break
		}
	}
	// If even step 3 does not fit, the limit is absurdly small (a few
	// hundred bytes); the broker refuses it and the transaction fails,
	// which the operator sees: better than dropping the dead letter.
	return r
}

// appendDLQHeaders appends ordo's dead-letter headers.
func (o *Output) appendDLQHeaders(h []kgo.RecordHeader, in *kgo.Record, cause error, reason, errText string) []kgo.RecordHeader {
	processor := "decode"
	var pe *processors.ProcessorError
	if errors.As(cause, &pe) {
		processor = pe.Processor
	}
	return append(h,
		kgo.RecordHeader{Key: HeaderDLQErrorClass, Value: []byte("permanent")},
		kgo.RecordHeader{Key: HeaderDLQReason, Value: []byte(reason)},
		kgo.RecordHeader{Key: HeaderDLQError, Value: []byte(errText)},
		kgo.RecordHeader{Key: HeaderDLQProcessor, Value: []byte(processor)},
		kgo.RecordHeader{Key: HeaderDLQSourceTopic, Value: []byte(in.Topic)},
		kgo.RecordHeader{Key: HeaderDLQSourcePartition, Value: []byte(strconv.Itoa(int(in.Partition)))},
		kgo.RecordHeader{Key: HeaderDLQSourceOffset, Value: []byte(strconv.FormatInt(in.Offset, 10))},
		kgo.RecordHeader{Key: HeaderDLQTime, Value: []byte(o.now().UTC().Format(time.RFC3339Nano))},
		kgo.RecordHeader{Key: HeaderDLQGroup, Value: []byte(o.group)},
	)
}

// AppendEnvelopeHeaders adds the envelope headers of env (the "envelope"
// record in natural form), and the input header when input is set. All
// values share one backing array (one allocation per record instead of one
// per header); each value is capped at its length, so an append by a later
// reader cannot run into its neighbour.
func AppendEnvelopeHeaders(h []kgo.RecordHeader, env map[string]any, input []byte) []kgo.RecordHeader {
	e := processors.EnvelopeFrom(env)
	h, _ = appendEnvelope(h, make([]byte, 0, len(e.ID)+len(e.Type)+len(e.Source)+len(e.CorrelationID)+len(e.CausationID)+len(input)+len(headerTimeLayout)+8), &e, input)
	return h
}

// appendEnvelope appends e's headers to h, their values to buf.
func appendEnvelope(h []kgo.RecordHeader, buf []byte, e *processors.Envelope, input []byte) ([]kgo.RecordHeader, []byte) {
	start := len(buf)
	value := func() []byte { v := buf[start:len(buf):len(buf)]; start = len(buf); return v }
	buf = append(buf, e.ID...)
	h = append(h, kgo.RecordHeader{Key: HeaderID, Value: value()})
	buf = append(buf, e.Type...)
	h = append(h, kgo.RecordHeader{Key: HeaderType, Value: value()})
	buf = append(buf, e.Source...)
	h = append(h, kgo.RecordHeader{Key: HeaderSource, Value: value()})
	buf = append(buf, e.CorrelationID...)
	h = append(h, kgo.RecordHeader{Key: HeaderCorrelationID, Value: value()})
	if !e.Time.IsZero() {
		buf = appendHeaderTime(buf, e.Time)
		h = append(h, kgo.RecordHeader{Key: HeaderTime, Value: value()})
	}
	if e.CausationID != "" {
		buf = append(buf, e.CausationID...)
		h = append(h, kgo.RecordHeader{Key: HeaderCausationID, Value: value()})
	}
	if len(input) > 0 {
		buf = append(buf, input...)
		h = append(h, kgo.RecordHeader{Key: HeaderInput, Value: value()})
	}
	return h, buf
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
	return appendTraceHeadersIf(ctx, trace.SpanContextFromContext(ctx).IsValid(), dst, in)
}

// appendTraceHeadersIf is appendTraceHeaders for a caller that has looked
// up whether ctx carries a span (spanned) once for several records.
func appendTraceHeadersIf(ctx context.Context, spanned bool, dst, in []kgo.RecordHeader) []kgo.RecordHeader {
	if spanned {
		return injectTrace(ctx, dst)
	}
	for _, h := range in {
		switch h.Key {
		case HeaderTraceparent, HeaderTracestate, HeaderBaggage:
			dst = append(dst, h)
		}
	}
	return dst
}

// injectTrace is apart from appendTraceHeaders so that only the tracing
// path moves dst to the heap (the carrier takes its address).
func injectTrace(ctx context.Context, dst []kgo.RecordHeader) []kgo.RecordHeader {
	Propagator.Inject(ctx, HeaderCarrier{H: &dst})
	return dst
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// appendOrigin appends the upstream record a command derives from, "topic/partition/
// offset": the input record itself, or, for a process-log record (the
// stateful stage), the upstream record it was forwarded from.
func appendOrigin(dst []byte, in *kgo.Record) []byte {
	for _, h := range in.Headers {
		if h.Key == HeaderOrigin {
			return append(dst, h.Value...)
		}
	}
	dst = append(dst, in.Topic...)
	dst = append(dst, '/')
	dst = strconv.AppendInt(dst, int64(in.Partition), 10)
	dst = append(dst, '/')
	return strconv.AppendInt(dst, in.Offset, 10)
}
