package observability

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// bindAttempts is how often a child process is started on fresh ports.
// freeAddr's port is free when picked, but go test runs packages in
// parallel, and another package's process can bind it before ours does.
const bindAttempts = 3

// startOnFreePorts runs start (which picks its ports with freeAddr and
// starts a process) until ready reports true. When the process exits
// first because a port was taken ("address already in use" in its log),
// it starts again on new ports; any other early exit fails the test at
// once with the log instead of waiting out the deadline.
func startOnFreePorts(t *testing.T, what string, d time.Duration, start func() (exited <-chan error, logPath string, ready func() bool)) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		exited, logPath, ready := start()
		deadline := time.Now().Add(d)
		for !ready() {
			select {
			case err := <-exited:
				b, _ := os.ReadFile(logPath)
				if strings.Contains(string(b), "address already in use") && attempt < bindAttempts {
					t.Logf("%s: a port was taken between picking and binding (attempt %d/%d); starting again on new ports", what, attempt, bindAttempts)
					goto next
				}
				t.Fatalf("%s exited before it was ready (%v); log:\n%s", what, err, tail(string(b), 3000))
			case <-time.After(200 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out after %v waiting for %s", d, what)
			}
		}
		return
	next:
	}
}

// startChild starts bin with args (env added to the test's), its output in
// a log file of the test's temp dir. At cleanup it is killed and waited
// for, and its log printed if the test failed. exited gets Wait's result.
func startChild(t *testing.T, name, bin string, args []string, env ...string) (exited <-chan error, logPath string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	logf, err := os.Create(filepath.Join(t.TempDir(), name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch, waited := make(chan error, 1), make(chan struct{})
	go func() { ch <- cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("%s log:\n%s", name, tail(string(b), 3000))
		}
	})
	return ch, logf.Name()
}

// TestStartOnFreePortsRetriesATakenPort: a process that exits with
// "address already in use" is started again; the second one is kept.
func TestStartOnFreePortsRetriesATakenPort(t *testing.T) {
	starts := 0
	startOnFreePorts(t, "fake server", 10*time.Second, func() (<-chan error, string, func() bool) {
		starts++
		script := `echo "listen tcp 127.0.0.1:1: bind: address already in use"; exit 1`
		if starts > 1 {
			script = `sleep 30`
		}
		exited, logPath := startChild(t, "fake", "sh", []string{"-c", script})
		up := time.Now().Add(300 * time.Millisecond)
		return exited, logPath, func() bool { return starts > 1 && time.Now().After(up) }
	})
	if starts != 2 {
		t.Fatalf("started %d times, want 2 (retry once after the taken port)", starts)
	}
}
