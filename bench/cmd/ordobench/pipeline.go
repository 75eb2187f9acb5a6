package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/app"
	"github.com/ordo-dev/ordo/internal/config"
	"github.com/ordo-dev/ordo/processors"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

// pipelineFixture is ordo's stateless pipeline in memory, without Kafka:
// decode (writer->reader resolution), the chain of
// examples/orders/router.yaml (what (b) runs) and command encoding, with
// the benchmark's events. BenchmarkPipeline measures it; the shaped
// pass-through (shape.go) takes its output records as templates.
type pipelineFixture struct {
	serde *schemas.Serde
	chain processors.Processor
	out   *producer.Output
	recs  []*kgo.Record
	// events builds events as the pipeline does (blocks shared by events).
	events consumer.EventBuilder
	close  func()
}

// newPipeline builds the fixture from the repository at root with the
// benchmark's first events events (generator seed 7). close stops its
// in-process schema registry.
func newPipeline(ctx context.Context, root string, events int) (*pipelineFixture, error) {
	fake := srfake.New()
	srv := httptest.NewServer(fake.Handler())
	ok := false
	defer func() {
		if !ok {
			srv.Close()
		}
	}()
	cl, err := sr.NewClient(sr.URLs(srv.URL))
	if err != nil {
		return nil, err
	}
	reg := schemas.NewRegistry(cl)
	readers, err := schemas.Demo()
	if err != nil {
		return nil, err
	}
	writers, err := writerSchemas()
	if err != nil {
		return nil, err
	}
	if err := registerWriters(ctx, reg, writers, ""); err != nil {
		return nil, err
	}
	cfg, err := config.Load(filepath.Join(root, "examples", "orders", "router.yaml"), nil)
	if err != nil {
		return nil, err
	}
	chain, err := processors.Builtins().Build(cfg.Specs(), app.ProcessorDeps(cfg, readers, slog.New(slog.DiscardHandler)))
	if err != nil {
		return nil, fmt.Errorf("build the chain of router.yaml: %w", err)
	}
	serde := schemas.NewSerde(reg, readers)
	g := newGen(publish.New(nil, schemas.NewSerde(reg, writers), "bench"), 7)
	f := &pipelineFixture{serde: serde, chain: chain, out: producer.NewOutput(serde, deadLetterTopic, "bench"), close: srv.Close}
	for i := 1; i <= events; i++ {
		r, err := g.record(ctx, i, "", "")
		if err != nil {
			return nil, err
		}
		r.Partition, r.Offset, r.Timestamp = int32(i%12), int64(i), time.Now()
		f.recs = append(f.recs, r)
	}
	ok = true
	return f, nil
}

// commands runs one input record through decode, the chain and encode and
// returns its output records.
func (f *pipelineFixture) commands(ctx context.Context, r *kgo.Record) ([]*kgo.Record, error) {
	d, err := f.serde.DecodeRecord(ctx, r.Topic, r.Value)
	if err != nil {
		return nil, err
	}
	c, err := f.chain.Process(ctx, f.events.From(r, d))
	if err != nil {
		return nil, err
	}
	return f.out.Commands(ctx, r, c)
}
