package aggregate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-co-op/gocron/v2"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/schema"
)

// SweepConfig schedules the sweeper (lake.Sweeper) in the aggregator.
type SweepConfig struct {
	// Every runs a sweep of each table this often (default 15m); negative
	// turns it off (run `sluice sweep` from cron instead).
	Every time.Duration `yaml:"every"`
	// Grace and DryRun: see lake.SweepConfig. Grace (default 1h) must be
	// longer than ingest.flush_timeout and compaction.commit_within.
	lake.SweepConfig `yaml:",inline"`
}

// DefaultSweepEvery is SweepConfig.Every's default.
const DefaultSweepEvery = 15 * time.Minute

// ErrSweepGrace is returned when the grace is not longer than the time a
// compactor may take to commit what it uploaded.
var ErrSweepGrace = errors.New("sweep.grace must be longer than compaction.commit_within")

// WithDefaults fills zero fields.
func (c SweepConfig) WithDefaults() SweepConfig {
	if c.Every == 0 {
		c.Every = DefaultSweepEvery
	}
	c.SweepConfig = c.SweepConfig.WithDefaults()
	return c
}

func (c SweepConfig) validate(comp CompactorConfig) error {
	if err := c.SweepConfig.Validate(); err != nil {
		return err
	}
	if within := comp.WithDefaults().CommitWithin; c.Every > 0 && c.Grace <= within {
		return fmt.Errorf("%w (grace %s, commit_within %s)", ErrSweepGrace, c.Grace, within)
	}
	return nil
}

// TableRetention is a table's retention as the lake applies it.
func TableRetention(t *schema.Table) lake.TableRetention {
	if t.Retention == nil {
		return lake.TableRetention{}
	}
	return lake.TableRetention{Raw: t.Retention.Raw, Summaries: t.Retention.Summaries, Unit: t.Retention.Unit(t)}
}

func sweepJobName(t *schema.Table) string { return "sweep-" + t.Name }

// addSweepJobs schedules a sweep of every table, each under its own lease.
func (s *Service) addSweepJobs(ctx context.Context, sched gocron.Scheduler) error {
	if s.sweeper == nil {
		return nil
	}
	for _, t := range s.sweepTables {
		_, err := sched.NewJob(gocron.DurationJob(s.cfg.Sweep.Every),
			gocron.NewTask(func(ctx context.Context) { s.scheduledSweep(ctx, t) }),
			gocron.WithName(sweepJobName(t)),
			gocron.WithSingletonMode(gocron.LimitModeReschedule),
			gocron.WithContext(ctx),
		)
		if err != nil {
			return fmt.Errorf("sweep job %s: %w", t.Name, err)
		}
	}
	return nil
}

func (s *Service) scheduledSweep(ctx context.Context, t *schema.Table) {
	deadline, ok := s.locker.Deadline(sweepJobName(t))
	if !ok {
		return
	}
	// A sweep cut short by its lease is continued by the next one.
	runCtx, cancel := context.WithDeadline(ctx, deadline.Add(-s.cfg.Lease/10))
	defer cancel()
	if _, err := s.Sweep(runCtx, t); err != nil && ctx.Err() == nil {
		s.logger.Error("sweep failed", "table", t.Name, "err", err)
	}
}

// Sweep sweeps one table now (see lake.Sweeper).
func (s *Service) Sweep(ctx context.Context, t *schema.Table) (lake.SweepReport, error) {
	if s.sweeper == nil {
		return lake.SweepReport{}, errors.New("aggregate: the sweeper is off (sweep.every < 0)")
	}
	return s.sweeper.Sweep(ctx, t.Name, TableRetention(t), nil)
}

// unretired drops the inputs retention retired (raw or summaries), so no
// window before the horizon is computed again: its raw objects are gone
// from the live view, its summary is being deleted. The horizon is a
// multiple of the coarsest window, so no window straddles it.
func (s *Service) unretired(ctx context.Context, t *schema.Table, objs []InputObject) ([]InputObject, error) {
	if t.Retention == nil {
		return objs, nil
	}
	h, err := s.commits.Retention(ctx, t.Name)
	if err != nil {
		return nil, err
	}
	return dropBefore(objs, h.Before()), nil
}

// dropBefore keeps the objects with rows at or after before.
func dropBefore(objs []InputObject, before time.Time) []InputObject {
	if before.IsZero() {
		return objs
	}
	cut := before.UnixMicro()
	out := objs[:0:0]
	for _, o := range objs {
		if o.MaxMicros >= cut {
			out = append(out, o)
		}
	}
	return out
}
