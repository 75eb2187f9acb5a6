// Package testkit holds broker-agnostic helpers for ordo's Kafka tests.
//
// Tests call Brokers(t) and get seed addresses of some Kafka-compatible
// cluster. Which one is chosen, in order:
//
//  1. KAFKA_BROKERS (comma-separated host:port list) is set: that cluster,
//     e.g. the one started by test/kafka/kafka.sh. It must answer a metadata
//     request within a few seconds or the test fails (it never silently falls
//     back to something else).
//  2. A Docker engine answers (DOCKER_HOST, or /var/run/docker.sock): one
//     apache/kafka container (KRaft, single node) per test binary, started
//     through testcontainers-go. Set ORDO_TESTKIT_DOCKER=0 to skip this step.
//  3. Otherwise an in-process kfake cluster per test (franz-go's fake Kafka).
//
// With REQUIRE_REAL_KAFKA=1 step 3 is an error: CI sets it so a missing broker
// fails the run instead of quietly testing against kfake.
//
// Topic and group names should come from UniqueName so tests can share one
// broker.
package testkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Broker kinds returned by Kind.
const (
	KindKafka  = "kafka"  // external cluster from KAFKA_BROKERS
	KindDocker = "docker" // apache/kafka container via testcontainers-go
	KindKfake  = "kfake"  // in-process github.com/twmb/franz-go/pkg/kfake
)

// Environment variables read by this package.
const (
	EnvBrokers     = "KAFKA_BROKERS"
	EnvRequireReal = "REQUIRE_REAL_KAFKA"
	EnvDocker      = "ORDO_TESTKIT_DOCKER" // "0"/"false": never use Docker
)

// KafkaImage is the image used when a Docker engine is available.
const KafkaImage = "apache/kafka:4.1.1"

// reachTimeout bounds the metadata call that checks KAFKA_BROKERS.
const reachTimeout = 10 * time.Second

// choice is the outcome of the selection logic.
type choice struct {
	kind    string
	brokers []string // only for KindKafka
}

// choose is the pure selection logic behind Brokers and Kind.
func choose(env map[string]string, dockerAvailable bool) (choice, error) {
	if raw, ok := env[EnvBrokers]; ok && strings.TrimSpace(raw) != "" {
		brokers := splitBrokers(raw)
		if len(brokers) == 0 {
			return choice{}, fmt.Errorf("%s=%q holds no broker address", EnvBrokers, raw)
		}
		for _, b := range brokers {
			if _, _, err := net.SplitHostPort(b); err != nil {
				return choice{}, fmt.Errorf("%s=%q: %q is not host:port: %v", EnvBrokers, raw, b, err)
			}
		}
		return choice{kind: KindKafka, brokers: brokers}, nil
	}
	if dockerAvailable {
		return choice{kind: KindDocker}, nil
	}
	if truthy(env[EnvRequireReal]) {
		return choice{}, fmt.Errorf("%s=%s but %s is unset and no Docker engine is reachable: "+
			"start a broker with `test/kafka/kafka.sh start` and export %s=127.0.0.1:9092",
			EnvRequireReal, env[EnvRequireReal], EnvBrokers, EnvBrokers)
	}
	return choice{kind: KindKfake}, nil
}

func splitBrokers(raw string) []string {
	var out []string
	for _, b := range strings.Split(raw, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "yes", "on":
		return true
	}
	return false
}

func falsy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "0", "false", "no", "off":
		return true
	}
	return false
}

