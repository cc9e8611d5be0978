package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/objstore"
)

// IngestConfig describes one drain benchmark.
type IngestConfig struct {
	Binary     string // the sluice binary to run as broker and ingester
	WorkDir    string // broker log, object store and config go here
	Events     int64
	Partitions int32
	Users      int     // key cardinality
	ZipfS      float64 // key skew
	Seed       int64
	// Ingest holds the sluice.yaml `ingest:` section for the ingester.
	Ingest string
	// Progress is called about once a second with a line to show.
	Progress func(phase string, done, total int64)
	Logger   *slog.Logger
	// IdleWindow, when set, keeps the ingester running this long after the
	// drain to measure its CPU use with nothing to read (IdleCPU).
	IdleWindow time.Duration
	// CPUProfile, when set, is where the ingester writes a CPU profile of
	// its whole run (its --cpuprofile flag).
	CPUProfile string
}

// IngestResult is what one run measured.
type IngestResult struct {
	Events       int64
	InputBytes   int64
	Produce      time.Duration
	Drain        time.Duration // ingester start to the last record committed
	CPU          time.Duration // user+system of the ingester process, whole life
	PeakRSSBytes int64
	// SystemCPU is the kernel's part of CPU, and PageFaults the ingester's
	// minor page faults: on a virtual machine whose faults are slow (11-14
	// µs each here on 2026-12-02, about 3 s per GiB touched) first touching
	// the heap is a quarter of the ingester's CPU, and these two show it.
	SystemCPU   time.Duration
	PageFaults  int64
	Objects     int
	OutputBytes int64
	// BrokerCPU is the broker process's CPU time during the drain, and
	// MachineBusy the share of all cores busy then (1 = every core, all the
	// time): what the ingester competes with on a shared machine.
	BrokerCPU   time.Duration
	MachineBusy float64
	// IdleCPU is the ingester's CPU time over IdleWindow after the drain,
	// with nothing left to read: its fixed cost per second (polling,
	// leases, metrics), which a slow source makes part of CPU-s per
	// million. Zero when IdleWindow was zero.
	IdleCPU    time.Duration
	IdleWindow time.Duration
}

// IdleCPUPerSecond is the ingester's CPU use with nothing to read, in
// CPU-seconds per second.
func (r IngestResult) IdleCPUPerSecond() float64 {
	if r.IdleWindow <= 0 {
		return 0
	}
	return r.IdleCPU.Seconds() / r.IdleWindow.Seconds()
}

// NetCPUSecondsPerMillion estimates CPU-s per million events without the
// idle cost over the drain: what the events themselves cost. An estimate
// (the idle cost while busy is not exactly the idle cost after).
func (r IngestResult) NetCPUSecondsPerMillion() float64 {
	net := r.CPU.Seconds() - r.IdleCPUPerSecond()*r.Drain.Seconds()
	return max(net, 0) / (float64(r.Events) / 1e6)
}

func (r IngestResult) EventsPerSecond() float64 { return float64(r.Events) / r.Drain.Seconds() }
func (r IngestResult) MBPerSecond() float64     { return float64(r.InputBytes) / 1e6 / r.Drain.Seconds() }
func (r IngestResult) CPUSecondsPerMillion() float64 {
	return r.CPU.Seconds() / (float64(r.Events) / 1e6)
}

