package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// clockTicks is USER_HZ (100 on every Linux we run on).
const clockTicks = 100

// procCPU returns the process's user+system CPU time (all threads).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	// comm may contain spaces: fields start after the last ')'.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// procHWM returns the peak resident set size (VmHWM) in bytes.
func procHWM(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			f := strings.Fields(l)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// contender is one system under test, run as its own OS process.
type contender struct {
	key   string // short id: passthrough, ordo, ordo-codec, watermill, kstreams
	label string // table label
	// cmd builds the process for a run with a fresh group.
	cmd func(group string, inputs []string) *exec.Cmd
	// orders > 0 (the saga): the run ends when the input is committed and
	// this many orders have finished (completed or cancelled) according to
	// ordo_process_events_total at the metrics URL.
	orders  int64
	metrics string
	// prepare (optional) runs before the process starts, with the run's
	// fresh group.
	prepare func(ctx context.Context, group string) error
}

type result struct {
	Contender  string
	Run        int
	Events     int64         // events in the measured window
	Window     time.Duration // first commit -> all committed
	Wall       time.Duration // process start -> all committed
	CPU        time.Duration // process CPU in the window
	RSS        int64         // VmHWM at the end
	Throughput float64       // events/s in the window
	CPUPerM    float64       // CPU seconds per million events
	DeadLetter int64         // records added to the dead-letter topic (sanity: 0)
	BrokerCPU  float64       // broker CPU seconds per million events in the window (0: unknown)
	// The saga only: orders that reached a terminal outcome in the window
	// (completed + cancelled), of which completed, and orders per second.
	Orders       int64   `json:",omitempty"`
	Completed    int64   `json:",omitempty"`
	OrdersPerSec float64 `json:",omitempty"`
	Txns         int64   `json:",omitempty"` // ordo_txn_commits_total at the end (both loops)
	Err          string
}

// startProc starts c's process with its output in logDir.
func startProc(c *exec.Cmd, logDir, name string) (*os.File, error) {
	lf, err := os.Create(filepath.Join(logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	c.Stdout, c.Stderr = lf, lf
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		lf.Close()
		return nil, err
	}
	return lf, nil
}

// stopProc sends SIGTERM to the process group and waits, then SIGKILLs it.
func stopProc(c *exec.Cmd, done <-chan error) {
	if c.Process == nil {
		return
	}
	_ = syscall.Kill(-c.Process.Pid, syscall.SIGTERM)
	select {
	case <-done:
		return
	case <-time.After(30 * time.Second):
	}
	logf("  %s did not exit after SIGTERM in 30s; SIGKILL", filepath.Base(c.Path))
	_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	<-done
}

// committed returns the group's committed offsets summed over topics
// (RequireStable: pending transactional commits are waited for).
func committed(ctx context.Context, adm *kadm.Client, group string, topics []string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := adm.FetchOffsetsForTopics(kadm.RequireStable(ctx), group, topics...)
	if err != nil {
		return 0, err
	}
	var sum int64
	for _, ps := range resp {
		for _, o := range ps {
			if o.Err == nil && o.At > 0 {
				sum += o.At
			}
		}
	}
	return sum, nil
}

// endOffsets sums the high watermarks of topics.
func endOffsets(ctx context.Context, adm *kadm.Client, topics ...string) (int64, error) {
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return 0, err
	}
	var sum int64
	ends.Each(func(o kadm.ListedOffset) { sum += o.Offset })
	return sum, ends.Error()
}

// measure runs contender c once over the preloaded input (total events)
// with a fresh consumer group.
func measure(ctx context.Context, adm *kadm.Client, c contender, run int, total int64, logDir string, timeout time.Duration, brokerPID int) result {
	res := result{Contender: c.key, Run: run}
	group := fmt.Sprintf("bench-%s-r%d-%d", c.key, run, time.Now().UnixNano()%1e9)
	dl0, _ := endOffsets(ctx, adm, deadLetterTopic)
	if c.prepare != nil {
		if err := c.prepare(ctx, group); err != nil {
			res.Err = fmt.Sprintf("prepare: %v", err)
			return res
		}
	}
	cmd := c.cmd(group, inputTopics)
	lf, err := startProc(cmd, logDir, fmt.Sprintf("%s-run%d", c.key, run))
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer lf.Close()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	defer stopProc(cmd, done)
	pid := cmd.Process.Pid
	t0 := time.Now()
	// Timeline of (seconds since start, committed, CPU seconds) for diagnosis.
	tl, err := os.Create(filepath.Join(logDir, fmt.Sprintf("%s-run%d.timeline", c.key, run)))
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer tl.Close()
	var (
		t1     time.Time
		c1     int64
		cpu1   time.Duration
		bcpu1  time.Duration
		exited bool
	)
	deadline := t0.Add(timeout)
	for {
		select {
		case err := <-done:
			exited = true
			done <- err
		case <-time.After(20 * time.Millisecond):
		}
		if exited {
			res.Err = fmt.Sprintf("exited early (see %s)", lf.Name())
			return res
		}
		n, err := committed(ctx, adm, group, inputTopics)
		now := time.Now()
		if err != nil {
			if !errors.Is(err, kerr.UnstableOffsetCommit) && !errors.Is(err, kerr.CoordinatorNotAvailable) && !errors.Is(err, kerr.CoordinatorLoadInProgress) {
				logf("  fetch offsets: %v", err)
			}
			continue
		}
		cpu, _ := procCPU(pid)
		fmt.Fprintf(tl, "%.3f %d %.2f\n", now.Sub(t0).Seconds(), n, cpu.Seconds())
		if t1.IsZero() && n > 0 {
			t1, c1, cpu1 = now, n, cpu
			if brokerPID > 0 {
				bcpu1, _ = procCPU(brokerPID)
			}
		}
		if n >= total && c.orders > 0 {
			// The forward loop is done; the stateful stage may still be
			// working through the process log.
			done, completed, txns, err := finishedOrders(ctx, c.metrics)
			if err != nil || done < c.orders {
				if now.After(deadline) || ctx.Err() != nil {
					res.Err = fmt.Sprintf("timeout after %s: input committed, %d/%d orders finished (metrics: %v)", timeout, done, c.orders, err)
					return res
				}
				continue
			}
			res.Orders, res.Completed, res.Txns = done, completed, txns
		}
		if n >= total {
			res.Events = total - c1
			res.Window = now.Sub(t1)
			res.Wall = now.Sub(t0)
			res.CPU = cpu - cpu1
			res.RSS = procHWM(pid)
			dl1, _ := endOffsets(ctx, adm, deadLetterTopic)
			res.DeadLetter = dl1 - dl0
			if res.Events > 0 && res.Window > 0 {
				res.Throughput = float64(res.Events) / res.Window.Seconds()
				res.CPUPerM = res.CPU.Seconds() / float64(res.Events) * 1e6
				res.OrdersPerSec = float64(res.Orders) / res.Window.Seconds()
				if brokerPID > 0 {
					if bcpu, err := procCPU(brokerPID); err == nil {
						res.BrokerCPU = (bcpu - bcpu1).Seconds() / float64(res.Events) * 1e6
					}
				}
			}
			return res
		}
		if now.After(deadline) || ctx.Err() != nil {
			res.Err = fmt.Sprintf("timeout after %s: %d/%d committed", timeout, n, total)
			return res
		}
	}
}

// finishedOrders reads ordo's /metrics and returns the orders that reached
// a terminal outcome in committed transactions (ordo_process_events_total
// with outcome completed or cancelled), of those the completed ones, and the
// transactions committed so far (ordo_txn_commits_total, both loops).
func finishedOrders(ctx context.Context, url string) (finished, completed, txns int64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	for _, l := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(l, "ordo_txn_commits_total ") {
			if v, perr := strconv.ParseFloat(strings.TrimPrefix(l, "ordo_txn_commits_total "), 64); perr == nil {
				txns = int64(v)
			}
		}
		if !strings.HasPrefix(l, "ordo_process_events_total{") {
			continue
		}
		f := strings.Fields(l)
		v, perr := strconv.ParseFloat(f[len(f)-1], 64)
		if perr != nil {
			continue
		}
		switch {
		case strings.Contains(l, `outcome="completed"`):
			finished += int64(v)
			completed += int64(v)
		case strings.Contains(l, `outcome="cancelled"`):
			finished += int64(v)
		}
	}
	return finished, completed, txns, nil
}

// brokerPID is the pid of the test/kafka/kafka.sh broker (node 1), 0 if
// unknown.
func brokerPID() int {
	b, err := os.ReadFile(filepath.Join(envStr("KAFKA_RUN_DIR", "/tmp/bench-kafka"), "node1", "kafka.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if _, err := procCPU(pid); err != nil {
		return 0
	}
	return pid
}
