package app

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/objstore/client"
	"github.com/sluicehq/sluice/schema"
)

// EnvTestClockOffset (a Go duration, e.g. "-800ms") shifts the aggregator's
// lease and watermark clock. For the fault suite only, which runs
// aggregators with skewed clocks on one machine; deliberately not a flag.
const EnvTestClockOffset = "SLUICE_TEST_CLOCK_OFFSET"

// AggregateOptions are the flags of `sluice aggregate`.
type AggregateOptions struct {
	ConfigPath string
	From, To   string // RFC 3339; From set: a backfill
	Table      string // empty: every table with a rollup
	Once       bool
}

// Aggregate runs the aggregator: a backfill, one pass, or (the default)
// the schedule with its HTTP endpoint, and the ops service when the config
// has rules, until ctx is done.
func Aggregate(ctx context.Context, c Console, o AggregateOptions) error {
	cfg, err := LoadRequiredConfig(o.ConfigPath)
	if err != nil {
		return err
	}
	if cfg.SummaryStore == nil {
		return errNoSummaries
	}
	from, to, err := parseBackfillRange(o.From, o.To)
	if err != nil {
		return err
	}
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	pm := newProcMetrics(reg)
	svc, err := newAggregateService(ctx, cfg, c.Logger, pm)
	if err != nil {
		return err
	}
	tables := svc.Tables()
	if o.Table != "" {
		tables = nil
		for _, t := range svc.Tables() {
			if t.Name == o.Table {
				tables = append(tables, t)
			}
		}
		if len(tables) == 0 {
			return Usagef("--table %q: no such table with a rollup", o.Table)
		}
	}
	switch {
	case o.From != "":
		return backfill(ctx, c, svc, tables, from, to)
	case o.Once:
		return aggregateOnce(ctx, c, svc, tables)
	}
	return runAggregator(ctx, c.Logger, cfg, svc, pm, reg)
}

// parseBackfillRange parses --from and --to; both zero without --from.
func parseBackfillRange(fromFlag, toFlag string) (from, to time.Time, err error) {
	if fromFlag != "" {
		if from, err = time.Parse(time.RFC3339, fromFlag); err != nil {
			return from, to, Usagef("--from: %v", err)
		}
	}
	if toFlag != "" {
		if to, err = time.Parse(time.RFC3339, toFlag); err != nil {
			return from, to, Usagef("--to: %v", err)
		}
		if fromFlag == "" {
			return from, to, Usagef("--to needs --from")
		}
	}
	if !to.IsZero() && !to.After(from) {
		return from, to, Usagef("--to must be after --from")
	}
	return from, to, nil
}

// runAggregator runs the schedule, the ops service (with a rules_file) and
// HTTP until ctx is done; HTTP stops last.
func runAggregator(ctx context.Context, logger *slog.Logger, cfg *config.File, svc *aggregate.Service, pm *procMetrics, reg *prometheus.Registry) error {
	srv, err := listenHTTP(cfg.HTTP.Addr, reg, nil, logger)
	if err != nil {
		return err
	}
	logger.Info("aggregator starting", "interval", cfg.Aggregate.Interval, "http", srv.Addr())
	g := newGroup(ctx)
	g.add(ctx, svc.Run)
	if cfg.Rules != nil {
		opsSvc, err := newOpsService(ctx, cfg, logger, pm)
		if err != nil {
			return err
		}
		defer opsSvc.Close()
		g.add(ctx, opsSvc.Run)
	}
	g.add(ctx, srv.Run)
	return g.run()
}

func aggregateOnce(ctx context.Context, c Console, svc *aggregate.Service, tables []*schema.Table) error {
	for _, t := range tables {
		st, err := svc.RunOnce(ctx, t)
		if err != nil {
			return fmt.Errorf("aggregate %s: %w", t.Name, err)
		}
		fmt.Fprintf(c.Stdout, "%s: watermark %s; %d windows summarised, %d recomputed, %d unchanged, %d too-late records; %d objects written\n",
			t.Name, st.Watermark.Format(time.RFC3339), st.Computed, st.Recomputed, st.Skipped, st.TooLate, st.Objects)
	}
	return nil
}

// newAggregateService opens both stores and builds the service.
func newAggregateService(ctx context.Context, cfg *config.File, logger *slog.Logger, pm *procMetrics) (*aggregate.Service, error) {
	raw, err := client.NewBucket(ctx, "raw", cfg.Store, logger, pm.stores())
	if err != nil {
		return nil, err
	}
	if err := CheckTableFields(ctx, raw, cfg.Tables, logger); err != nil {
		return nil, err
	}
	summaries, err := client.NewBucket(ctx, "summary", *cfg.SummaryStore, logger, pm.stores())
	if err != nil {
		return nil, err
	}
	acfg := cfg.Aggregate
	if v := os.Getenv(EnvTestClockOffset); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", EnvTestClockOffset, err)
		}
		acfg.ClockOffset = d
		logger.Warn("lease clock shifted for testing", "env", EnvTestClockOffset, "offset", d)
	}
	return aggregate.NewService(acfg, raw, summaries, cfg.Tables, processOwner(), logger, aggregate.NewMetrics(pm.registerer()))
}

func backfill(ctx context.Context, c Console, svc *aggregate.Service, tables []*schema.Table, from, to time.Time) error {
	for _, t := range tables {
		bar := progressbar.NewOptions(-1, progressbar.OptionSetWriter(c.Stderr),
			progressbar.OptionSetDescription("backfill "+t.Name), progressbar.OptionShowCount(),
			progressbar.OptionSetItsString("units"), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond))
		st, err := svc.Backfill(ctx, t, from, to, func(done, total int) {
			bar.ChangeMax(total)
			_ = bar.Set(done)
		})
		_ = bar.Finish()
		fmt.Fprintln(c.Stderr)
		if err != nil {
			return fmt.Errorf("backfill %s: %w", t.Name, err)
		}
		fmt.Fprintf(c.Stdout, "%s: backfilled %s .. %s; %d windows summarised, %d recomputed, %d unchanged; %d raw rows read; %d objects written\n",
			t.Name, from.Format(time.RFC3339), to.Format(time.RFC3339), st.Computed, st.Recomputed, st.Skipped, st.RowsRead, st.Objects)
	}
	return nil
}
