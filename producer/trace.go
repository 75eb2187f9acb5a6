package producer

import (
	"context"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Propagator is the W3C trace context + baggage propagator ordo uses on
// record headers. It is a value, not global state: ordo never touches
// otel's global propagator.
var Propagator propagation.TextMapPropagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// HeaderCarrier adapts a record's headers to a propagation.TextMapCarrier.
// Set replaces an existing header of the same key.
//
//	ctx := producer.Propagator.Extract(ctx, producer.HeaderCarrier{H: &r.Headers})
type HeaderCarrier struct{ H *[]kgo.RecordHeader }

// Get returns the first header value for key.
func (c HeaderCarrier) Get(key string) string {
	for _, h := range *c.H {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// Set sets key, replacing the first header of that key.
func (c HeaderCarrier) Set(key, value string) {
	for i, h := range *c.H {
		if h.Key == key {
			(*c.H)[i].Value = []byte(value)
			return
		}
	}
	*c.H = append(*c.H, kgo.RecordHeader{Key: key, Value: []byte(value)})
}

// Keys lists the header keys.
func (c HeaderCarrier) Keys() []string {
	out := make([]string, len(*c.H))
	for i, h := range *c.H {
		out[i] = h.Key
	}
	return out
}

// ExtractTrace returns ctx with the trace context and baggage of headers.
func ExtractTrace(ctx context.Context, headers []kgo.RecordHeader) context.Context {
	return Propagator.Extract(ctx, HeaderCarrier{H: &headers})
}

// InjectTrace writes the span context (and baggage) of ctx into *headers,
// replacing any trace headers already there. Without a valid span context in
// ctx it does nothing.
func InjectTrace(ctx context.Context, headers *[]kgo.RecordHeader) {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return
	}
	*headers = removeTraceHeaders(*headers)
	Propagator.Inject(ctx, HeaderCarrier{H: headers})
}

func removeTraceHeaders(h []kgo.RecordHeader) []kgo.RecordHeader {
	out := h[:0]
	for _, x := range h {
		switch x.Key {
		case HeaderTraceparent, HeaderTracestate, HeaderBaggage:
			continue
		}
		out = append(out, x)
	}
	return out
}
