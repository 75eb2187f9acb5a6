package observability

import (
	"encoding/json"
	"os"
	"testing"
)

// TestDashboard checks that the Grafana dashboard is valid JSON with
// Prometheus panels, and that every ordo_ metric it queries exists. It needs
// no binary.
func TestDashboard(t *testing.T) {
	const file = "../../deploy/grafana/ordo-dashboard.json"
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) < 10 {
		t.Fatalf("dashboard: title %q uid %q, %d panels", d.Title, d.UID, len(d.Panels))
	}
	for _, p := range d.Panels {
		if p.Title == "" || len(p.Targets) == 0 {
			t.Errorf("panel %q has no title or no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has an empty query", p.Title)
			}
		}
	}
	checkMetricNames(t, file)
}
