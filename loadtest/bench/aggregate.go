package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sluicehq/sluice/aggregate/aggtest"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// AggregateConfig describes one aggregation benchmark.
type AggregateConfig struct {
	Table      *schema.Table
	Events     int64
	Partitions int
	Seed       int64
	Window     time.Duration
	Workers    int
	// FlushRecords sizes the raw objects the way an ingester would.
	FlushRecords int
	// EventsPerSecond of event time (default 1000): lower spreads the events
	// over more windows.
	EventsPerSecond float64
	// Start is the first event time; zero is midnight UTC two days ago.
	Start time.Time
	// Truth, if set, is given every event written, for checking summaries.
	Truth    *gen.Truth
	Progress func(phase string, done, total int64)
}

// PrepareRaw writes cfg.Events generated events through the real ingest
// writer (decoder, Parquet encoder, commit records) into b, spread over
// cfg.Partitions partitions, and returns the committed raw objects' bytes.
func PrepareRaw(ctx context.Context, b objstore.Bucket, cfg AggregateConfig) ([][]byte, error) {
	if err := prepareRawObjects(ctx, b, cfg); err != nil {
		return nil, err
	}
	live, err := lake.NewCommitLog(b).LiveObjects(ctx, cfg.Table.Name)
	if err != nil {
		return nil, err
	}
	objects := make([][]byte, 0, len(live))
	for _, o := range live {
		rc, err := b.Get(ctx, o.Key)
		if err != nil {
			return nil, err
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
		objects = append(objects, data)
	}
	return objects, nil
}

// ErrLakeExists: the benchmark's store already holds a lake (a --work-dir
// used before); it prepares only a new one.
var ErrLakeExists = errors.New("the store already holds a lake")

// prepareRawObjects writes and commits the events (see PrepareRaw).
func prepareRawObjects(ctx context.Context, b objstore.Bucket, cfg AggregateConfig) error {
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: cfg.FlushRecords}, b, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return err
	}
	defer w.Close()
	eps := cfg.EventsPerSecond
	if eps == 0 {
		eps = 1000
	}
	start := cfg.Start
	if start.IsZero() {
		start = time.Now().UTC().Add(-48 * time.Hour).Truncate(24 * time.Hour)
	}
	g, err := gen.New(gen.Config{Seed: cfg.Seed, Start: start, EventsPerSecond: eps})
	if err != nil {
		return err
	}
	parts := make([]*ingest.Partition, cfg.Partitions)
	offsets := make([]int64, cfg.Partitions)
	for i := range parts {
		var end lake.End
		parts[i], end, err = w.OpenPartition(ctx, cfg.Table, "kafka:events", fmt.Sprint(i), ingest.StartAt(lake.Position{}, "bench"))
		if err != nil {
			return err
		}
		if end.Next != (lake.Position{}) {
			// The events would be redeliveries of what is committed and
			// skipped: nothing new would be written.
			return fmt.Errorf("%w: partition %d is committed up to %s; remove the directory or choose another", ErrLakeExists, i, end.Next)
		}
	}
	results := make(chan ingest.FlushResult, cfg.Partitions)
	var buf []byte
	flush := func(p *ingest.Partition) error {
		if p.Pending() == 0 {
			return nil // no flush, so no result to wait for
		}
		if err := p.Flush(ctx, func(r ingest.FlushResult) { results <- r }); err != nil {
			return err
		}
		r := <-results
		p.Settled(r)
		return r.Err
	}
	for i := range cfg.Events {
		value, key, ev := g.Next(buf[:0])
		buf = value
		if cfg.Truth != nil {
			cfg.Truth.Add(&ev)
		}
		n := int(hashKey(key) % uint32(cfg.Partitions))
		parts[n].Append(value, lake.PositionOf(offsets[n]), time.Now())
		offsets[n]++
		if parts[n].Pending() >= int64(cfg.FlushRecords) {
			if err := flush(parts[n]); err != nil {
				return err
			}
		}
		if i%100_000 == 0 && cfg.Progress != nil {
			cfg.Progress("prepare", i, cfg.Events)
		}
	}
	for _, p := range parts {
		if err := flush(p); err != nil {
			return err
		}
	}
	if cfg.Progress != nil {
		cfg.Progress("prepare", cfg.Events, cfg.Events)
	}
	return nil
}

// hashKey spreads keys over partitions like a Kafka partitioner would.
func hashKey(k []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range k {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// RunAggregate prepares the raw objects and aggregates them, as
// `sluice bench aggregate` does.
func RunAggregate(ctx context.Context, b objstore.Bucket, cfg AggregateConfig) (aggtest.BenchResult, error) {
	objects, err := PrepareRaw(ctx, b, cfg)
	if err != nil {
		return aggtest.BenchResult{}, err
	}
	return aggtest.BenchAggregate(ctx, cfg.Table, cfg.Window, objects, cfg.Workers)
}