// RunIngest produces cfg.Events into a fresh broker process, then starts an
// ingester process and waits until the commit log holds every event.
func RunIngest(ctx context.Context, cfg IngestConfig) (IngestResult, error) {
	var res IngestResult
	if cfg.Progress == nil {
		cfg.Progress = func(string, int64, int64) {}
	}
	broker, addr, err := StartBroker(ctx, cfg.Binary, filepath.Join(cfg.WorkDir, "kafka"), "events", cfg.Partitions, filepath.Join(cfg.WorkDir, "broker.log"))
	if err != nil {
		return res, err
	}
	defer stopProcess(broker)

	start := time.Now()
	cfg.Progress("produce", 0, cfg.Events) // the phase's clock starts here, not at its first report
	n, bytes, err := produce(ctx, addr, cfg)
	if err != nil {
		return res, err
	}
	res.Events, res.InputBytes, res.Produce = n, bytes, time.Since(start)

	lakeDir := filepath.Join(cfg.WorkDir, "lake")
	config := fmt.Sprintf("kafka:\n  brokers: [%q]\n  group: bench\nstore:\n  local_dir: %q\nhttp:\n  addr: 127.0.0.1:0\ningest:\n%s\n",
		addr, lakeDir, indent(cfg.Ingest))
	return drain(ctx, cfg, res, config, broker.Process.Pid)
}

// drain writes config as the ingester's sluice.yaml, starts the ingester
// and waits until the commit log holds res.Events events. serverPid is the
// process serving the source (broker or stream server; 0: unknown), whose
// CPU time during the drain is reported next to the ingester's.
func drain(ctx context.Context, cfg IngestConfig, res IngestResult, config string, serverPid int) (IngestResult, error) {
	lakeDir := filepath.Join(cfg.WorkDir, "lake")
	configPath := filepath.Join(cfg.WorkDir, "sluice.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o644); err != nil {
		return res, err
	}
	if err := os.MkdirAll(lakeDir, 0o755); err != nil {
		return res, err
	}
	bucket, err := objstore.NewLocal(lakeDir)
	if err != nil {
		return res, err
	}
	ingestLog, err := os.Create(filepath.Join(cfg.WorkDir, "ingest.log"))
	if err != nil {
		return res, err
	}
	defer ingestLog.Close()
	args := []string{"ingest", "--config", configPath}
	if cfg.CPUProfile != "" {
		args = append(args, "--cpuprofile", cfg.CPUProfile)
	}
	ing := exec.Command(cfg.Binary, args...)
	ing.Stdout, ing.Stderr = ingestLog, ingestLog
	brokerCPU0 := processCPU(serverPid)
	busy0, total0 := machineCPU()
	start := time.Now()
	cfg.Progress("ingest", 0, res.Events)
	if err := ing.Start(); err != nil {
		return res, fmt.Errorf("start ingester: %w", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- ing.Wait() }()

	committed, err := waitCommitted(ctx, cfg, lake.NewCommitLog(bucket), &res, ing, exited, ingestLog.Name())
	if err != nil {
		return res, err
	}
	res.Drain = time.Since(start)
	if serverPid > 0 {
		res.BrokerCPU = processCPU(serverPid) - brokerCPU0
	}
	if busy1, total1 := machineCPU(); total1 > total0 {
		res.MachineBusy = float64(busy1-busy0) / float64(total1-total0)
	}
	cfg.Progress("ingest", committed, res.Events)

	if cfg.IdleWindow > 0 {
		cpu0, t0 := processCPU(ing.Process.Pid), time.Now()
		select {
		case err := <-exited:
			return res, fmt.Errorf("ingester exited after the drain (%v); see %s", err, ingestLog.Name())
		case <-ctx.Done():
			_ = ing.Process.Kill()
			return res, ctx.Err()
		case <-time.After(cfg.IdleWindow):
		}
		res.IdleCPU, res.IdleWindow = processCPU(ing.Process.Pid)-cpu0, time.Since(t0)
	}

	if err := stopIngester(ing, exited); err != nil {
		return res, err
	}
	if ru, ok := ing.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		res.PeakRSSBytes = ru.Maxrss * 1024 // Linux reports KiB
		res.SystemCPU, res.PageFaults = time.Duration(ru.Stime.Nano()), ru.Minflt
	}
	return res, nil
}

