package producer

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
)

// TestCommandsFromRecordsMatchMaps: a command laid out in slots
// (Command.Record, as orchestrate builds it) becomes the same Kafka record,
// value and headers, as the same command as a map; and the records of one
// event, which share one arena, do not run into each other.
func TestCommandsFromRecordsMatchMaps(t *testing.T) {
	srv := httptest.NewServer(srfake.New().Handler())
	t.Cleanup(srv.Close)
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	readers, err := schemas.Demo()
	if err != nil {
		t.Fatal(err)
	}
	out := NewOutput(schemas.NewSerde(schemas.NewRegistry(cl), readers), "dlq", "g")
	in := &kgo.Record{Topic: "checkout.orders.v1", Partition: 2, Offset: 41,
		Headers: []kgo.RecordHeader{{Key: HeaderTraceparent, Value: []byte("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")}}}
	when := time.UnixMilli(1_700_000_000_000).UTC()
	mk := func(i int, asRecord bool) processors.Command {
		envNames := []string{"id", "type", "source", "time", "correlation_id", "causation_id"}
		envVals := []any{"cmd-" + string(rune('a'+i)), "com.acme.ordo.commands.NotifyCustomer", "ordo", when, "o-1", "e-1"}
		vals := []any{nil, "o-1", "tpl", "detail " + string(rune('a'+i))}
		names := []string{"envelope", "order_id", "template", "detail"}
		c := processors.Command{Topic: "commands.notify-customer.v1", Type: "com.acme.ordo.commands.NotifyCustomer", Key: []byte("o-1"),
			Headers: []processors.Header{{Key: "x-extra", Value: []byte{byte(i)}}}}
		env := &schemas.Record{Names: envNames, Values: envVals}
		if asRecord {
			vals[0] = env
			c.Record = &schemas.Record{Names: names, Values: vals}
		} else {
			vals[0] = env.Natural()
			c.Value = (&schemas.Record{Names: names, Values: vals}).Natural()
		}
		return c
	}
	var recs, maps []processors.Command
	for i := range 3 {
		recs, maps = append(recs, mk(i, true)), append(maps, mk(i, false))
	}
	ctx := context.Background()
	got, err := out.Commands(ctx, in, recs)
	if err != nil {
		t.Fatal(err)
	}
	want, err := out.Commands(ctx, in, maps)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if !bytes.Equal(got[i].Value, want[i].Value) || !bytes.Equal(got[i].Key, want[i].Key) || got[i].Topic != want[i].Topic {
			t.Errorf("record %d: slots give %x, the map %x", i, got[i].Value, want[i].Value)
		}
		if len(got[i].Headers) != len(want[i].Headers) {
			t.Fatalf("record %d: %d headers from slots, %d from the map", i, len(got[i].Headers), len(want[i].Headers))
		}
		for j, h := range want[i].Headers {
			if g := got[i].Headers[j]; g.Key != h.Key || !bytes.Equal(g.Value, h.Value) {
				t.Errorf("record %d header %d: %s=%q, want %s=%q", i, j, g.Key, g.Value, h.Key, h.Value)
			}
		}
		if v, ok := header(got[i], HeaderID); !ok || v != "cmd-"+string(rune('a'+i)) {
			t.Errorf("record %d: %s header %q", i, HeaderID, v)
		}
	}
	// Appending to one record's value or header value must not change any
	// other slice (they share an arena).
	snapshot := func() [][]byte {
		var all [][]byte
		for _, r := range got {
			all = append(all, bytes.Clone(r.Value))
			for _, h := range r.Headers {
				all = append(all, append([]byte(h.Key+"="), h.Value...))
			}
		}
		return all
	}
	before := snapshot()
	_ = append(got[0].Value, 0xff, 0xff, 0xff)
	_ = append(got[0].Headers[0].Value, "zzzz"...)
	_ = append(got[1].Headers[2].Value, "zzzz"...)
	_ = append(got[0].Headers, kgo.RecordHeader{Key: "k"})
	after := snapshot()
	for i := range before {
		if !bytes.Equal(before[i], after[i]) {
			t.Errorf("an append to one slice changed another: %q became %q", before[i], after[i])
		}
	}
	for i, h := range got[0].Headers {
		if cap(h.Value) != len(h.Value) {
			t.Errorf("header %d value has spare capacity %d", i, cap(h.Value)-len(h.Value))
		}
	}
}

// TestCommandsEachCarryTheTraceContext: with a span in ctx (tracing on),
// every record of an event gets exactly one traceparent, the span's; the
// records share one header slice, and the propagator's carrier replaces a
// header of the same key, so it must only see the record's own headers.
func TestCommandsEachCarryTheTraceContext(t *testing.T) {
	out := NewOutput(sizedEncoder{8}, "dlq", "g")
	in := &kgo.Record{Topic: "in", Partition: 1, Offset: 9,
		Headers: []kgo.RecordHeader{{Key: HeaderTraceparent, Value: []byte("00-11111111111111111111111111111111-2222222222222222-00")}}}
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31, 0x9c},
		SpanID:  trace.SpanID{0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31},
	})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	var cmds []processors.Command
	for i := range 4 {
		cmds = append(cmds, processors.Command{Topic: "t", Type: "T", Key: []byte{byte(i)},
			Value: map[string]any{"envelope": map[string]any{"id": "c" + string(rune('0'+i)), "type": "T"}}})
	}
	recs, err := out.Commands(ctx, in, cmds)
	if err != nil {
		t.Fatal(err)
	}
	want := "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
	for i, r := range recs {
		n := 0
		for _, h := range r.Headers {
			if h.Key == HeaderTraceparent {
				n++
				if string(h.Value) != want {
					t.Errorf("record %d: traceparent %q, want the span's %q", i, h.Value, want)
				}
			}
		}
		if n != 1 {
			t.Errorf("record %d has %d traceparent headers, want 1: %v", i, n, r.Headers)
		}
	}
}
