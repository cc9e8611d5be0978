package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/web/auth"
)

// The long-running components, one process each in production.

func newIngestCmd(g *globals) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "ingest --config sluice.yaml",
		Short: "Consume Kafka topics and Kinesis streams into committed raw Parquet objects",
		Long: `Runs one member of the ingest consumer group: it drains the topics of the
configured tables into raw Parquet objects in the configured store and commits
them exactly once through the commit log. Run more processes with the same
kafka.group to scale out; partitions are the unit of work. Tables that name a
Kinesis stream are read too: processes share its shards through leases in the
store.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return app.Ingest(cmd.Context(), g.con, configPath) },
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "path to sluice.yaml")
	return cmd
}

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
		RunE: func(cmd *cobra.Command, _ []string) error { return app.Batch(cmd.Context(), g.con, o) },
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
		RunE:    func(cmd *cobra.Command, _ []string) error { return app.BatchRun(cmd.Context(), g.con, o) },
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
		RunE: func(cmd *cobra.Command, _ []string) error { return app.Aggregate(cmd.Context(), g.con, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	f.StringVar(&o.From, "from", "", "backfill windows starting at or after this time (RFC 3339)")
	f.StringVar(&o.To, "to", "", "backfill windows ending at or before this time (RFC 3339; default: the watermark)")
	f.StringVar(&o.Table, "table", "", "only this table (default: every table with a rollup)")
	f.BoolVar(&o.Once, "once", false, "one pass over every closed window, then exit")
	return cmd
}

func newOpsCmd(g *globals) *cobra.Command {
	var o app.OpsOptions
	cmd := &cobra.Command{
		Use:   "ops --config sluice.yaml",
		Short: "Evaluate the rules of rules_file and deliver their actions (webhooks, Kafka records)",
		Long: `Runs the operations-automation service: event rules on every committed
record, window rules on every closed window of a rollup, each firing
logged once in the action log (_sluice/actions/ in the lake) before it is
delivered, under an id that stays the same on every retry. Any number may
run: a lease per table lets one work on it at a time.
With --once it evaluates every table once, makes the due deliveries, and exits.`,
		Example: `  sluice ops --config sluice.yaml`,
		Args:    usageArgs(cobra.NoArgs),
		RunE:    func(cmd *cobra.Command, _ []string) error { return app.Ops(cmd.Context(), g.con, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	f.BoolVar(&o.Once, "once", false, "evaluate every table once, deliver what is due, then exit")
	return cmd
}

func newActionsCmd(g *globals) *cobra.Command {
	var o app.ActionsOptions
	cmd := &cobra.Command{
		Use:   "actions",
		Short: "List, show and redeliver the firings in the action log",
		Example: `  sluice actions list --config sluice.yaml --status dead
  sluice actions show --config sluice.yaml fir_0123abcd...
  sluice actions redeliver --config sluice.yaml fir_0123abcd...`,
		Args: usageArgs(cobra.NoArgs),
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	pf.BoolVar(&o.JSON, "json", false, "print JSON")
	list := &cobra.Command{
		Use:   "list --config sluice.yaml",
		Short: "List firings, oldest first (--status dead: the dead letters)",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return app.ListActions(cmd.Context(), g.con, o) },
	}
	lf := list.Flags()
	lf.StringVar(&o.Table, "table", "", "only this table")
	lf.StringVar(&o.Rule, "rule", "", "only this rule (with --table)")
	lf.StringVar(&o.Status, "status", "", "only this status: pending, delivered or dead")
	show := &cobra.Command{
		Use:   "show --config sluice.yaml <firing id>",
		Short: "Print one firing: its log entry and the payload delivered",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE:  func(cmd *cobra.Command, args []string) error { return app.ShowAction(cmd.Context(), g.con, o, args[0]) },
	}
	redeliver := &cobra.Command{
		Use:   "redeliver --config sluice.yaml <firing id>...",
		Short: "Send firings again now under their ids (dead letters, or ones a receiver lost) and record the outcome",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE:  func(cmd *cobra.Command, args []string) error { return app.Redeliver(cmd.Context(), g.con, o, args) },
	}
	cmd.AddCommand(list, show, redeliver)
	return cmd
}

func newServeCmd(g *globals) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve --config sluice.yaml",
		Short: "Serve the web tier: HTTP ingest, the query API and the dashboard (API keys required)",
		Long: `Serves on http.addr (loopback unless configured otherwise):
  POST /v1/tables/{table}/events   HTTP ingest: committed to the lake for tables declared
                                   with "http: {}", produced (acks=all) to the topic of
                                   Kafka-fed tables when kafka.brokers is set
  GET|POST /v1/query               the query API over the summaries
  POST /v1/tokens                  short read-only tokens for embedding
  /                                the dashboard page
Create keys with "sluice keys create".`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return app.Serve(cmd.Context(), g.con, configPath) },
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "path to sluice.yaml")
	return cmd
}

func newKeysCmd(g *globals) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "keys create|list|revoke --config sluice.yaml",
		Short: "Manage the web tier's API keys (stored hashed in the lake)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return app.Usagef("a subcommand is required")
		},
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "path to sluice.yaml")
	var ko app.KeyOptions
	create := &cobra.Command{
		Use:   "create --scope append:<table>|read:<table>|admin [--scope ...]",
		Short: "Create a key; its secret is printed once and never stored",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return app.CreateKey(cmd.Context(), g.con, configPath, ko) },
	}
	create.Flags().StringArrayVar(&ko.Scopes, "scope", nil, "a scope: append:<table>, read:<table> (table * for all) or admin; repeatable")
	create.Flags().StringVar(&ko.Name, "name", "", "a note on what the key is for")
	create.Flags().Float64Var(&ko.Rate, "rate", 0, fmt.Sprintf("requests per second (0: the server's default, %d)", auth.DefaultRatePerSec))
	create.Flags().IntVar(&ko.Burst, "burst", 0, fmt.Sprintf("burst of requests (0: the server's default, %d)", auth.DefaultBurst))
	list := &cobra.Command{
		Use:   "list",
		Short: "List keys by their visible prefix",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(cmd *cobra.Command, _ []string) error { return app.ListKeys(cmd.Context(), g.con, configPath) },
	}
	revoke := &cobra.Command{
		Use:   "revoke <key id>",
		Short: "Revoke a key (and the tokens it signed)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return app.RevokeKey(cmd.Context(), g.con, configPath, args[0])
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
