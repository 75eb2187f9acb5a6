package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

type profile struct {
	File    string             // the first profile (older results.json have only this)
	Files   []string           `json:",omitempty"` // every drain's profile, merged by pprof
	Seconds int                // per drain
	Drains  int                `json:",omitempty"`
	Top     string             // go tool pprof -top (flat)
	Stages  []stageShare       // cumulative share of pipeline stages
	Groups  map[string]float64 // flat share by code area
}

type stageShare struct {
	Stage string
	Func  string
	Cum   float64
	// NotInBinary: no symbol of that name in the ordo binary, so the stage
	// list in analyzeProfile is stale (a renamed function), not a 0 % share.
	NotInBinary bool `json:",omitempty"`
}

// profileOrdo runs ordo over the backlog n more times (a fresh group each)
// and takes a CPU profile from its admin server's /debug/pprof while each
// drains; the drains' profiles are merged, so a short drain still gives
// enough samples.
func (b *bench) profileOrdo(ctx context.Context, cs []contender, secs, n int) (*profile, error) {
	var files []string
	for i := 1; i <= n; i++ {
		file := filepath.Join(b.work, fmt.Sprintf("ordo.cpu.%d.pprof", i))
		if err := b.profileDrain(ctx, cs, secs, file); err != nil {
			return nil, fmt.Errorf("drain %d: %w", i, err)
		}
		files = append(files, file)
	}
	return analyzeProfile(filepath.Join(b.bin, "ordo"), files, secs)
}

// profileContender is the contender BENCH_PROFILE profiles: ordo's (b) by
// default; BENCH_PROFILE_CONTENDER=saga profiles the order saga (f), whose
// admin endpoint is the same.
func profileContender() string { return envStr("BENCH_PROFILE_CONTENDER", "ordo") }

func (b *bench) profileDrain(ctx context.Context, cs []contender, secs int, file string) error {
	var c contender
	for _, x := range cs {
		if x.key == profileContender() {
			c = x
		}
	}
	if c.cmd == nil {
		return fmt.Errorf("no contender %q to profile", profileContender())
	}
	group := fmt.Sprintf("bench-profile-%d", time.Now().UnixNano()%1e9)
	if c.prepare != nil {
		if err := c.prepare(ctx, group); err != nil {
			return fmt.Errorf("prepare: %w", err)
		}
	}
	cmd := c.cmd(group, inputTopics)
	lf, err := startProc(cmd, b.work, "ordo-profile")
	if err != nil {
		return err
	}
	defer lf.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer stopProc(cmd, done)
	// Start profiling at the first commit, for most of the expected drain.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		n, err := committed(ctx, b.adm, group, inputTopics)
		if err == nil && n > 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	logf("profiling ordo for %ds ...", secs)
	// Halfway through, the live heap as of the last GC (the heap profile's
	// inuse samples): what every GC cycle marks, next to the CPU profile.
	heapDone := make(chan struct{})
	go func() {
		defer close(heapDone)
		time.Sleep(time.Duration(secs) * time.Second / 2)
		if err := fetchTo(fmt.Sprintf("http://%s/debug/pprof/heap", b.admin), strings.Replace(file, ".cpu.", ".heap.", 1)); err != nil {
			logf("heap profile: %v", err)
		}
	}()
	defer func() { <-heapDone }()
	if envInt("BENCH_TRACE", 0) != 0 {
		// An execution trace of a second of the drain, next to the CPU
		// profile: where the goroutines wait (go tool trace -pprof=sync).
		traceDone := make(chan struct{})
		go func() {
			defer close(traceDone)
			time.Sleep(time.Duration(secs) * time.Second / 3)
			if err := fetchTo(fmt.Sprintf("http://%s/debug/pprof/trace?seconds=1", b.admin), strings.TrimSuffix(strings.Replace(file, ".cpu.", ".trace.", 1), ".pprof")+".out"); err != nil {
				logf("execution trace: %v", err)
			}
		}()
		defer func() { <-traceDone }()
	}
	return fetchTo(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.admin, secs), file)
}

