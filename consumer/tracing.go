package consumer

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/ordo-dev/ordo/producer"
)

// Tracing of the EOS loop. Off (tracer nil) it costs one nil check per
// record. On, each event's processing span is kept open until its
// transaction ends, then ended with its processing end time and the
// attribute ordo.txn.outcome (committed, aborted, failed, abandoned) and a
// link to the transaction's span: a retried event shows one processing span
// per attempt in its trace, each telling whether its effects became visible.

const tracerName = "github.com/ordo-dev/ordo/consumer"

// maxTxnLinks bounds the links from a transaction span to its events.
const maxTxnLinks = 128

func newTracer(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		return nil
	}
	if _, ok := tp.(noop.TracerProvider); ok {
		return nil
	}
	return tp.Tracer(tracerName)
}

// pendingSpan is an event span waiting for its transaction's outcome.
type pendingSpan struct {
	span trace.Span
	end  time.Time
}

// spanBuf collects the event spans of one transaction.
type spanBuf struct {
	mu    sync.Mutex
	spans []pendingSpan
}

func (b *spanBuf) add(s trace.Span) {
	b.mu.Lock()
	b.spans = append(b.spans, pendingSpan{span: s, end: time.Now()})
	b.mu.Unlock()
}

// startEventSpan extracts the record's trace context and starts its
// processing span. It returns ctx unchanged and a nil span when tracing is
// off.
func (p *Pipeline) startEventSpan(ctx context.Context, r *kgo.Record) (context.Context, trace.Span) {
	if p.tracer == nil {
		return ctx, nil
	}
	pctx := producer.ExtractTrace(ctx, r.Headers)
	attrs := make([]attribute.KeyValue, 0, 9)
	attrs = append(attrs,
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.operation.name", "process"),
		attribute.String("messaging.destination.name", r.Topic),
		attribute.String("messaging.destination.partition.id", strconv.Itoa(int(r.Partition))),
		attribute.Int64("messaging.kafka.offset", r.Offset),
		attribute.String("messaging.consumer.group.name", p.cfg.Group),
	)
	if len(r.Key) > 0 {
		k := r.Key
		if len(k) > 64 {
			k = k[:64]
		}
		attrs = append(attrs, attribute.String("messaging.kafka.message.key", string(k)))
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(attrs...)}
	if p.cfg.TraceLink {
		if sc := trace.SpanContextFromContext(pctx); sc.IsValid() {
			opts = append(opts, trace.WithLinks(trace.Link{SpanContext: sc}))
		}
		opts = append(opts, trace.WithNewRoot())
	}
	return p.tracer.Start(pctx, "ordo process", opts...)
}

// failSpan marks span as failed with err.
func failSpan(span trace.Span, err error) {
	if span == nil {
		return
	}
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// produce hands r to the transactional producer, inside a producer span
// (child of the event's span) whose context r carries, when tracing is on.
func (p *Pipeline) produce(ectx, produceCtx context.Context, sess txnSession, r *kgo.Record, t *txn) {
	p.obs.Produced(r)
	promise := t.promise.Promise()
	if p.tracer != nil && trace.SpanFromContext(ectx).IsRecording() {
		sctx, span := p.tracer.Start(ectx, "ordo send "+r.Topic, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", r.Topic),
			attribute.Bool("ordo.dead_letter", r.Topic == p.out.DeadLetterTopic()),
		))
		producer.InjectTrace(sctx, &r.Headers)
		inner := promise
		promise = func(r *kgo.Record, err error) {
			if err != nil {
				failSpan(span, err)
			} else {
				span.SetAttributes(attribute.String("messaging.destination.partition.id", strconv.Itoa(int(r.Partition))), attribute.Int64("messaging.kafka.offset", r.Offset))
			}
			span.End()
			inner(r, err)
		}
	}
	sess.Produce(produceCtx, r, promise)
}

// startTxnSpan starts the span of a transaction end (a root, linked to up to
// maxTxnLinks of its events). nil when tracing is off.
func (p *Pipeline) startTxnSpan(ctx context.Context, t *txn, try kgo.TransactionEndTry) (context.Context, trace.Span) {
	if p.tracer == nil || t.spans == nil {
		return ctx, nil
	}
	name := "ordo txn commit"
	if try == kgo.TryAbort {
		name = "ordo txn abort"
	}
	t.spans.mu.Lock()
	links := make([]trace.Link, 0, min(len(t.spans.spans), maxTxnLinks))
	for _, s := range t.spans.spans[:min(len(t.spans.spans), maxTxnLinks)] {
		links = append(links, trace.Link{SpanContext: s.span.SpanContext()})
	}
	n := len(t.spans.spans)
	t.spans.mu.Unlock()
	return p.tracer.Start(ctx, name, trace.WithNewRoot(), trace.WithLinks(links...), trace.WithAttributes(
		attribute.String("messaging.system", "kafka"),
		attribute.String("messaging.consumer.group.name", p.cfg.Group),
		attribute.Int("ordo.txn.records", t.records),
		attribute.Int("ordo.txn.events_traced", n),
	))
}

// finishSpans ends the event spans of a transaction with its outcome.
func finishSpans(b *spanBuf, outcome string, txnSpan trace.Span) {
	if b == nil {
		return
	}
	b.mu.Lock()
	spans := b.spans
	b.spans = nil
	b.mu.Unlock()
	var link trace.Link
	if txnSpan != nil {
		link = trace.Link{SpanContext: txnSpan.SpanContext()}
	}
	for _, s := range spans {
		s.span.SetAttributes(attribute.String("ordo.txn.outcome", outcome))
		if outcome != "committed" {
			s.span.AddEvent("ordo.txn."+outcome, trace.WithTimestamp(s.end), trace.WithAttributes(
				attribute.String("message", "the transaction did not commit: this attempt's outputs were discarded and the event is processed again")))
		}
		if link.SpanContext.IsValid() {
			s.span.AddLink(link)
		}
		s.span.End(trace.WithTimestamp(s.end))
	}
}
