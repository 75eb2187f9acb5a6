package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestParseMicroMedians(t *testing.T) {
	out := `goos: linux
BenchmarkPipeline/full-2         	   20000	      9676 ns/op	    6460 B/op	      67 allocs/op
BenchmarkPipeline/full-2         	   20000	      8003 ns/op	    6393 B/op	      65 allocs/op
BenchmarkPipeline/full-2         	   20000	      8086 ns/op	    6393 B/op	      66 allocs/op
BenchmarkPipeline/decode-2       	   20000	      2024 ns/op	    1721 B/op	      21 allocs/op
BenchmarkPipeline/decode-2       	   20000	      2093 ns/op	    1721 B/op	      21 allocs/op
PASS
`
	raw, st := parseMicro(out)
	if strings.Count(raw, "\n") != 5 {
		t.Errorf("raw keeps %d lines, want the 5 Benchmark lines:\n%s", strings.Count(raw, "\n"), raw)
	}
	if len(st) != 2 || st[0].Name != "full" || st[1].Name != "decode" {
		t.Fatalf("stages %+v, want full then decode", st)
	}
	f := st[0]
	if f.Runs != 3 || f.Ns != 8086 || f.Allocs != 66 || f.Bytes != 6393 || f.NsMin != 8003 || f.NsMax != 9676 || f.AllocsMin != 65 || f.AllocsMax != 67 {
		t.Errorf("full: %+v, want medians 8086 ns, 6393 B, 66 allocs of 3 runs", f)
	}
	if d := st[1]; d.Runs != 2 || d.Ns != (2024+2093)/2.0 {
		t.Errorf("decode: %+v, want the mean of the middle two (even count)", d)
	}
	m := &microResult{Stages: st}
	if _, ok := m.stage("chain"); ok {
		t.Error("stage(chain) found in a result without chain")
	}
	var nilM *microResult
	if _, ok := nilM.stage("full"); ok {
		t.Error("stage on a nil result found something")
	}
}

func TestLatencyRatiosPairRounds(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var lats []latResult
	// Two levels, three rounds, interleaved as the harness runs them.
	p99 := map[string][]int{"ordo@0.25": {200, 260, 180}, "passthrough@0.25": {100, 200, 150}, "ordo@0.5": {300, 310, 320}, "passthrough@0.5": {150, 0, 160}}
	for r := 1; r <= 3; r++ {
		for _, f := range []float64{0.25, 0.5} {
			for _, c := range []string{"ordo", "passthrough"} {
				key := c + "@" + map[float64]string{0.25: "0.25", 0.5: "0.5"}[f]
				l := latResult{Contender: c, Run: r, Fraction: f, Offered: f * 80000, P99: ms(p99[key][r-1])}
				if l.P99 == 0 {
					l.Err = "no samples"
				}
				lats = append(lats, l)
			}
		}
	}
	rs := latencyRatios(lats)
	if len(rs) != 2 {
		t.Fatalf("%d ratios, want one per level: %+v", len(rs), rs)
	}
	// 25%: medians 200 ms / 150 ms.
	if r := rs[0]; r.fraction != 0.25 || r.ordo.p99 != ms(200) || r.pass.p99 != ms(150) || r.ratio != 200.0/150 {
		t.Errorf("25%%: %+v, want 200 ms / 150 ms", r)
	}
	if r := rs[0]; len(r.rounds) != 3 || r.rounds[0] != 2 || r.rounds[1] != 1.3 || r.rounds[2] != 1.2 {
		t.Errorf("25%% rounds %v, want [2 1.3 1.2]", r.rounds)
	}
	// 50%: the failed pass-through round is left out of the median and of the pairs.
	if r := rs[1]; r.pass.runs != 2 || r.ordo.runs != 3 || len(r.rounds) != 2 || r.ordo.p99 != ms(310) || r.pass.p99 != ms(155) {
		t.Errorf("50%%: %+v, want 3 ordo runs, 2 pass-through runs, 2 pairs, medians 310 ms and 155 ms (mean of the middle two)", r)
	}
}

