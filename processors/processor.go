// Package processors holds ordo's processor chain: the small Processor
// interface, the Chain that composes processors, the error classes that decide
// between dead-lettering and retrying, and the built-in processors (one file
// each: validate, enrich_table, enrich_http, orchestrate).
//
// Processors may run more than once for the same record: when a transaction
// aborts (rebalance, crash, transient failure) ordo rewinds to the last
// committed offsets and re-runs the chain. A processor must therefore be
// deterministic and free of external side effects; its only effects are the
// commands it returns, which Kafka commits atomically with the input offsets.
package processors

import (
	"context"
	"time"

	"github.com/ordo-dev/ordo/schemas"

	"go.opentelemetry.io/otel/trace"
)

// Processor handles one event. It may modify ev (enrichment) and returns zero
// or more commands to emit. A returned error is classified with IsTransient:
// transient errors are retried and never dead-lettered; everything else is
// permanent and sends the event to the dead-letter topic.
type Processor interface {
	Process(ctx context.Context, ev *Event) ([]Command, error)
}

// Func adapts a function to a Processor.
type Func func(ctx context.Context, ev *Event) ([]Command, error)

// Process calls f.
func (f Func) Process(ctx context.Context, ev *Event) ([]Command, error) { return f(ctx, ev) }

// Envelope is the standard header of every ordo event and command. It is the
// Avro record com.acme.common.Envelope stored in the "envelope" field.
type Envelope struct {
	ID            string
	Type          string
	Source        string
	Time          time.Time
	CorrelationID string
	CausationID   string // empty when absent
}

// Header is one Kafka record header.
type Header struct {
	Key   string
	Value []byte
}

// Event is one decoded input record as processors see it.
type Event struct {
	// Where the record came from.
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Timestamp time.Time
	Headers   []Header

	// SchemaID is the writer schema id from the Confluent wire format.
	SchemaID int
	// Type is the writer schema's full name, e.g. com.acme.checkout.OrderPlaced.
	Type string
	// Envelope is parsed from Value["envelope"] when present.
	Envelope Envelope
	// Value is the datum resolved to ordo's reader schema for Type (or the
	// writer's datum when ordo has no reader schema for Type), in natural Go
	// form: records and maps are map[string]any, arrays []any, unions are
	// unwrapped (nil for null), enums string, bytes/fixed []byte, int int32,
	// long int64, float float32, double float64, decimal *big.Rat (exact),
	// timestamp-millis/micros time.Time.
	//
	// Value is nil while Record holds the value (see Record); Map returns
	// it in either case.
	Value map[string]any

	// Record is the value as ordo's decoder builds it: records are
	// *schemas.Record (slots in the reader schema's field order), at any
	// depth, instead of maps, so reading a field costs no map per record.
	// While Record is set, Value is nil. Map builds Value from Record
	// (once) and clears Record; from then on Value is the event's value.
	// The Chain calls Map before every processor that is not a
	// RecordReader, so processors that use Value directly see it as
	// always; the built-in processors read Record through CEL.
	Record *schemas.Record

	// Attrs carries values computed by earlier processors that are not part
	// of the Avro value (e.g. enrichment results kept out of the schema).
	// Processors read and write it; CEL sees it as `attrs`. Values are in
	// natural form or *schemas.Record (enrich_table's rows): Field reads
	// both. The Chain makes it before every processor that is not a
	// RecordReader (custom Go processors as written before records
	// existed); the built-in ones, and a RecordReader of your own, find it
	// nil until something is set and make it themselves (an empty map per
	// event was an allocation most chains never used).
	Attrs map[string]any

	// Marks are what stateful processors decided about the event (see
	// Mark). The pipeline counts the marks of committed transactions only.
	Marks []Mark

	// cel is the CEL activation, reused by every processor of the chain
	// (held by value: no allocation per event; see newVars).
	cel vars
}

// Mark is one decision a stateful processor made about an event, e.g.
// {Process: "order-fulfilment", Outcome: "completed"} or {Outcome:
// "duplicate"}. The pipeline exports them as ordo_process_events_total
// {process, outcome} when the event's transaction commits, adds them to the
// event's span, and ordo dev prints them in its summary.
type Mark struct {
	Process string // "" for marks not tied to a process (e.g. duplicate)
	Outcome string
}

// Map returns the event's value in natural form (Value), building it from
// Record first when the decoder left it as a record; Record is cleared
// then, so changes to the returned map are what later processors see.
func (ev *Event) Map() map[string]any {
	if ev.Value == nil && ev.Record != nil {
		ev.Value = ev.Record.Natural()
		ev.Record = nil
	}
	return ev.Value
}

