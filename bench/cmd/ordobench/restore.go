package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// restoreResult is the state-restore step: internal/state's
// BenchmarkRestore run against the bench broker (N live process instances,
// one changelog key each, restored from the changelog into empty stores).
type restoreResult struct {
	Instances  int
	Partitions int
	Runs       int
	Command    string
	Seconds    float64 // restore-s: mean wall time of one full restore
	RecordsPS  float64 // records/s
	RSSMiB     float64 // VmRSS after the restore
	PeakRSSMiB float64 // VmHWM during the restore
	HeapMiB    float64 // live Go heap after a GC
	StoreMiB   float64 // the stores on disk
	Produced   string  // the benchmark's "produced ..." log line
	Raw        string  // the Benchmark line as printed
	Err        string
}

// restore runs BenchmarkRestore for n instances with runs restores of the
// same changelog (the changelog is produced once per invocation).
func (b *bench) restore(ctx context.Context, n, runs int) *restoreResult {
	parts := envInt("BENCH_RESTORE_PARTITIONS", 1)
	r := &restoreResult{Instances: n, Partitions: parts, Runs: runs}
	args := []string{"test", "-v", "./internal/state", "-run", "^$", "-bench", "BenchmarkRestore", "-benchtime", fmt.Sprintf("%dx", runs), "-timeout", "60m"}
	r.Command = fmt.Sprintf("KAFKA_BROKERS=%s ORDO_TEST_STATE_BENCH_INSTANCES=%d ORDO_TEST_STATE_BENCH_PARTITIONS=%d go %s", b.brokers, n, parts, strings.Join(quoteArgs(args), " "))
	logf("state restore: %s ...", r.Command)
	start := time.Now()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "KAFKA_BROKERS="+b.brokers,
		"ORDO_TEST_STATE_BENCH_INSTANCES="+strconv.Itoa(n), "ORDO_TEST_STATE_BENCH_PARTITIONS="+strconv.Itoa(parts))
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.Err = fmt.Sprintf("%v: %s", err, lastLines(string(out), 5))
		logf("state restore: %s", r.Err)
		return r
	}
	for _, l := range strings.Split(string(out), "\n") {
		t := strings.TrimSpace(l)
		if strings.Contains(t, "produced ") && strings.Contains(t, "instances") {
			r.Produced = t
		}
		if !strings.HasPrefix(t, "BenchmarkRestore/") {
			continue
		}
		r.Raw = t
		// name, iterations, then (value, unit) pairs.
		f := strings.Fields(t)
		for i := 2; i+1 < len(f); i += 2 {
			v, perr := strconv.ParseFloat(f[i], 64)
			if perr != nil {
				continue
			}
			switch f[i+1] {
			case "restore-s":
				r.Seconds = v
			case "records/s":
				r.RecordsPS = v
			case "rss-MiB":
				r.RSSMiB = v
			case "peak-rss-MiB":
				r.PeakRSSMiB = v
			case "heap-MiB":
				r.HeapMiB = v
			case "store-MiB":
				r.StoreMiB = v
			}
		}
	}
	if r.Raw == "" {
		r.Err = "no BenchmarkRestore line in the output (skipped?): " + lastLines(string(out), 5)
		logf("state restore: %s", r.Err)
		return r
	}
	logf("state restore: %d instances in %.2f s (%.0f records/s), RSS %.0f MiB, peak %.0f MiB (step took %s)", n, r.Seconds, r.RecordsPS, r.RSSMiB, r.PeakRSSMiB, time.Since(start).Round(time.Second))
	return r
}

func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, "^$ ") {
			a = "'" + a + "'"
		}
		out[i] = a
	}
	return out
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " | ")
}
