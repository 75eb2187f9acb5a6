package app

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/ordo-dev/ordo/internal/config"
)

func parseCfg(t *testing.T, yaml string, env ...string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(filepath.Join(t.TempDir(), "ordo.yaml"), []byte(yaml), env)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// The reported bug: credentials in the registry URL ended up in every
// registry error (and so in /readyz and WARN lines). They now travel as
// basic auth; the URL the client knows has no userinfo.
func TestRegistryURLUserinfoIsBasicAuthAndNeverInErrors(t *testing.T) {
	const pass = "pa:ss-w0rd-leak"
	reg := srfake.New(srfake.WithAuth(basicAuthHeader("ordo", pass)))
	srv := httptest.NewServer(reg.Handler())
	u := strings.Replace(srv.URL, "http://", "http://ordo:pa%3Ass-w0rd-leak@", 1)
	cfg := parseCfg(t, "inputs: [in]\npipeline: [{type: orchestrate}]\n", "ORDO_REGISTRY_URL="+u)
	r, err := newSchemaRegistry(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := r.Client().Subjects(ctx); err != nil {
		t.Fatalf("the registry refused the URL's credentials: %v", err)
	}
	srv.Close()
	_, err = r.Client().Subjects(ctx)
	if err == nil {
		t.Fatal("a closed registry answered")
	}
	if strings.Contains(err.Error(), "w0rd") {
		t.Fatalf("the registry error carries the password: %v", err)
	}
}

func basicAuthHeader(user, pass string) string {
	req := httptest.NewRequest("GET", "/", nil)
	req.SetBasicAuth(user, pass)
	return req.Header.Get("Authorization")
}

func TestOutputTopicsOfTheExample(t *testing.T) {
	cfg, err := config.Load(filepath.Join("..", "..", config.DefaultPath), nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"commands.cancel-order.v1", "commands.notify-customer.v1", "commands.release-inventory.v1", "commands.reserve-inventory.v1", "commands.ship-order.v1", "commands.void-payment.v1",
		"ordo-orders.changelog", "ordo-orders.process-log"}
	if got := outputTopics(cfg); !slices.Equal(got, want) {
		t.Fatalf("outputTopics = %v, want %v", got, want)
	}
}

// Without an authorizer every operation is allowed: the preflight passes
// on a plain broker, and an unreachable cluster is not a start failure.
func TestPreflightPlainAndUnreachable(t *testing.T) {
	kf, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "in", "ordo.dead-letter.v1"))
	if err != nil {
		t.Fatal(err)
	}
	defer kf.Close()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	cfg := parseCfg(t, "inputs: [in]\npipeline: [{type: orchestrate}]\n", "ORDO_KAFKA_BROKERS="+kf.ListenAddrs()[0])
	if err := preflight(context.Background(), cfg, log); err != nil {
		t.Fatalf("preflight on a plain broker: %v\n%s", err, buf.String())
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	buf.Reset()
	cfg = parseCfg(t, "inputs: [in]\npipeline: [{type: orchestrate}]\n", "ORDO_KAFKA_BROKERS="+addr)
	t0 := time.Now()
	if err := preflight(context.Background(), cfg, log); err != nil {
		t.Fatalf("an unreachable broker failed the start: %v", err)
	}
	if took := time.Since(t0); took > preflightTimeout+2*time.Second {
		t.Errorf("preflight took %v on an unreachable broker", took)
	}
	if !strings.Contains(buf.String(), "cannot reach the brokers yet") {
		t.Errorf("no warning about the unreachable broker:\n%s", buf.String())
	}
}

func TestConfigShowRedactsSecrets(t *testing.T) {
	dir := t.TempDir()
	y := "kafka:\n  sasl: {mechanism: SCRAM-SHA-512, username: ordo}\nregistry:\n  url: https://r:c2VjcmV0@reg:8081\ninputs: [in]\npipeline: [{type: orchestrate}]\n"
	path := filepath.Join(dir, "ordo.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("ORDO_KAFKA_SASL_PASSWORD", "env-pass-123")
	var out, errb bytes.Buffer
	code := Main([]string{"config", "show", path}, WithOutput(&out, &errb))
	if code != 0 {
		t.Fatalf("config show exited %d: %s", code, errb.String())
	}
	s := out.String()
	if strings.Contains(s, "env-pass-123") || strings.Contains(s, "c2VjcmV0") {
		t.Fatalf("config show printed a secret:\n%s", s)
	}
	for _, want := range []string{"password: '" + config.Redacted + "'", "url: https://r:" + config.Redacted + "@reg:8081", "username: ordo", "mechanism: SCRAM-SHA-512"} {
		if !strings.Contains(s, want) {
			t.Errorf("config show lacks %q:\n%s", want, s)
		}
	}
}
