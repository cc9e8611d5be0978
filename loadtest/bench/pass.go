package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// The aggregation benchmark of the path a user runs: raw objects committed
// in a store (a local directory or S3), then the real `sluice aggregate
// --once` process over them, timed and measured by the kernel (wall time,
// user+system CPU, peak RSS) as any other process would be. The in-memory
// fold (aggtest.BenchAggregate) is the micro-benchmark beside it.

// LakeConfig describes the lake a pass benchmark prepares.
type LakeConfig struct {
	AggregateConfig
	// Dir holds the config files, and the stores when S3 is nil.
	Dir string
	// S3, if set, holds the raw objects and the summaries, under Prefix/raw
	// and Prefix/summaries of its bucket.
	S3 *objstore.S3Config
}

// Lake is a prepared benchmark lake.
type Lake struct {
	Dir    string
	Config string // the sluice.yaml both `sluice aggregate` and `sluice files` read
	Events int64
	Window time.Duration
	S3     *objstore.S3Config
}

// storeYAML is one store of sluice.yaml, as the command line reads it.
type storeYAML struct {
	LocalDir string             `yaml:"local_dir,omitempty"`
	S3       *objstore.S3Config `yaml:"s3,omitempty"`
}

func (c LakeConfig) stores() (raw, summaries storeYAML) {
	if c.S3 == nil {
		return storeYAML{LocalDir: filepath.Join(c.Dir, "lake")}, storeYAML{LocalDir: filepath.Join(c.Dir, "summaries")}
	}
	r, s := *c.S3, *c.S3
	r.Prefix = strings.TrimSuffix(c.S3.Prefix, "/") + "/raw"
	s.Prefix = strings.TrimSuffix(c.S3.Prefix, "/") + "/summaries"
	r.Prefix, s.Prefix = strings.TrimPrefix(r.Prefix, "/"), strings.TrimPrefix(s.Prefix, "/")
	return storeYAML{S3: &r}, storeYAML{S3: &s}
}

func openStore(ctx context.Context, s storeYAML) (objstore.Bucket, error) {
	if s.S3 != nil {
		cfg := *s.S3
		cfg.CreateBucket = true
		return objstore.OpenS3(ctx, cfg, nil)
	}
	return objstore.NewLocal(s.LocalDir)
}

// PrepareLake writes cfg.Events events through the real ingest writer into
// the raw store, and the tables file (the sample table, with cfg.Window as
// its only window) and sluice.yaml for the pass.
func PrepareLake(ctx context.Context, cfg LakeConfig) (Lake, error) {
	if cfg.Window <= 0 {
		return Lake{}, errors.New("bench: window must be positive")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return Lake{}, err
	}
	tablesYAML := bytes.Replace(schema.SampleYAML, []byte("windows: [1m, 5m, 1h, 1d]"),
		fmt.Appendf(nil, "windows: [%s]", cfg.Window), 1)
	tables, err := schema.Parse(tablesYAML, "tables.yaml")
	if err != nil {
		return Lake{}, fmt.Errorf("bench tables (window %s): %w", cfg.Window, err)
	}
	if got := tables[0].Rollup.Windows; len(got) != 1 || got[0] != cfg.Window {
		return Lake{}, fmt.Errorf("bench tables: windows %v, want [%s] (did the sample table's windows change?)", got, cfg.Window)
	}
	if err := os.WriteFile(filepath.Join(cfg.Dir, "tables.yaml"), tablesYAML, 0o644); err != nil {
		return Lake{}, err
	}
	rawStore, sumStore := cfg.stores()
	raw, err := openStore(ctx, rawStore)
	if err != nil {
		return Lake{}, err
	}
	cfg.Table = tables[0]
	if err := prepareRawObjects(ctx, raw, cfg.AggregateConfig); err != nil {
		return Lake{}, fmt.Errorf("prepare the lake in %s: %w", cfg.Dir, err)
	}
	conf := map[string]any{
		"tables_file":   "tables.yaml",
		"store":         rawStore,
		"summary_store": sumStore,
		// Every partition is caught up: the watermark is the data's end.
		"aggregate": map[string]any{"compact_every": "-1s", "sweep": map[string]any{"every": "-1s"}},
	}
	data, err := yaml.Marshal(conf)
	if err != nil {
		return Lake{}, err
	}
	path := filepath.Join(cfg.Dir, "sluice.yaml")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return Lake{}, err
	}
	return Lake{Dir: cfg.Dir, Config: path, Events: cfg.Events, Window: cfg.Window, S3: cfg.S3}, nil
}

// ProcResult is what the kernel measured of one child process.
type ProcResult struct {
	Wall    time.Duration
	CPU     time.Duration // user + system
	PeakRSS int64         // bytes
	Output  string        // its standard output
}

// RowsPerSecond is rows over the wall time.
func (r ProcResult) RowsPerSecond(rows int64) float64 { return float64(rows) / r.Wall.Seconds() }

// CPUPerMillion is CPU-seconds per million rows.
func (r ProcResult) CPUPerMillion(rows int64) float64 { return r.CPU.Seconds() / (float64(rows) / 1e6) }

// RunProcess runs name with args and measures it.
func RunProcess(ctx context.Context, name string, args ...string) (ProcResult, error) {
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	start := time.Now()
	err := cmd.Run()
	res := ProcResult{Wall: time.Since(start), Output: out.String()}
	if err != nil {
		return res, fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, lastLines(errOut.String(), 20))
	}
	res.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.PeakRSS = ru.Maxrss * 1024 // Linux reports KiB
	}
	return res, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ClearSummaries deletes the lake's summaries (and the aggregators' leases
// kept with them), so the next pass computes every window again.
func ClearSummaries(ctx context.Context, l Lake) error {
	var cfg LakeConfig
	cfg.Dir, cfg.S3 = l.Dir, l.S3
	_, sums := cfg.stores()
	if sums.S3 == nil {
		return os.RemoveAll(sums.LocalDir)
	}
	b, err := openStore(ctx, sums)
	if err != nil {
		return err
	}
	var keys []string
	if err := b.Iter(ctx, "", func(a objstore.ObjectAttrs) error { keys = append(keys, a.Key); return nil }); err != nil {
		return err
	}
	for _, k := range keys {
		if err := b.Delete(ctx, k); err != nil && !objstore.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// RunPass clears the summaries and runs `binary aggregate --once` over the
// lake: the pass a scheduled aggregator makes, as one process.
func RunPass(ctx context.Context, binary string, l Lake) (ProcResult, error) {
	if err := ClearSummaries(ctx, l); err != nil {
		return ProcResult{}, fmt.Errorf("clear summaries: %w", err)
	}
	return RunProcess(ctx, binary, "aggregate", "--once", "--config", l.Config, "--log-level", "warn")
}

// CommittedRows counts the rows the lake's commit log holds: the rows a
// pass reads.
func CommittedRows(ctx context.Context, l Lake) (int64, error) {
	var cfg LakeConfig
	cfg.Dir, cfg.S3 = l.Dir, l.S3
	rawStore, _ := cfg.stores()
	raw, err := openStore(ctx, rawStore)
	if err != nil {
		return 0, err
	}
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, "events")
	if err != nil {
		return 0, err
	}
	var n int64
	for _, o := range live {
		n += o.Rows
	}
	return n, nil
}
