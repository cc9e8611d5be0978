package harness

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Defaults for Config.
const (
	DefaultTopic          = "events"
	DefaultUsers          = 100_000
	DefaultZipfS          = 1.2
	DefaultDrainTimeout   = 3 * time.Minute
	DefaultCatchUpTimeout = 3 * time.Minute
	// ratePerProducer is about what one producer client sustains against
	// one broker while leaving the cores to the pipeline.
	ratePerProducer = 100_000
)

// Config says what to produce and how to verify it.
type Config struct {
	// Brokers are the Kafka seed brokers. Required.
	Brokers []string
	// Topic receives the events. Default DefaultTopic.
	Topic string
	// Rate is the target events per second over all producers; 0 is as fast
	// as the broker acknowledges.
	Rate float64
	// Duration and Events bound the run: it stops at whichever comes first.
	// At least one must be set.
	Duration time.Duration
	Events   int64
	// Producers run in parallel, each with its own client. 0 picks one per
	// 100k events/s of Rate (two when flat out), at most 8.
	Producers int
	// Seed makes the generated streams reproducible (apart from event times,
	// which follow the clock so that windows close as they would live).
	Seed int64
	// Start, if set, pins the event clock: the run's first event time is
	// Start and event time advances with the wall clock from there, so the
	// run crosses the same window boundaries every time (pick a time a
	// little before an hour that ends a day, e.g. 22:59:45 UTC, to close
	// and check 1h and 1d windows in a short run). It must not lie in the
	// future. Zero follows the wall clock.
	Start time.Time
	// Users is the key cardinality; ZipfS its skew (> 1).
	Users int
	ZipfS float64
	// LateShare of events (0..1) have an event time up to LateBy in the past.
	LateShare float64
	LateBy    time.Duration
	// NullShare of events (0..1) have a null country, and independently a
	// null device.
	NullShare float64
	// BadShare of records (0..1) are malformed, the kinds in turn (BadKinds).
	BadShare float64
	// EventBytes pads good events with an ignored "pad" field to about this
	// many bytes; 0 leaves them at their natural ~200 bytes.
	EventBytes int
	// DrainTimeout bounds the wait, after producing, for every acknowledged
	// record to be committed. Default DefaultDrainTimeout.
	DrainTimeout time.Duration
	// CatchUpTimeout bounds the wait for the aggregator to summarise every
	// closed window from all of its inputs. Default DefaultCatchUpTimeout.
	CatchUpTimeout time.Duration
	// NoSummaries skips the summary wait and checks (no aggregator runs).
	NoSummaries bool
}

// WithDefaults fills zero fields.
func (c Config) WithDefaults() Config {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.Users == 0 {
		c.Users = DefaultUsers
	}
	if c.ZipfS == 0 {
		c.ZipfS = DefaultZipfS
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.CatchUpTimeout == 0 {
		c.CatchUpTimeout = DefaultCatchUpTimeout
	}
	if c.Producers == 0 {
		c.Producers = 2
		if c.Rate > 0 {
			c.Producers = min(8, max(1, int(math.Ceil(c.Rate/ratePerProducer))))
		}
	}
	return c
}

// Named validation errors.
var (
	ErrNoBrokers = errors.New("loadtest: brokers are required")
	ErrNoBound   = errors.New("loadtest: set a duration or a number of events")
)

// Validate reports the first invalid field.
func (c Config) Validate() error {
	share := func(name string, v float64) error {
		if !(v >= 0 && v <= 1) {
			return fmt.Errorf("loadtest: %s %v must be in [0, 1]", name, v)
		}
		return nil
	}
	switch {
	case len(c.Brokers) == 0:
		return ErrNoBrokers
	case c.Duration <= 0 && c.Events <= 0:
		return ErrNoBound
	case c.Duration < 0 || c.Events < 0:
		return errors.New("loadtest: duration and events must not be negative")
	case !(c.Rate >= 0) || math.IsInf(c.Rate, 0):
		return fmt.Errorf("loadtest: rate %v must be a finite number >= 0", c.Rate)
	case c.Producers < 1 || c.Producers > 64:
		return fmt.Errorf("loadtest: producers %d must be in [1, 64]", c.Producers)
	case c.Users < 1:
		return fmt.Errorf("loadtest: users %d must be at least 1", c.Users)
	case !(c.ZipfS > 1):
		return fmt.Errorf("loadtest: zipf %v must be > 1", c.ZipfS)
	case c.LateShare > 0 && c.LateBy <= 0:
		return errors.New("loadtest: a late share needs late-by > 0")
	case c.LateBy < 0:
		return errors.New("loadtest: late-by must not be negative")
	case c.EventBytes < 0 || c.EventBytes > 1<<20:
		return fmt.Errorf("loadtest: event size %d must be in [0, 1 MiB]", c.EventBytes)
	case c.DrainTimeout < 0 || c.CatchUpTimeout < 0:
		return errors.New("loadtest: timeouts must not be negative")
	case c.Start.After(time.Now()):
		return fmt.Errorf("loadtest: start %s lies in the future", c.Start.Format(time.RFC3339))
	}
	for _, s := range []struct {
		name string
		v    float64
	}{{"late share", c.LateShare}, {"null share", c.NullShare}, {"bad share", c.BadShare}} {
		if err := share(s.name, s.v); err != nil {
			return err
		}
	}
	return nil
}
