package main

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/schemas"
)

// TestRecordModeProducesTheSameCommands: over the benchmark's event mix
// and the example pipeline, decoding records as *schemas.Record (what the
// pipeline does with a Serde and a Chain) gives the same event envelope
// and byte-identical command records (values and headers) as decoding
// them as maps, and the chain never had to build the map.
func TestRecordModeProducesTheSameCommands(t *testing.T) {
	f := newPipelineFixture(t, 600)
	ctx := context.Background()
	run := func(r *kgo.Record, decode func(context.Context, string, []byte) (schemas.Decoded, error)) ([]*kgo.Record, string, bool) {
		d, err := decode(ctx, r.Topic, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		ev := consumer.EventFrom(r, d)
		c, err := f.chain.Process(ctx, ev)
		if err != nil {
			t.Fatal(err)
		}
		out, err := f.out.Commands(ctx, r, c)
		if err != nil {
			t.Fatal(err)
		}
		return out, fmt.Sprintf("%+v", ev.Envelope), ev.Record != nil
	}
	commands, kept := 0, 0
	for i, r := range f.recs {
		want, wantEnv, _ := run(r, f.serde.Decode)
		got, gotEnv, stillRecord := run(r, f.serde.DecodeRecord)
		if gotEnv != wantEnv {
			t.Fatalf("event %d: envelope %s with records, %s with maps", i, gotEnv, wantEnv)
		}
		if stillRecord {
			kept++
		}
		if len(got) != len(want) {
			t.Fatalf("event %d: %d commands with records, %d with maps", i, len(got), len(want))
		}
		for k := range got {
			g, w := got[k], want[k]
			if g.Topic != w.Topic || !bytes.Equal(g.Key, w.Key) || !bytes.Equal(g.Value, w.Value) {
				t.Fatalf("event %d command %d: %s %q %x with records, %s %q %x with maps", i, k, g.Topic, g.Key, g.Value, w.Topic, w.Key, w.Value)
			}
			if fmt.Sprint(g.Headers) != fmt.Sprint(w.Headers) {
				t.Fatalf("event %d command %d: headers %v with records, %v with maps", i, k, g.Headers, w.Headers)
			}
			commands++
		}
	}
	if commands < len(f.recs) {
		t.Fatalf("only %d commands from %d events: the comparison saw too little", commands, len(f.recs))
	}
	if kept != len(f.recs) {
		t.Fatalf("the chain built the map for %d of %d events (the example's processors all read records)", len(f.recs)-kept, len(f.recs))
	}
}
