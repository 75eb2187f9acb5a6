package eos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// foreign is the hook for the foreign clients of test/foreign: when
// FOREIGN_PRODUCERS_DIR points at that directory, it runs
//
//	produce.sh <python|node> --brokers B --registry URL --topic T --count N --prefix P
//
// for both languages while the scenario's own traffic runs. Each publishes N
// OrderPlaced events with envelope ids P-<seq> and key = order id. The
// returned func waits for both, finds their records in the orders topic and
// adds them to g, so the verifier expects exactly their two commands each.
// EOS_FOREIGN_EVENTS sets N (default 500).
func (sc *scenario) foreign(ctx context.Context, g *generator) (wait func()) {
	dir := os.Getenv("FOREIGN_PRODUCERS_DIR")
	if dir == "" {
		return func() {}
	}
	n := 500
	if v, err := strconv.Atoi(os.Getenv("EOS_FOREIGN_EVENTS")); err == nil && v > 0 {
		n = v
	}
	script := filepath.Join(dir, "produce.sh")
	type run struct {
		lang, prefix string
		err          error
	}
	runs := []*run{{lang: "python"}, {lang: "node"}}
	var wg sync.WaitGroup
	for _, r := range runs {
		r.prefix = fmt.Sprintf("%s-%s", g.runID, r.lang)
		wg.Go(func() {
			logPath := filepath.Join(sc.dir, "foreign-"+r.lang+".log")
			f, err := os.Create(logPath)
			if err != nil {
				r.err = err
				return
			}
			defer f.Close()
			cmd := exec.CommandContext(ctx, script, r.lang, "--brokers", strings.Join(sc.brokers, ","), "--registry", sc.regURL,
				"--topic", sc.tp.orders, "--count", strconv.Itoa(n), "--prefix", r.prefix)
			cmd.Stdout, cmd.Stderr = f, f
			if err := cmd.Run(); err != nil {
				r.err = fmt.Errorf("%s %s: %v (log %s)", script, r.lang, err, logPath)
			}
		})
	}
	return func() {
		sc.t.Helper()
		wg.Wait()
		prefixes := map[string]int{}
		for _, r := range runs {
			if r.err != nil {
				sc.t.Fatal(r.err)
			}
			prefixes[r.prefix+"-"] = 0
		}
		found, err := scanForeign(ctx, sc, g, prefixes)
		if err != nil {
			sc.t.Fatal(err)
		}
		for p, c := range prefixes {
			if c != n {
				sc.t.Errorf("foreign producer %s published %d events, want %d", strings.TrimSuffix(p, "-"), c, n)
			}
		}
		sc.t.Logf("foreign producers: %d events (%v)", found, prefixes)
	}
}

// scanForeign reads the orders topic (read_committed) and adds every record
// the generator did not publish whose envelope id has one of prefixes.
func scanForeign(ctx context.Context, sc *scenario, g *generator, prefixes map[string]int) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(sc.brokers...))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ends, err := settle(ctx, kadm.NewClient(cl), []string{sc.tp.orders}, time.Minute)
	if err != nil {
		return 0, err
	}
	recs, err := readAll(ctx, sc.brokers, ends, true)
	if err != nil {
		return 0, err
	}
	mine := map[inRef]bool{}
	for _, e := range g.snapshot() {
		mine[e.ref] = true
	}
	dec := newDecoder(sc.regURL)
	found := 0
	for tpk, rs := range recs {
		for _, r := range rs {
			ref := inRef{tpk.topic, tpk.partition, r.Offset}
			if r.Attrs.IsControl() || mine[ref] {
				continue
			}
			m, err := dec.decode(ctx, r.Value)
			if err != nil {
				return found, fmt.Errorf("foreign record %s does not decode: %v", ref, err)
			}
			env, _ := m["envelope"].(map[string]any)
			id, _ := env["id"].(string)
			for p := range prefixes {
				if strings.HasPrefix(id, p) {
					prefixes[p]++
					found++
					g.record(event{ref: ref, kind: kindForeign, typ: typeIndex(tOrderPlaced), ext: &extInfo{id: id, key: string(r.Key)}})
				}
			}
		}
	}
	return found, nil
}
