package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash tests run the real binary as child processes: a broker and
// ingesters, killed with SIGKILL like a crashed or OOM-killed pod.

// crashBinary builds this package once into a temporary directory. The
// binary is built without -race even under `go test -race`: the children
// must be fast enough for the kills to land mid-flush.
func crashBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("crash tests build the binary and run for a minute")
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	start := time.Now()
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built %s in %s", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// child is one run of a subprocess; its stdout and stderr go to a file.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed once the process is reaped
	state   *os.ProcessState
	waitErr error
}

// alive reports whether the process has not exited yet.
func (c *child) alive() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// stop sends sig and waits up to timeout for the exit. It returns the exit
// code, or -1 if a signal ended the process.
func (c *child) stop(sig syscall.Signal, timeout time.Duration) (int, error) {
	if c.alive() {
		if err := c.cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return 0, fmt.Errorf("signal %s %v: %w", c.name, sig, err)
		}
	}
	select {
	case <-c.exited:
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s did not exit within %s of %v", c.name, timeout, sig)
	}
	if c.state == nil {
		return 0, fmt.Errorf("%s: %w", c.name, c.waitErr)
	}
	return c.state.ExitCode(), nil
}

// children tracks every subprocess of a test: all are killed when the test
// ends, and the tails of their logs are printed if it failed.
type children struct {
	t   *testing.T
	dir string

	mu  sync.Mutex
	all []*child
}

func newChildren(t *testing.T, dir string) *children {
	cs := &children{t: t, dir: dir}
	t.Cleanup(cs.cleanup)
	return cs
}

func (cs *children) cleanup() {
	cs.mu.Lock()
	all := append([]*child(nil), cs.all...)
	cs.mu.Unlock()
	for _, c := range all {
		if c.alive() {
			_ = c.cmd.Process.Kill()
			<-c.exited
		}
	}
	if cs.t.Failed() {
		cs.printTails(60)
	}
	if keep := os.Getenv("SLUICE_CRASH_LOGS"); keep != "" {
		cs.keepLogs(filepath.Join(keep, strings.ReplaceAll(cs.t.Name(), "/", "_")))
	}
}

// keepLogs copies the children's logs to dir (SLUICE_CRASH_LOGS=<dir>), to
// study a run that passed.
func (cs *children) keepLogs(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		cs.t.Errorf("keep logs: %v", err)
		return
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, c := range cs.all {
		data, err := os.ReadFile(c.logPath)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, filepath.Base(c.logPath)), data, 0o644)
		}
		if err != nil {
			cs.t.Errorf("keep logs: %v", err)
		}
	}
	cs.t.Logf("child logs kept in %s", dir)
}

// printTails logs the end of every child's log, the broker's and the
// latest ingesters' first.
func (cs *children) printTails(lines int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for i := len(cs.all) - 1; i >= 0 && i >= len(cs.all)-4; i-- {
		c := cs.all[i]
		cs.t.Logf("---- last %d lines of %s (%s) ----\n%s", lines, c.name, c.logPath, tail(c.logPath, lines))
	}
	for _, c := range cs.all {
		if strings.HasPrefix(c.name, "broker") {
			cs.t.Logf("---- last %d lines of %s (%s) ----\n%s", lines, c.name, c.logPath, tail(c.logPath, lines))
		}
	}
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return string(bytes.Join(ls, []byte("\n")))
}

// start runs bin with args; name is unique per test and names the log.
// With firstLine, the child's first stdout line is returned (the broker
// prints its address) and the rest of stdout goes to the log.
func (cs *children) start(name, bin string, firstLine bool, args ...string) (*child, string, error) {
	logPath := filepath.Join(cs.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	c := &child{name: name, cmd: exec.Command(bin, args...), logPath: logPath, exited: make(chan struct{})}
	c.cmd.Stderr = f
	var stdout io.ReadCloser
	if firstLine {
		if stdout, err = c.cmd.StdoutPipe(); err != nil {
			f.Close()
			return nil, "", err
		}
	} else {
		c.cmd.Stdout = f
	}
	if err := c.cmd.Start(); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	cs.mu.Lock()
	cs.all = append(cs.all, c)
	cs.mu.Unlock()

	lines := make(chan string, 1)
	go func() {
		if stdout != nil {
			r := bufio.NewReader(stdout)
			line, _ := r.ReadString('\n')
			lines <- strings.TrimSpace(line)
			_, _ = io.Copy(f, r) // the pipe must be drained before Wait
		}
		c.waitErr = c.cmd.Wait()
		c.state = c.cmd.ProcessState
		f.Close()
		close(c.exited)
	}()
	if !firstLine {
		return c, "", nil
	}
	select {
	case line := <-lines:
		if line == "" {
			<-c.exited
			return nil, "", fmt.Errorf("%s exited before printing its address: %v\n%s", name, c.waitErr, tail(logPath, 20))
		}
		return c, line, nil
	case <-time.After(30 * time.Second):
		return nil, "", fmt.Errorf("%s printed nothing within 30s\n%s", name, tail(logPath, 20))
	}
}
