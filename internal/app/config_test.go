package app_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// badConfig has mistakes of every kind, in the file and in its processors.
const badConfig = `kafka:
  brokres: [127.0.0.1:9092]
  session_timeout: soon
inputs: [checkout.orders.v1]
processing: {batch_size: "lots"}
pipeline:
  - name: rules
    type: validate
    config:
      rules:
        - name: a
          exp: event.total > 0.0
  - name: tiers
    type: enrich_tabel
  - name: routes
    type: orchestrate
    config:
      routes:
        - on: com.acme.checkout.OrderPlacd
          emit: []
`

// TestConfigValidateReportsEveryError: `ordo config validate` prints every
// mistake of the file, its processors and the environment in one run, one
// per line, sorted by line, each with file:line, key and fix.
func TestConfigValidateReportsEveryError(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(badConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ORDO_KAFKA_BROKRES", "x:1")
	code, _, errOut := runMain(t, "config", "validate", bad)
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := []string{
		"ordo: 7 config errors:",
		`  ` + bad + `:2: kafka.brokres: unknown key (fix: did you mean "brokers"? Valid keys: brokers, group,`,
		`  ` + bad + `:3: kafka.session_timeout: expected a duration, got "soon" (fix: write a duration, e.g. session_timeout: 45s)`,
		`  ` + bad + `:5: processing.batch_size: expected an integer, got "lots" (fix: write an integer, e.g. batch_size: 10000)`,
		`  ` + bad + `:12: pipeline[0].config.rules[0].exp: unknown key (fix: did you mean "expr"?`,
		`  ` + bad + `:14: pipeline[1].type: unknown processor type "enrich_tabel" (fix: did you mean enrich_table?`,
		`  ` + bad + `:19: pipeline[2].config.routes[0].on: unknown event type "com.acme.checkout.OrderPlacd" (fix:`,
		`  environment: ORDO_KAFKA_BROKRES: unknown variable (did you mean ORDO_KAFKA_BROKERS?) (fix:`,
	}
	lines := strings.Split(strings.TrimRight(errOut, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("want %d lines, got %d:\n%s", len(want), len(lines), errOut)
	}
	for i, w := range want {
		if !strings.HasPrefix(lines[i], w) {
			t.Errorf("line %d:\n got %s\nwant %s...", i, lines[i], w)
		}
	}
}

// TestConfigValidateReportsEveryProcessorError: with a valid file and
// broken processors, every processor's error is reported, not the first.
func TestConfigValidateReportsEveryProcessorError(t *testing.T) {
	src, err := os.ReadFile(filepath.Join("..", "..", "examples", "orders", "ordo.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := strings.Replace(string(src), "          expr: event.total > 0.0", "          expr: evnt.total > 0.0", 1)
	cfg = strings.Replace(cfg, "      on_missing: default", "      on_missing: ignore", 1)
	if cfg == string(src) {
		t.Fatal("example config changed; update the test's edits")
	}
	copyExample(t, dir)
	for name, data := range map[string]string{"ordo.yaml": cfg, "customer-tiers.csv": "customer_id,tier\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, _, errOut := runMain(t, "config", "validate", filepath.Join(dir, "ordo.yaml"))
	if code != 1 || !strings.Contains(errOut, "2 config errors:") ||
		!regexp.MustCompile(`ordo.yaml:\d+: pipeline\[0\]\.config\.rules\[0\]\.expr: invalid CEL`).MatchString(errOut) ||
		!regexp.MustCompile(`ordo.yaml:\d+: pipeline\[1\]\.config\.on_missing: on_missing "ignore"`).MatchString(errOut) {
		t.Fatalf("exit %d:\n%s", code, errOut)
	}
}

// TestConfigValidateEmbeddedFromAnyDirectory: without a file, the embedded
// example is checked, wherever ordo runs.
func TestConfigValidateEmbeddedFromAnyDirectory(t *testing.T) {
	t.Chdir(t.TempDir())
	code, out, errOut := runMain(t, "config", "validate")
	if code != 0 || !strings.HasPrefix(out, "examples/orders/ordo.yaml (embedded): ok (3 inputs, 3 processors") {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
}

// TestDevRunsOutsideTheCheckout builds the ordo binary and runs `ordo dev`
// from an empty directory: the default config, its table and the schemas
// are embedded, so it must process and verify its demo events.
func TestDevRunsOutsideTheCheckout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the ordo binary; skipped with -short")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH to build the binary:", err)
	}
	bin := filepath.Join(t.TempDir(), "ordo")
	build := exec.Command(goBin, "build", "-o", bin, "github.com/ordo-dev/ordo/cmd/ordo")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "dev", "--events", "50", "--kafka-addr", "127.0.0.1:0", "--registry-addr", "127.0.0.1:0",
		"--admin-addr", "", "--timeout", "2m")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ordo dev in %s: %v\n%s", dir, err, out)
	}
	if !strings.Contains(string(out), "config examples/orders/ordo.yaml (embedded)") || !strings.Contains(string(out), "verify OK: orders 50") {
		t.Fatalf("unexpected output:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, ".ordo", "ordo.log")); err != nil {
		t.Errorf("no log in the default --data-dir under the working directory: %v", err)
	}
}
