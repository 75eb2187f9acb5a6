// Package security proves ordo on a secured Apache Kafka: a KRaft broker
// (test/kafka/kafka.sh) with a SASL_SSL listener (TLS with certificates
// generated here, mTLS required, SCRAM-SHA-512 and OAUTHBEARER), the
// StandardAuthorizer and ACLs. It runs the real ordo binary as the user
// `ordo` with only the ACLs docs/security.md lists and checks exactly-once
// delivery, clear errors for missing ACLs and wrong credentials, and that no
// secret is ever printed.
//
// The broker listens on SECURITY_KAFKA_PORT (plaintext, for kafka.sh's
// readiness check only), +1 (controller) and +2 (SASL_SSL); default 9792.
// Without Java or the Kafka jars every test skips with the reason, unless
// REQUIRE_REAL_KAFKA=1, which makes them fail.
package security

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/pkg/sr/srfake"
)

var repoRoot = filepath.Join("..", "..")

// suite is set up once by TestMain.
var suite struct {
	skip     string // non-empty: why every test skips (or fails with REQUIRE_REAL_KAFKA=1)
	setupErr error
	dir      string // work dir: binary, certificates, broker run dir, logs
	bin      string // the built ordo binary
	pki      *pki
	runDir   string // kafka.sh run dir
	secure   string // 127.0.0.1:<SASL_SSL port>
	plain    string // 127.0.0.1:<PLAINTEXT port> (kafka.sh's readiness check; a TLS mismatch case)
	adminPW  string // password of User:admin (super user)
	registry *srfake.Registry
	regAuth  [2]string // basic-auth user and password of the TLS registry
	regURL   string    // https://127.0.0.1:port (basic auth required)
	keep     bool      // a test failed: keep the work dir
}

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	t0 := time.Now()
	dir, err := os.MkdirTemp(os.Getenv("SECURITY_WORK_DIR"), "sec-suite-")
	if err != nil {
		suite.setupErr = err
		return m.Run()
	}
	suite.dir = dir
	code := func() int {
		if err := setup(); err != nil {
			if suite.skip == "" {
				suite.setupErr = err
			}
			fmt.Printf("security: setup: %v\n", err)
			return m.Run()
		}
		fmt.Printf("security: suite ready in %.1fs (work dir %s, SASL_SSL broker %s)\n", time.Since(t0).Seconds(), dir, suite.secure)
		return m.Run()
	}()
	if suite.runDir != "" {
		if err := kafkaSh(nil, "stop"); err != nil {
			fmt.Printf("security: stopping the broker: %v\n", err)
		}
	}
	if code == 0 && !suite.keep && os.Getenv("SECURITY_KEEP") == "" {
		_ = os.RemoveAll(dir)
	} else {
		fmt.Printf("security: logs kept in %s\n", dir)
	}
	fmt.Printf("security: total %.1fs\n", time.Since(t0).Seconds())
	return code
}

func setup() error {
	if _, err := exec.LookPath("java"); err != nil {
		suite.skip = "java is not installed: the secured broker cannot start (test/run.sh installs it)"
		return err
	}
	p, err := newPKI(filepath.Join(suite.dir, "tls"))
	if err != nil {
		return fmt.Errorf("certificates: %w", err)
	}
	suite.pki = p
	suite.bin = filepath.Join(suite.dir, "ordo")
	t0 := time.Now()
	build := exec.Command("go", "build", "-o", suite.bin, "./cmd/ordo")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/ordo: %v\n%s", err, out)
	}
	fmt.Printf("security: built ordo in %.1fs\n", time.Since(t0).Seconds())

	port := 9792
	if v := os.Getenv("SECURITY_KAFKA_PORT"); v != "" {
		if port, err = strconv.Atoi(v); err != nil {
			return fmt.Errorf("SECURITY_KAFKA_PORT=%q: %v", v, err)
		}
	}
	suite.adminPW = "admin-" + randHex(8)
	suite.runDir = filepath.Join(suite.dir, "kafka")
	suite.secure = "127.0.0.1:" + strconv.Itoa(port+2)
	suite.plain = "127.0.0.1:" + strconv.Itoa(port)
	env := []string{
		"KAFKA_PORT=" + strconv.Itoa(port),
		"KAFKA_SASL_SSL_PORT=" + strconv.Itoa(port+2),
		"KAFKA_TLS_DIR=" + p.dir,
		"KAFKA_SSL_CLIENT_AUTH=required",
		"KAFKA_SASL_MECHANISMS=SCRAM-SHA-512 OAUTHBEARER",
		"KAFKA_SCRAM_USERS=admin=" + suite.adminPW,
		"KAFKA_SUPER_USERS=User:admin",
	}
	t0 = time.Now()
	if err := kafkaSh(env, "start", "--nodes", "1"); err != nil {
		_ = kafkaSh(nil, "stop")
		suite.skip = fmt.Sprintf("the secured broker did not start (test/kafka/kafka.sh; is the Kafka jar cache in $ORDO_CACHE_DIR?): %v", err)
		return err
	}
	fmt.Printf("security: secured broker up in %.1fs\n", time.Since(t0).Seconds())

	// The schema registry, over TLS (the test CA) with basic auth: the
	// project's own registry (srfake, as in `ordo dev`), behind httptest.
	suite.regAuth = [2]string{"registry-user", "reg-" + randHex(8)}
	suite.registry = srfake.New(srfake.WithAuth(basicAuth(suite.regAuth[0], suite.regAuth[1])))
	url, err := serveTLS(suite.registry.Handler())
	if err != nil {
		return err
	}
	suite.regURL = url
	return nil
}

