package aggregate

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/schema"
)

// A run costs what changed since the previous run, not the table's history.
//
// Each table has a run cursor in the summary store: per partition, the last
// link the previous successful run covered (lake.ChainMark, which also
// carries what the watermark needs), the rollup shape it ran for, and the
// watermark through which every window was closed. A run lists only the
// links after the cursor (one listing per partition, lake.LinksSince), adds
// their raw objects to the hour manifests of the lake, and brings up to
// date only the windows that (a) overlap an hour those links touch, or (b)
// closed since the previous run. Their inputs come from the hour manifests,
// their live objects from the manifests plus each hour's compaction records.
// Every other window's inputs are unchanged since a run that left it up to
// date, so Decide would skip it anyway.
//
// The first run (no cursor, a cursor of another rollup shape, or a store
// that cannot keep manifests) reads the whole table as before, fills the
// manifests and leaves a cursor. A run that fails leaves the cursor where
// it was: the next one covers its links again. A run cut short by its
// lease (a first run over a long history) is the exception: it passes the
// links it read all the same and lists their hours to retry, so the next
// run goes on from the manifests and skips the units already done.

const runCursorVersion = 1

type runCursor struct {
	Version int    `json:"version"`
	Table   string `json:"table"`
	// Rollup is the fingerprint of the rollup the summaries were brought
	// up to date for: another shape (a window or measure added) needs a
	// full run.
	Rollup string           `json:"rollup"`
	Chains []lake.ChainMark `json:"chains"`
	// ClosedThrough is the highest watermark a successful run used: every
	// window ending at or before it has been brought up to date.
	ClosedThrough time.Time `json:"closed_through"`
	// Retry are hours whose windows were skipped for bad data: every run
	// looks at them again, until they succeed.
	Retry     []time.Time `json:"retry,omitempty"`
	UpdatedAt time.Time   `json:"updated_at"`
}

// cursorAt is the version of the cursor a run read ("" for none).
type cursorAt struct{ version string }

// rollupFingerprint names the rollup's shape: what the summaries hold.
func rollupFingerprint(r *schema.Rollup) string {
	shape := struct {
		Windows    []time.Duration
		Dimensions []string
		Measures   []schema.Measure
	}{r.Windows, r.Dimensions, r.Measures}
	data, _ := json.Marshal(shape)
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:12])
}

func (s *Service) readCursor(ctx context.Context, t *schema.Table) (runCursor, string, bool, error) {
	key := lake.RunCursorKey(t.Name)
	c, version, found, err := lake.ReadCursor(ctx, s.summaries, key, func(c *runCursor) bool {
		return c.Version == runCursorVersion && c.Table == t.Name
	})
	if err == nil && !found && version != "" {
		// Unreadable or foreign: replaced by the next full run.
		s.logger.Warn("run cursor unusable; reading the whole table", "key", key)
	}
	return c, version, found, err
}

// writeCursor replaces the cursor only over the version read, under the
// run's lease.
func (s *Service) writeCursor(ctx context.Context, t *schema.Table, c runCursor, version string, fence *writeFence) error {
	c.Version, c.Table, c.Rollup, c.UpdatedAt = runCursorVersion, t.Name, rollupFingerprint(t.Rollup), s.now().UTC()
	key := lake.RunCursorKey(t.Name)
	if fence != nil {
		if err := s.locker.CheckFence(ctx, fence.key, fence.epoch); err != nil {
			if errors.Is(err, ErrFenced) {
				s.m.fenced.WithLabelValues(t.Name).Inc()
			}
			return fmt.Errorf("not writing %s: %w", key, err)
		}
	}
	lost, err := lake.WriteCursor(ctx, s.summaries, key, c, version)
	if lost {
		s.m.fenced.WithLabelValues(t.Name).Inc()
		return fmt.Errorf("write run cursor %s: %w: another aggregator moved it since it was read", key, ErrFenced)
	}
	return err
}

