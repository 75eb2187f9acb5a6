package observability

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/internal/telemetry"
	"github.com/ordo-dev/ordo/publish"
)

// TestPrometheusScrapesOrdo runs a real Prometheus scraping a live ordo's
// /metrics and checks that the expected series exist and move.
func TestPrometheusScrapesOrdo(t *testing.T) {
	bin := need(t, "PROMETHEUS_BIN")
	e := newEnv(t)
	ordo := e.startOrdo(t)

	// /readyz is 200 (startOrdo waited for it); pprof is off by default.
	if resp, err := http.Get("http://" + ordo.admin + "/debug/pprof/"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("/debug/pprof/ with admin.pprof=false: status %d, want 404", resp.StatusCode)
		}
	}

	dir := t.TempDir()
	cfg := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: [%q]
scrape_configs:
  - job_name: ordo
    static_configs: [{targets: [%q]}]
`, mustAbs(t, "../../deploy/prometheus/ordo-alerts.yml"), ordo.admin)), 0o644); err != nil {
		t.Fatal(err)
	}
	var web string
	startOnFreePorts(t, "prometheus ready", 60*time.Second, func() (<-chan error, string, func() bool) {
		web = freeAddr(t)
		exited, logPath := startChild(t, "prometheus", bin,
			[]string{"--config.file=" + cfg, "--storage.tsdb.path=" + filepath.Join(t.TempDir(), "data"), "--web.listen-address=" + web})
		return exited, logPath, func() bool {
			resp, err := http.Get("http://" + web + "/-/ready")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		}
	})
	query := func(q string) (float64, bool) {
		resp, err := http.Get("http://" + web + "/api/v1/query?query=" + url.QueryEscape(q))
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		var body struct {
			Data struct {
				Result []struct {
					Value [2]any `json:"value"`
				} `json:"result"`
			} `json:"data"`
		}
		b, _ := io.ReadAll(resp.Body)
		if json.Unmarshal(b, &body) != nil || len(body.Data.Result) == 0 {
			return 0, false
		}
		f, err := strconv.ParseFloat(fmt.Sprint(body.Data.Result[0].Value[1]), 64)
		return f, err == nil
	}
	waitFor(t, 60*time.Second, "prometheus to scrape ordo (up == 1)", func() bool {
		v, ok := query(`up{job="ordo"}`)
		return ok && v == 1
	})

	pub := publish.New(e.pubCl, e.serde, "checkout")
	e.publish(t, pub, 20, false)
	e.publish(t, pub, 2, true)
	waitFor(t, 60*time.Second, "ordo_events_committed_total >= 22", func() bool {
		v, ok := query(`ordo_events_committed_total`)
		return ok && v >= 22
	})
	for _, q := range []string{
		`ordo_ready == 1`,
		`ordo_registry_up == 1`,
		`ordo_txn_commits_total > 0`,
		`ordo_events_processed_total{type="com.acme.checkout.OrderPlaced"} >= 20`,
		`ordo_commands_committed_total >= 40`,
		`ordo_dead_letters_committed_total >= 2`,
		`ordo_records_rewound_total >= 0`, // exported; rewinds need a backlog past the commit deadline
		`ordo_dead_letters_total{reason="order-rules"} >= 2`,
		`ordo_processor_seconds_count{processor="order-rules",outcome="error"} >= 2`,
		`ordo_processor_seconds_count{processor="routes",outcome="ok"} >= 20`,
		`ordo_event_processing_seconds_count >= 20`,
		`ordo_end_to_end_seconds_count >= 22`,
		`ordo_records_produced_total{topic="commands.reserve-inventory.v1"} >= 20`,
		`ordo_registry_cache_misses_total >= 1`,
		`ordo_registry_cache_hits_total >= 1`,
		`ordo_rebalances_total >= 1`,
		`ordo_assigned_partitions > 0`,
		`ordo_last_commit_timestamp_seconds > 0`,
		`count(ordo_consumer_lag{topic="checkout.orders.v1"}) > 0`,
		`ordo_kafka_produce_records_total > 0`,
		`ordo_kafka_buffered_fetch_records_total >= 0`,
		`ordo_txn_end_seconds_count{outcome="committed"} > 0`,
	} {
		waitFor(t, 20*time.Second, "PromQL "+q, func() bool { _, ok := query(q); return ok })
	}
	// Series move: more events, higher counters.
	before, _ := query(`ordo_events_committed_total`)
	e.publish(t, pub, 10, false)
	waitFor(t, 60*time.Second, "ordo_events_committed_total to grow by 10", func() bool {
		v, ok := query(`ordo_events_committed_total`)
		return ok && v >= before+10
	})
	waitFor(t, 30*time.Second, "lag back to 0", func() bool {
		v, ok := query(`sum(ordo_consumer_lag{topic="checkout.orders.v1"})`)
		return ok && v == 0
	})
	// The alert rules load and evaluate on live data without errors.
	resp, err := http.Get("http://" + web + "/api/v1/rules")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if m := regexp.MustCompile(`"health":"(err|unknown)"`).FindAll(b, -1); len(m) > 0 {
		waitFor(t, 10*time.Second, "rules healthy", func() bool {
			resp, err := http.Get("http://" + web + "/api/v1/rules")
			if err != nil {
				return false
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return !regexp.MustCompile(`"health":"(err|unknown)"`).Match(b)
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestAlertRules runs promtool's syntax check and unit tests on the alerts.
func TestAlertRules(t *testing.T) {
	promtool := need(t, "PROMTOOL_BIN")
	for _, args := range [][]string{
		{"check", "rules", "ordo-alerts.yml"},
		{"test", "rules", "ordo-alerts.test.yml"},
	} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../../deploy/prometheus"
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %v: %v\n%s", args, err, out)
		}
	}
	// Every metric the rules use exists.
	checkMetricNames(t, "../../deploy/prometheus/ordo-alerts.yml")
}

var metricRef = regexp.MustCompile(`\bordo_[a-z0-9_]+`)

// checkMetricNames fails for any ordo_* name in file that ordo does not
// expose.
func checkMetricNames(t *testing.T, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	names, err := telemetry.MetricNames()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, n := range names {
		have[n] = true
	}
	refs := map[string]bool{}
	for _, m := range metricRef.FindAllString(string(b), -1) {
		refs[m] = true
	}
	if len(refs) == 0 {
		t.Fatalf("%s references no ordo_ metric", file)
	}
	for m := range refs {
		base := m
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			if !have[base] && len(base) > len(suf) && base[len(base)-len(suf):] == suf {
				base = base[:len(base)-len(suf)]
			}
		}
		if !have[base] {
			t.Errorf("%s references %s, which ordo does not expose", file, m)
		}
	}
}
