package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/inspect"
	"github.com/sluicehq/sluice/lake"
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
		RunE: func(cmd *cobra.Command, _ []string) error { return app.Sweep(cmd.Context(), g.con, o) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	f.StringVar(&o.Table, "table", "", "only this table (default: every table)")
	f.BoolVar(&o.DryRun, "dry-run", false, "print what would be deleted; delete nothing, write no retention record")
	f.DurationVar(&o.Grace, "grace", 0, "how old what no record names must be, and how long after a compaction or retention record its objects stay (default: aggregate.sweep.grace, 1h)")
	return cmd
}

func newFilesCmd(g *globals) *cobra.Command {
	var o app.FilesOptions
	cmd := &cobra.Command{
		Use:   "files TABLE (--config sluice.yaml | --lake DIR)",
		Short: "List exactly the committed objects of a table, as paths, a DuckDB view or JSON",
		Long: `Print the objects a reader must read to see every committed record of TABLE
exactly once: the objects named by the table's commit records, with the
compaction records applied. Orphans of flushes that crashed before their
commit record, and objects a compaction replaced (kept until the sweeper's
grace period ends), are never listed; a glob over the table's prefix reads
both and counts their rows twice.

The lake is the store of --config (a local directory or S3), or the local
directory --lake (e.g. dev's ./sluice-data/lake). Nothing is written to it.

--format list prints one file path (local) or s3://bucket/key URL per line;
--format duckdb a DuckDB script creating the view TABLE over exactly those
files (read_parquet with union_by_name, so objects written before a column
was added read it as NULL; for S3 it loads httpfs and sets the endpoint, but
never the credentials); --format json one object per line with its size,
rows, checksum, event-time range and commit.

The list is a snapshot: read it within the sweeper's grace period, after
which objects replaced by a later compaction are deleted; list again for
newer data.`,
		Example: `  sluice files events --lake ./sluice-data/lake --format duckdb --output events.sql
  duckdb -c ".read events.sql" -c "SELECT count(*) FROM events"
  sluice files events --config sluice.yaml --format json
  sluice files events --config sluice.yaml --kind deadletter --format duckdb`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error { return app.Files(cmd.Context(), g.con, o, args[0]) },
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config", "c", "", "read the store of this sluice.yaml")
	f.StringVar(&o.LakeDir, "lake", "", "read this local lake directory (e.g. ./sluice-data/lake)")
	f.StringVar(&o.Format, "format", "list", "output: list (one path or URL per line), duckdb (a view definition) or json (one object per line)")
	f.StringVar(&o.Kind, "kind", lake.KindRaw, "objects to list: raw (Parquet rows) or deadletter (refused records, JSON lines)")
	f.StringVar(&o.View, "view", "", "name of the DuckDB view (default: TABLE, or TABLE_deadletter with --kind deadletter)")
	f.StringVarP(&o.Output, "output", "o", "", "write to this file instead of standard output (written only when complete)")
	return cmd
}

func newInspectCmd(g *globals) *cobra.Command {
	var o inspect.Options
	cmd := &cobra.Command{
		Use:   "inspect PATH|DIR|s3://BUCKET/PREFIX",
		Short: "Show the schema, row counts, event-time range and first rows of Parquet objects, commit records and dead letters",
		Long: `Inspect what Sluice wrote.

PATH may be a local file, a local directory (walked for *.parquet, *.json and
*.jsonl), or s3://bucket/key-or-prefix. For Parquet objects it prints the schema
(physical and logical types), rows, row groups, size, compression, the
event-time range of the first TIMESTAMP column (from statistics, or by scanning
when a row group has none) and the first -n rows. A .json object is shown as a
commit record when it is one; a .jsonl object as dead letters with a count per
reason.

With --summary, Parquet objects under the prefix are aggregated: totals, the
union of event-time ranges, and the distinct schemas. Inside a lake (a
directory or prefix with commit records under _sluice/commits/) only the
committed set counts, as every reader sees it: objects a compaction replaced
and orphans of failed flushes are left out (and counted as not committed).

S3 credentials: --s3-access-key/--s3-secret-key, or else AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY, the shared credentials file, or the instance role.`,
		Example: `  sluice inspect ./sluice-data/lake/events/dt=2026-01-01/hour=00/
  sluice inspect --summary -n 0 ./sluice-data/lake/events
  sluice inspect --format json -n 3 s3://lake/events/dt=2026-01-01/ --s3-endpoint 127.0.0.1:9000 --s3-insecure --s3-path-style`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.Rows < 0 {
				return app.Usagef("-n %d: must not be negative", o.Rows)
			}
			if o.Format != "table" && o.Format != "json" {
				return app.Usagef("--format %q: want table or json", o.Format)
			}
			o.Logger = g.con.Logger
			err := inspect.Run(cmd.Context(), g.con.Stdout, o, args[0])
			if ue := (inspect.UsageError{}); errors.As(err, &ue) {
				return app.UsageError{Err: ue.Err}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.IntVarP(&o.Rows, "rows", "n", 5, "number of rows (or dead letters) to print per object; 0 for none")
	f.StringVar(&o.Format, "format", "table", "output format: table (for people) or json (one JSON object per line)")
	f.BoolVar(&o.Summary, "summary", false, "aggregate all Parquet objects under the path instead of one report each")
	f.StringVar(&o.EventTimeColumn, "event-time-column", "", "column whose min/max is the event-time range (default: the first TIMESTAMP column)")
	f.StringVar(&o.S3.Endpoint, "s3-endpoint", "", "S3 endpoint host[:port] (default AWS)")
	f.StringVar(&o.S3.Region, "s3-region", "", "S3 region")
	f.StringVar(&o.S3.AccessKey, "s3-access-key", "", "S3 access key (default: AWS environment, shared file, instance role)")
	f.StringVar(&o.S3.SecretKey, "s3-secret-key", "", "S3 secret key")
	f.BoolVar(&o.S3.Insecure, "s3-insecure", false, "talk plain HTTP to the S3 endpoint")
	f.BoolVar(&o.S3.PathStyle, "s3-path-style", false, "path-style bucket addressing (MinIO, versitygw)")
	f.BoolVar(&o.S3.TLSSkipVerify, "s3-tls-skip-verify", false, "do not verify the S3 endpoint's TLS certificate")
	f.StringVar(&o.S3.CACertFile, "s3-ca-cert", "", "PEM file with CA certificates for the S3 endpoint")
	return cmd
}