// analyzeProfile summarizes an ordo CPU profile: top, pipeline stages
// (cumulative) and flat shares by code area.
func analyzeProfile(bin string, files []string, secs int) (*profile, error) {
	p := &profile{File: files[0], Files: files, Seconds: secs, Drains: len(files), Groups: map[string]float64{}}
	pprof := func(args ...string) *exec.Cmd {
		return exec.Command("go", append(append(append([]string{"tool", "pprof"}, args...), bin), files...)...)
	}
	top, err := pprof("-top", "-nodecount=30").Output()
	if err != nil {
		return nil, fmt.Errorf("pprof -top: %w", err)
	}
	p.Top = trimPprofHeader(string(top))
	cum, err := pprof("-top", "-cum", "-nodecount=4000").Output()
	if err != nil {
		return nil, fmt.Errorf("pprof -top -cum: %w", err)
	}
	flat, err := pprof("-top", "-nodecount=4000").Output()
	if err != nil {
		return nil, fmt.Errorf("pprof -top: %w", err)
	}
	cums := parseTop(string(cum), 4)
	stages := []struct{ stage, fn string }{
		{"decode (frame + compiled single-pass decoder)", "github.com/ordo-dev/ordo/schemas.(*Serde).DecodeRecord"},
		{"  skipping writer-only fields (schemas.(*scanner).value)", "github.com/ordo-dev/ordo/schemas.(*scanner).value"},
		{"processor chain (validate + enrich + orchestrate)", "github.com/ordo-dev/ordo/processors.Chain.Process"},
		{"  validate (2 CEL rules)", "github.com/ordo-dev/ordo/processors.(*validator).Process"},
		{"  enrich_table", "github.com/ordo-dev/ordo/processors.(*tableEnricher).Process"},
		{"  orchestrate (CEL field mappings)", "github.com/ordo-dev/ordo/processors.(*orchestrator).Process"},
		{"    deterministic command ids (sha256)", "github.com/ordo-dev/ordo/processors.(*orchestrator).putCommandID"},
		{"  CEL fallback to cel-go (cel.(*prog).Eval; 0 when the fast path covers every expression)", "github.com/google/cel-go/cel.(*prog).Eval"},
		{"encode commands (natural->Avro + headers)", "github.com/ordo-dev/ordo/producer.(*Output).Commands"},
		{"  direct natural->Avro encoder (schemas.appendNatural)", "github.com/ordo-dev/ordo/schemas.appendNatural"},
		{"  envelope headers", "github.com/ordo-dev/ordo/producer.appendEnvelope"},
		{"snappy compression of produced batches (s2)", "github.com/klauspost/compress/s2.EncodeSnappy"},
		{"event construction (EventBuilder.From)", "github.com/ordo-dev/ordo/consumer.fillEvent"},
		{"franz-go produce path (kgo.(*Client).Produce)", "github.com/twmb/franz-go/pkg/kgo.(*Client).Produce"},
		{"franz-go fetch decode (kgo.(*cursorOffsetNext).processRespPartition)", "github.com/twmb/franz-go/pkg/kgo.(*cursorOffsetNext).processRespPartition"},
		{"garbage collector (runtime.gcBgMarkWorker)", "runtime.gcBgMarkWorker"},
		{"malloc (runtime.mallocgc)", "runtime.mallocgc"},
		{"syscalls (Syscall6: network reads/writes, futex)", "internal/runtime/syscall/linux.Syscall6"},
	}
	syms, _ := exec.Command("go", "tool", "nm", bin).Output() // best effort: empty → nothing is flagged
	for _, s := range stages {
		v := 0.0
		for name, c := range cums {
			if strings.HasPrefix(name, s.fn) && c > v {
				v = c
			}
		}
		p.Stages = append(p.Stages, stageShare{Stage: s.stage, Func: s.fn, Cum: v,
			NotInBinary: v == 0 && len(syms) > 0 && !strings.Contains(string(syms), " "+s.fn)})
	}
	for name, v := range parseTop(string(flat), 1) {
		p.Groups[area(name)] += v
	}
	return p, nil
}

