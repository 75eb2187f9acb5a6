package app_test

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestDevSagaEndToEnd is issue 10's `ordo dev` acceptance check: with the
// orders saga (a state: block), ordo dev publishes orders whose legs ship
// them, cancel them or let their deadline pass (plus poison and duplicate
// deliveries), waits for the deadlines, and verifies every order's end.
func TestDevSagaEndToEnd(t *testing.T) {
	chdirRoot(t)
	cfg, err := os.ReadFile("examples/orders/ordo.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains("\n"+string(cfg), "\nstate:") {
		t.Skip("examples/orders/ordo.yaml has no state: block, so ordo dev runs the stateless demo (TestDevEndToEnd)")
	}
	code, out, errOut := runMain(t, "dev", "--events", "300", "--output", "json",
		"--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0", "--admin-addr", "", "--data-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("ordo dev exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	var sum struct {
		Verify *json.RawMessage `json:"verify"`
		Saga   *struct {
			OK                  bool           `json:"ok"`
			Orders              int            `json:"orders"`
			Shipped             int            `json:"shipped"`
			Cancelled           int            `json:"cancelled"`
			CancelledDeclined   int            `json:"cancelled_declined"`
			CancelledShortage   int            `json:"cancelled_shortage"`
			CancelledTimeout    int            `json:"cancelled_timeout"`
			InFlight            int            `json:"in_flight"`
			PoisonPublished     int            `json:"poison_published"`
			PoisonDeadLettered  int            `json:"poison_dead_lettered"`
			DuplicatesPublished int            `json:"duplicates_published"`
			DuplicatesDropped   int            `json:"duplicates_dropped"`
			CommandIDs          int            `json:"command_ids"`
			CommandRecords      int            `json:"command_records"`
			Violations          map[string]int `json:"violations"`
			Problems            []string       `json:"problems"`
		} `json:"saga_verify"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary is not one JSON object: %v\n%s", err, out)
	}
	v := sum.Saga
	if v == nil || sum.Verify != nil {
		t.Fatalf("want the saga verification (saga_verify), not the stateless one: %s", out)
	}
	if !v.OK || v.Orders != 300 {
		t.Fatalf("saga verification failed: violations %v\n%s", v.Violations, strings.Join(v.Problems, "\n"))
	}
	// ordo dev waited for the deadlines: every order ended, each way at
	// least once.
	if v.InFlight != 0 || v.Shipped+v.Cancelled != 300 || v.CancelledDeclined+v.CancelledShortage+v.CancelledTimeout != v.Cancelled {
		t.Errorf("orders did not all end: %s", out)
	}
	if v.Shipped == 0 || v.CancelledDeclined == 0 || v.CancelledShortage == 0 || v.CancelledTimeout == 0 {
		t.Errorf("an outcome is missing: %s", out)
	}
	if v.PoisonPublished == 0 || v.PoisonDeadLettered != v.PoisonPublished {
		t.Errorf("poison: %d published, %d dead-lettered", v.PoisonPublished, v.PoisonDeadLettered)
	}
	if v.DuplicatesPublished == 0 || v.DuplicatesDropped != v.DuplicatesPublished {
		t.Errorf("duplicates: %d published, %d dropped", v.DuplicatesPublished, v.DuplicatesDropped)
	}
	if v.CommandIDs == 0 || v.CommandIDs != v.CommandRecords {
		t.Errorf("command ids: %d distinct of %d records", v.CommandIDs, v.CommandRecords)
	}
}
