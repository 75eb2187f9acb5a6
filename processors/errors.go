package processors

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Error classes. A processor error is permanent unless it is marked transient:
// a permanent error sends the event to the dead-letter topic (nothing is lost,
// the chain is not retried); a transient error is retried with backoff and, if
// the retries run out, the transaction aborts and the batch is re-run later.
// A transient error never dead-letters an event.
//
// Classification is by behaviour, not by type, so packages that do not import
// processors (e.g. schemas for registry outages) can mark their own errors:
// an error is transient if any error in its chain has a method
// `Transient() bool` that returns true.

// ErrDrop, returned (possibly wrapped) by a processor, ends the chain for an
// event that needs no effect: a duplicate delivery, an event for a finished
// process that is configured to be ignored. The event counts as processed:
// its offset commits, nothing is produced and nothing is dead-lettered, and
// state written for it is discarded. Wrap it with the reason:
// fmt.Errorf("duplicate of event %s: %w", id, processors.ErrDrop).
var ErrDrop = errors.New("event dropped")

// Transient marks err as transient (retry, never dead-letter).
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, transient: true}
}

// Permanent marks err as permanent (dead-letter). Use it to override a
// transient classification further down the chain.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &classified{err: err, transient: false}
}

// IsTransient reports whether err is classified as transient. The outermost
// classification wins.
func IsTransient(err error) bool {
	for err != nil {
		if t, ok := err.(interface{ Transient() bool }); ok {
			return t.Transient()
		}
		err = errors.Unwrap(err)
	}
	return false
}

type classified struct {
	err       error
	transient bool
}

func (c *classified) Error() string   { return c.err.Error() }
func (c *classified) Unwrap() error   { return c.err }
func (c *classified) Transient() bool { return c.transient }

// ProcessorError records which processor failed, for dead-letter headers and
// logs. The chain built from configuration wraps every processor's error in
// it.
type ProcessorError struct {
	Processor string
	Err       error
}

func (e *ProcessorError) Error() string { return fmt.Sprintf("processor %s: %v", e.Processor, e.Err) }
func (e *ProcessorError) Unwrap() error { return e.Err }

// Named wraps p so that its errors carry the processor's name. When ctx
// carries a recording span (ordo's processing span), each run is a child
// span "ordo processor <name>"; when ctx carries a hook (WithProcessorHook),
// each run is reported to it (metrics). Without either it costs nothing.
func Named(name string, p Processor) Processor { return &named{name: name, p: p} }

type named struct {
	name string
	p    Processor
}

type processorHookKey struct{}

// ProcessorHook receives the duration and outcome of each named processor run.
type ProcessorHook func(name string, took time.Duration, err error)

// WithProcessorHook returns a context whose Named processors report every
// run to hook.
func WithProcessorHook(ctx context.Context, hook ProcessorHook) context.Context {
	return context.WithValue(ctx, processorHookKey{}, hook)
}

// ReadsRecords answers for the wrapped processor (see RecordReader).
func (n *named) ReadsRecords() bool { return ReadsRecords(n.p) }

func (n *named) Process(ctx context.Context, ev *Event) ([]Command, error) {
	hook, _ := ctx.Value(processorHookKey{}).(ProcessorHook)
	var start time.Time
	if hook != nil {
		start = time.Now()
	}
	cmds, err := n.run(ctx, trace.SpanFromContext(ctx), ev)
	if hook != nil {
		hook(n.name, time.Since(start), err)
	}
	return n.named(cmds, err)
}

// named puts the processor's name on a run's error (nil stays nil).
func (n *named) named(cmds []Command, err error) ([]Command, error) {
	if err != nil {
		return nil, &ProcessorError{Processor: n.name, Err: err}
	}
	return cmds, nil
}

// run is Process without the hook (a Chain times its named processors
// itself) and without the name on the error: the child span of parent,
// ctx's span (the caller has looked it up).
func (n *named) run(ctx context.Context, parent trace.Span, ev *Event) ([]Command, error) {
	var span trace.Span
	if parent.IsRecording() {
		ctx, span = parent.TracerProvider().Tracer("github.com/ordo-dev/ordo/processors").Start(ctx, "ordo processor "+n.name,
			trace.WithAttributes(attribute.String("ordo.processor.name", n.name)))
	}
	cmds, err := n.p.Process(ctx, ev)
	if span != nil {
		if err != nil {
			span.RecordError(err)
			span.SetStatus(codes.Error, err.Error())
			span.SetAttributes(attribute.Bool("ordo.error.transient", IsTransient(err)))
		} else {
			span.SetAttributes(attribute.Int("ordo.commands", len(cmds)))
		}
		span.End()
	}
	return cmds, err
}