func (s *Service) runIncremental(ctx context.Context, t *schema.Table, fence *writeFence) (st RunStats, err error) {
	cur, version, found, err := s.readCursor(ctx, t)
	if err != nil {
		return st, err
	}
	if !found || cur.Rollup != rollupFingerprint(t.Rollup) {
		return s.runFull(ctx, t, fence, &cursorAt{version: version})
	}
	fresh, err := s.commits.LinksSince(ctx, t.Name, cur.Chains)
	if err != nil {
		return st, fmt.Errorf("read commit log: %w", err)
	}
	marks, recs := lake.AdvanceMarks(cur.Chains, fresh)
	r := t.Rollup
	wm, cause, ok := WatermarkOfHeld(marks, r.AllowedLateness, s.cfg.IdleTimeout, s.now())
	s.m.observeWatermark(t.Name, wm, cause, ok, s.now())
	if !ok {
		return st, nil
	}
	st.Watermark = wm
	touched, err := s.commits.AddToHourManifests(ctx, t.Name, recs)
	if err != nil {
		return st, err
	}
	var retention lake.Horizon
	if t.Retention != nil {
		if retention, err = s.commits.Retention(ctx, t.Name); err != nil {
			return st, err
		}
	}
	plan := planWindows(r.Windows, append(touched, cur.Retry...), cur.ClosedThrough, wm)
	objs, live, err := s.hourInputs(ctx, t, plan, retention)
	if err != nil {
		return st, err
	}
	budget, cancel := runBudget(ctx)
	defer cancel()
	failed, err := s.bringUpToDate(budget, t, objs, live, wm, plan.keep, &st, nil, fence)
	if err != nil && len(failed) == 0 {
		if !cutShort(err, budget, ctx) {
			return st, err
		}
		// Cut short by the lease: the links read are passed all the same,
		// and their hours join the hours to retry; ClosedThrough stays, so
		// the windows closed since are looked at again too.
		retry := retryHours(append(slices.Clone(touched), cur.Retry...), nil)
		s.logger.Warn("aggregation run cut short by its lease; the next run goes on from here",
			"table", t.Name, "hours_left_to_check", len(retry), "err", err)
		c := runCursor{Chains: marks, ClosedThrough: cur.ClosedThrough, Retry: retry}
		return st, errors.Join(err, s.writeCursor(ctx, t, c, version, fence))
	}
	closed := cur.ClosedThrough
	if wm.After(closed) {
		closed = wm
	}
	retry := retryHours(nil, failed)
	if len(recs) == 0 && closed.Equal(cur.ClosedThrough) && slices.EqualFunc(retry, cur.Retry, time.Time.Equal) {
		return st, err // nothing moved: the cursor stays as it is
	}
	// Windows skipped for bad data do not hold the cursor back (every run
	// would read the links since again): their hours are retried instead.
	c := runCursor{Chains: marks, ClosedThrough: closed, Retry: retry}
	return st, errors.Join(err, s.writeCursor(ctx, t, c, version, fence))
}

// runBudget ends a run's pass an eighth of its time before the run's own
// deadline (the lease's), leaving that for the cursor: a run cut short by
// its lease still records where it got to. Without it, a first run over a
// history too long for one lease would never leave a cursor, and every
// later run would read the whole table again and be cut short again.
func runBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return context.WithCancel(ctx)
	}
	return context.WithDeadline(ctx, deadline.Add(-time.Until(deadline)/8))
}

// cutShort reports whether the budget, not the run's own context, ended
// the pass. Whatever the error says (a store call cut off by the budget
// reports it in its own words), the cursor written then is safe: it keeps
// every hour the pass might not have finished to be looked at again.
func cutShort(err error, budget, ctx context.Context) bool {
	return err != nil && budget.Err() != nil && ctx.Err() == nil
}

// inputHours are the hours the objects' event times span, sorted, once
// each (a set: a long table has many objects per hour).
func inputHours(objs []InputObject) []time.Time {
	hour := time.Hour.Microseconds()
	set := map[int64]bool{}
	for _, o := range objs {
		for h := floorTo(o.MinMicros, hour); h <= o.MaxMicros; h += hour {
			set[h] = true
		}
	}
	hours := make([]time.Time, 0, len(set))
	for h := range set {
		hours = append(hours, time.UnixMicro(h).UTC())
	}
	slices.SortFunc(hours, time.Time.Compare)
	return hours
}

