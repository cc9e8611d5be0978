package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

type sweepOptions struct {
	configPath string
	table      string
	dryRun     bool
	grace      time.Duration
}

func newSweepCmd(g *globals) *cobra.Command {
	var o sweepOptions
	cmd := &cobra.Command{
		Use:   "sweep --config sluice.yaml",
		Short: "Delete what no reader sees any more and apply each table's retention, once",
		Long: `Sweeps the lake once, table by table, as the aggregator does every
aggregate.sweep.every under a lease:

  - objects under <table>/ and _deadletter/<table>/ that no commit or
    compaction record names (left by killed flushes and compactions), once
    they are older than the grace;
  - objects a compaction record replaced, a grace after the record;
  - with a table's retention: first a retention record retires the whole
    days (or coarsest windows) before now minus the retention, which readers
    apply at once; a grace after it their raw objects, dead letters and
    summaries are deleted;
  - multipart uploads (S3) and temporary files (local store) abandoned
    longer than the grace ago.

Every candidate is checked against freshly read records right before it is
deleted; a live object is never deleted. --dry-run prints what would go.`,
		Example: `  sluice sweep --config sluice.yaml --dry-run
  sluice sweep --config sluice.yaml --table events --grace 2h`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadRequiredConfig(o.configPath)
			if err != nil {
				return err
			}
			return runSweep(cmd.Context(), g, cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.configPath, "config", "c", "", "path to sluice.yaml")
	f.StringVar(&o.table, "table", "", "only this table (default: every table)")
	f.BoolVar(&o.dryRun, "dry-run", false, "print what would be deleted; delete nothing, write no retention record")
	f.DurationVar(&o.grace, "grace", 0, "how old what no record names must be, and how long after a compaction or retention record its objects stay (default: aggregate.sweep.grace, 1h)")
	return cmd
}

func runSweep(ctx context.Context, g *globals, cfg *fileConfig, o sweepOptions) error {
	logger := g.Logger()
	sc := cfg.Aggregate.Sweep.SweepConfig
	sc.DryRun = sc.DryRun || o.dryRun
	if o.grace != 0 {
		sc.Grace = o.grace
	}
	if err := checkSweepGrace(sc.Grace, cfg); err != nil && !sc.DryRun {
		return usageError{fmt.Errorf("--grace: %w", err)}
	}
	tables := cfg.tables
	if o.table != "" {
		tables = nil
		for _, t := range cfg.tables {
			if t.Name == o.table {
				tables = append(tables, t)
			}
		}
		if len(tables) == 0 {
			return usageErrorf("--table %q: no such table", o.table)
		}
	}
	reg := prometheus.NewRegistry()
	pm := newProcMetrics(reg)
	raw, err := openNamedBucket(ctx, "raw", cfg.Store, logger, pm)
	if err != nil {
		return err
	}
	var summaries objstore.Bucket
	if cfg.SummaryStore != nil {
		if summaries, err = openNamedBucket(ctx, "summary", *cfg.SummaryStore, logger, pm); err != nil {
			return err
		}
	}
	host, _ := os.Hostname()
	sw, err := lake.NewSweeper(sc, raw, summaries, fmt.Sprintf("sluice sweep %s/%d", host, os.Getpid()), logger, lake.NewSweepMetrics(reg))
	if err != nil {
		return usageError{err}
	}
	var errs []error
	for _, t := range tables {
		rep, err := sweepTable(ctx, g, sw, t)
		printSweep(g, rep, summaries != nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

func sweepTable(ctx context.Context, g *globals, sw *lake.Sweeper, t *schema.Table) (lake.SweepReport, error) {
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(g.stderr),
		progressbar.OptionSetDescription("sweep "+t.Name), progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("objects"), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond))
	rep, err := sw.Sweep(ctx, t.Name, aggregate.TableRetention(t), func(done, total int) {
		bar.ChangeMax(total)
		_ = bar.Set(done)
	})
	_ = bar.Finish()
	fmt.Fprintln(g.stderr)
	return rep, err
}

// printSweep prints one table's outcome; a dry run lists every candidate.
func printSweep(g *globals, rep lake.SweepReport, withSummaries bool) {
	verb := "deleted"
	if rep.DryRun {
		verb = "would delete"
		for _, it := range rep.Items {
			fmt.Fprintf(g.stdout, "%s %s %s (%d bytes, modified %s)\n", verb, it.Kind, it.Key, it.Size, it.LastModified.UTC().Format(time.RFC3339))
		}
	}
	var n int
	var bytes int64
	parts := ""
	for _, k := range []string{lake.SweepUncommitted, lake.SweepReplaced, lake.SweepRetired, lake.SweepSummary, lake.SweepUpload, lake.SweepRecord} {
		kn, kb := rep.Count(k)
		n += kn
		bytes += kb
		parts += fmt.Sprintf(", %d %s", kn, k)
	}
	fmt.Fprintf(g.stdout, "%s: %s %d objects (%d bytes)%s; %d kept by the re-check; %d failed\n", rep.Table, verb, n, bytes, parts, rep.Kept, rep.Failed)
	if !rep.Horizon.RawBefore.IsZero() || !rep.Horizon.SummariesBefore.IsZero() {
		what := "retention"
		if rep.Advanced {
			what = "retention advanced"
			if rep.DryRun {
				what = "retention would advance"
			}
		}
		fmt.Fprintf(g.stdout, "%s: %s: raw before %s, summaries before %s\n", rep.Table, what, fmtHorizon(rep.Horizon.RawBefore), fmtHorizon(rep.Horizon.SummariesBefore))
	}
	if !withSummaries && !rep.Horizon.SummariesBefore.IsZero() {
		fmt.Fprintf(g.stdout, "%s: no summary_store configured: summaries were not swept\n", rep.Table)
	}
}

func fmtHorizon(t time.Time) string {
	if t.IsZero() {
		return "(kept forever)"
	}
	return t.UTC().Format(time.RFC3339)
}

// errSweepGrace says the grace is too short for what may still commit.
var errSweepGrace = errors.New("the sweep grace must be longer than ingest.flush_timeout and aggregate.compaction.commit_within, or a flush or compaction still in progress could lose its objects")

func checkSweepGrace(grace time.Duration, cfg *fileConfig) error {
	within := cfg.Aggregate.Compaction.WithDefaults().CommitWithin
	if grace <= cfg.Ingest.FlushTimeout || grace <= within {
		return fmt.Errorf("%w (grace %s, flush_timeout %s, commit_within %s)", errSweepGrace, grace, cfg.Ingest.FlushTimeout, within)
	}
	return nil
}