func TestTargetsTable(t *testing.T) {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	by := map[string]summary{
		"passthrough": {key: "passthrough", runs: 3, throughput: 200000, cpuPerM: 3},
		"ordo":        {key: "ordo", runs: 3, throughput: 160000, cpuPerM: 6.2},
	}
	m := &microResult{Stages: []microStage{{Name: "full", Runs: 3, Allocs: 9, Ns: 5200}}}
	lats := []latResult{
		{Contender: "ordo", Run: 1, Fraction: 0.25, P99: 120 * time.Millisecond},
		{Contender: "passthrough", Run: 1, Fraction: 0.25, P99: 100 * time.Millisecond},
	}
	(&bench{}).targets(p, by, lats, m)
	got := w.String()
	for _, want := range []string{
		"| (b) / (a) throughput ≥ 0.75 (medians of this invocation) | 0.80 | met |",
		"| 9 | met |",
		"| 6.2 µs | **missed** |",
		"| 1.20 | met |",
		"at 50% of ordo's max ≤ 1.3 | n/a | not measured |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("targets table lacks %q:\n%s", want, got)
		}
	}
}

func TestWhatIsLeft(t *testing.T) {
	stages := func(dec, chain, enc, ev float64) *profile {
		return &profile{Stages: []stageShare{
			{Func: "github.com/ordo-dev/ordo/schemas.(*Serde).DecodeRecord", Cum: dec},
			{Func: "github.com/ordo-dev/ordo/processors.Chain.Process", Cum: chain},
			{Func: "github.com/ordo-dev/ordo/producer.(*Output).Commands", Cum: enc},
			{Func: "github.com/ordo-dev/ordo/consumer.fillEvent", Cum: ev},
			{Func: "runtime.mallocgc", Cum: 27},
		}}
	}
	by := map[string]summary{"ordo": {key: "ordo", runs: 3, cpuPerM: 14}}
	m := &microResult{Stages: []microStage{{Name: "full", Allocs: 66}, {Name: "decode", Allocs: 21}},
		Sites: []allocSite{{Func: "github.com/ordo-dev/ordo/processors.(*orchestrator).Process", Allocs: 18}}}
	for _, c := range []struct {
		name string
		prof *profile
		want []string
	}{
		// 75 % of 14 µs in the pipeline: 3.5 µs outside, so the pipeline must fall to 1.5 µs.
		{"reachable", stages(20, 30, 20, 5), []string{"= 10.5 µs", "25% = 3.5 µs outside", "would have to fall to 1.5 µs (14% of today's)", "66 per event", "`processors.(*orchestrator).Process` 18.0", "27%"}},
		// 60 % in the pipeline and 8 % background GC: 4.5 µs left outside
		// both, so the pipeline with its GC would have to cost 0.5 µs.
		{"nearly out of reach", func() *profile {
			p := stages(20, 25, 10, 5)
			p.Stages = append(p.Stages, stageShare{Func: "runtime.gcBgMarkWorker", Cum: 8})
			return p
		}(), []string{"4.5 µs would remain", "fall to 0.5 µs", "out of reach for changes to the pipeline alone"}},
		// 30 %: 9.8 µs outside the pipeline, more than the whole 5 µs budget.
		{"out of reach", stages(10, 10, 5, 5), []string{"70% = 9.8 µs outside", "9.8 µs would remain", "out of reach"}},
		{"renamed", func() *profile { p := stages(0, 30, 20, 5); p.Stages[0].NotInBinary = true; return p }(), []string{"Not computed", "schemas.(*Serde).DecodeRecord"}},
	} {
		var w strings.Builder
		whatIsLeft(func(f string, a ...any) { fmt.Fprintf(&w, f, a...) }, by, c.prof, m)
		for _, s := range c.want {
			if !strings.Contains(w.String(), s) {
				t.Errorf("%s: lacks %q:\n%s", c.name, s, w.String())
			}
		}
	}
}

