package ordo_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ordo-dev/ordo"
	"github.com/ordo-dev/ordo/processors"
)

// A config with a mistake fails at New with the file, the line, the key and
// a fix, before anything connects.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "ordo-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "ordo.yaml")
	_ = os.WriteFile(path, []byte("kafka:\n  brokers: [127.0.0.1:9092]\n  grup: orders\n"), 0o644)
	_, err := ordo.New(path)
	fmt.Println(err != nil && strings.Contains(err.Error(), "ordo.yaml:3") && strings.Contains(err.Error(), "grup"))
	// Output: true
}

func TestNewLoadsTheExampleConfigs(t *testing.T) {
	for _, name := range []string{"ordo.yaml", "router.yaml"} {
		if _, err := ordo.New(filepath.Join("examples", "orders", name)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestNewNamesUnknownProcessorTypes(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("examples", "orders", "router.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := strings.Replace(string(src), "type: validate", "type: fraud_score", 1)
	path := filepath.Join(dir, "ordo.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// What the config refers to relative to itself.
	if err := copyFile(filepath.Join("examples", "orders", "customer-tiers.csv"), filepath.Join(dir, "customer-tiers.csv")); err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(dir, "schemas"), os.DirFS(filepath.Join("examples", "orders", "schemas"))); err != nil {
		t.Fatal(err)
	}
	if _, err := ordo.New(path); err == nil || !strings.Contains(err.Error(), "fraud_score") {
		t.Fatalf("New with an unregistered processor type: %v, want an error naming fraud_score", err)
	}
	reg := processors.Builtins()
	reg.MustRegister("fraud_score", func(processors.Spec, processors.Deps) (processors.Processor, error) {
		return processors.Func(nil), nil
	})
	if _, err := ordo.New(path, ordo.WithProcessors(reg)); err != nil && strings.Contains(err.Error(), "fraud_score") {
		t.Fatalf("New with fraud_score registered still refuses it: %v", err)
	}
}

func copyFile(from, to string) error {
	b, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	return os.WriteFile(to, b, 0o644)
}

func TestMainPrintsVersionAndHelp(t *testing.T) {
	var out, errb bytes.Buffer
	if code := ordo.Main([]string{"version"}, ordo.WithOutput(&out, &errb)); code != 0 {
		t.Fatalf("ordo version exited %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), ordo.Version()) {
		t.Errorf("ordo version printed %q, want it to contain %q", out.String(), ordo.Version())
	}
	out.Reset()
	if code := ordo.Main([]string{"no-such-command"}, ordo.WithOutput(&out, &errb)); code == 0 {
		t.Errorf("an unknown command exited 0")
	}
}
