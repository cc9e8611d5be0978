package main

import (
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
)

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
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.Ingest(cmd.Context(), g.console(), configPath)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "path to sluice.yaml")
	return cmd
}
