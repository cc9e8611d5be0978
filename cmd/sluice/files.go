package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/lakefiles"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// filesOptions are the flags of `sluice files`.
type filesOptions struct {
	configPath string
	lakeDir    string
	format     string
	kind       string
	view       string
	output     string
}

func newFilesCmd(g *globals) *cobra.Command {
	var o filesOptions
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
			switch {
			case (o.configPath == "") == (o.lakeDir == ""):
				return usageErrorf("give exactly one of --config and --lake")
			case o.format != lakefiles.FormatList && o.format != lakefiles.FormatDuckDB && o.format != lakefiles.FormatJSON:
				return usageErrorf("--format %q: want list, duckdb or json", o.format)
			case o.kind != lake.KindRaw && o.kind != lake.KindDeadLetter:
				return usageErrorf("--kind %q: want %s or %s", o.kind, lake.KindRaw, lake.KindDeadLetter)
			}
			if err := lake.ValidateCommitNames(args[0], "s", "p"); err != nil {
				return usageErrorf("table %q: %v", args[0], err)
			}
			return runFiles(cmd.Context(), g, o, args[0])
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.configPath, "config", "c", "", "read the store of this sluice.yaml")
	f.StringVar(&o.lakeDir, "lake", "", "read this local lake directory (e.g. ./sluice-data/lake)")
	f.StringVar(&o.format, "format", "list", "output: list (one path or URL per line), duckdb (a view definition) or json (one object per line)")
	f.StringVar(&o.kind, "kind", lake.KindRaw, "objects to list: raw (Parquet rows) or deadletter (refused records, JSON lines)")
	f.StringVar(&o.view, "view", "", "name of the DuckDB view (default: TABLE, or TABLE_deadletter with --kind deadletter)")
	f.StringVarP(&o.output, "output", "o", "", "write to this file instead of standard output (written only when complete)")
	return cmd
}

func runFiles(ctx context.Context, g *globals, o filesOptions, table string) error {
	b, locate, s3cfg, err := openFilesLake(ctx, g, o)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	err = lakefiles.Write(ctx, &buf, lake.NewCommitLog(b).WithLogger(g.Logger()), table, lakefiles.Options{
		Format: o.format, Kind: o.kind, View: o.view, Locate: locate, S3: s3cfg,
	})
	if err != nil {
		return err
	}
	if o.output == "" {
		_, err := g.stdout.Write(buf.Bytes())
		return err
	}
	return writeFileAtomic(o.output, buf.Bytes())
}

// openFilesLake opens the lake read-only: unlike the ingester it never
// creates the directory or the bucket.
func openFilesLake(ctx context.Context, g *globals, o filesOptions) (objstore.Bucket, lakefiles.Locator, *objstore.S3Config, error) {
	dir := o.lakeDir
	if o.configPath != "" {
		cfg, err := loadConfig(o.configPath)
		if err != nil {
			return nil, nil, nil, err
		}
		if s3 := cfg.Store.S3; s3 != nil {
			s, err := objstore.NewS3(*s3, g.Logger())
			if err != nil {
				return nil, nil, nil, fmt.Errorf("open s3 store: %w", err)
			}
			b := objstore.NewRetrying(s, objstore.DefaultRetryPolicy(), g.Logger(), nil)
			return b, lakefiles.S3Locator(*s3), s3, nil
		}
		dir = cfg.Store.LocalDir
	}
	if st, err := os.Stat(filepath.Join(dir, filepath.FromSlash(lake.CommitsRoot))); err != nil || !st.IsDir() {
		return nil, nil, nil, fmt.Errorf("%s is not a lake: it has no %s directory", dir, lake.CommitsRoot)
	}
	b, err := objstore.NewLocal(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	locate, err := lakefiles.LocalLocator(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	return b, locate, nil, nil
}

// writeFileAtomic writes data to path through a temporary file in the same
// directory, so a failed run never leaves half a list behind.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
