package app_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ordo-dev/ordo/cmd/ordo/app"
)

func runMain(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = app.Main(args, app.WithOutput(&out, &errb))
	return code, out.String(), errb.String()
}

// chdirRoot runs the test from the repository root, where the default
// config path (examples/orders/ordo.yaml) resolves.
func chdirRoot(t *testing.T) {
	t.Helper()
	t.Chdir(filepath.Join("..", "..", ".."))
}

// TestDevEndToEnd is the acceptance check in-process: ordo dev
// publishes demo traffic (with poison and duplicate deliveries), processes it
// exactly once on the embedded broker and verifies the committed output.
func TestDevEndToEnd(t *testing.T) {
	chdirRoot(t)
	code, out, errOut := runMain(t, "dev", "--events", "3000", "--output", "json",
		"--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0", "--data-dir", t.TempDir())
	if code != 0 {
		t.Fatalf("ordo dev exited %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	var sum struct {
		EventsIn     int64 `json:"events_in"`
		CommandsOut  int64 `json:"commands_out"`
		DeadLettered int64 `json:"dead_lettered"`
		TxnCommits   int64 `json:"txn_commits"`
		Verify       struct {
			OK                  bool `json:"ok"`
			Published           int  `json:"published"`
			PoisonPublished     int  `json:"poison_published"`
			DuplicatesPublished int  `json:"duplicates_published"`
			CommandsExpected    int  `json:"commands_expected"`
			CommandsSeen        int  `json:"commands_seen"`
			DeadLettersSeen     int  `json:"dead_letters_seen"`
			DuplicateDeliveries int  `json:"duplicate_deliveries_seen"`
		} `json:"verify"`
	}
	if err := json.Unmarshal([]byte(out), &sum); err != nil {
		t.Fatalf("summary is not one JSON object: %v\n%s", err, out)
	}
	v := sum.Verify
	if !v.OK || v.Published != 3000 {
		t.Fatalf("verification failed: %s", out)
	}
	if sum.EventsIn != 3000 || sum.CommandsOut != int64(v.CommandsExpected) || v.CommandsSeen != v.CommandsExpected {
		t.Errorf("counts disagree: %s", out)
	}
	if v.PoisonPublished == 0 || sum.DeadLettered != int64(v.PoisonPublished) || v.DeadLettersSeen != v.PoisonPublished {
		t.Errorf("poison handling: %s", out)
	}
	if v.DuplicatesPublished == 0 || v.DuplicateDeliveries != v.DuplicatesPublished {
		t.Errorf("duplicate deliveries: published %d, seen %d", v.DuplicatesPublished, v.DuplicateDeliveries)
	}
	if sum.TxnCommits == 0 {
		t.Error("no transaction committed")
	}
}

func TestConfigValidateReportsFileLineKeyFix(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("kafka:\n  brokerz: [x:1]\ninputs: [a]\npipeline:\n  - type: orchestrate\n    config: {routes: []}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runMain(t, "config", "validate", bad)
	if code == 0 {
		t.Fatal("a config with an unknown key validated")
	}
	for _, want := range []string{bad + ":2", "kafka.brokerz", `did you mean "brokers"`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("error %q lacks %q", errOut, want)
		}
	}
}

func TestConfigValidateDefault(t *testing.T) {
	chdirRoot(t)
	code, out, errOut := runMain(t, "config", "validate")
	if code != 0 || !strings.Contains(out, "ok") {
		t.Fatalf("default config invalid (exit %d): %s %s", code, out, errOut)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runMain(t, "version")
	if code != 0 || !strings.HasPrefix(out, "ordo ") {
		t.Fatalf("version: exit %d, %q", code, out)
	}
}
