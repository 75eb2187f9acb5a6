package eos

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is one OS process the suite started. Its stdout and stderr append to
// a log file.
type proc struct {
	name  string
	cmd   *exec.Cmd
	log   *os.File
	start time.Time
	// logPath and header: the process has started running its own code
	// once its log grows past header (see term).
	logPath string
	header  int64

	done    chan struct{}
	mu      sync.Mutex
	err     error
	stopped bool // SIGSTOPped
}

func startProc(name, logPath string, env []string, bin string, args ...string) (*proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(f, "\n===== eos: start %s at %s: %s %v\n", name, time.Now().Format(time.RFC3339Nano), bin, args)
	header, _ := f.Seek(0, io.SeekCurrent) // where the process's own output starts
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a Ctrl-C of `go test` must not reach replicas
	// mid-scenario; the suite stops them itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, logPath: logPath, header: header, start: time.Now(), done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		fmt.Fprintf(f, "===== eos: %s (pid %d) exited at %s: %v\n", name, cmd.Process.Pid, time.Now().Format(time.RFC3339Nano), errString(err))
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func errString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func (p *proc) waitErr() error {
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// exitCode is the exit status (-1 when killed by a signal or still running).
func (p *proc) exitCode() int {
	if p.alive() {
		return -1
	}
	err := p.waitErr()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

func (p *proc) signal(sig syscall.Signal) error {
	if !p.alive() {
		return fmt.Errorf("%s already exited", p.name)
	}
	return p.cmd.Process.Signal(sig)
}

// kill SIGKILLs the process and waits for it.
func (p *proc) kill() {
	if p.alive() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-p.done
}

// term sends SIGTERM and waits up to d; it reports whether the process
// exited in time and how long it took.
func (p *proc) term(d time.Duration) (exited bool, took time.Duration) {
	t0 := time.Now()
	p.waitStarted(5 * time.Second)
	if p.alive() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
		return true, time.Since(t0)
	case <-time.After(d):
		return false, time.Since(t0)
	}
}

// waitStarted waits, at most d, until the process has written its first
// log line. ordo installs its SIGTERM handler before it logs anything; a
// SIGTERM that arrives earlier (a replica restarted by the chaos loop just
// as the scenario stops everything) meets the default action and kills the
// process, which says nothing about ordo's shutdown.
func (p *proc) waitStarted(d time.Duration) {
	deadline := time.Now().Add(d)
	for p.alive() && time.Now().Before(deadline) {
		if fi, err := os.Stat(p.logPath); err == nil && fi.Size() > p.header {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop is term, then kill if it did not exit within d.
func (p *proc) stop(d time.Duration) {
	if p.stopped {
		_ = p.cmd.Process.Signal(syscall.SIGCONT)
	}
	if ok, _ := p.term(d); !ok {
		p.kill()
	}
}

// TestTermWaitsForTheProcessToStart: a SIGTERM sent right after the start
// must reach the process's own handler, not the default action (the
// process here installs its handler 300 ms in, then says so).
func TestTermWaitsForTheProcessToStart(t *testing.T) {
	log := filepath.Join(t.TempDir(), "p.log")
	p, err := startProc("p", log, os.Environ(), "/bin/sh", "-c", `sleep 0.3; trap 'exit 0' TERM; echo started; while :; do sleep 0.05; done`)
	if err != nil {
		t.Fatal(err)
	}
	exited, _ := p.term(10 * time.Second)
	if !exited {
		p.kill()
		t.Fatal("the process did not exit after SIGTERM")
	}
	if c := p.exitCode(); c != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0 (the handler's): SIGTERM arrived before the process started", c)
	}
}