// The throughput paragraph: what the pipeline would have to cost for
// (b)/(a) ≥ 0.75 when ordo and the broker share 2 cores.
func TestWhatIsLeftThroughput(t *testing.T) {
	prof := &profile{Stages: []stageShare{
		{Func: "github.com/ordo-dev/ordo/schemas.(*Serde).DecodeRecord", Cum: 20},
		{Func: "github.com/ordo-dev/ordo/processors.Chain.Process", Cum: 20},
		{Func: "github.com/ordo-dev/ordo/producer.(*Output).Commands", Cum: 10},
		{Func: "github.com/ordo-dev/ordo/consumer.fillEvent", Cum: 0},
	}}
	run := func(a, o summary) string {
		var w strings.Builder
		whatIsLeft(func(f string, x ...any) { fmt.Fprintf(&w, f, x...) }, map[string]summary{"passthrough": a, "ordo": o}, prof, nil)
		return w.String()
	}
	// (a) 200k/s: 0.75 × 200k = 150k/s, 2 cores → 13.3 µs per event. ordo
	// 12 µs, half outside the pipeline (6) + broker 3: the pipeline (6 now)
	// must fall to 4.3 µs.
	got := run(summary{runs: 3, throughput: 200000}, summary{runs: 3, cpuPerM: 12, brokerCPU: 3, throughput: 100000})
	for _, want := range []string{"means 150000 events/s", "13.3 µs of CPU per event", "fall from 6.0 to 4.3 µs per event (72% of today's)"} {
		if !strings.Contains(got, want) {
			t.Errorf("lacks %q:\n%s", want, got)
		}
	}
	// A broker costing more than the budget leaves nothing.
	if got := run(summary{runs: 3, throughput: 200000}, summary{runs: 3, cpuPerM: 12, brokerCPU: 9, throughput: 100000}); !strings.Contains(got, "nothing is left for the pipeline") {
		t.Errorf("lacks the out-of-reach case:\n%s", got)
	}
	// Met: no paragraph.
	if got := run(summary{runs: 3, throughput: 100000}, summary{runs: 3, cpuPerM: 12, brokerCPU: 3, throughput: 90000}); strings.Contains(got, "Throughput:") {
		t.Errorf("a met ratio still gets the paragraph:\n%s", got)
	}
}

func TestLatencyHeadroom(t *testing.T) {
	run := func(c string, f, cont, broker, bench float64, procP99 time.Duration) latResult {
		return latResult{Contender: c, Fraction: f, CoresContender: cont, CoresBroker: broker, CoresBench: bench, ProcP99: procP99}
	}
	lats := []latResult{
		run("ordo", 0.5, 0.7, 0.6, 0.6, 3*time.Second),
		run("passthrough", 0.5, 0.3, 0.6, 0.5, 40*time.Millisecond),
		run("ordo", 0.5, 0.6, 0.5, 0.6, 40*time.Millisecond),
		run("ordo", 0.25, 0.4, 0.5, 0.4, 30*time.Millisecond),
		{Contender: "ordo", Fraction: 0.5, Err: "boom"},
	}
	got := latencyHeadroom(lats)
	for _, want := range []string{
		"ordo at 25% 1.30", "ordo at 50% 1.80", "passthrough at 50% 1.40",
		"1 of 2 at 50%", "0 of 1 at 25%",
		"At 50% of ordo's max the machine had ≤ 10% of its cores left",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("headroom paragraph lacks %q:\n%s", want, got)
		}
	}
	// With headroom left, no saturation sentence.
	calm := latencyHeadroom([]latResult{run("ordo", 0.5, 0.5, 0.5, 0.5, 0)})
	if strings.Contains(calm, "cores left") {
		t.Errorf("saturation sentence with 1.5 of 2 cores busy:\n%s", calm)
	}
	if latencyHeadroom(nil) != "" {
		t.Error("headroom paragraph without runs")
	}
}

func TestLatencyRatiosAgainstTheShapedPassThrough(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	var lats []latResult
	for r := 1; r <= 2; r++ {
		lats = append(lats,
			latResult{Contender: "ordo", Run: r, Fraction: 0.5, P99: ms(300)},
			latResult{Contender: "passthrough", Run: r, Fraction: 0.5, P99: ms(100)},
			latResult{Contender: "passthrough-shape", Run: r, Fraction: 0.5, P99: ms(200 + 50*r)})
	}
	rs := latencyRatiosAgainst(lats, "passthrough-shape")
	if len(rs) != 1 || rs[0].pass.contender != "passthrough-shape" || rs[0].ratio != 300.0/275 {
		t.Fatalf("%+v, want one ratio 300 ms / 275 ms (median of 250 and 300) against passthrough-shape", rs)
	}
	if r := rs[0].rounds; len(r) != 2 || r[0] != 300.0/250 || r[1] != 300.0/300 {
		t.Errorf("rounds %v, want [1.2 1]", r)
	}
	// The target's ratio still pairs ordo with the plain pass-through only.
	if rs := latencyRatios(lats); len(rs) != 1 || rs[0].ratio != 3 {
		t.Errorf("latencyRatios %+v, want 300 ms / 100 ms", rs)
	}
}

