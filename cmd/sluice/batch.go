package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

type batchOptions struct {
	configPath string
	once       bool
}

func newBatchCmd(g *globals) *cobra.Command {
	var o batchOptions
	cmd := &cobra.Command{
		Use:   "batch --config sluice.yaml",
		Short: "Ingest files dropped into the tables' inboxes, each exactly once",
		Long: `Runs the batch source: every batch.interval (and on each bucket event posted to
/events, when batch.events_token is set) it lists the inbox prefixes of the
tables that name one, claims new files in the ledger kept in the lake, cuts
them into splits and commits their rows into the raw layout, where the
aggregators reduce them like stream data. Run several processes on one inbox:
claims are leases, and every split commits exactly once.

With --once it makes one pass with a progress bar and exits.`,
		Example: `  sluice batch --config sluice.yaml
  sluice batch --config sluice.yaml --once`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadRequiredConfig(o.configPath)
			if err != nil {
				return err
			}
			return runBatch(cmd.Context(), g, cfg, o)
		},
	}
	cmd.Flags().StringVarP(&o.configPath, "config", "c", "", "path to sluice.yaml")
	cmd.Flags().BoolVar(&o.once, "once", false, "one pass over the inboxes, then exit")
	cmd.AddCommand(newBatchRunCmd(g))
	return cmd
}

type batchRunOptions struct {
	configPath, input, table, format, compression string
	splitBytes                                    int64
	parallel                                      int
}