// retryHours adds the hours of the spans (µs) to hours, sorted, once each.
func retryHours(hours []time.Time, spans [][2]int64) []time.Time {
	hour := time.Hour.Microseconds()
	for _, sp := range spans {
		for h := floorTo(sp[0], hour); h < sp[1]; h += hour {
			hours = append(hours, time.UnixMicro(h).UTC())
		}
	}
	slices.SortFunc(hours, time.Time.Compare)
	return slices.CompactFunc(hours, time.Time.Equal)
}

// windowPlan is which windows a run looks at, and the hours it must read
// for them.
type windowPlan struct {
	windows map[time.Duration]map[int64]bool // window size -> starts (µs)
	hours   map[int64]bool                   // hour starts (µs) whose inputs are needed
	raw     map[int64]bool                   // hours of finest windows, read from raw objects
}

func (p windowPlan) keep(w time.Duration, start int64) bool { return p.windows[w][start] }

// planWindows picks, per window size, the windows that overlap a touched
// hour and those that closed after closedThrough, up to wm.
func planWindows(sizes []time.Duration, touched []time.Time, closedThrough, wm time.Time) windowPlan {
	p := windowPlan{windows: map[time.Duration]map[int64]bool{}, hours: map[int64]bool{}, raw: map[int64]bool{}}
	hour := time.Hour.Microseconds()
	limit := wm.UnixMicro()
	for i, w := range sizes {
		wu := w.Microseconds()
		set := map[int64]bool{}
		add := func(start int64) {
			if start+wu > limit || set[start] {
				return
			}
			set[start] = true
			for h := floorTo(start, hour); h < start+wu; h += hour {
				p.hours[h] = true
				if i == 0 {
					p.raw[h] = true
				}
			}
		}
		for _, h := range touched {
			hu := h.UnixMicro()
			for s := floorTo(hu, wu); s < hu+hour; s += wu {
				add(s)
			}
		}
		if from := closedThrough.UnixMicro(); !closedThrough.IsZero() && limit > from {
			for s := floorTo(from-wu, wu); s+wu <= limit; s += wu {
				if s+wu > from {
					add(s)
				}
			}
		}
		p.windows[w] = set
	}
	return p
}

// hourInputs reads the manifests of the plan's hours: the input objects of
// its windows, and the live objects of the hours read from raw data.
func (s *Service) hourInputs(ctx context.Context, t *schema.Table, p windowPlan, retention lake.Horizon) ([]InputObject, []lake.LiveObject, error) {
	hours := make([]int64, 0, len(p.hours))
	for h := range p.hours {
		hours = append(hours, h)
	}
	slices.Sort(hours)
	var objs []InputObject
	var live []lake.LiveObject
	for _, h := range hours {
		hour := time.UnixMicro(h).UTC()
		m, found, err := s.commits.HourManifest(ctx, t.Name, hour)
		if err != nil {
			return nil, nil, err
		}
		if !found {
			continue
		}
		for _, in := range m.Inputs {
			link := Link{Source: in.Source, Partition: in.Partition, Seq: in.Seq}
			if in.V1 {
				link = Link{Source: in.Source, Partition: in.Partition, First: in.FirstOffset}
			}
			objs = append(objs, InputObject{Link: link, Key: in.Key, Rows: in.Rows,
				MinMicros: in.MinEventTimeMicros, MaxMicros: in.MaxEventTimeMicros, CommittedAt: in.CommittedAt})
		}
		if p.raw[h] {
			lo, err := s.commits.HourLiveObjects(ctx, m, retention.RawBefore)
			if err != nil {
				return nil, nil, err
			}
			live = append(live, lo...)
		}
	}
	// An object whose key has no hour is listed in every hour it spans.
	slices.SortFunc(objs, func(a, b InputObject) int {
		if c := a.Link.compare(b.Link); c != 0 {
			return c
		}
		return cmpString(a.Key, b.Key)
	})
	objs = slices.CompactFunc(objs, func(a, b InputObject) bool { return a.Link == b.Link && a.Key == b.Key })
	slices.SortFunc(live, func(a, b lake.LiveObject) int { return cmpString(a.Key, b.Key) })
	live = slices.CompactFunc(live, func(a, b lake.LiveObject) bool { return a.Key == b.Key })
	return dropBefore(objs, retention.Before()), live, nil
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