func TestShapeBound(t *testing.T) {
	a := summary{throughput: 200000, cpuPerM: 2.5, brokerCPU: 3}
	o := summary{throughput: 100000, cpuPerM: 12, brokerCPU: 2.7}
	low := shapeBound(a, summary{throughput: 130000, cpuPerM: 5, brokerCPU: 2.8}, o, 2, 6)
	// At 150000 ev/s (0.75 x 200000), (a')'s 7.8 µs take 1.17 cores; 0.83
	// cores over 150000 events/s leave 5.5 µs per event.
	for _, want := range []string{"0.65 of (a)", "cannot pass 0.65", "out of reach for ordo's output as it is", "keeps 1.17 of the 2 cores busy", "at most 5.5 µs of CPU per event", "takes 6.0 µs (Per-event cost), 1.1x that", "(b) reaches 0.77 of (a')", "7.0 µs per event above"} {
		if !strings.Contains(low, want) {
			t.Errorf("bound 0.65: %q missing in:\n%s", want, low)
		}
	}
	high := shapeBound(a, summary{throughput: 180000, cpuPerM: 4, brokerCPU: 2.8}, o, 0, 0)
	if strings.Contains(high, "out of reach") || !strings.Contains(high, "within that bound") || strings.Contains(high, "cores busy") {
		t.Errorf("bound 0.90 must not call the target out of reach, and without a core count no budget:\n%s", high)
	}
}

// With (a') measured, the CPU target's paragraph says what producing
// ordo's output costs by itself and what that leaves the pipeline.
func TestWhatIsLeftWithTheShapedPassThrough(t *testing.T) {
	prof := &profile{Stages: []stageShare{
		{Func: "github.com/ordo-dev/ordo/schemas.(*Serde).DecodeRecord", Cum: 10},
		{Func: "github.com/ordo-dev/ordo/processors.Chain.Process", Cum: 20},
		{Func: "github.com/ordo-dev/ordo/producer.(*Output).Commands", Cum: 14},
		{Func: "github.com/ordo-dev/ordo/consumer.fillEvent", Cum: 3},
	}}
	m := &microResult{CPUNs: 7200, Stages: []microStage{{Name: "full", Allocs: 7}}}
	for _, c := range []struct {
		name  string
		shape float64
		want  []string
	}{
		{"room left", 4, []string{"costs 4.0 µs of CPU per event", "leaves 1.0 µs for decode, chain, encode", "in memory they take 7.2 µs, 7.2x that"}},
		{"none left", 5.5, []string{"costs 5.5 µs", "alone is over 5 µs: the target is out of reach for ordo's output"}},
	} {
		by := map[string]summary{"ordo": {key: "ordo", runs: 3, cpuPerM: 13}, "passthrough-shape": {key: "passthrough-shape", runs: 3, cpuPerM: c.shape}}
		var w strings.Builder
		whatIsLeft(func(f string, a ...any) { fmt.Fprintf(&w, f, a...) }, by, prof, m)
		for _, s := range c.want {
			if !strings.Contains(w.String(), s) {
				t.Errorf("%s: lacks %q:\n%s", c.name, s, w.String())
			}
		}
	}
}

// With (a') measured, the targets table gives the bound next to each
// target it bounds, and says when the bound itself misses the target.
func TestTargetsTableWithTheBound(t *testing.T) {
	var w strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&w, format, args...) }
	by := map[string]summary{
		"passthrough":       {key: "passthrough", runs: 3, throughput: 200000, cpuPerM: 3},
		"passthrough-shape": {key: "passthrough-shape", runs: 3, throughput: 140000, cpuPerM: 4},
		"ordo":              {key: "ordo", runs: 3, throughput: 90000, cpuPerM: 13},
	}
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	lats := []latResult{
		{Contender: "ordo", Run: 1, Fraction: 0.25, P99: ms(130)},
		{Contender: "passthrough", Run: 1, Fraction: 0.25, P99: ms(100)},
		{Contender: "passthrough-shape", Run: 1, Fraction: 0.25, P99: ms(110)},
		{Contender: "ordo", Run: 1, Fraction: 0.5, P99: ms(400)},
		{Contender: "passthrough", Run: 1, Fraction: 0.5, P99: ms(150)},
		{Contender: "passthrough-shape", Run: 1, Fraction: 0.5, P99: ms(300)},
	}
	(&bench{}).targets(p, by, lats, nil)
	got := w.String()
	for _, want := range []string{
		"which (b) cannot beat; informative) | 0.70 | **below 0.75**: out of reach with ordo's output in this invocation |",
		"(the output's own share at 25%: (a') / pass-through p99; ordo / (a') 1.18; informative) | 1.10 | 1.3 within it |",
		"(the output's own share at 50%: (a') / pass-through p99; ordo / (a') 1.33; informative) | 2.00 | **over 1.3**: out of reach",
		"which (b) cannot go below; informative) | 4.0 µs | 5 µs above it |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("targets table lacks %q:\n%s", want, got)
		}
	}
	// A machine where the pass-through at ordo's output shape alone spends
	// more than 5 µs of its own CPU per event: the CPU target is out of
	// reach there whatever ordo's pipeline costs.
	by["passthrough-shape"] = summary{key: "passthrough-shape", runs: 3, throughput: 140000, cpuPerM: 7.5}
	w.Reset()
	(&bench{}).targets(p, by, lats, nil)
	if want := "which (b) cannot go below; informative) | 7.5 µs | **above 5 µs**: out of reach with ordo's output on this machine |"; !strings.Contains(w.String(), want) {
		t.Errorf("targets table lacks %q:\n%s", want, w.String())
	}
}