// environ returns the variables this package reads.
func environ() map[string]string {
	env := map[string]string{}
	for _, k := range []string{EnvBrokers, EnvRequireReal, EnvDocker, "DOCKER_HOST"} {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	return env
}

// dockerTarget says where a Docker engine would be: network "unix" or "tcp"
// and an address; ok is false when there is nothing to probe.
func dockerTarget(env map[string]string, sockExists bool) (network, addr string, ok bool) {
	if falsy(env[EnvDocker]) {
		return "", "", false
	}
	if h := strings.TrimSpace(env["DOCKER_HOST"]); h != "" {
		switch {
		case strings.HasPrefix(h, "unix://"):
			return "unix", strings.TrimPrefix(h, "unix://"), true
		case strings.HasPrefix(h, "tcp://"):
			return "tcp", strings.TrimSuffix(strings.TrimPrefix(h, "tcp://"), "/"), true
		default: // ssh://, npipe:// ...: let testcontainers try it
			return "other", h, true
		}
	}
	if sockExists {
		return "unix", "/var/run/docker.sock", true
	}
	return "", "", false
}

var (
	dockerOnce sync.Once
	dockerOK   bool
)

// dockerAvailable reports (once per process) whether a Docker engine answers
// GET /_ping within two seconds.
func dockerAvailable() bool {
	dockerOnce.Do(func() {
		_, err := os.Stat("/var/run/docker.sock")
		network, addr, ok := dockerTarget(environ(), err == nil)
		if !ok {
			return
		}
		if network == "other" {
			dockerOK = true
			return
		}
		tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 2 * time.Second}
		resp, err := hc.Get("http://docker/_ping")
		if err != nil {
			return
		}
		resp.Body.Close()
		dockerOK = resp.StatusCode == http.StatusOK
	})
	return dockerOK
}

func decide(t testing.TB) choice {
	t.Helper()
	env := environ()
	// probe Docker only when it could matter
	docker := false
	if strings.TrimSpace(env[EnvBrokers]) == "" {
		docker = dockerAvailable()
	}
	c, err := choose(env, docker)
	if err != nil {
		t.Fatal("testkit: " + err.Error())
	}
	return c
}

// Kind reports which kind of broker Brokers uses in this environment:
// KindKafka, KindDocker or KindKfake. It starts nothing.
func Kind(t testing.TB) string {
	t.Helper()
	return decide(t).kind
}

// reachable caches, per KAFKA_BROKERS value, the outcome of the first check,
// so a dead cluster fails every test at once instead of after reachTimeout each.
var reachable sync.Map // string -> reachResult

type reachResult struct{ err error }

// Brokers returns seed broker addresses for the test, starting a broker if
// needed (see the package doc for the order).
func Brokers(t testing.TB) []string {
	t.Helper()
	c := decide(t)
	switch c.kind {
	case KindKafka:
		key := strings.Join(c.brokers, ",")
		v, checked := reachable.Load(key)
		if !checked {
			err := checkReachable(c.brokers, reachTimeout)
			v, _ = reachable.LoadOrStore(key, reachResult{err})
			if err == nil {
				t.Logf("testkit: using real Kafka from %s=%s", EnvBrokers, key)
			}
		}
		if err := v.(reachResult).err; err != nil {
			t.Fatalf("testkit: %s=%s is set but the cluster does not answer: %v "+
				"(is it running? test/kafka/kafka.sh status)", EnvBrokers, key, err)
		}
		return c.brokers
	case KindDocker:
		brokers, err := dockerBrokers(t)
		if err != nil {
			t.Fatalf("testkit: starting %s with testcontainers: %v", KafkaImage, err)
		}
		t.Logf("testkit: using Docker container %s at %s", KafkaImage, strings.Join(brokers, ","))
		return brokers
	default:
		return kfakeBrokers(t)
	}
}

// checkReachable asks the cluster for its metadata, retrying (a refused
// connection fails a kgo request at once) until timeout.
func checkReachable(brokers []string, timeout time.Duration) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RetryTimeout(timeout))
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	adm := kadm.NewClient(cl)
	for {
		bs, err := adm.ListBrokers(ctx)
		if err == nil && len(bs) == 0 {
			err = errors.New("metadata lists no brokers")
		}
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no metadata within %v: %w", timeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// kfakeBrokers starts an in-process kfake cluster configured like
// test/kafka/kafka.sh's broker: 3 partitions by default, no auto-creation.
func kfakeBrokers(t testing.TB) []string {
	t.Helper()
	c, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.DefaultNumPartitions(3),
		kfake.ClusterID("ordo-testkit"),
	)
	if err != nil {
		t.Fatalf("testkit: kfake.NewCluster: %v", err)
	}
	t.Cleanup(c.Close)
	addrs := c.ListenAddrs()
	t.Logf("testkit: using in-process kfake at %s (set %s for a real broker)", strings.Join(addrs, ","), EnvBrokers)
	return addrs
}
