package main

import (
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/lake"
)

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
		RunE: func(cmd *cobra.Command, args []string) error {
			return app.Files(cmd.Context(), g.console(), o, args[0])
		},
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
