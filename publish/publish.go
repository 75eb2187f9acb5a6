// Package publish is the SDK other teams' Go services use to publish the
// events ordo consumes: Avro in the Confluent wire format, the standard
// envelope filled in, ordo's envelope headers and a W3C traceparent set, and
// an idempotent franz-go producer underneath (a retry never writes a record
// twice).
package publish

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordo-dev/ordo/producer"
)

// Publisher is the SDK other teams' Go services use to publish events that
// ordo consumes. It encodes the value with the registered schema (Confluent
// wire format), fills the standard envelope, sets the envelope and W3C trace
// headers and produces through an idempotent client (franz-go's default), so
// a producer retry never writes a record twice.
//
//	pub := publish.New(cl, serde, "checkout")
//	_, err := pub.Publish(ctx, "checkout.orders.v1", "com.acme.checkout.OrderPlaced", orderID, value)
type Publisher struct {
	cl     *kgo.Client
	enc    producer.Encoder
	source string
	now    func() time.Time
	tracer trace.Tracer // nil: no spans, plain traceparent headers
}

// Option configures a Publisher.
type Option func(*Publisher)

// WithTracerProvider makes the publisher start a producer span for every
// record ("send <topic>", the root of the event's trace unless ctx already
// carries a span or WithTraceparent) and inject its context into the record.
// A span per record costs an allocation or two and an exporter's work; without
// this option the publisher still sets a traceparent header (a new trace per
// record, or WithTraceparent's), so ordo's spans still join one trace.
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(p *Publisher) {
		if tp != nil {
			p.tracer = tp.Tracer("github.com/ordo-dev/ordo/publish")
		}
	}
}

// New returns a Publisher producing with cl (its own producer settings
// apply: keep franz-go's default idempotence). enc encodes values
// (*schemas.Serde); source names the publishing team or service
// (envelope.source).
func New(cl *kgo.Client, enc producer.Encoder, source string, opts ...Option) *Publisher {
	p := &Publisher{cl: cl, enc: enc, source: source, now: time.Now}
	for _, o := range opts {
		o(p)
	}
	return p
}

// Record builds the record without producing it, filling the envelope in
// value (a natural Avro value with an "envelope" record): id (random) if
// empty, type = fullName, source, time = now, correlation_id = key if empty.
func (p *Publisher) Record(ctx context.Context, topic, fullName, key string, value map[string]any) (*kgo.Record, error) {
	r, span, err := p.record(ctx, topic, fullName, key, value)
	if span != nil {
		endSpan(span, err)
	}
	return r, err
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func (p *Publisher) record(ctx context.Context, topic, fullName, key string, value map[string]any) (*kgo.Record, trace.Span, error) {
	var span trace.Span
	if p.tracer != nil {
		if tp, ok := ctx.Value(traceparentKey{}).(string); ok && tp != "" {
			ctx = producer.Propagator.Extract(ctx, propagation.MapCarrier{producer.HeaderTraceparent: tp})
		}
		ctx, span = p.tracer.Start(ctx, "send "+topic, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
			attribute.String("messaging.system", "kafka"),
			attribute.String("messaging.operation.type", "send"),
			attribute.String("messaging.destination.name", topic),
			attribute.String("messaging.kafka.message.key", key[:min(len(key), 64)]),
			attribute.String("ordo.event.type", fullName),
		))
	}
	r, err := p.build(ctx, topic, fullName, key, value)
	return r, span, err
}

func (p *Publisher) build(ctx context.Context, topic, fullName, key string, value map[string]any) (*kgo.Record, error) {
	env, _ := value["envelope"].(map[string]any)
	if env == nil {
		env = map[string]any{}
		value["envelope"] = env
	}
	setDefault := func(k string, v any) {
		if s, ok := env[k].(string); !ok || s == "" {
			if _, isTime := env[k].(time.Time); !isTime {
				env[k] = v
			}
		}
	}
	setDefault("id", newID())
	setDefault("type", fullName)
	setDefault("source", p.source)
	setDefault("correlation_id", key)
	if _, ok := env["time"].(time.Time); !ok {
		env["time"] = p.now().UTC().Truncate(time.Millisecond)
	}
	if _, ok := env["causation_id"]; !ok {
		env["causation_id"] = nil
	}
	if env["type"] != fullName {
		return nil, fmt.Errorf("publish %s: envelope.type %v does not match the schema", fullName, env["type"])
	}
	b, err := p.enc.AppendEncoded(ctx, make([]byte, 0, 256), topic, fullName, value)
	if err != nil {
		return nil, fmt.Errorf("publish %s to %s: %w", fullName, topic, err)
	}
	r := &kgo.Record{Topic: topic, Key: []byte(key), Value: b}
	r.Headers = producer.AppendEnvelopeHeaders(r.Headers, env, nil)
	if p.tracer != nil {
		producer.Propagator.Inject(ctx, producer.HeaderCarrier{H: &r.Headers})
	} else {
		r.Headers = append(r.Headers, kgo.RecordHeader{Key: producer.HeaderTraceparent, Value: []byte(traceparentFrom(ctx))})
	}
	return r, nil
}

// Publish builds the record and produces it synchronously.
func (p *Publisher) Publish(ctx context.Context, topic, fullName, key string, value map[string]any) (*kgo.Record, error) {
	r, span, err := p.record(ctx, topic, fullName, key, value)
	if err == nil {
		if err = p.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
			err = fmt.Errorf("publish %s to %s: %w", fullName, topic, err)
		} else if span != nil {
			span.SetAttributes(attribute.String("messaging.destination.partition.id", strconv.Itoa(int(r.Partition))), attribute.Int64("messaging.kafka.offset", r.Offset))
		}
	}
	if span != nil {
		endSpan(span, err)
	}
	if err != nil {
		return nil, err
	}
	return r, nil
}

type traceparentKey struct{}

// WithTraceparent returns a context whose published records continue the
// given W3C traceparent instead of starting a new trace.
func WithTraceparent(ctx context.Context, traceparent string) context.Context {
	return context.WithValue(ctx, traceparentKey{}, traceparent)
}

// traceparentFrom returns the context's traceparent, or starts a new trace
// (sampled) at the source.
func traceparentFrom(ctx context.Context) string {
	if tp, ok := ctx.Value(traceparentKey{}).(string); ok && tp != "" {
		return tp
	}
	var trace [16]byte
	var span [8]byte
	_, _ = rand.Read(trace[:])
	_, _ = rand.Read(span[:])
	return "00-" + hex.EncodeToString(trace[:]) + "-" + hex.EncodeToString(span[:]) + "-01"
}

func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
