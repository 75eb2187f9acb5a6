// Package observability tests ordo's tracing and metrics against real
// binaries: Jaeger (JAEGER_BIN), Prometheus and promtool (PROMETHEUS_BIN,
// PROMTOOL_BIN), all installed by test/observability/setup.sh:
//
//	eval "$(test/observability/setup.sh)"
//	REQUIRE_OBSERVABILITY=1 go test ./test/observability/
//
// Without a binary a test skips and says why; with REQUIRE_OBSERVABILITY=1
// it fails instead. Kafka is KAFKA_BROKERS when set, else an in-process
// kfake (internal/testkit); the schema registry is the embedded one
// (internal/devenv). ordo itself runs as a subprocess (`ordo run`), built
// once per test binary, so that its exporter flush on SIGTERM is real.
package observability

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sr"
	"go.opentelemetry.io/otel/trace"

	"github.com/ordo-dev/ordo/internal/demo"
	"github.com/ordo-dev/ordo/internal/devenv"
	"github.com/ordo-dev/ordo/internal/testkit"
	"github.com/ordo-dev/ordo/producer"
	"github.com/ordo-dev/ordo/publish"
	"github.com/ordo-dev/ordo/schemas"
)

func TestMain(m *testing.M) { os.Exit(testkit.Main(m)) }

// need returns the path in env var name, or skips (fails with
// REQUIRE_OBSERVABILITY=1) when it is unset or not executable.
func need(t *testing.T, name string) string {
	t.Helper()
	p := os.Getenv(name)
	why := ""
	if p == "" {
		why = name + " is not set"
	} else if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
		why = fmt.Sprintf("%s=%s is not an executable file", name, p)
	}
	if why == "" {
		return p
	}
	msg := why + ` (run: eval "$(test/observability/setup.sh)")`
	if os.Getenv("REQUIRE_OBSERVABILITY") == "1" {
		t.Fatalf("REQUIRE_OBSERVABILITY=1: %s", msg)
	}
	t.Skip(msg)
	return ""
}

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := testkit.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

var (
	buildOnce sync.Once
	ordoBin   string
	buildErr  error
)

// ordoBinary builds cmd/ordo once per test binary.
func ordoBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ordo-observability-")
		if err != nil {
			buildErr = err
			return
		}
		ordoBin = filepath.Join(dir, "ordo")
		out, err := exec.Command("go", "build", "-o", ordoBin, "github.com/ordo-dev/ordo/cmd/ordo").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ./cmd/ordo: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return ordoBin
}

// env is one test's Kafka + registry + publisher.
type env struct {
	brokers  []string
	registry string
	serde    *schemas.Serde
	pubCl    *kgo.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{brokers: testkit.Brokers(t)}
	devreg, err := devenv.StartRegistry("127.0.0.1:0", filepath.Join(t.TempDir(), "registry.json"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devreg.Close() })
	e.registry = devreg.URL()
	srcl, err := sr.NewClient(sr.URLs(e.registry))
	if err != nil {
		t.Fatal(err)
	}
	readers, err := schemas.Demo()
	if err != nil {
		t.Fatal(err)
	}
	reg := schemas.NewRegistry(srcl)
	// The example's topics are shared by the tests of this package (run one
	// after the other), so a new replica also reads the events of earlier
	// tests, framed with ids of their registries. Registering OrderPlaced
	// first gives it the same id (1) in every test's registry: those events
	// stay decodable instead of dead-lettered, and the registry client's
	// negative cache never learns "id 1 unknown" before this test publishes.
	if _, err := reg.Register(context.Background(), "checkout.orders.v1-value", readers["com.acme.checkout.OrderPlaced"].Text); err != nil {
		t.Fatal(err)
	}
	e.serde = schemas.NewSerde(reg, readers)
	e.pubCl, err = kgo.NewClient(kgo.SeedBrokers(e.brokers...), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pubCl.Close)
	return e
}

// ordoProc is a running `ordo run`.
type ordoProc struct {
	cmd   *exec.Cmd
	admin string
	log   *os.File
	done  chan error
}

// startOrdo runs `ordo run --create-topics` with the example config against
// e, extra environment variables added, and waits until /readyz is 200.
func (e *env) startOrdo(t *testing.T, extraEnv ...string) *ordoProc {
	t.Helper()
	bin := ordoBinary(t)
	var p *ordoProc
	startOnFreePorts(t, "ordo /readyz 200", 60*time.Second, func() (<-chan error, string, func() bool) {
		p = e.execOrdo(t, bin, extraEnv)
		return p.done, p.log.Name(), func() bool {
			resp, err := http.Get("http://" + p.admin + "/readyz")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode == 200
		}
	})
	return p
}

// execOrdo starts the process on a fresh admin port.
func (e *env) execOrdo(t *testing.T, bin string, extraEnv []string) *ordoProc {
	t.Helper()
	admin := freeAddr(t)
	logf, err := os.Create(filepath.Join(t.TempDir(), "ordo.log"))
	if err != nil {
		t.Fatal(err)
	}
	id := testkit.UniqueName(t, "obs")
	cmd := exec.Command(bin, "run", "--create-topics", "--config", "../../examples/orders/router.yaml", "--log-level", "info")
	cmd.Env = append(os.Environ(),
		"ORDO_KAFKA_BROKERS="+strings.Join(e.brokers, ","),
		"ORDO_REGISTRY_URL="+e.registry,
		"ORDO_ADMIN_LISTEN="+admin,
		"ORDO_ADMIN_LAG_INTERVAL=1s",
		"ORDO_KAFKA_GROUP="+id,
		"ORDO_KAFKA_TRANSACTIONAL_ID_PREFIX="+id,
		"ORDO_KAFKA_REPLICA_ID=0",
		"ORDO_PROCESSING_COMMIT_INTERVAL=50ms",
	)
	cmd.Env = append(cmd.Env, extraEnv...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &ordoProc{cmd: cmd, admin: admin, log: logf, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("ordo log:\n%s", tail(string(b), 4000))
		}
	})
	return p
}

// stop sends SIGTERM (ordo commits, flushes its spans and exits) and waits.
func (p *ordoProc) stop(t *testing.T) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("ordo exited with %v", err)
		}
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("ordo did not exit within 30s of SIGTERM")
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// orderPlaced is a valid OrderPlaced (poison: zero total, no items, which
// the example config's order-rules processor rejects).
func orderPlaced(id string, poison bool) map[string]any {
	v := map[string]any{
		"envelope": map[string]any{"id": id}, "order_id": id, "customer_id": "cust-1",
		"total": big.NewRat(2500, 100), "currency": "EUR",
		"items":            []any{map[string]any{"sku": "SKU-1", "qty": int32(1), "unit_price": big.NewRat(2500, 100)}},
		"shipping_country": "DE", "note": nil,
	}
	if poison {
		v["total"] = big.NewRat(0, 1)
		v["items"] = []any{}
	}
	return v
}

// publish publishes OrderPlaced events through the Publisher SDK with tp
// (nil: no spans) and returns the trace id of each.
func (e *env) publish(t *testing.T, pub *publish.Publisher, n int, poison bool) []trace.TraceID {
	t.Helper()
	var ids []trace.TraceID
	for i := range n {
		id := fmt.Sprintf("%s-%d-%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano(), i)
		r, err := pub.Publish(context.Background(), demo.TopicOrders, demo.OrderPlaced, id, orderPlaced(id, poison))
		if err != nil {
			t.Fatal(err)
		}
		ctx := producer.ExtractTrace(context.Background(), r.Headers)
		ids = append(ids, trace.SpanContextFromContext(ctx).TraceID())
	}
	return ids
}
