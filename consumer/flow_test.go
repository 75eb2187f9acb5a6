package consumer_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/processors"
)

// TestSkipTypesCommitWithoutProcessing filters every OrderPlaced by its
// header: none reaches the chain, all offsets commit, all are counted.
func TestSkipTypesCommitWithoutProcessing(t *testing.T) {
	e := newEnv(t, 3)
	e.publish(500, nil)
	stats := &consumer.Stats{}
	chain := processors.Func(func(context.Context, *processors.Event) ([]processors.Command, error) {
		t.Error("a skipped event reached the chain")
		return nil, errors.New("should have been skipped")
	})
	run(t, e.pipeline("a", chain,
		consumer.SkipTypes("com.acme.checkout.OrderPlaced"),
		consumer.WithHooks(stats),
	))
	e.waitCommitted(60 * time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for stats.Snapshot().Skipped < 500 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if s := stats.Snapshot(); s.Skipped != 500 || s.EventsIn != 0 || s.DeadLettered != 0 {
		t.Fatalf("stats %+v: want 500 skipped, nothing processed", s)
	}
	if out := testkit.ReadCommitted(t, e.brokers, e.output, 10*time.Second); len(out) != 0 {
		t.Errorf("%d commands from skipped events", len(out))
	}
}

// TestRateLimitBoundsThroughput caps the input topic at 400 events/s (one
// second of burst): 1200 events cannot finish in much under 2 s. Only the
// lower bound is asserted, so a slow machine cannot fail it.
func TestRateLimitBoundsThroughput(t *testing.T) {
	e := newEnv(t, 3)
	ids := e.publish(1200, nil)
	start := time.Now()
	run(t, e.pipeline("a", e.echo(), consumer.RateLimits(map[string]float64{e.input: 400})))
	e.waitCommitted(90 * time.Second)
	if took := time.Since(start); took < 1800*time.Millisecond {
		t.Fatalf("1200 events at 400/s (burst 400) took %v; the limit did not hold", took)
	}
	e.checkExactlyOnce(ids)
}
