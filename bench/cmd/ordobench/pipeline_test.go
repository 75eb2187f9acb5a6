package main

// In-memory per-event cost of ordo's pipeline on the benchmark's events,
// without Kafka: decode (writer->reader resolution), the default chain of
// examples/orders/router.yaml (the stateless router (b) runs), and command encoding. Use it to iterate on the
// hotspots docs/benchmarks.md lists:
//
//	go test -run '^$' -bench Pipeline -benchmem -cpuprofile /tmp/cpu.out ./bench/cmd/ordobench
//	go tool pprof -top /tmp/cpu.out

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/schemas"
)

func newPipelineFixture(tb testing.TB, events int) *pipelineFixture {
	tb.Helper()
	f, err := newPipeline(context.Background(), filepath.Join("..", "..", ".."), events)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(f.close)
	return f
}

// event runs one input record through decode, the chain and encode.
func (f *pipelineFixture) event(ctx context.Context, r *kgo.Record) error {
	d, err := f.serde.DecodeRecord(ctx, r.Topic, r.Value)
	if err != nil {
		return err
	}
	c, err := f.chain.Process(ctx, f.events.From(r, d))
	if err != nil {
		return err
	}
	_, err = f.out.Commands(ctx, r, c)
	return err
}

// BenchmarkPipeline is one event through decode -> chain -> encode, and
// each stage alone (per event; the event mix is the benchmark's).
func BenchmarkPipeline(b *testing.B) {
	f := newPipelineFixture(b, 3000)
	ctx := context.Background()
	decoded := make([]schemas.Decoded, len(f.recs))
	cmds := make([][]processors.Command, len(f.recs))
	for i, r := range f.recs {
		d, err := f.serde.DecodeRecord(ctx, r.Topic, r.Value)
		if err != nil {
			b.Fatal(err)
		}
		decoded[i] = d
		c, err := f.chain.Process(ctx, f.events.From(r, d))
		if err != nil {
			b.Fatal(err)
		}
		cmds[i] = c
	}
	b.Run("full", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if err := f.event(ctx, f.recs[i%len(f.recs)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			r := f.recs[i%len(f.recs)]
			i++
			if _, err := f.serde.DecodeRecord(ctx, r.Topic, r.Value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("chain", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := i % len(f.recs)
			i++
			// Decoded values are not modified by the demo chain except
			// attrs, which the EventBuilder makes fresh.
			if _, err := f.chain.Process(ctx, f.events.From(f.recs[k], decoded[k])); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			k := i % len(f.recs)
			i++
			if _, err := f.out.Commands(ctx, f.recs[k], cmds[k]); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func TestPipelineFixture(t *testing.T) {
	f := newPipelineFixture(t, 300)
	ctx := context.Background()
	var n int
	for _, r := range f.recs {
		if len(r.Value) < 300 || len(r.Value) > 600 {
			t.Errorf("event value %d bytes, want 300-600", len(r.Value))
		}
		d, err := f.serde.DecodeRecord(ctx, r.Topic, r.Value)
		if err != nil {
			t.Fatal(err)
		}
		c, err := f.chain.Process(ctx, f.events.From(r, d))
		if err != nil {
			t.Fatalf("%s: %v", d.Type, err)
		}
		out, err := f.out.Commands(ctx, r, c)
		if err != nil {
			t.Fatal(err)
		}
		n += len(out)
	}
	if n < len(f.recs) {
		t.Fatalf("%d commands for %d events", n, len(f.recs))
	}
}

// TestPipelineAllocations bounds the allocations of one event through
// decode, the chain and encode (the benchmark's mix; the bound is a little
// above what BenchmarkPipeline measures: 7 with chunks and blocks shared
// by consecutive events, record literals and table rows as records (night
// of 2026-12-04); 19 with per-event arenas and records decoded as
// *schemas.Record; 45 before them). A regression that adds an allocation
// per event fails here instead of only moving the benchmark.
func TestPipelineAllocations(t *testing.T) {
	if testing.CoverMode() != "" || raceEnabled {
		t.Skip("allocation counts differ under -cover and -race; the plain run checks them")
	}
	f := newPipelineFixture(t, 1000)
	ctx := context.Background()
	i := 0
	step := func() {
		if err := f.event(ctx, f.recs[i%len(f.recs)]); err != nil {
			t.Fatal(err)
		}
		i++
	}
	// One pass first: the first command of each subject registers its
	// schema (HTTP to the fake registry), which is not per-event work.
	for range f.recs {
		step()
	}
	allocs := testing.AllocsPerRun(len(f.recs), step)
	const bound = 9
	if allocs > bound {
		t.Fatalf("%.0f allocations per event through decode, chain and encode, want <= %d", allocs, bound)
	}
	t.Logf("%.0f allocations per event", allocs)
}
