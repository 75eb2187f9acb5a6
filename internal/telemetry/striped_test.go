package telemetry

import (
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