func area(fn string) string {
	switch {
	case strings.HasPrefix(fn, "github.com/linkedin/goavro"):
		return "goavro"
	case strings.HasPrefix(fn, "github.com/google/cel-go"), strings.HasPrefix(fn, "cel.dev/"):
		return "cel-go"
	case strings.HasPrefix(fn, "github.com/ordo-dev/ordo/"):
		return "ordo code"
	case strings.HasPrefix(fn, "github.com/twmb/franz-go"):
		return "franz-go"
	case strings.HasPrefix(fn, "github.com/klauspost/compress"), strings.HasPrefix(fn, "github.com/pierrec/lz4"), strings.HasPrefix(fn, "hash/crc32"):
		return "compression/crc"
	case strings.HasPrefix(fn, "runtime.gc"), strings.HasPrefix(fn, "runtime.scanobject"), strings.HasPrefix(fn, "runtime.markBits"),
		strings.HasPrefix(fn, "runtime.greyobject"), strings.HasPrefix(fn, "runtime.findObject"), strings.HasPrefix(fn, "runtime.(*gcWork)"),
		strings.HasPrefix(fn, "runtime.(*mspan)"), strings.HasPrefix(fn, "runtime.sweepone"), strings.HasPrefix(fn, "runtime.(*sweepLocked)"),
		strings.HasPrefix(fn, "runtime.scanblock"), strings.HasPrefix(fn, "runtime.spanOf"), strings.HasPrefix(fn, "runtime.wbBuf"),
		strings.HasPrefix(fn, "runtime.bulkBarrier"), strings.HasPrefix(fn, "runtime.typePointers"), strings.HasPrefix(fn, "runtime.(*mheap)"):
		return "runtime: GC"
	case strings.HasPrefix(fn, "runtime.malloc"), strings.HasPrefix(fn, "runtime.(*mcache)"), strings.HasPrefix(fn, "runtime.(*mcentral)"),
		strings.HasPrefix(fn, "runtime.memclr"), strings.HasPrefix(fn, "runtime.newobject"), strings.HasPrefix(fn, "runtime.makeslice"),
		strings.HasPrefix(fn, "runtime.growslice"), strings.HasPrefix(fn, "runtime.makemap"), strings.HasPrefix(fn, "runtime.nextFreeFast"),
		strings.HasPrefix(fn, "runtime.heapSetType"), strings.HasPrefix(fn, "runtime.(*mspan).nextFreeIndex"):
		return "runtime: malloc"
	case strings.HasPrefix(fn, "runtime.map"), strings.HasPrefix(fn, "internal/runtime/maps"), strings.HasPrefix(fn, "runtime.mapaccess"):
		return "runtime: maps"
	case strings.HasPrefix(fn, "internal/runtime/syscall"), strings.HasPrefix(fn, "syscall."):
		return "syscalls"
	case strings.HasPrefix(fn, "runtime."), strings.HasPrefix(fn, "internal/runtime"):
		return "runtime: other (scheduler, futex, memmove, hashing)"
	default:
		i := strings.LastIndex(fn, "/")
		j := strings.Index(fn[i+1:], ".")
		if j < 0 {
			return "runtime: other (scheduler, futex, memmove, hashing)" // assembly: aeshashbody, memeqbody, ...
		}
		return "other: " + fn[:i+1+j]
	}
}

var topLine = regexp.MustCompile(`^\s*\S+\s+([\d.]+)%\s+[\d.]+%\s+\S+\s+([\d.]+)%\s+(.*)$`)

// parseTop maps function -> flat% (col 1) or cum% (col 4) of pprof -top.
func parseTop(s string, col int) map[string]float64 {
	out := map[string]float64{}
	for _, l := range strings.Split(s, "\n") {
		m := topLine.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		v := m[1]
		if col == 4 {
			v = m[2]
		}
		f, _ := strconv.ParseFloat(v, 64)
		name := strings.TrimSpace(m[3])
		if strings.HasSuffix(name, " (inline)") {
			name = strings.TrimSuffix(name, " (inline)")
		}
		out[name] += f
	}
	return out
}

func trimPprofHeader(s string) string {
	var keep []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		keep = append(keep, l)
	}
	return strings.TrimSpace(strings.Join(keep, "\n"))
}

// fetchTo saves the body of a GET of url in file.
func fetchTo(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
