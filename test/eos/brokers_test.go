package eos

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ordo-dev/ordo/internal/testkit"
)

// kafkaCluster is a kafka.sh cluster the suite may restart.
type kafkaCluster struct {
	brokers []string
	runDir  string
}

// kafkaSh runs test/kafka/kafka.sh with KAFKA_RUN_DIR=runDir, logging to logPath.
func kafkaSh(runDir, logPath string, env []string, args ...string) error {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	fmt.Fprintf(f, "\n===== eos: kafka.sh %v at %s\n", args, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(filepath.Join(repoRoot, "test", "kafka", "kafka.sh"), args...)
	cmd.Env = append(os.Environ(), "KAFKA_RUN_DIR="+runDir)
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

// clusterEnv reads KAFKA_BROKERS from a kafka.sh run dir.
func clusterEnv(runDir string) ([]string, error) {
	f, err := os.Open(filepath.Join(runDir, "cluster.env"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "KAFKA_BROKERS="); ok {
			return strings.Split(v, ","), nil
		}
	}
	return nil, fmt.Errorf("%s/cluster.env has no KAFKA_BROKERS", runDir)
}

// ownedBroker returns a single-node cluster this test may restart: the one
// test/eos/run.sh started (EOS_KAFKA_RUN_DIR), or else a private one started
// now on free ports (so a shared broker, e.g. make test's, is never restarted
// under other packages' tests).
func ownedBroker(t *testing.T) kafkaCluster {
	t.Helper()
	if dir := os.Getenv("EOS_KAFKA_RUN_DIR"); dir != "" {
		bs, err := clusterEnv(dir)
		if err != nil {
			t.Fatalf("EOS_KAFKA_RUN_DIR=%s: %v", dir, err)
		}
		return kafkaCluster{brokers: bs, runDir: dir}
	}
	port, err := freePortPair()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(suite.dir, "kafka-private-")
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(suite.dir, filepath.Base(dir)+".log")
	t0 := time.Now()
	// retried: kafka.sh's random cluster id sometimes starts with '-', which
	// kafka-storage format rejects
	for attempt := 0; attempt < 3; attempt++ {
		if err = kafkaSh(dir, logPath, []string{"KAFKA_PORT=" + strconv.Itoa(port)}, "start", "--nodes", "1"); err == nil {
			break
		}
		_ = kafkaSh(dir, logPath, nil, "stop")
	}
	if err != nil {
		if truthy(os.Getenv("REQUIRE_REAL_KAFKA")) {
			t.Fatalf("starting a private broker to restart: %v", err)
		}
		skipf(t, "needs a broker it may restart: set EOS_KAFKA_RUN_DIR (test/eos/run.sh does) or let it start one with test/kafka/kafka.sh: %v", err)
	}
	t.Cleanup(func() { _ = kafkaSh(dir, logPath, nil, "stop") })
	t.Logf("started a private broker on 127.0.0.1:%d in %.1fs (run dir %s)", port, time.Since(t0).Seconds(), dir)
	return kafkaCluster{brokers: []string{"127.0.0.1:" + strconv.Itoa(port)}, runDir: dir}
}

// freePortPair finds P with P and P+1 free (kafka.sh: client, controller).
func freePortPair() (int, error) { return testkit.FreePortPair() }

// nodePid is the pid of kafka.sh node n in runDir.
func nodePid(runDir string, n int32) (int, error) {
	b, err := os.ReadFile(filepath.Join(runDir, fmt.Sprintf("node%d", n), "kafka.pid"))
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
