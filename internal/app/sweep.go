package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/client"
	"github.com/sluicehq/sluice/schema"
)

// SweepOptions are the flags of `sluice sweep`.
type SweepOptions struct {
	ConfigPath string
	Table      string
	DryRun     bool
	Grace      time.Duration
}

// Sweep sweeps the lake once, table by table, and prints what went.
func Sweep(ctx context.Context, c Console, o SweepOptions) error {
	cfg, err := LoadRequiredConfig(o.ConfigPath)
	if err != nil {
		return err
	}
	logger := c.Logger
	sc := cfg.Aggregate.Sweep.SweepConfig
	sc.DryRun = sc.DryRun || o.DryRun
	if o.Grace != 0 {
		sc.Grace = o.Grace
	}
	if err := config.CheckSweepGrace(sc.Grace, cfg); err != nil && !sc.DryRun {
		return UsageError{fmt.Errorf("--grace: %w", err)}
	}
	tables := cfg.Tables
	if o.Table != "" {
		tables = nil
		for _, t := range cfg.Tables {
			if t.Name == o.Table {
				tables = append(tables, t)
			}
		}
		if len(tables) == 0 {
			return Usagef("--table %q: no such table", o.Table)
		}
	}
	reg := prometheus.NewRegistry()
	pm := newProcMetrics(reg)
	raw, err := client.NewBucket(ctx, "raw", cfg.Store, logger, pm.stores())
	if err != nil {
		return err
	}
	var summaries objstore.Bucket
	if cfg.SummaryStore != nil {
		if summaries, err = client.NewBucket(ctx, "summary", *cfg.SummaryStore, logger, pm.stores()); err != nil {
			return err
		}
	}
	sw, err := lake.NewSweeper(sc, raw, summaries, "sluice sweep "+processOwner(), logger, lake.NewSweepMetrics(reg))
	if err != nil {
		return UsageError{err}
	}
	var errs []error
	for _, t := range tables {
		rep, err := sweepTable(ctx, c, sw, t)
		printSweep(c.Stdout, rep, summaries != nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep %s: %w", t.Name, err))
		}
	}
	return errors.Join(errs...)
}

func sweepTable(ctx context.Context, c Console, sw *lake.Sweeper, t *schema.Table) (lake.SweepReport, error) {
	bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(c.Stderr),
		progressbar.OptionSetDescription("sweep "+t.Name), progressbar.OptionShowCount(),
		progressbar.OptionSetItsString("objects"), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond))
	rep, err := sw.Sweep(ctx, t.Name, aggregate.TableRetention(t), func(done, total int) {
		bar.ChangeMax(total)
		_ = bar.Set(done)
	})
	_ = bar.Finish()
	fmt.Fprintln(c.Stderr)
	return rep, err
}

// printSweep prints one table's outcome; a dry run lists every candidate.
func printSweep(out io.Writer, rep lake.SweepReport, withSummaries bool) {
	verb := "deleted"
	if rep.DryRun {
		verb = "would delete"
		for _, it := range rep.Items {
			fmt.Fprintf(out, "%s %s %s (%d bytes, modified %s)\n", verb, it.Kind, it.Key, it.Size, it.LastModified.UTC().Format(time.RFC3339))
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
	fmt.Fprintf(out, "%s: %s %d objects (%d bytes)%s; %d kept by the re-check; %d failed\n", rep.Table, verb, n, bytes, parts, rep.Kept, rep.Failed)
	if !rep.Horizon.RawBefore.IsZero() || !rep.Horizon.SummariesBefore.IsZero() {
		what := "retention"
		if rep.Advanced {
			what = "retention advanced"
			if rep.DryRun {
				what = "retention would advance"
			}
		}
		fmt.Fprintf(out, "%s: %s: raw before %s, summaries before %s\n", rep.Table, what, fmtHorizon(rep.Horizon.RawBefore), fmtHorizon(rep.Horizon.SummariesBefore))
	}
	if !withSummaries && !rep.Horizon.SummariesBefore.IsZero() {
		fmt.Fprintf(out, "%s: no summary_store configured: summaries were not swept\n", rep.Table)
	}
}

func fmtHorizon(t time.Time) string {
	if t.IsZero() {
		return "(kept forever)"
	}
	return t.UTC().Format(time.RFC3339)
}
