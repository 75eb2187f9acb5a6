package telemetry

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/consumer"
)

// Each stage's client keeps its own franz-go metrics: before ClientHooks,
// the stateful stage's client took over the collectors of the pipeline's
// (kprom keeps them on its Metrics value), so ordo_kafka_* showed one loop.
func TestClientMetricsPerStage(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := NewMetrics()
	ctx := context.Background()
	produce := func(stage, topic string, n int) {
		cl, err := kgo.NewClient(append(m.ClientHooks(stage), kgo.SeedBrokers(c.ListenAddrs()...))...)
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close() // kprom unregisters a closed client's collectors: read before
		for range n {
			if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("x")}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if got := producedRecords(t, m, stage); got != float64(n) {
			t.Fatalf("stage %s: ordo_kafka_produce_records_total = %v, want %d", stage, got, n)
		}
	}
	// The pipeline's client stays open while the process stage's produces.
	cl, err := kgo.NewClient(append(m.ClientHooks("pipeline"), kgo.SeedBrokers(c.ListenAddrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for range 3 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "a", Value: []byte("x")}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce("process", "b", 5)
	if got := producedRecords(t, m, "pipeline"); got != 3 {
		t.Fatalf("pipeline's ordo_kafka_produce_records_total = %v after the process stage's client ran, want 3", got)
	}
}

func producedRecords(t *testing.T, m *Metrics, stage string) float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, f := range fams {
		if f.GetName() != "ordo_kafka_produce_records_total" {
			continue
		}
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				if l.GetName() == "stage" && l.GetValue() == stage {
					sum += mm.GetCounter().GetValue()
				}
			}
		}
	}
	return sum
}

// A committed transaction's rewound records add to
// ordo_records_rewound_total, next to its committed events.
func TestCommittedCountsReachTheirCounters(t *testing.T) {
	m := NewMetrics()
	m.OnTxnCommitted(0, consumer.Counts{EventsIn: 7, Rewound: 3})
	m.OnTxnCommitted(0, consumer.Counts{EventsIn: 2, Rewound: 2})
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, mm := range f.GetMetric() {
			got[f.GetName()] += mm.GetCounter().GetValue()
		}
	}
	if got["ordo_records_rewound_total"] != 5 || got["ordo_events_committed_total"] != 9 {
		t.Fatalf("ordo_records_rewound_total = %v, ordo_events_committed_total = %v; want 5 and 9",
			got["ordo_records_rewound_total"], got["ordo_events_committed_total"])
	}
}
