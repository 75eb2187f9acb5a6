// Package eos is ordo's exactly-once suite: it runs the built `ordo` binary
// as real OS processes against a real Apache Kafka cluster, injects faults
// (SIGKILL, SIGSTOP, broker restarts, registry and processor outages,
// upstream aborts, poison records) and verifies the committed output with a
// verifier that only knows ordo's wire contract. See README.md.
package eos

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/internal/testkit"
)

// Suite-wide state set up by TestMain.
var (
	suite struct {
		skip        string   // non-empty: why every test skips (or fails, see requireKafka)
		setupErr    error    // the binary or the registry could not be started
		brokers     []string // KAFKA_BROKERS
		dir         string   // suite work dir: the binary, the shared registry's data, logs
		bin         string   // the built ordo binary
		registryURL string   // the shared `ordo registry` process
		keepDir     bool     // a test failed: keep logs
	}
	repoRoot = filepath.Join("..", "..")
)

const skipNoKafka = "EOS suite needs real Kafka: run make test or make eos (test/eos/run.sh); KAFKA_BROKERS is unset"

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	raw := strings.TrimSpace(os.Getenv("KAFKA_BROKERS"))
	if raw == "" {
		suite.skip = skipNoKafka
		return m.Run()
	}
	for _, b := range strings.Split(raw, ",") {
		if b = strings.TrimSpace(b); b != "" {
			suite.brokers = append(suite.brokers, b)
		}
	}
	dir, err := os.MkdirTemp(os.Getenv("EOS_WORK_DIR"), "eos-suite-")
	if err != nil {
		suite.setupErr = err
		return m.Run()
	}
	suite.dir = dir
	suite.bin = filepath.Join(dir, "ordo")
	t0 := time.Now()
	build := exec.Command("go", "build", "-o", suite.bin, "./cmd/ordo")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		suite.setupErr = fmt.Errorf("go build ./cmd/ordo: %v\n%s", err, out)
		return m.Run()
	}
	fmt.Printf("eos: built %s in %.1fs; work dir %s\n", suite.bin, time.Since(t0).Seconds(), dir)
	reg, err := startRegistry(filepath.Join(dir, "registry"), "", filepath.Join(dir, "registry.log"))
	if err != nil {
		suite.setupErr = err
		return m.Run()
	}
	suite.registryURL = reg.url
	code := m.Run()
	reg.proc.stop(5 * time.Second)
	if code == 0 && !suite.keepDir && os.Getenv("EOS_KEEP_LOGS") == "" {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Printf("eos: logs kept in %s\n", dir)
	}
	return code
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

// requireKafka skips the test (printing why) when there is no real Kafka,
// or fails it when REQUIRE_REAL_KAFKA=1.
func requireKafka(t *testing.T) {
	t.Helper()
	if suite.skip != "" {
		if truthy(os.Getenv("REQUIRE_REAL_KAFKA")) {
			t.Fatalf("%s, and REQUIRE_REAL_KAFKA=1", suite.skip)
		}
		fmt.Printf("eos: SKIP %s: %s\n", t.Name(), suite.skip)
		t.Skip(suite.skip)
	}
	if suite.setupErr != nil {
		t.Fatalf("eos suite setup failed: %v", suite.setupErr)
	}
}

// skipf skips with a printed reason.
func skipf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	fmt.Printf("eos: SKIP %s: %s\n", t.Name(), msg)
	t.Skip(msg)
}

// registryProc is an `ordo registry` process.
type registryProc struct {
	proc    *proc
	url     string
	addr    string
	dataDir string
	logPath string
}

// startRegistry runs `ordo registry` on addr (a free port when empty) with
// dataDir, and waits until it answers.
func startRegistry(dataDir, addr, logPath string) (*registryProc, error) {
	if addr == "" {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addr = a
	}
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return nil, err
	}
	p, err := startProc("registry", logPath, os.Environ(), suite.bin, "registry", "--addr", addr, "--data-dir", dataDir)
	if err != nil {
		return nil, err
	}
	r := &registryProc{proc: p, url: "http://" + addr, addr: addr, dataDir: dataDir, logPath: logPath}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.url+"/subjects", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r, nil
			}
		}
		if !p.alive() {
			return nil, fmt.Errorf("ordo registry on %s exited: %v (log %s)", addr, p.waitErr(), logPath)
		}
		select {
		case <-ctx.Done():
			p.kill()
			return nil, fmt.Errorf("ordo registry on %s did not answer within 20s (log %s)", addr, logPath)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// freeAddr returns a 127.0.0.1 address with a port that was free just now.
func freeAddr() (string, error) { return testkit.FreeAddr() }