// kafkaSh runs test/kafka/kafka.sh on the suite's run dir.
func kafkaSh(env []string, args ...string) error {
	logPath := filepath.Join(suite.dir, "kafka.sh.log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(filepath.Join(repoRoot, "test", "kafka", "kafka.sh"), args...)
	cmd.Env = append(os.Environ(), "KAFKA_RUN_DIR="+suite.runDir)
	if os.Getenv("ORDO_CACHE_DIR") == "" {
		if home, err := os.UserHomeDir(); err == nil {
			cmd.Env = append(cmd.Env, "ORDO_CACHE_DIR="+filepath.Join(home, ".cache", "ordo"))
		}
	}
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kafka.sh %v: %v (log %s)", args, err, logPath)
	}
	return nil
}

// requireBroker skips (printing why) or, with REQUIRE_REAL_KAFKA=1, fails
// when the secured broker is not there.
func requireBroker(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			suite.keep = true
		}
	})
	if suite.skip != "" {
		if truthy(os.Getenv("REQUIRE_REAL_KAFKA")) {
			t.Fatalf("%s, and REQUIRE_REAL_KAFKA=1", suite.skip)
		}
		fmt.Printf("security: SKIP %s: %s\n", t.Name(), suite.skip)
		t.Skip(suite.skip)
	}
	if suite.setupErr != nil {
		t.Fatalf("security suite setup failed: %v", suite.setupErr)
	}
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func basicAuth(user, pass string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
}

// serveTLS serves h over TLS with the suite's server certificate on a
// free 127.0.0.1 port until the process exits.
func serveTLS(h http.Handler) (string, error) {
	srv, err := newTLSServer(h, "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	return srv.URL, nil
}

// newTLSServer starts an httptest TLS server on addr with the suite's
// server certificate (so clients verify it against the test CA).
func newTLSServer(h http.Handler, addr string) (*httptest.Server, error) {
	pair, err := tls.LoadX509KeyPair(suite.pki.serverCert, suite.pki.serverKey)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	return srv, nil
}

// clientTLS is the TLS config of the test's own Kafka clients: the test CA
// and the client certificate (the listener requires mTLS).
func clientTLS(t testing.TB) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(suite.pki.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	pair, err := tls.LoadX509KeyPair(suite.pki.clientCert, suite.pki.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
}

// adminClient is a client authenticated as the super user User:admin over
// SASL_SSL, closed when the test ends.
func adminClient(t testing.TB, extra ...kgo.Opt) *kgo.Client {
	t.Helper()
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(suite.secure),
		kgo.DialTLSConfig(clientTLS(t)),
		kgo.SASL(scram.Auth{User: "admin", Pass: suite.adminPW}.AsSha512Mechanism()),
	}, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// createUser makes a SCRAM-SHA-512 user through the admin API
// (AlterUserSCRAMs), the other way to create one besides format time.
func createUser(t testing.TB, adm *kadm.Client, name, password string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := adm.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: name, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: password}})
	if err != nil {
		t.Fatalf("create SCRAM user %s: %v", name, err)
	}
	if err := res.Error(); err != nil {
		t.Fatalf("create SCRAM user %s: %v", name, err)
	}
	// The credential reaches the broker's SCRAM cache through the metadata
	// log: wait until the user can authenticate.
	deadline := time.Now().Add(20 * time.Second)
	for {
		cl, err := kgo.NewClient(kgo.SeedBrokers(suite.secure), kgo.DialTLSConfig(clientTLS(t)),
			kgo.SASL(scram.Auth{User: name, Pass: password}.AsSha512Mechanism()), kgo.RequestRetries(0))
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		err = cl.Ping(pctx)
		pcancel()
		cl.Close()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("SCRAM user %s cannot authenticate 20s after creation: %v", name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
