package main

import (
	"errors"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/inspect"
	"github.com/spf13/cobra"
)

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
			o.Logger = g.Logger()
			err := inspect.Run(cmd.Context(), g.stdout, o, args[0])
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
