package telemetry

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ordo-dev/ordo/internal/cow"
)

// Per-event metrics (one or more updates per input event, from every
// partition worker at once) are striped: each update goes to one of
// stripes cells, each cell on its own cache lines, and a scrape sums the
// cells. prometheus.Histogram's Observe makes four atomic read-modify-writes
// on one shared cache line (and its float sum is a CAS loop); with two
// workers on two cores that line moves between the cores on nearly every
// event. In a profile of (b) (docs/benchmarks.md) the per-event histograms
// and counters took 7.5 % of ordo's CPU, most of it in prometheus'
// histogramCounts.observe. Values and exposition are the same as
// prometheus' own types: counters, and cumulative histograms with the given
// upper bounds.
//
// The cell is the calling P's (the runtime's per-core scheduler slot): a
// cell picked at random would still move between the cores, since the next
// update of any cell comes from either core. sync.Pool is the portable way
// to reach per-P state: Get returns what the same P Put, so each P keeps
// its ticket (a cell number) until a GC empties the pool and tickets are
// dealt again, round robin. Two Ps sharing a cell stay correct, only slower.
//
// BenchmarkHistogramObserve (wall time per Observe): one goroutine, 21 ns
// prometheus' and 17 ns striped; two goroutines on this 2-vCPU machine,
// 118 ns prometheus', 21 ns over 32 cells picked at random, 8.6 ns over
// the per-P cells. A histogram child takes stripes × 24 words.
const stripes = 16

// pad keeps the hot words of neighbouring cells off a shared cache line.
type pad [64]byte

type ticket struct{ cell uint32 }

var (
	dealt   atomic.Uint32
	tickets = sync.Pool{New: func() any { return &ticket{cell: (dealt.Add(1) - 1) & (stripes - 1)} }}
)

// stripe returns the calling P's cell number.
func stripe() uint32 {
	t := tickets.Get().(*ticket)
	c := t.cell
	tickets.Put(t)
	return c
}

// stripedVec is the label-value → child map both striped vectors share:
// lookups on the hot path go through a copy-on-write map (internal/cow),
// children are created once.
type stripedVec[C any] struct {
	desc     *prometheus.Desc
	children cow.Map[string, *C] // label key → child
	mu       sync.Mutex
	order    []*C // creation order, for a stable Collect
	make     func(lvs []string) *C
}

// get returns the child for key, creating it with the label values lvs
// (called only on the first use of key, so lvs may be built lazily by the
// caller's closure).
func (v *stripedVec[C]) get(key string, lvs func() []string) *C {
	if c, ok := v.children.Load(key); ok {
		return c
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if c, ok := v.children.Load(key); ok {
		return c
	}
	c := v.make(lvs())
	v.order = append(v.order, c)
	v.children.Store(key, c)
	return c
}

func (v *stripedVec[C]) snapshot() []*C {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.order)
}

// stripedCounterVec is a counter vector for per-event counts.
type stripedCounterVec struct {
	stripedVec[stripedCounter]
}

type stripedCounter struct {
	lvs   []string
	cells [stripes]struct {
		n atomic.Uint64
		_ pad
	}
}

func newStripedCounterVec(opts prometheus.CounterOpts, labels []string) *stripedCounterVec {
	v := &stripedCounterVec{}
	v.desc = prometheus.NewDesc(prometheus.BuildFQName(opts.Namespace, opts.Subsystem, opts.Name), opts.Help, labels, nil)
	v.make = func(lvs []string) *stripedCounter { return &stripedCounter{lvs: lvs} }
	return v
}

// Inc adds one.
func (c *stripedCounter) Inc() { c.cells[stripe()].n.Add(1) }

// Value is the sum of the cells.
func (c *stripedCounter) Value() uint64 {
	var n uint64
	for i := range c.cells {
		n += c.cells[i].n.Load()
	}
	return n
}

func (v *stripedCounterVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

func (v *stripedCounterVec) Collect(ch chan<- prometheus.Metric) {
	for _, c := range v.snapshot() {
		ch <- prometheus.MustNewConstMetric(v.desc, prometheus.CounterValue, float64(c.Value()), c.lvs...)
	}
}

// stripedHistogramVec is a duration histogram vector for per-event timings.
// Durations are compared and summed in integer nanoseconds: no float CAS.
type stripedHistogramVec struct {
	stripedVec[stripedHistogram]
	bounds   []float64 // upper bounds in seconds, as exposed
	boundsNs []int64   // the same in nanoseconds, for Observe
}

type stripedHistogram struct {
	lvs      []string
	boundsNs []int64
	// words holds the cells: stripes runs of stride words, each run the
	// per-bucket counts (not cumulative, +Inf last) then the sum in ns. The
	// stride leaves at least a cache line between two runs' words, so
	// neighbouring cells never share a line.
	words  []atomic.Uint64
	stride int
}

func newStripedHistogramVec(opts prometheus.HistogramOpts, labels []string) *stripedHistogramVec {
	v := &stripedHistogramVec{bounds: slices.Clone(opts.Buckets)}
	for _, b := range v.bounds {
		v.boundsNs = append(v.boundsNs, int64(b*float64(time.Second)))
	}
	v.desc = prometheus.NewDesc(prometheus.BuildFQName(opts.Namespace, opts.Subsystem, opts.Name), opts.Help, labels, nil)
	used := len(v.boundsNs) + 2 // buckets, +Inf, sum
	stride := (used+7)/8*8 + 8
	v.make = func(lvs []string) *stripedHistogram {
		return &stripedHistogram{lvs: lvs, boundsNs: v.boundsNs, words: make([]atomic.Uint64, stripes*stride), stride: stride}
	}
	return v
}

// Observe records one duration (negative ones as 0). A bucket's bound is
// inclusive, as in prometheus (le: less than or equal).
func (h *stripedHistogram) Observe(d time.Duration) {
	ns := max(int64(d), 0)
	i, _ := slices.BinarySearch(h.boundsNs, ns) // first bound ≥ ns; len = +Inf
	c := h.words[int(stripe())*h.stride:]
	c[i].Add(1)
	c[len(h.boundsNs)+1].Add(uint64(ns))
}

// snapshot returns the count, the sum in seconds and the cumulative bucket
// counts by upper bound. A scrape during an Observe may count it before its
// sum; the next scrape sees both.
func (h *stripedHistogram) snapshot(bounds []float64) (uint64, float64, map[float64]uint64) {
	nb := len(h.boundsNs)
	per := make([]uint64, nb+1)
	var sum uint64
	for s := range stripes {
		c := h.words[s*h.stride:]
		for j := range per {
			per[j] += c[j].Load()
		}
		sum += c[nb+1].Load()
	}
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for j, b := range bounds {
		cum += per[j]
		buckets[b] = cum
	}
	return cum + per[nb], time.Duration(sum).Seconds(), buckets
}

func (v *stripedHistogramVec) Describe(ch chan<- *prometheus.Desc) { ch <- v.desc }

func (v *stripedHistogramVec) Collect(ch chan<- prometheus.Metric) {
	for _, h := range v.snapshot() {
		n, sum, buckets := h.snapshot(v.bounds)
		ch <- prometheus.MustNewConstHistogram(v.desc, n, sum, buckets, h.lvs...)
	}
}
