// Package storm proves that ordo's memory stays bounded in an event storm:
// a real `ordo run` process drains a backlog on real Kafka while its RSS is
// sampled from /proc. The CI size is STORM_EVENTS=200000 (default); the long
// mode is STORM_EVENTS=10000000 (see README.md in this folder).
package storm

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/ordo-dev/ordo/internal/testkit"
)

func TestBacklogDrainsWithBoundedMemory(t *testing.T) {
	if os.Getenv(testkit.EnvBrokers) == "" {
		if os.Getenv(testkit.EnvRequireReal) == "1" {
			t.Fatal("REQUIRE_REAL_KAFKA=1 but KAFKA_BROKERS is unset: the storm test needs a real broker")
		}
		t.Skip("storm test needs real Kafka (KAFKA_BROKERS); run make test")
	}
	events := 200000
	if v := os.Getenv("STORM_EVENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("STORM_EVENTS=%q: %v", v, err)
		}
		events = n
	}
	brokers := testkit.Brokers(t)
	root, _ := filepath.Abs(filepath.Join("..", ".."))
	dir := t.TempDir()
	bin := filepath.Join(dir, "ordo")
	build := exec.Command("go", "build", "-o", bin, "./cmd/ordo")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build ordo: %v\n%s", err, out)
	}

	// Unique topics and group, from the demo config.
	suffix := testkit.UniqueName(t, "")
	cfgText, err := os.ReadFile(filepath.Join(root, "examples/orders/router.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(cfgText)
	// The bound follows the config's soft memory limit, as the Kubernetes
	// manifests' pod limit does (deploy/k8s): 1.25× memory_limit_mib.
	m := regexp.MustCompile(`(?m)^\s*memory_limit_mib:\s*(\d+)`).FindStringSubmatch(text)
	if m == nil {
		t.Fatal("examples/orders/router.yaml sets no processing.memory_limit_mib: the storm test bounds RSS by it")
	}
	soft, _ := strconv.Atoi(m[1])
	// A short drain (the CI size) ends before the heap has grown into the
	// default limit's room, and flatness is only judged once it has; so
	// below 1M events ordo runs at 256 MiB (processing.memory_limit_mib, as
	// a smaller pod would set it), which 200k events do reach (peaks of
	// 279-285 MiB against the 320 MiB bound; at 192 MiB they came within
	// 5% of theirs). STORM_MEMORY_LIMIT_MIB sets it explicitly.
	if events < 1000000 {
		soft = 256
	}
	if v := os.Getenv("STORM_MEMORY_LIMIT_MIB"); v != "" {
		if soft, err = strconv.Atoi(v); err != nil || soft <= 0 {
			t.Fatalf("STORM_MEMORY_LIMIT_MIB=%q: want a positive number of MiB", v)
		}
	}
	t.Logf("soft memory limit %d MiB (processing.memory_limit_mib), RSS bound %d MiB", soft, soft*5/4)
	rssLimit := (int64(soft) << 20) * 5 / 4
	var inputs []string
	for _, topic := range []string{"checkout.orders.v1", "payments.v1", "warehouse.v1", "commands.reserve-inventory.v1",
		"commands.capture-payment.v1", "commands.ship-order.v1", "commands.cancel-order.v1", "commands.notify-customer.v1", "ordo.dead-letter.v1"} {
		text = strings.ReplaceAll(text, topic, topic+suffix)
		if !strings.HasPrefix(topic, "commands") && topic != "ordo.dead-letter.v1" {
			inputs = append(inputs, topic+suffix)
		}
	}
	cfgPath := filepath.Join(root, "examples/orders", "storm"+suffix+".yaml") // beside customer-tiers.csv
	if err := os.WriteFile(cfgPath, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(cfgPath) })
	for _, topic := range inputs {
		testkit.CreateTopics(t, brokers, 12, topic)
	}

	regAddr := freeAddr(t)
	// GOMEMLIMIT would win over the soft limit the bounds are built on.
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GOMEMLIMIT=") })
	env = append(env, "ORDO_KAFKA_BROKERS="+strings.Join(brokers, ","), "ORDO_REGISTRY_URL=http://"+regAddr,
		"ORDO_KAFKA_GROUP=storm"+suffix, "ORDO_ADMIN_LISTEN=", "ORDO_REPLICA_ID=storm",
		"ORDO_PROCESSING_MEMORY_LIMIT_MIB="+strconv.Itoa(soft))
	reg := start(t, dir, "registry", env, bin, "registry", "--addr", regAddr, "--data-dir", filepath.Join(dir, "reg"))
	defer stop(reg)
	waitPort(t, regAddr)

	// The backlog, published before ordo starts.
	t0 := time.Now()
	pub := exec.Command(bin, "demo", "--config", cfgPath, "--events", strconv.Itoa(events), "--rate", "0",
		"--topic", "checkout.orders.v1="+inputs[0], "--topic", "payments.v1="+inputs[1], "--topic", "warehouse.v1="+inputs[2])
	pub.Env = env
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("publish backlog: %v\n%s", err, out)
	}
	t.Logf("published %d events in %v", events, time.Since(t0).Round(time.Millisecond))

	ordo := start(t, dir, "ordo", env, bin, "run", "--config", cfgPath, "--create-topics")
	defer stop(ordo)

	adm := testkit.NewAdmin(t, brokers)
	var (
		maxRSS, firstHalfMax, secondHalfMax int64
		samples                             []int64
		lagAt                               []int64
		start                               = time.Now()
		deadline                            = start.Add(time.Duration(events/1000+120) * time.Second)
	)
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		<-tick.C
		rss := rssOf(t, ordo.Process.Pid)
		samples = append(samples, rss)
		maxRSS = max(maxRSS, rss)
		if i%4 == 0 {
			lag := lagOf(t, adm, "storm"+suffix, inputs)
			lagAt = append(lagAt, lag)
			if lag == 0 && i > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("backlog not drained by %v; lag samples %v", deadline.Sub(start), lagAt)
		}
	}
	took := time.Since(start)
	for i, s := range samples {
		if i < len(samples)/2 {
			firstHalfMax = max(firstHalfMax, s)
		} else {
			secondHalfMax = max(secondHalfMax, s)
		}
	}
	summary := fmt.Sprintf("storm: events=%d drained_in=%.1fs rate=%.0f/s peak_rss=%.1fMiB rss_first_half_max=%.1fMiB rss_second_half_max=%.1fMiB",
		events, took.Seconds(), float64(events)/took.Seconds(), mib(maxRSS), mib(firstHalfMax), mib(secondHalfMax))
	fmt.Println(summary)
	t.Log(summary)
	if maxRSS > rssLimit {
		t.Errorf("peak RSS %.1f MiB exceeds %d MiB", mib(maxRSS), rssLimit>>20)
	}
	// Flat: once the heap has the whole room the soft limit gives it (the
	// first half reached the limit), the second half may not grow past the
	// first by more than 25% (a leak or an unbounded buffer would). Below
	// the limit, RSS growing is the GC using that room (a short drain ends
	// before it is used up); the peak bound above still holds.
	switch softBytes := int64(soft) << 20; {
	case len(samples) < 8:
		t.Logf("flatness not checked: %d RSS samples (fewer than 8)", len(samples))
	case firstHalfMax < softBytes:
		t.Logf("flatness not checked: the first half's RSS (%.1f MiB) stayed below the soft limit (%d MiB), so the heap was still growing into its room; the peak bound (%d MiB) holds", mib(firstHalfMax), soft, rssLimit>>20)
	case float64(secondHalfMax) > 1.25*float64(firstHalfMax):
		t.Errorf("RSS grew while draining: first half max %.1f MiB, second half max %.1f MiB", mib(firstHalfMax), mib(secondHalfMax))
	}
	// Steady drain: over every 10 s window (5 samples 2 s apart) the lag
	// drops. Single samples may wobble: a partition whose transactional
	// offsets are pending answers RequireStable with an error for a moment.
	for i := 5; i < len(lagAt); i++ {
		if lagAt[i] > 0 && lagAt[i-5] >= 0 && lagAt[i] >= lagAt[i-5] {
			t.Errorf("lag did not drop over 10 s (samples %d..%d): %v", i-5, i, lagAt)
			break
		}
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func start(t *testing.T, dir, name string, env []string, bin string, args ...string) *exec.Cmd {
	t.Helper()
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("%s log tail:\n%s", name, b)
		}
	})
	return cmd
}

func stop(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func freeAddr(t *testing.T) string {
	addr, err := testkit.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func waitPort(t *testing.T, addr string) {
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s never listened", addr)
}

// rssOf reads VmRSS of pid in bytes.
func rssOf(t *testing.T, pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("ordo exited early: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// lagOf is end offsets minus stably committed offsets over the inputs.
func lagOf(t *testing.T, adm *kadm.Client, group string, topics []string) int64 {
	ctx, cancel := context.WithTimeout(kadm.RequireStable(context.Background()), 10*time.Second)
	defer cancel()
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Logf("end offsets: %v", err)
		return -1
	}
	committed, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		t.Logf("committed offsets: %v", err)
		return -1
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		at := int64(0)
		if ok && c.Err == nil && c.At > 0 {
			at = c.At
		}
		lag += o.Offset - at
	})
	return lag
}
