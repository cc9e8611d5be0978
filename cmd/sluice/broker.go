package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/kafkabroker"
)

func newBrokerCmd(g *globals) *cobra.Command {
	var (
		cfg          kafkabroker.Config
		topics       []string
		brokerConfig map[string]string
	)
	cmd := &cobra.Command{
		Use:   "broker",
		Short: "Run a single-node Kafka-protocol broker on loopback (for development and tests)",
		Long: `Run a single-node Kafka-protocol broker (franz-go kfake) on a loopback address.

With --data-dir, topics, records and group offsets survive restarts and kill -9
of this process: a record is written to its segment file before the produce is
acknowledged. Add --sync to fsync each batch too, so acknowledged records also
survive a machine crash or power loss.

The address the broker listens on is printed on stdout as the first line, so
that --addr 127.0.0.1:0 can be used by scripts and tests.`,
		Example: `  sluice broker --addr 127.0.0.1:9092 --data-dir ./sluice-data/kafka --topic events:8 --sync`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ts, err := parseTopicFlags(topics)
			if err != nil {
				return app.UsageError{Err: err}
			}
			cfg.Topics = ts
			cfg.BrokerConfigs = brokerConfig
			if err := cfg.Validate(); err != nil {
				return app.UsageError{Err: err}
			}
			b, err := kafkabroker.Start(cfg, g.Logger())
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(g.stdout, b.Addr()); err != nil {
				b.Close()
				return fmt.Errorf("print broker address: %w", err)
			}
			return b.Run(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Addr, "addr", kafkabroker.DefaultAddr, "loopback host:port to listen on (port 0 picks a free one)")
	f.StringVar(&cfg.DataDir, "data-dir", "", "keep topics, records and offsets in this directory across restarts (empty: in memory)")
	f.BoolVar(&cfg.SyncWrites, "sync", false, "fsync every produced batch before acknowledging it (needs --data-dir)")
	f.StringArrayVar(&topics, "topic", nil, "topic to create at start, as name or name:partitions (repeatable)")
	f.Int32Var(&cfg.DefaultPartitions, "default-partitions", 10, "partitions of auto-created topics and of --topic without a count")
	f.BoolVar(&cfg.AutoCreateTopics, "auto-create-topics", true, "create unknown topics when clients ask for them")
	f.StringVar(&cfg.ClusterID, "cluster-id", "", "cluster ID reported to clients (default kfake; kept from --data-dir)")
	f.StringToStringVar(&brokerConfig, "broker-config", nil, "broker config key=value, e.g. message.max.bytes=4194304 (repeatable)")
	return cmd
}

// parseTopicFlags turns ["events:8", "dlq"] into {"events": 8, "dlq": 0}.
func parseTopicFlags(specs []string) (map[string]int32, error) {
	out := make(map[string]int32, len(specs))
	for _, s := range specs {
		name, parts, hasParts := strings.Cut(s, ":")
		var n int32
		if hasParts {
			v, err := strconv.ParseInt(parts, 10, 32)
			if err != nil || v < 1 {
				return nil, fmt.Errorf("--topic %q: partitions must be a positive integer", s)
			}
			n = int32(v)
		}
		if name == "" {
			return nil, fmt.Errorf("--topic %q: empty topic name", s)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--topic %q: topic given twice", s)
		}
		out[name] = n
	}
	return out, nil
}
