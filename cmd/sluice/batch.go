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

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/objstore"
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
			if o.configPath == "" {
				return usageErrorf("--config is required")
			}
			cfg, err := loadConfig(o.configPath)
			if err != nil {
				return err
			}
			return runBatch(cmd.Context(), g, cfg, o)
		},
	}
	cmd.Flags().StringVarP(&o.configPath, "config", "c", "", "path to sluice.yaml")
	cmd.Flags().BoolVar(&o.once, "once", false, "one pass over the inboxes, then exit")
	return cmd
}

func runBatch(ctx context.Context, g *globals, cfg *fileConfig, o batchOptions) error {
	logger := g.Logger()
	setMemoryLimit(3*cfg.Ingest.MemoryBudget, logger)
	reg := prometheus.NewRegistry()
	if err := httpserver.RegisterRuntimeCollectors(reg); err != nil {
		return err
	}
	w, src, err := newBatchSource(ctx, cfg, logger, reg)
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
func newBatchSource(ctx context.Context, cfg *fileConfig, logger *slog.Logger, reg prometheus.Registerer) (*ingest.Writer, *inbox.Source, error) {
	lakeB, err := openBucket(ctx, cfg.Store, logger, reg)
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
		b, err := openNamedBucket(ctx, "inbox-"+name, sc, logger, reg)
		if err != nil {
			return nil, err
		}
		opened[name] = b
		return b, nil
	}
	w, err := ingest.NewWriter(cfg.Ingest, lakeB, logger, reg)
	if err != nil {
		return nil, nil, err
	}
	src, err := inbox.NewSource(cfg.Batch, cfg.tables, lakeB, stores, w, logger, reg)
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return w, src, nil
}
