package consumer_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/ordo-dev/ordo/consumer"
	"github.com/ordo-dev/ordo/processors"
)

// BenchmarkSlowEnrichment measures key-level parallelism against
// partition-serial processing when every event waits on a 2 ms HTTP lookup
// (the real enrich_http processor against a loopback server), with 3
// partitions and 50 keys. Run:
//
//	go test ./consumer/ -run '^$' -bench SlowEnrichment -benchtime 1x
//
// (add KAFKA_BROKERS=... to measure on Apache Kafka). The target is ≥5× for
// key-parallel; results go to docs/benchmarks.md.
func BenchmarkSlowEnrichment(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(2 * time.Millisecond)
		fmt.Fprint(w, `{"tier":"gold"}`)
	}))
	defer srv.Close()
	const events = 3000
	for _, mode := range []struct {
		name        string
		keyParallel bool
	}{{"partition-serial", false}, {"key-parallel", true}} {
		b.Run(mode.name, func(b *testing.B) {
			for range b.N {
				e := newEnv(b, 3)
				e.publish(events, nil)
				var node yaml.Node
				cfg := fmt.Sprintf("{url: %q, key: 'envelope.id', into: tier, cache_size: 0, timeout: 1s}", srv.URL+"/tiers/{key}")
				if err := yaml.Unmarshal([]byte(cfg), &node); err != nil {
					b.Fatal(err)
				}
				chain, err := processors.Builtins().Build([]processors.Spec{{Name: "tier", Type: "enrich_http", Config: *node.Content[0]}}, processors.Deps{})
				if err != nil {
					b.Fatal(err)
				}
				full := processors.Chain{chain, e.echo()}
				start := time.Now()
				stop := runB(b, e.pipeline("a", full, consumer.KeyParallel(mode.keyParallel)))
				e.waitCommitted(5 * time.Minute)
				took := time.Since(start)
				stop()
				b.ReportMetric(float64(events)/took.Seconds(), "events/s")
			}
		})
	}
}

func runB(b *testing.B, p *consumer.Pipeline) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return func() {
		cancel()
		<-done
	}
}
