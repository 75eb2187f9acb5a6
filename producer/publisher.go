package producer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Publisher is the SDK other teams' Go services use to publish events that
// ordo consumes. It encodes the value with the registered schema (Confluent
// wire format), fills the standard envelope, sets the envelope and W3C trace
// headers and produces through an idempotent client (franz-go's default), so
// a producer retry never writes a record twice.
//
//	pub := producer.NewPublisher(cl, serde, "checkout")
//	_, err := pub.Publish(ctx, "checkout.orders.v1", "com.acme.checkout.OrderPlaced", orderID, value)
type Publisher struct {
	cl     *kgo.Client
	enc    Encoder
	source string
	now    func() time.Time
}

// NewPublisher returns a Publisher producing with cl. source names the
// publishing team or service (envelope.source).
func NewPublisher(cl *kgo.Client, enc Encoder, source string) *Publisher {
	return &Publisher{cl: cl, enc: enc, source: source, now: time.Now}
}

// Record builds the record without producing it, filling the envelope in
// value (a natural Avro value with an "envelope" record): id (random) if
// empty, type = fullName, source, time = now, correlation_id = key if empty.
func (p *Publisher) Record(ctx context.Context, topic, fullName, key string, value map[string]any) (*kgo.Record, error) {
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
	b, err := p.enc.Encode(ctx, topic, fullName, value)
	if err != nil {
		return nil, fmt.Errorf("publish %s to %s: %w", fullName, topic, err)
	}
	r := &kgo.Record{Topic: topic, Key: []byte(key), Value: b}
	r.Headers = appendEnvelopeHeaders(r.Headers, env)
	r.Headers = append(r.Headers, kgo.RecordHeader{Key: HeaderTraceparent, Value: []byte(traceparentFrom(ctx))})
	return r, nil
}

// Publish builds the record and produces it synchronously.
func (p *Publisher) Publish(ctx context.Context, topic, fullName, key string, value map[string]any) (*kgo.Record, error) {
	r, err := p.Record(ctx, topic, fullName, key, value)
	if err != nil {
		return nil, err
	}
	if err := p.cl.ProduceSync(ctx, r).FirstErr(); err != nil {
		return nil, fmt.Errorf("publish %s to %s: %w", fullName, topic, err)
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
