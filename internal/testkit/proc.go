package testkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SluiceBinary builds the sluice command (cmd/sluice of this module) into
// a temporary directory and returns its path, so that tests exercise the
// real process: flags, signals, exit codes, kill -9. Every caller builds
// with the same plain command, so they share the build cache; the binary is
// built without -race even under `go test -race`, because children must be
// fast enough for kills to land mid-flush. SLUICE_TEST_BIN names a binary
// built beforehand instead. Under -short the test is skipped.
func SluiceBinary(tb testing.TB) string {
	tb.Helper()
	if testing.Short() {
		tb.Skip("builds the sluice binary")
	}
	if bin := os.Getenv("SLUICE_TEST_BIN"); bin != "" {
		return bin
	}
	bin := filepath.Join(tb.TempDir(), "sluice")
	start := time.Now()
	cmd := exec.Command(goTool(), "build", "-o", bin, "./cmd/sluice")
	cmd.Dir = moduleRoot(tb)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build ./cmd/sluice: %v\n%s", err, out)
	}
	tb.Logf("built %s in %s", bin, time.Since(start).Round(time.Millisecond))
	return bin
}

// goTool is the go command of the toolchain running the test when the
// environment names it, so a test run under one toolchain builds with it.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if tool := filepath.Join(root, "bin", "go"); fileExists(tool) {
			return tool
		}
	}
	return "go"
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// moduleRoot is the directory of the main module: this file is in
// internal/testkit below it.
func moduleRoot(tb testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok || !filepath.IsAbs(file) {
		tb.Fatalf("cannot locate the module's source from %q", file)
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a child process that must be told where to listen.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestBinaryCmd runs the test binary itself again, running no test, with
// env added to the environment: the child's TestMain or init sees env and
// plays its part (a server, a worker) instead. Its stderr is the test's;
// it is killed when ctx is done.
func TestBinaryCmd(ctx context.Context, env ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	return cmd
}

// Proc is one run of a child process started by Procs; its stdout and
// stderr go to a log file.
type Proc struct {
	Name    string
	Cmd     *exec.Cmd
	LogPath string
	exited  chan struct{} // closed once the process is reaped
	state   *os.ProcessState
	waitErr error
}

// Alive reports whether the process has not exited yet.
func (p *Proc) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Exited is closed once the process has exited and been reaped.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// State is the exit state, once Exited is closed (nil if waiting failed;
// see WaitErr).
func (p *Proc) State() *os.ProcessState { return p.state }

// WaitErr is what waiting for the process returned, once Exited is closed.
func (p *Proc) WaitErr() error { return p.waitErr }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Stop sends sig and waits up to timeout for the exit. It returns the exit
// code, or -1 if a signal ended the process.
func (p *Proc) Stop(sig syscall.Signal, timeout time.Duration) (int, error) {
	if p.Alive() {
		if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return 0, fmt.Errorf("signal %s %v: %w", p.Name, sig, err)
		}
	}
	select {
	case <-p.exited:
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s did not exit within %s of %v", p.Name, timeout, sig)
	}
	if p.state == nil {
		return 0, fmt.Errorf("%s: %w", p.Name, p.waitErr)
	}
	return p.state.ExitCode(), nil
}

// Tail is the last n lines of the log.
func (p *Proc) Tail(n int) string { return Tail(p.LogPath, n) }

// LogLines returns the lines of the log that contain every one of subs.
func (p *Proc) LogLines(tb testing.TB, subs ...string) []string {
	tb.Helper()
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		tb.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(data), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// Tail is the last n lines of the file at path, or the error reading it.
func Tail(path string, n int) string {
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

// Procs tracks every child process of a test, their logs in one
// directory: all are killed when the test ends, and if it failed the tails
// of the latest children's logs and of every child named broker* are
// logged. SLUICE_CRASH_LOGS=<dir> keeps the logs of a run that passed.
type Procs struct {
	tb  testing.TB
	dir string

	mu  sync.Mutex
	all []*Proc
}

// NewProcs tracks children whose logs go to dir.
func NewProcs(tb testing.TB, dir string) *Procs {
	ps := &Procs{tb: tb, dir: dir}
	tb.Cleanup(ps.cleanup)
	return ps
}

// All is every child started so far, in order.
func (ps *Procs) All() []*Proc {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]*Proc(nil), ps.all...)
}

func (ps *Procs) cleanup() {
	for _, p := range ps.All() {
		if p.Alive() {
			_ = p.Cmd.Process.Kill()
			<-p.exited
		}
	}
	if ps.tb.Failed() {
		ps.PrintTails(60)
	}
	if keep := os.Getenv("SLUICE_CRASH_LOGS"); keep != "" {
		ps.keepLogs(filepath.Join(keep, strings.ReplaceAll(ps.tb.Name(), "/", "_")))
	}
}

// keepLogs copies the children's logs to dir, to study a run that passed.
func (ps *Procs) keepLogs(dir string) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		ps.tb.Errorf("keep logs: %v", err)
		return
	}
	for _, p := range ps.All() {
		data, err := os.ReadFile(p.LogPath)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, filepath.Base(p.LogPath)), data, 0o644)
		}
		if err != nil {
			ps.tb.Errorf("keep logs: %v", err)
		}
	}
	ps.tb.Logf("child logs kept in %s", dir)
}

// PrintTails logs the end of every child's log, the brokers' and the
// latest four children's.
func (ps *Procs) PrintTails(lines int) {
	all := ps.All()
	for i := len(all) - 1; i >= 0 && i >= len(all)-4; i-- {
		p := all[i]
		ps.tb.Logf("---- last %d lines of %s (%s) ----\n%s", lines, p.Name, p.LogPath, p.Tail(lines))
	}
	for _, p := range all {
		if strings.HasPrefix(p.Name, "broker") {
			ps.tb.Logf("---- last %d lines of %s (%s) ----\n%s", lines, p.Name, p.LogPath, p.Tail(lines))
		}
	}
}

// Start runs bin with args; name is unique per test and names the log.
// With firstLine, the child's first stdout line is returned (a broker
// prints its address) and the rest of stdout goes to the log.
func (ps *Procs) Start(name, bin string, firstLine bool, args ...string) (*Proc, string, error) {
	logPath := filepath.Join(ps.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	p := &Proc{Name: name, Cmd: exec.Command(bin, args...), LogPath: logPath, exited: make(chan struct{})}
	p.Cmd.Stderr = f
	var stdout io.ReadCloser
	if firstLine {
		if stdout, err = p.Cmd.StdoutPipe(); err != nil {
			f.Close()
			return nil, "", err
		}
	} else {
		p.Cmd.Stdout = f
	}
	if err := p.Cmd.Start(); err != nil {
		f.Close()
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()

	lines := make(chan string, 1)
	go func() {
		if stdout != nil {
			r := bufio.NewReader(stdout)
			line, _ := r.ReadString('\n')
			lines <- strings.TrimSpace(line)
			_, _ = io.Copy(f, r) // the pipe must be drained before Wait
		}
		p.waitErr = p.Cmd.Wait()
		p.state = p.Cmd.ProcessState
		f.Close()
		close(p.exited)
	}()
	if !firstLine {
		return p, "", nil
	}
	select {
	case line := <-lines:
		if line == "" {
			<-p.exited
			return nil, "", fmt.Errorf("%s exited before printing its address: %v\n%s", name, p.waitErr, Tail(logPath, 20))
		}
		return p, line, nil
	case <-time.After(30 * time.Second):
		return nil, "", fmt.Errorf("%s printed nothing within 30s\n%s", name, Tail(logPath, 20))
	}
}