// waitCommitted polls the commit log until it holds res.Events events,
// keeping res's object and byte counts up to date, and returns how many it
// holds. It fails when the ingester exits first (its log is logName).
func waitCommitted(ctx context.Context, cfg IngestConfig, commits *lake.CommitLog, res *IngestResult, ing *exec.Cmd, exited <-chan error, logName string) (int64, error) {
	var committed int64
	lastProgress := time.Now()
	for committed < res.Events {
		select {
		case err := <-exited:
			return committed, fmt.Errorf("ingester exited early (%v); see %s", err, logName)
		case <-ctx.Done():
			_ = ing.Process.Kill()
			return committed, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		recs, err := commits.Records(ctx, "events")
		if err != nil {
			return committed, err
		}
		committed, res.Objects, res.OutputBytes = 0, 0, 0
		for _, r := range recs {
			committed += r.Records + r.DeadLetters
			for _, o := range r.Objects {
				res.Objects++
				res.OutputBytes += o.Size
			}
		}
		if time.Since(lastProgress) > time.Second {
			cfg.Progress("ingest", committed, res.Events)
			lastProgress = time.Now()
		}
	}
	return committed, nil
}

// stopIngester stops it with SIGTERM, and kills it after 60 seconds.
func stopIngester(ing *exec.Cmd, exited <-chan error) error {
	_ = ing.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return nil
	case <-time.After(60 * time.Second):
		_ = ing.Process.Kill()
		<-exited
		return errors.New("ingester did not stop within 60s of SIGTERM")
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := range lines {
		lines[i] = "  " + strings.TrimSpace(lines[i])
	}
	return strings.Join(lines, "\n")
}

func produce(ctx context.Context, addr string, cfg IngestConfig) (int64, int64, error) {
	g, err := gen.New(gen.Config{Seed: cfg.Seed, Users: cfg.Users, ZipfS: cfg.ZipfS, Start: time.Now().UTC().Add(-time.Hour), EventsPerSecond: 1000})
	if err != nil {
		return 0, 0, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ProducerLinger(10*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(100_000))
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	p, err := gen.NewProducer(cl, g, gen.ProducerConfig{
		Topic: "events", Events: cfg.Events, MaxInFlight: 50_000,
		Progress: func(s gen.ProducerStats) { cfg.Progress("produce", s.Acked, cfg.Events) },
	})
	if err != nil {
		return 0, 0, err
	}
	st, err := p.Run(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("produce: %w", err)
	}
	return st.Acked, st.AckedBytes, nil
}

// StartBroker runs `sluice broker` as a child process on a free loopback
// port and returns it with the address it printed.
func StartBroker(ctx context.Context, binary, dataDir, topic string, partitions int32, logPath string) (*exec.Cmd, string, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(binary, "broker", "--addr", "127.0.0.1:0", "--data-dir", dataDir, "--topic", fmt.Sprintf("%s:%d", topic, partitions))
	cmd.Stderr = logFile
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start broker: %w", err)
	}
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			lines <- strings.TrimSpace(sc.Text())
		}
		close(lines)
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case addr, ok := <-lines:
		if !ok || addr == "" {
			stopProcess(cmd)
			return nil, "", fmt.Errorf("broker printed no address; see %s", logPath)
		}
		return cmd, addr, nil
	case <-time.After(30 * time.Second):
		stopProcess(cmd)
		return nil, "", errors.New("broker did not start within 30s")
	case <-ctx.Done():
		stopProcess(cmd)
		return nil, "", ctx.Err()
	}
}

func stopProcess(cmd *exec.Cmd) {
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// processCPU reads a live process's user+system time from /proc (Linux).
func processCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	var utime, stime int64
	fmt.Sscan(f[11], &utime)
	fmt.Sscan(f[12], &stime)
	return time.Duration(utime+stime) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// machineCPU returns busy and total jiffies of all cores from /proc/stat.
func machineCPU() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	for i, v := range f[1:] {
		var n int64
		fmt.Sscan(v, &n)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}
