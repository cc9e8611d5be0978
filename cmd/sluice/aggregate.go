package main

import (
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
)

func newAggregateCmd(g *globals) *cobra.Command {
	var o app.AggregateOptions
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
			return app.Aggregate(cmd.Context(), g.console(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	f.StringVar(&o.From, "from", "", "backfill windows starting at or after this time (RFC 3339)")
	f.StringVar(&o.To, "to", "", "backfill windows ending at or before this time (RFC 3339; default: the watermark)")
	f.StringVar(&o.Table, "table", "", "only this table (default: every table with a rollup)")
	f.BoolVar(&o.Once, "once", false, "one pass over every closed window, then exit")
	return cmd
}
