package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/schema"
)

// envTestClockOffset (a Go duration, e.g. "-800ms") shifts the aggregator's
// lease and watermark clock. For the fault suite only, which runs
// aggregators with skewed clocks on one machine; deliberately not a flag.
const envTestClockOffset = "SLUICE_TEST_CLOCK_OFFSET"

type aggregateOptions struct {
	configPath string
	from, to   string
	table      string
	once       bool
}

func newAggregateCmd(g *globals) *cobra.Command {
	var o aggregateOptions
	cmd := &cobra.Command{
		Use:   "aggregate --config sluice.yaml",
		Short: "Roll committed raw objects up into windowed summaries, on a schedule or as a backfill",
		Long: `Runs the scheduled aggregator: every aggregate.interval it brings every closed
window of each table's rollup up to date in the summary store, recomputes the
windows late data changed, and compacts the raw objects of closed hours. Any
number of aggregators may run: a lease in the store lets one work on a table
at a time, and their outputs are deterministic.

With --from/--to it backfills that range once, with a progress bar, and exits.
With --once it makes one pass over everything and exits.`,
		Example: `  sluice aggregate --config sluice.yaml
  sluice aggregate --config sluice.yaml --from 2026-11-01T00:00:00Z --to 2026-11-08T00:00:00Z`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadRequiredConfig(o.configPath)
			if err != nil {
				return err
			}
			return runAggregate(cmd.Context(), g, cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.configPath, "config", "c", "", "path to sluice.yaml")
	f.StringVar(&o.from, "from", "", "backfill windows starting at or after this time (RFC 3339)")
	f.StringVar(&o.to, "to", "", "backfill windows ending at or before this time (RFC 3339; default: the watermark)")
	f.StringVar(&o.table, "table", "", "only this table (default: every table with a rollup)")
	f.BoolVar(&o.once, "once", false, "one pass over every closed window, then exit")
	return cmd
}

func runAggregate(ctx context.Context, g *globals, cfg *fileConfig, o aggregateOptions) error {
	logger := g.Logger()
	if cfg.SummaryStore == nil {
		return errNoSummaries
	}
	var from, to time.Time
	var err error
	if o.from != "" {
		if from, err = time.Parse(time.RFC3339, o.from); err != nil {
			return usageErrorf("--from: %v", err)
		}
	}
	if o.to != "" {
		if to, err = time.Parse(time.RFC3339, o.to); err != nil {
			return usageErrorf("--to: %v", err)
		}
		if o.from == "" {
			return usageErrorf("--to needs --from")
		}
	}
	if !to.IsZero() && !to.After(from) {
		return usageErrorf("--to must be after --from")
	}
	reg := prometheus.NewRegistry()
	if err := httpserver.RegisterRuntimeCollectors(reg); err != nil {
		return err
	}
	pm := newProcMetrics(reg)
	svc, err := newAggregateService(ctx, cfg, logger, pm)
	if err != nil {
		return err
	}
	tables := svc.Tables()
	if o.table != "" {
		tables = nil
		for _, t := range svc.Tables() {
			if t.Name == o.table {
				tables = append(tables, t)
			}
		}
		if len(tables) == 0 {
			return usageErrorf("--table %q: no such table with a rollup", o.table)
		}
	}
	switch {
	case o.from != "":
		return backfill(ctx, g, svc, tables, from, to)
	case o.once:
		for _, t := range tables {
			st, err := svc.RunOnce(ctx, t)
			if err != nil {
				return fmt.Errorf("aggregate %s: %w", t.Name, err)
			}
			fmt.Fprintf(g.stdout, "%s: watermark %s; %d windows summarised, %d recomputed, %d unchanged, %d too-late records; %d objects written\n",
				t.Name, st.Watermark.Format(time.RFC3339), st.Computed, st.Recomputed, st.Skipped, st.TooLate, st.Objects)
		}
		return nil
	}
	srv := httpserver.New(cfg.HTTP.Addr, reg, logger)
	if err := srv.Listen(); err != nil {
		return err
	}
	logger.Info("aggregator starting", "interval", cfg.Aggregate.Interval, "http", srv.Addr())
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Run(httpCtx) }()
	// With a rules_file the ops service runs here too.
	opsDone := make(chan error, 1)
	if cfg.rules == nil {
		opsDone <- nil
	} else {
		opsSvc, err := newOpsService(ctx, cfg, logger, pm)
		if err != nil {
			stopHTTP()
			return errors.Join(err, <-httpDone)
		}
		go func() { defer opsSvc.Close(); opsDone <- opsSvc.Run(ctx) }()
	}
	runErr := svc.Run(ctx)
	stopHTTP()
	return errors.Join(runErr, <-opsDone, <-httpDone)
}

// newAggregateService opens both stores and builds the service.
func newAggregateService(ctx context.Context, cfg *fileConfig, logger *slog.Logger, pm *procMetrics) (*aggregate.Service, error) {
	raw, err := openNamedBucket(ctx, "raw", cfg.Store, logger, pm)
	if err != nil {
		return nil, err
	}
	if err := checkTableFields(ctx, raw, cfg.tables, logger); err != nil {
		return nil, err
	}
	summaries, err := openNamedBucket(ctx, "summary", *cfg.SummaryStore, logger, pm)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	owner := fmt.Sprintf("%s/%d", host, os.Getpid())
	acfg := cfg.Aggregate
	if v := os.Getenv(envTestClockOffset); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", envTestClockOffset, err)
		}
		acfg.ClockOffset = d
		logger.Warn("lease clock shifted for testing", "env", envTestClockOffset, "offset", d)
	}
	return aggregate.NewService(acfg, raw, summaries, cfg.tables, owner, logger, aggregate.NewMetrics(pm.registerer()))
}

func backfill(ctx context.Context, g *globals, svc *aggregate.Service, tables []*schema.Table, from, to time.Time) error {
	for _, t := range tables {
		bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(g.stderr),
			progressbar.OptionSetDescription("backfill "+t.Name), progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("units"), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond))
		st, err := svc.Backfill(ctx, t, from, to, func(done, total int) {
			bar.ChangeMax(total)
			_ = bar.Set(done)
		})
		_ = bar.Finish()
		fmt.Fprintln(g.stderr)
		if err != nil {
			return fmt.Errorf("backfill %s: %w", t.Name, err)
		}
		fmt.Fprintf(g.stdout, "%s: backfilled %s .. %s; %d windows summarised, %d recomputed, %d unchanged; %d raw rows read; %d objects written\n",
			t.Name, from.Format(time.RFC3339), to.Format(time.RFC3339), st.Computed, st.Recomputed, st.Skipped, st.RowsRead, st.Objects)
	}
	return nil
}