// Get returns the field at path of the event's value (record field names
// or map keys, outermost first), reading whichever form the value is in
// (Record or Value) without building a map. A processor that reads the
// value only with Get (and Field for nested values) can be a RecordReader.
func (ev *Event) Get(path ...string) (any, bool) {
	if ev.Record != nil && ev.Value == nil {
		return Field(ev.Record, path...)
	}
	if ev.Value == nil {
		return nil, false
	}
	return Field(ev.Value, path...)
}

// Field returns the field at path of v, a record in either natural form
// (map[string]any or *schemas.Record) at every step: e.g. an element of
// an array of records, Field(item, "qty"). ok is false when a step is
// missing or not a record.
func Field(v any, path ...string) (any, bool) {
	for _, k := range path {
		var has bool
		if v, has, _ = fastField(v, k); !has {
			return nil, false
		}
	}
	return v, true
}

// As returns v as a T, for typed reads: As[*big.Rat](ev.Get("total")). ok
// is false when the field is missing or holds another type (or null).
func As[T any](v any, ok bool) (T, bool) {
	t, isT := v.(T)
	return t, ok && isT
}

// Set sets the top-level field name of the event's value in whichever form
// it is in; on a Record only a field of its schema can be set (false
// otherwise). Use it instead of writing Value in a RecordReader.
func (ev *Event) Set(name string, v any) bool {
	if ev.Record != nil && ev.Value == nil {
		return ev.Record.Set(name, v)
	}
	if ev.Value == nil {
		ev.Value = map[string]any{}
	}
	ev.Value[name] = v
	return true
}

// SetAt sets the field at path of the event's value (record field names
// or map keys, outermost first; the last one is set) in whichever form the
// value is in, without building a map: ev.SetAt("DE", "address", "country").
// It reports false when a field on the way is missing or is neither a
// record nor a map, or when the last one is not a field of its record's
// schema. With one name it is Set.
func (ev *Event) SetAt(v any, path ...string) bool {
	if len(path) == 1 {
		return ev.Set(path[0], v)
	}
	if ev.Record != nil && ev.Value == nil {
		return SetField(ev.Record, v, path...)
	}
	return SetField(ev.Value, v, path...)
}

// SetField is SetAt for any record-like value x (a *schemas.Record, e.g. an
// enrich_table row in attrs, or a map[string]any): it sets the field at
// path below x.
func SetField(x, v any, path ...string) bool {
	if len(path) == 0 {
		return false
	}
	parent, ok := Field(x, path[:len(path)-1]...)
	if !ok {
		return false
	}
	last := path[len(path)-1]
	if r, ok := recordOf(parent); ok {
		return r.Set(last, v)
	}
	if m, ok := parent.(map[string]any); ok && m != nil {
		m[last] = v
		return true
	}
	return false
}

// RecordReader is a Processor that reads and writes the event's value only
// through Get, Field, Set, SetAt, SetField, Map or CEL, never Event.Value directly, so it
// can run while the value is still a Record (see Event.Record).
// ReadsRecords reports whether it does (a wrapper answers for what it
// wraps).
type RecordReader interface {
	Processor
	ReadsRecords() bool
}

// ReadsRecords reports whether p is a RecordReader that says so.
func ReadsRecords(p Processor) bool {
	r, ok := p.(RecordReader)
	return ok && r.ReadsRecords()
}

// Mark records a decision about ev (see Mark).
func (ev *Event) Mark(process, outcome string) {
	ev.Marks = append(ev.Marks, Mark{Process: process, Outcome: outcome})
}

// Command is an output event that ordo produces in the transaction.
type Command struct {
	// Topic to produce to.
	Topic string
	// Type is the full Avro name of the command's schema; the producer encodes
	// Value with it, using the registry subject strategy for Topic.
	Type string
	// Key is the Kafka key; orchestrate uses the correlation id so that one
	// process's commands stay in order.
	Key []byte
	// Value in the same natural Go form as Event.Value, including the
	// "envelope" record. Processors that build commands by hand set Value.
	Value map[string]any
	// Record is the value laid out in the command schema's field order, the
	// envelope a nested *schemas.Record: orchestrate builds it instead of
	// Value when it knows the schema's fields (no map per command, and the
	// encoder writes the slots in order). Set Value or Record, not both;
	// read either form with Natural.
	Record *schemas.Record
	// Headers to add besides ordo's own (envelope, traceparent, source).
	Headers []Header
}

// Natural returns the command's value as a map in natural form: Value, or
// a new map built from Record. Tests and tools read commands with it; the
// hot path does not.
func (c *Command) Natural() map[string]any {
	if c.Value != nil || c.Record == nil {
		return c.Value
	}
	return c.Record.Natural()
}

