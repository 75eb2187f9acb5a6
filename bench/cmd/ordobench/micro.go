package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// microResult is the in-memory per-event cost of the pipeline
// (BenchmarkPipeline in pipeline_test.go): medians per stage over -count
// runs, and the top allocation sites of one event from a -memprofile of
// the full stage.
type microResult struct {
	Command    string
	MemCommand string
	Raw        string       // the Benchmark lines as printed
	Stages     []microStage // full, decode, chain, encode
	Sites      []allocSite  // top allocation sites of Pipeline/full, per event
	LoadAvg    string       // 1-minute load average before and after the -count runs
	// CPUNs is the process CPU (user+system, all threads: GC included) per
	// full event: a run of N events minus a run of 1 (the fixture's setup),
	// divided by N-1. Unlike ns/op it does not grow when other processes
	// take the cores.
	CPUNs float64 `json:",omitempty"`
	Err   string
}

type microStage struct {
	Name                                string
	Runs                                int
	Ns, Bytes, Allocs                   float64 // medians per event
	NsMin, NsMax, AllocsMin, AllocsMax  float64
	NsPerRun, BytesPerRun, AllocsPerRun []float64
}

type allocSite struct {
	Func          string
	Share         float64 // of the allocations (objects) of one full event
	Allocs, Bytes float64 // per event
}

func (m *microResult) stage(name string) (microStage, bool) {
	if m == nil {
		return microStage{}, false
	}
	for _, s := range m.Stages {
		if s.Name == name {
			return s, true
		}
	}
	return microStage{}, false
}

var benchLine = regexp.MustCompile(`^BenchmarkPipeline/(\w+)(?:-\d+)?\s+(\d+)\s+([\d.]+) ns/op\s+([\d.]+) B/op\s+([\d.]+) allocs/op`)

// parseMicro takes the medians per sub-benchmark of go test -bench output.
func parseMicro(out string) (raw string, stages []microStage) {
	by := map[string]*microStage{}
	var order []string
	for _, l := range strings.Split(out, "\n") {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil {
			continue
		}
		raw += strings.TrimSpace(l) + "\n"
		s := by[m[1]]
		if s == nil {
			s = &microStage{Name: m[1]}
			by[m[1]] = s
			order = append(order, m[1])
		}
		ns, _ := strconv.ParseFloat(m[3], 64)
		bs, _ := strconv.ParseFloat(m[4], 64)
		as, _ := strconv.ParseFloat(m[5], 64)
		s.NsPerRun = append(s.NsPerRun, ns)
		s.BytesPerRun = append(s.BytesPerRun, bs)
		s.AllocsPerRun = append(s.AllocsPerRun, as)
	}
	for _, k := range order {
		s := by[k]
		s.Runs = len(s.NsPerRun)
		s.Ns, s.Bytes, s.Allocs = median(s.NsPerRun), median(s.BytesPerRun), median(s.AllocsPerRun)
		s.NsMin, s.NsMax = slices.Min(s.NsPerRun), slices.Max(s.NsPerRun)
		s.AllocsMin, s.AllocsMax = slices.Min(s.AllocsPerRun), slices.Max(s.AllocsPerRun)
		stages = append(stages, *s)
	}
	return raw, stages
}

