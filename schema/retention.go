package schema

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Retention says how long a table's data is kept, by event time. Zero keeps
// it forever. Retention is applied in whole days (UTC, or whole windows of
// the rollup's coarsest window when that is longer): the sweeper retires
// every day that ended more than the retention ago, first in a record that
// readers apply at once, then deletes its objects.
type Retention struct {
	// Raw is how long raw objects and dead letters are kept, e.g. 90d.
	Raw time.Duration
	// Summaries is how long summary objects are kept, e.g. 2y (needs a
	// rollup). Windows older than it are never computed again, also when
	// their raw data is still there.
	Summaries time.Duration
}

// MinRetention is the shortest retention accepted: anything shorter would
// retire data that the aggregator may still be summarising.
const MinRetention = 24 * time.Hour

// maxRetentionDays bounds "d" and "y" values (100 years).
const maxRetentionDays = 36500

// UnmarshalYAML reads `retention: {raw: 90d, summaries: 2y}`; values are Go
// durations (36h), whole days (90d) or whole years of 365 days (2y).
func (r *Retention) UnmarshalYAML(n *yaml.Node) error {
	if err := checkKeys(n, "retention", "raw", "summaries"); err != nil {
		return err
	}
	var y struct {
		Raw       string `yaml:"raw"`
		Summaries string `yaml:"summaries"`
	}
	if err := n.Decode(&y); err != nil {
		return err
	}
	var out Retention
	for _, p := range []struct {
		key string
		src string
		dst *time.Duration
	}{{"raw", y.Raw, &out.Raw}, {"summaries", y.Summaries, &out.Summaries}} {
		if p.src == "" {
			continue
		}
		d, err := parseRetention(p.src)
		if err != nil {
			return fmt.Errorf("line %d: retention: %s: %w", n.Line, p.key, err)
		}
		*p.dst = d
	}
	*r = out
	return nil
}

func parseRetention(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		days   int64
	}{{"d", 1}, {"y", 365}} {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseInt(num, 10, 64)
			if err != nil || n < 0 || n*u.days > maxRetentionDays {
				return 0, fmt.Errorf("bad duration %q: want a whole number of days (90d) or years (2y) up to 100 years", s)
			}
			return time.Duration(n*u.days) * day, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (want e.g. 36h, 90d or 2y)", s)
	}
	return d, nil
}

// validate checks the retention against its table.
func (r *Retention) validate(t *Table) error {
	wrap := func(err error) error { return fmt.Errorf("retention: %w", err) }
	for _, p := range []struct {
		key string
		d   time.Duration
	}{{"raw", r.Raw}, {"summaries", r.Summaries}} {
		if p.d != 0 && p.d < MinRetention {
			return wrap(fmt.Errorf("%s must be at least 1d (or 0: forever), got %s", p.key, p.d))
		}
	}
	if r.Summaries != 0 && t.Rollup == nil {
		return wrap(errors.New("summaries needs a rollup: the table has no summaries"))
	}
	if r.Summaries != 0 && t.Rollup != nil && r.Summaries < t.Rollup.Windows[len(t.Rollup.Windows)-1] {
		return wrap(fmt.Errorf("summaries %s is shorter than the rollup's coarsest window %s", r.Summaries, t.Rollup.Windows[len(t.Rollup.Windows)-1]))
	}
	return nil
}

// Unit is the span retention is applied in: a day, or the rollup's
// coarsest window when that is longer (windows are epoch-aligned, so a
// retired span never cuts a window).
func (r *Retention) Unit(t *Table) time.Duration {
	u := day
	if t.Rollup != nil && len(t.Rollup.Windows) > 0 {
		if w := t.Rollup.Windows[len(t.Rollup.Windows)-1]; w > u {
			u = w
		}
	}
	return u
}
