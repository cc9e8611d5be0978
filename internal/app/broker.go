package app

import (
	"context"
	"fmt"

	"github.com/sluicehq/sluice/internal/kafkabroker"
)

// Broker runs a single-node Kafka-protocol broker until ctx is done. The
// address it listens on is the first line on Stdout, for scripts and tests
// that ask for port 0.
func Broker(ctx context.Context, c Console, cfg kafkabroker.Config) error {
	if err := cfg.Validate(); err != nil {
		return UsageError{err}
	}
	b, err := kafkabroker.Start(cfg, c.Logger)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintln(c.Stdout, b.Addr()); err != nil {
		b.Close()
		return fmt.Errorf("print broker address: %w", err)
	}
	g := newGroup(ctx)
	g.add(ctx, b.Run)
	return g.run()
}