// runMicro builds the ordobench test binary once, runs BenchmarkPipeline
// -count times (ns, B and allocs per event per stage), then once more with
// a full memory profile (-memprofilerate 1) of the full stage, whose
// allocation sites are scaled to one event.
func (b *bench) runMicro(ctx context.Context) *microResult {
	count := envInt("BENCH_MICRO_COUNT", 3)
	n := envStr("BENCH_MICRO_EVENTS", "20000")
	m := &microResult{}
	bin := filepath.Join(b.work, "ordobench.test")
	pkgDir := filepath.Join(b.root, "bench", "cmd", "ordobench") // the fixture reads ../../../examples
	if out, err := exec.CommandContext(ctx, "go", "test", "-c", "-trimpath", "-o", bin, "./bench/cmd/ordobench").CombinedOutput(); err != nil {
		m.Err = fmt.Sprintf("go test -c: %v: %s", err, lastLines(string(out), 5))
		return m
	}
	args := []string{"-test.run", "^$", "-test.bench", "^BenchmarkPipeline$", "-test.benchmem", "-test.benchtime", n + "x", "-test.count", strconv.Itoa(count)}
	m.Command = fmt.Sprintf("go test ./bench/cmd/ordobench -run '^$' -bench '^BenchmarkPipeline$' -benchmem -benchtime %sx -count %d", n, count)
	logf("micro-benchmarks: %s ...", m.Command)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = pkgDir
	la0 := loadAvg1()
	out, err := cmd.CombinedOutput()
	m.LoadAvg = la0 + " → " + loadAvg1()
	if err != nil {
		m.Err = fmt.Sprintf("%v: %s", err, lastLines(string(out), 5))
		return m
	}
	m.Raw, m.Stages = parseMicro(string(out))
	if len(m.Stages) == 0 {
		m.Err = "no BenchmarkPipeline lines: " + lastLines(string(out), 5)
		return m
	}
	for _, s := range m.Stages {
		logf("  %s: %.0f ns, %.0f B, %.0f allocs per event (medians of %d)", s.Name, s.Ns, s.Bytes, s.Allocs, s.Runs)
	}
	full, ok := m.stage("full")
	if !ok || full.Allocs == 0 {
		return m
	}
	if events, err := strconv.Atoi(n); err == nil && events > 1 {
		cpu := func(iters int) (float64, error) {
			cmd := exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", "^BenchmarkPipeline$/^full$", "-test.benchtime", strconv.Itoa(iters)+"x")
			// ordo runs with processing.gc_percent 400 by default; the GC's
			// CPU is part of this number, so it runs with the same target.
			cmd.Dir, cmd.Env = pkgDir, append(os.Environ(), "GOGC=400")
			if out, err := cmd.CombinedOutput(); err != nil {
				return 0, fmt.Errorf("%v: %s", err, lastLines(string(out), 3))
			}
			return float64((cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Nanoseconds()), nil
		}
		one, err1 := cpu(1)
		all, err2 := cpu(events)
		if err1 == nil && err2 == nil && all > one {
			m.CPUNs = (all - one) / float64(events-1)
			logf("  full: %.0f ns of process CPU per event", m.CPUNs)
		} else {
			logf("micro-benchmarks: CPU per event: %v %v", err1, err2)
		}
	}
	prof := filepath.Join(b.work, "pipeline.mem.pprof")
	m.MemCommand = fmt.Sprintf("go test ./bench/cmd/ordobench -run '^$' -bench '^BenchmarkPipeline$/^full$' -benchtime %sx -memprofile mem.pprof -memprofilerate 1 && go tool pprof -sample_index=alloc_objects -focus 'BenchmarkPipeline\\.func' -top ordobench.test mem.pprof", n)
	logf("micro-benchmarks: allocation profile of Pipeline/full ...")
	cmd = exec.CommandContext(ctx, bin, "-test.run", "^$", "-test.bench", "^BenchmarkPipeline$/^full$", "-test.benchtime", n+"x",
		"-test.memprofile", prof, "-test.memprofilerate", "1")
	cmd.Dir = pkgDir
	if out, err := cmd.CombinedOutput(); err != nil {
		m.Err = fmt.Sprintf("memprofile: %v: %s", err, lastLines(string(out), 5))
		return m
	}
	sites, err := allocSites(bin, prof, full.Allocs, full.Bytes, envInt("BENCH_MICRO_SITES", 12))
	if err != nil {
		m.Err = err.Error()
		return m
	}
	m.Sites = sites
	return m
}

// fullLoopFocus selects the stacks under BenchmarkPipeline's closures: with
// -bench '^BenchmarkPipeline$/^full$' only the full stage's loop runs, so
// this keeps its allocations and drops the fixture's setup (which runs in
// BenchmarkPipeline itself, not in a closure).
const fullLoopFocus = `BenchmarkPipeline\.func`

// allocSites reads the allocation profile of the full stage (only stacks
// through its benchmark loop: fullLoopFocus) and scales each function's flat share to one event
// with the benchmark's own allocs/op and B/op.
func allocSites(bin, prof string, allocsPerEv, bytesPerEv float64, top int) ([]allocSite, error) {
	flat := func(index string) (map[string]float64, float64, error) {
		out, err := exec.Command("go", "tool", "pprof", "-sample_index="+index, "-unit=B", "-focus="+fullLoopFocus,
			"-top", "-nodecount=100000", "-nodefraction=0", "-edgefraction=0", bin, prof).Output()
		if err != nil {
			return nil, 0, fmt.Errorf("pprof %s: %w", index, err)
		}
		vals, total := map[string]float64{}, 0.0
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) < 6 || !strings.HasSuffix(f[1], "%") {
				continue
			}
			v, err := strconv.ParseFloat(strings.TrimSuffix(f[0], "B"), 64)
			if err != nil {
				continue
			}
			name := strings.TrimSuffix(strings.Join(f[5:], " "), " (inline)")
			vals[name] += v
			total += v
		}
		if total == 0 {
			return nil, 0, fmt.Errorf("pprof %s: no samples under "+fullLoopFocus+"", index)
		}
		return vals, total, nil
	}
	objs, totalObjs, err := flat("alloc_objects")
	if err != nil {
		return nil, err
	}
	space, totalSpace, err := flat("alloc_space")
	if err != nil {
		return nil, err
	}
	var sites []allocSite
	for fn, v := range objs {
		sites = append(sites, allocSite{Func: fn, Share: 100 * v / totalObjs, Allocs: v / totalObjs * allocsPerEv, Bytes: space[fn] / totalSpace * bytesPerEv})
	}
	slices.SortFunc(sites, func(a, b allocSite) int {
		if a.Allocs != b.Allocs {
			if a.Allocs > b.Allocs {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Func, b.Func)
	})
	return sites[:min(top, len(sites))], nil
}

func loadAvg1() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// microFromRaw recovers a result from the plain text the older results.json
// kept (Micro string), so BENCH_REPORT_FROM still works on old runs.
func microFromRaw(raw string) *microResult {
	if strings.TrimSpace(raw) == "" {
		return nil
	}
	m := &microResult{Command: "go test ./bench/cmd/ordobench -run '^$' -bench Pipeline -benchmem -benchtime 20000x -count 3"}
	m.Raw, m.Stages = parseMicro(raw)
	if len(m.Stages) == 0 {
		return nil
	}
	return m
}
