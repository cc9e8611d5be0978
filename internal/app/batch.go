package app

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"

	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/client"
	"github.com/sluicehq/sluice/schema"
)

// BatchOptions are the flags of `sluice batch`.
type BatchOptions struct {
	ConfigPath string
	Once       bool
}

// Batch runs the inbox source and its HTTP endpoint (with the bucket-event
// endpoint) until ctx is done, or (Once) makes one pass.
func Batch(ctx context.Context, c Console, o BatchOptions) error {
	cfg, err := LoadRequiredConfig(o.ConfigPath)
	if err != nil {
		return err
	}
	logger := c.Logger
	setMemoryLimit(3*cfg.Ingest.MemoryBudget, logger)
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	w, src, err := newBatchSource(ctx, cfg, logger, newProcMetrics(reg))
	if err != nil {
		return err
	}
	defer w.Close()
	defer src.Close()
	if o.Once {
		return batchOnce(ctx, c, src)
	}
	srv, err := listenHTTP(cfg.HTTP.Addr, reg, nil, logger)
	if err != nil {
		return err
	}
	if cfg.Batch.EventsToken != "" {
		srv.Handle("/events", src.EventsHandler(cfg.Batch.EventsToken, logger))
	}
	logger.Info("batch starting", "interval", cfg.Batch.Interval, "http", srv.Addr(), "events", cfg.Batch.EventsToken != "")
	g := newGroup(ctx)
	g.add(ctx, src.Run)
	g.add(ctx, srv.Run)
	return g.run()
}

// batchOnce makes one pass over the inboxes with a progress bar.
func batchOnce(ctx context.Context, c Console, src *inbox.Source) error {
	bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(c.Stderr), progressbar.OptionSetDescription("batch"),
		progressbar.OptionShowBytes(true), progressbar.OptionShowIts(), progressbar.OptionThrottle(200*time.Millisecond))
	src.OnProgress(func(p inbox.Progress) {
		bar.Describe(fmt.Sprintf("batch: %d files, %d splits, %d records", p.Files, p.Splits, p.Records))
		_ = bar.Set64(p.Bytes)
	})
	st, err := src.Pass(ctx)
	_ = bar.Finish()
	fmt.Fprintln(c.Stderr)
	if err != nil {
		return fmt.Errorf("batch: %w", err)
	}
	fmt.Fprintf(c.Stdout, "batch: %d files claimed, %d committed, %d failed, %d quarantined, %d refused; %d splits, %d records\n",
		st.Claimed, st.Committed, st.Failed, st.Quarantined, st.Refused, st.Splits, st.Records)
	if st.Failed+st.Quarantined > 0 {
		return fmt.Errorf("batch: %d files failed and %d were quarantined (see the log)", st.Failed, st.Quarantined)
	}
	return nil
}

// newBatchSource opens the lake and the inboxes' stores and builds the
// writer and the inbox source over them. The caller closes both (the
// source first).
func newBatchSource(ctx context.Context, cfg *config.File, logger *slog.Logger, pm *procMetrics) (*ingest.Writer, *inbox.Source, error) {
	lakeB, err := client.NewBucket(ctx, "raw", cfg.Store, logger, pm.stores())
	if err != nil {
		return nil, nil, err
	}
	if err := CheckTableFields(ctx, lakeB, cfg.Tables, logger); err != nil {
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
		b, err := client.NewBucket(ctx, "inbox-"+name, sc, logger, pm.stores())
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
	src, err := inbox.NewSource(cfg.Batch, cfg.Tables, lakeB, stores, w, logger, inbox.NewMetrics(pm.registerer()))
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, src, nil
}

// BatchRunOptions are the flags of `sluice batch run`.
type BatchRunOptions struct {
	ConfigPath, Input, Table, Format, Compression string
	SplitBytes                                    int64
	Parallel                                      int
}

// BatchRun summarises the files under a prefix once: map each split to a
// partial summary, reduce into the summary store.
func BatchRun(ctx context.Context, c Console, o BatchRunOptions) error {
	if o.ConfigPath == "" || o.Input == "" || o.Table == "" {
		return Usagef("--config, --input and --table are required")
	}
	cfg, err := config.Load(o.ConfigPath)
	if err != nil {
		return err
	}
	if cfg.SummaryStore == nil {
		return errNoSummaries
	}
	var table *schema.Table
	for _, t := range cfg.Tables {
		if t.Name == o.Table {
			table = t
		}
	}
	if table == nil || table.Rollup == nil {
		return Usagef("--table %q: no such table with a rollup", o.Table)
	}
	format, storeName := o.Format, ""
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
	input, err := client.NewBucket(ctx, "input", sc, c.Logger, pm.stores())
	if err != nil {
		return err
	}
	summaries, err := client.NewBucket(ctx, "summary", *cfg.SummaryStore, c.Logger, pm.stores())
	if err != nil {
		return err
	}
	opts := batch.Options{Table: table, Input: input, Prefix: o.Input, Format: format, Compression: o.Compression,
		State: summaries, Summaries: summaries, SplitBytes: o.SplitBytes, Parallel: o.Parallel, Logger: c.Logger}
	return runBatchMapReduce(ctx, c, opts)
}

// runBatchMapReduce runs batch.Run with a progress bar and prints its tally.
func runBatchMapReduce(ctx context.Context, c Console, opts batch.Options) error {
	bar := progressbar.NewOptions64(-1, progressbar.OptionSetWriter(c.Stderr), progressbar.OptionSetDescription("batch run"),
		progressbar.OptionShowBytes(true), progressbar.OptionShowIts(), progressbar.OptionSetPredictTime(true),
		progressbar.OptionShowElapsedTimeOnFinish(), progressbar.OptionThrottle(200*time.Millisecond))
	start := time.Now()
	opts.Progress = func(p batch.Progress) {
		bar.ChangeMax64(p.Bytes)
		rate := float64(p.Records) / max(time.Since(start).Seconds(), 1e-3)
		bar.Describe(fmt.Sprintf("batch run: %d/%d splits of %d files, %d records (%.0f/s)", p.SplitsDone, p.Splits, p.Files, p.Records, rate))
		_ = bar.Set64(p.BytesDone)
	}
	st, err := batch.Run(ctx, opts)
	_ = bar.Finish()
	fmt.Fprintln(c.Stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "batch run: %d files, %d splits (%d mapped before), %d bytes; %d records, %d bad (in _batch/%s/.../deadletters/); %d windows, %d summary objects; %s\n",
		st.Files, st.Splits, st.SplitsSkipped, st.Bytes, st.Records, st.BadRecords, opts.Table.Name, st.Windows, st.Objects, time.Since(start).Round(time.Millisecond))
	return nil
}
