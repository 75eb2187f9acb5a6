package telemetry

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/ordo-dev/ordo/processors"
)

// gather returns the one metric family reg exposes.
func gather(t *testing.T, c prometheus.Collector) *dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(fams) != 1 {
		t.Fatalf("%d metric families, want 1", len(fams))
	}
	return fams[0]
}

// The striped histogram exposes what prometheus' own histogram exposes for
// the same observations, bounds included (le is inclusive), from several
// goroutines at once.
func TestStripedHistogramMatchesPrometheus(t *testing.T) {
	bounds := prometheus.ExponentialBuckets(0.0001, 2.5, 16)
	opts := prometheus.HistogramOpts{Name: "h", Help: "h", Buckets: bounds}
	ref := prometheus.NewHistogramVec(opts, []string{"processor", "outcome"})
	got := newStripedHistogramVec(opts, []string{"processor", "outcome"})
	var ds []time.Duration
	for _, b := range bounds {
		d := time.Duration(b * float64(time.Second))
		ds = append(ds, d, d+1, d-1)
	}
	ds = append(ds, 0, time.Hour, 7*time.Microsecond)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			name := []string{"a", "b"}[g%2]
			for range 100 {
				for _, d := range ds {
					ref.WithLabelValues(name, "ok").Observe(d.Seconds())
					got.get(name, func() []string { return []string{name, "ok"} }).Observe(d)
				}
			}
		})
	}
	wg.Wait()
	want, have := gather(t, ref), gather(t, got)
	if len(have.Metric) != 2 {
		t.Fatalf("%d children, want 2", len(have.Metric))
	}
	for i, wm := range want.Metric {
		hm := have.Metric[i]
		if wm.Label[0].GetValue() != hm.Label[0].GetValue() {
			t.Fatalf("child %d: label %q, want %q", i, hm.Label[0].GetValue(), wm.Label[0].GetValue())
		}
		wh, hh := wm.GetHistogram(), hm.GetHistogram()
		if wh.GetSampleCount() != hh.GetSampleCount() || wh.GetSampleCount() != uint64(200*len(ds)) {
			t.Errorf("child %d: count %d, want %d", i, hh.GetSampleCount(), wh.GetSampleCount())
		}
		if d := wh.GetSampleSum() - hh.GetSampleSum(); d > 1e-6 || d < -1e-6 {
			t.Errorf("child %d: sum %g, want %g", i, hh.GetSampleSum(), wh.GetSampleSum())
		}
		if len(wh.Bucket) != len(hh.Bucket) {
			t.Fatalf("child %d: %d buckets, want %d", i, len(hh.Bucket), len(wh.Bucket))
		}
		for j := range wh.Bucket {
			if wh.Bucket[j].GetUpperBound() != hh.Bucket[j].GetUpperBound() || wh.Bucket[j].GetCumulativeCount() != hh.Bucket[j].GetCumulativeCount() {
				t.Errorf("child %d bucket %d: le=%g count %d, want le=%g count %d", i, j,
					hh.Bucket[j].GetUpperBound(), hh.Bucket[j].GetCumulativeCount(), wh.Bucket[j].GetUpperBound(), wh.Bucket[j].GetCumulativeCount())
			}
		}
	}
}

// No increment is lost across stripes and goroutines.
func TestStripedCounterCountsEveryInc(t *testing.T) {
	v := newStripedCounterVec(prometheus.CounterOpts{Name: "c", Help: "c"}, []string{"topic"})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			topic := []string{"x", "y"}[g%2]
			for range 10000 {
				v.get(topic, func() []string { return []string{topic} }).Inc()
			}
		})
	}
	wg.Wait()
	fam := gather(t, v)
	if len(fam.Metric) != 2 {
		t.Fatalf("%d children, want 2", len(fam.Metric))
	}
	for _, m := range fam.Metric {
		if got := m.GetCounter().GetValue(); got != 40000 {
			t.Errorf("topic %s: %g, want 40000", m.Label[0].GetValue(), got)
		}
	}
}

// BenchmarkHistogramObserve compares prometheus' histogram with the striped
// one under parallel observers (go test -bench Observe -cpu 1,2).
func BenchmarkHistogramObserve(b *testing.B) {
	opts := prometheus.HistogramOpts{Name: "h", Help: "h", Buckets: latencyBuckets}
	b.Run("prometheus", func(b *testing.B) {
		h := prometheus.NewHistogram(opts)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h.Observe((3 * time.Microsecond).Seconds())
			}
		})
	})
	b.Run("striped", func(b *testing.B) {
		h := newStripedHistogramVec(opts, nil).get("", func() []string { return nil })
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				h.Observe(3 * time.Microsecond)
			}
		})
	})
}

// The per-event hooks feed the striped metrics under ordo's metric names
// and labels, as a scrape of the registry sees them.
func TestPerEventHooksExposeTheirMetrics(t *testing.T) {
	m := NewMetrics()
	ev := &processors.Event{Type: "com.acme.checkout.OrderPlaced"}
	for range 3 {
		m.OnEventProcessed(ev, 2, 3*time.Millisecond)
		m.OnProcessorDone("routes", time.Millisecond, nil)
		m.OnProduced(&kgo.Record{Topic: "commands.a"})
	}
	m.OnProcessorDone("order-rules", 2*time.Second, errors.New("rule failed"))
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, f := range fams {
		for _, mt := range f.Metric {
			var lv []string
			for _, l := range mt.Label {
				lv = append(lv, l.GetName()+"="+l.GetValue())
			}
			k := f.GetName() + "{" + strings.Join(lv, ",") + "}"
			switch {
			case mt.Counter != nil:
				got[k] = fmt.Sprint(mt.Counter.GetValue())
			case mt.Histogram != nil:
				got[k] = fmt.Sprintf("%d %.3f", mt.Histogram.GetSampleCount(), mt.Histogram.GetSampleSum())
			}
		}
	}
	for k, want := range map[string]string{
		"ordo_events_processed_total{type=com.acme.checkout.OrderPlaced}": "3",
		"ordo_event_processing_seconds{}":                                 "3 0.009",
		"ordo_processor_seconds{outcome=ok,processor=routes}":             "3 0.003",
		"ordo_processor_seconds{outcome=error,processor=order-rules}":     "1 2.000",
		"ordo_records_produced_total{topic=commands.a}":                   "3",
	} {
		if got[k] != want {
			t.Errorf("%s = %q, want %q", k, got[k], want)
		}
	}
}