func newBatchRunCmd(g *globals) *cobra.Command {
	var o batchRunOptions
	cmd := &cobra.Command{
		Use:   "run --config sluice.yaml --input PREFIX --table T",
		Short: "Summarise the files under a prefix once: map each split to a partial summary, reduce into the summary store",
		Long: `Runs the batch map/reduce once, from files straight to summaries, without the
raw layout: every split of every file under --input (in the store, or the
inbox store the table names) is decoded and folded into a partial summary
written as an object under _batch/ in the summary store; the partials are then
merged, window size by window size, into the summary store's usual layout.
Started again over the same prefix, it skips the splits already mapped. It
replaces the summaries of the windows the files touch: give it a summary
store of its own, not one a running aggregator writes.`,
		Example: `  sluice batch run --config sluice.yaml --input exports/2026-11/ --table events`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.configPath == "" || o.input == "" || o.table == "" {
				return usageErrorf("--config, --input and --table are required")
			}
			cfg, err := loadConfig(o.configPath)
			if err != nil {
				return err
			}
			return runBatchRun(cmd.Context(), g, cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.configPath, "config", "c", "", "path to sluice.yaml")
	f.StringVar(&o.input, "input", "", "key prefix of the files")
	f.StringVar(&o.table, "table", "", "the table (with a rollup) the files hold")
	f.StringVar(&o.format, "format", "", "jsonl, csv or parquet (default: the table's inbox format, else jsonl)")
	f.StringVar(&o.compression, "compression", "auto", "auto, none, gzip or zstd")
	f.Int64Var(&o.splitBytes, "split-bytes", inbox.DefaultSplitBytes, "cut uncompressed text files into splits of about this many bytes")
	f.IntVar(&o.parallel, "parallel", 0, "splits mapped at once (0: one per core)")
	return cmd
}

func runBatchRun(ctx context.Context, g *globals, cfg *fileConfig, o batchRunOptions) error {
	logger := g.Logger()
	if cfg.SummaryStore == nil {
		return errNoSummaries
	}
	var table *schema.Table
	for _, t := range cfg.tables {
		if t.Name == o.table {
			table = t
		}
	}
	if table == nil || table.Rollup == nil {
		return usageErrorf("--table %q: no such table with a rollup", o.table)
	}
	format, storeName := o.format, ""
	if table.Inbox != nil {
		storeName = table.Inbox.Store
		if format == "" {
			format = table.Inbox.Format
		}
	}
	pm := newProcMetrics(prometheus.NewRegistry())
	sc := cfg.Store
	if storeName != "" {
		sc = cfg.Stores[storeName]
	}
	input, err := openNamedBucket(ctx, "input", sc, logger, pm)
	if err != nil {
		return err
	}
	summaries, err := openNamedBucket(ctx, "summary", *cfg.SummaryStore, logger, pm)
	if err != nil {
		return err
	}
	bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(g.stderr), progressbar.OptionSetDescription("batch run"),
		progressbar.OptionShowBytes(true), progressbar.OptionShowIts(), progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionThrottle(200*time.Millisecond))
	start := time.Now()
	st, err := batch.Run(ctx, batch.Options{Table: table, Input: input, Prefix: o.input, Format: format, Compression: o.compression,
		State: summaries, Summaries: summaries, SplitBytes: o.splitBytes, Parallel: o.parallel, Logger: logger,
		Progress: func(p batch.Progress) {
			bar.ChangeMax64(p.Bytes)
			rate := float64(p.Records) / max(time.Since(start).Seconds(), 1e-3)
			bar.Describe(fmt.Sprintf("batch run: %d/%d splits of %d files, %d records (%.0f/s)", p.SplitsDone, p.Splits, p.Files, p.Records, rate))
			_ = bar.Set64(p.BytesDone)
		}})
	_ = bar.Finish()
	fmt.Fprintln(g.stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(g.stdout, "batch run: %d files, %d splits (%d mapped before), %d bytes; %d records, %d bad (in _batch/%s/.../deadletters/); %d windows, %d summary objects; %s\n",
		st.Files, st.Splits, st.SplitsSkipped, st.Bytes, st.Records, st.BadRecords, table.Name, st.Windows, st.Objects, time.Since(start).Round(time.Millisecond))
	return nil
}

func runBatch(ctx context.Context, g *globals, cfg *fileConfig, o batchOptions) error {
	logger := g.Logger()
	setMemoryLimit(3*cfg.Ingest.MemoryBudget, logger)
	reg := prometheus.NewRegistry()
	if err := httpserver.RegisterRuntimeCollectors(reg); err != nil {
		return err
	}
	w, src, err := newBatchSource(ctx, cfg, logger, newProcMetrics(reg))
	if err != nil {
		return err
	}
	defer w.Close()
	defer src.Close()
	if o.once {
		bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(g.stderr), progressbar.OptionSetDescription("batch"),
			progressbar.OptionShowBytes(true), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond))
		src.OnProgress(func(p inbox.Progress) {
			bar.Describe(fmt.Sprintf("batch: %d files, %d splits, %d records", p.Files, p.Splits, p.Records))
			_ = bar.Set64(p.Bytes)
		})
		st, err := src.Pass(ctx)
		_ = bar.Finish()
		fmt.Fprintln(g.stderr)
		if err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		fmt.Fprintf(g.stdout, "batch: %d files claimed, %d committed, %d failed, %d quarantined, %d refused; %d splits, %d records\n",
			st.Claimed, st.Committed, st.Failed, st.Quarantined, st.Refused, st.Splits, st.Records)
		if st.Failed+st.Quarantined > 0 {
			return fmt.Errorf("batch: %d files failed and %d were quarantined (see the log)", st.Failed, st.Quarantined)
		}
		return nil
	}
	srv := httpserver.New(cfg.HTTP.Addr, reg, logger)
	if cfg.Batch.EventsToken != "" {
		srv.Handle("/events", src.EventsHandler(cfg.Batch.EventsToken, logger))
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	logger.Info("batch starting", "interval", cfg.Batch.Interval, "http", srv.Addr(), "events", cfg.Batch.EventsToken != "")
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Run(httpCtx) }()
	runErr := src.Run(ctx)
	stopHTTP()
	return errors.Join(runErr, <-httpDone)
}

// newBatchSource opens the lake and the inboxes' stores and builds the
// writer and the inbox source over them. The caller closes both (the
// source first).
func newBatchSource(ctx context.Context, cfg *fileConfig, logger *slog.Logger, pm *procMetrics) (*ingest.Writer, *inbox.Source, error) {
	lakeB, err := openBucket(ctx, cfg.Store, logger, pm)
	if err != nil {
		return nil, nil, err
	}
	if err := checkTableFields(ctx, lakeB, cfg.tables, logger); err != nil {
		return nil, nil, err
	}
	opened := map[string]objstore.Bucket{"": lakeB}
	stores := func(name string) (objstore.Bucket, error) {
		if b, ok := opened[name]; ok {
			return b, nil
		}
		sc, ok := cfg.Stores[name]
		if !ok {
			return nil, fmt.Errorf("no store named %q under stores", name)
		}
		b, err := openNamedBucket(ctx, "inbox-"+name, sc, logger, pm)
		if err != nil {
			return nil, err
		}
		opened[name] = b
		return b, nil
	}
	w, err := ingest.NewWriter(cfg.Ingest, lakeB, logger, pm.writers())
	if err != nil {
		return nil, nil, err
	}
	src, err := inbox.NewSource(cfg.Batch, cfg.tables, lakeB, stores, w, logger, inbox.NewMetrics(pm.registerer()))
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, src, nil
}