// TestRunOrderReversesEveryOtherRun: by default odd runs take the list's
// order and even runs its reverse (the list itself is left alone);
// BENCH_ORDER=fixed keeps the list's order.
func TestRunOrderReversesEveryOtherRun(t *testing.T) {
	list := []contender{{key: "a"}, {key: "b"}, {key: "c"}}
	keys := func(cs []contender) string {
		var s []string
		for _, c := range cs {
			s = append(s, c.key)
		}
		return strings.Join(s, " ")
	}
	for run, want := range map[int]string{1: "a b c", 2: "c b a", 3: "a b c", 4: "c b a"} {
		if got := keys(runOrder(list, run)); got != want {
			t.Errorf("run %d: order %q, want %q", run, got, want)
		}
	}
	if got := keys(list); got != "a b c" {
		t.Fatalf("runOrder changed the list: %q", got)
	}
	t.Setenv("BENCH_ORDER", "fixed")
	if got := keys(runOrder(list, 2)); got != "a b c" {
		t.Errorf("BENCH_ORDER=fixed, run 2: order %q, want %q", got, "a b c")
	}
}

// TestRatioShowsWhichSideOfTheTarget: a ratio that two decimals would
// round onto its target gets a third, so "missed" never sits beside the
// target's own value.
func TestRatioShowsWhichSideOfTheTarget(t *testing.T) {
	for _, c := range []struct {
		v, limit float64
		want     string
	}{
		{1.3023, 1.3, "1.302"},
		{1.2981, 1.3, "1.298"},
		{1.3, 1.3, "1.30"},
		{1.33, 1.3, "1.33"},
		{0.7496, 0.75, "0.750"},
		{0.58, 0.75, "0.58"},
	} {
		if got := ratioText(c.v, c.limit); got != c.want {
			t.Errorf("ratioText(%v, %v) = %q, want %q", c.v, c.limit, got, c.want)
		}
	}
}

// The latency reader matches a command to its input by the ordo-input
// header, parsed without allocating into a key of the run's input topics.
func TestParseOrigin(t *testing.T) {
	idx := map[string]int16{"lat1.checkout.orders.v1": 0, "lat1/odd/topic": 1}
	for _, c := range []struct {
		in   string
		want inKey
		ok   bool
	}{
		{"lat1.checkout.orders.v1/7/123456", inKey{0, 7, 123456}, true},
		{"lat1/odd/topic/0/5", inKey{1, 0, 5}, true}, // the last two slashes split
		{"other.topic/1/2", inKey{}, false},
		{"lat1.checkout.orders.v1/x/2", inKey{}, false},
		{"lat1.checkout.orders.v1/1", inKey{}, false},
		{"", inKey{}, false},
	} {
		got, ok := parseOrigin([]byte(c.in), idx)
		if got != c.want || ok != c.ok {
			t.Errorf("parseOrigin(%q) = %+v, %v; want %+v, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	v := []byte("lat1.checkout.orders.v1/7/123456")
	if n := testing.AllocsPerRun(100, func() { parseOrigin(v, idx) }); n != 0 {
		t.Errorf("parseOrigin allocates %.0f times", n)
	}
}
