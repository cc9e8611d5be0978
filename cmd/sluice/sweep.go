package main

import (
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
)

func newSweepCmd(g *globals) *cobra.Command {
	var o app.SweepOptions
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
			return app.Sweep(cmd.Context(), g.console(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	f.StringVar(&o.Table, "table", "", "only this table (default: every table)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print what would be deleted; delete nothing, write no retention record")
	f.DurationVar(&o.Grace, "grace", 0, "how old what no record names must be, and how long after a compaction or retention record its objects stay (default: aggregate.sweep.grace, 1h)")
	return cmd
}