// Chain runs processors in order, stopping at the first error. Commands of all
// processors are concatenated.
type Chain []Processor

// Process runs every processor of the chain on ev. Before a processor that
// is not a RecordReader it builds ev.Value from ev.Record (Event.Map).
func (c Chain) Process(ctx context.Context, ev *Event) ([]Command, error) {
	// With a hook (metrics), the chain times its named processors itself:
	// one lookup of the hook per event, one wall-clock reading, and then
	// one monotonic reading per processor (time.Since: about half the cost
	// of time.Now here), the end of one run being the start of the next. The
	// hook is called after the chain, so its own time is in no processor's.
	hook, _ := ctx.Value(processorHookKey{}).(ProcessorHook)
	var buf [8]processorRun
	runs := buf[:0]
	var t0 time.Time
	var last time.Duration // since t0: the end of the last run
	if hook != nil {
		t0 = time.Now()
	}
	// The event's span, looked up once: a context lookup that finds
	// nothing (tracing off) walks the whole context chain, and each named
	// processor would otherwise look it up again.
	parent := trace.SpanFromContext(ctx)
	var out []Command
	for _, p := range c {
		if !ReadsRecords(p) {
			if ev.Record != nil {
				ev.Map()
				if hook != nil {
					last = time.Since(t0) // the conversion is not the processor's time
				}
			}
			if ev.Attrs == nil {
				ev.Attrs = map[string]any{}
			}
		}
		var cmds []Command
		var err error
		if n, isNamed := p.(*named); isNamed {
			cmds, err = n.run(ctx, parent, ev)
			if hook != nil {
				now := time.Since(t0)
				runs = append(runs, processorRun{n.name, now - last, err})
				last = now
			}
			cmds, err = n.named(cmds, err)
		} else {
			cmds, err = p.Process(ctx, ev)
			if hook != nil {
				last = time.Since(t0)
			}
		}
		if err != nil {
			reportRuns(hook, runs)
			return nil, err
		}
		if out == nil {
			out = cmds[:len(cmds):len(cmds)] // usually one processor emits: no copy (capped: a later append copies)
		} else {
			out = append(out, cmds...)
		}
	}
	reportRuns(hook, runs)
	return out, nil
}

// processorRun is one named processor's run, reported after the chain.
type processorRun struct {
	name string
	took time.Duration
	err  error
}

func reportRuns(hook ProcessorHook, runs []processorRun) {
	for _, r := range runs {
		hook(r.name, r.took, r.err)
	}
}

// ReadsRecords reports whether the chain's first processor reads records:
// the Chain hands each processor the form it reads (see Process), but when
// the first one needs the map at once, decoding straight to maps is
// cheaper than building records and converting them. A type embedding
// Chain whose own Process reads ev.Value must override this.
func (c Chain) ReadsRecords() bool { return len(c) == 0 || ReadsRecords(c[0]) }

// EnvelopeFromRecord is EnvelopeFrom for an "envelope" *schemas.Record: one
// pass over its fields rather than a lookup by name per field (it runs for
// every event); Unset slots read as absent, as with Get.
func EnvelopeFromRecord(env *schemas.Record) Envelope {
	var e Envelope
	for i, n := range env.Names {
		if i >= len(env.Values) {
			break
		}
		e.set(n, env.Values[i])
	}
	return e
}

// EnvelopeFrom reads the natural "envelope" record of an event or command.
func EnvelopeFrom(env map[string]any) Envelope {
	var e Envelope
	for k, v := range env {
		e.set(k, v)
	}
	return e
}

// set takes field name's value v if it is an envelope field of the right
// type; anything else (an unknown field, nil, Unset) leaves e as it is.
func (e *Envelope) set(name string, v any) {
	switch name {
	case "id":
		e.ID, _ = v.(string)
	case "type":
		e.Type, _ = v.(string)
	case "source":
		e.Source, _ = v.(string)
	case "correlation_id":
		e.CorrelationID, _ = v.(string)
	case "causation_id":
		e.CausationID, _ = v.(string)
	case "time":
		e.Time, _ = v.(time.Time)
	}
}

// Map returns the envelope in natural form, ready to put in a Value.
func (e Envelope) Map() map[string]any {
	m := map[string]any{"id": e.ID, "type": e.Type, "source": e.Source, "time": e.Time, "correlation_id": e.CorrelationID, "causation_id": nil}
	if e.CausationID != "" {
		m["causation_id"] = e.CausationID
	}
	return m
}
