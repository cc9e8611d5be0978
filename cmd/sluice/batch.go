package main

import (
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/internal/app"
)

func newBatchCmd(g *globals) *cobra.Command {
	var o app.BatchOptions
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
			return app.Batch(cmd.Context(), g.console(), o)
		},
	}
	cmd.Flags().StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	cmd.Flags().BoolVar(&o.Once, "once", false, "one pass over the inboxes, then exit")
	cmd.AddCommand(newBatchRunCmd(g))
	return cmd
}

func newBatchRunCmd(g *globals) *cobra.Command {
	var o app.BatchRunOptions
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
			return app.BatchRun(cmd.Context(), g.console(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	f.StringVar(&o.Input, "input", "", "key prefix of the files")
	f.StringVar(&o.Table, "table", "", "the table (with a rollup) the files hold")
	f.StringVar(&o.Format, "format", "", "jsonl, csv or parquet (default: the table's inbox format, else jsonl)")
	f.StringVar(&o.Compression, "compression", "auto", "auto, none, gzip or zstd")
	f.Int64Var(&o.SplitBytes, "split-bytes", inbox.DefaultSplitBytes, "cut uncompressed text files into splits of about this many bytes")
	f.IntVar(&o.Parallel, "parallel", 0, "splits mapped at once (0: one per core)")
	return cmd
}
