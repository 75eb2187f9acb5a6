package processors

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// TestChainSpansEachNamedProcessorUnderTheEventSpan: with the event's span
// in the context, every named processor of a chain gets one child span of
// it (not of the previous processor's), with or without the metrics hook,
// the failing one marked as an error; without a span in the context no
// span is made.
func TestChainSpansEachNamedProcessorUnderTheEventSpan(t *testing.T) {
	boom := errors.New("boom")
	ok := Func(func(context.Context, *Event) ([]Command, error) { return nil, nil })
	chain := Chain{Named("a", ok), ok, Named("b", ok), Named("c", Func(func(context.Context, *Event) ([]Command, error) { return nil, boom }))}
	for _, hooked := range []bool{false, true} {
		rec := tracetest.NewSpanRecorder()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
		ctx := context.Background()
		if hooked {
			ctx = WithProcessorHook(ctx, func(string, time.Duration, error) {})
		}
		if _, err := chain.Process(ctx, &Event{Attrs: map[string]any{}}); !errors.Is(err, boom) {
			t.Fatalf("hook %v, no span: error %v, want boom", hooked, err)
		}
		if n := len(rec.Ended()); n != 0 {
			t.Fatalf("hook %v: %d spans without a span in the context, want 0", hooked, n)
		}
		ctx, ev := tp.Tracer("test").Start(ctx, "event")
		if _, err := chain.Process(ctx, &Event{Attrs: map[string]any{}}); !errors.Is(err, boom) {
			t.Fatalf("hook %v: error %v, want boom", hooked, err)
		}
		ev.End()
		var names []string
		for _, s := range rec.Ended() {
			if s.Name() == "event" {
				continue
			}
			names = append(names, s.Name())
			if s.Parent().SpanID() != ev.SpanContext().SpanID() {
				t.Errorf("hook %v: span %q has parent %s, want the event span %s", hooked, s.Name(), s.Parent().SpanID(), ev.SpanContext().SpanID())
			}
			if failed := s.Status().Code.String() == "Error"; failed != (s.Name() == "ordo processor c") {
				t.Errorf("hook %v: span %q status %v", hooked, s.Name(), s.Status())
			}
		}
		if want := []string{"ordo processor a", "ordo processor b", "ordo processor c"}; !slices.Equal(names, want) {
			t.Errorf("hook %v: processor spans %v, want %v", hooked, names, want)
		}
	}
}
