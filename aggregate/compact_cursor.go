package aggregate

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/schema"
)

// A compaction run costs what changed since the previous run, not the
// table's history, as an aggregator run does (incremental.go).
//
// The compactor keeps a cursor per table in the lake
// (lake.CompactionCursorKey): per partition the last link it has read
// (lake.ChainMark, which also gives the committed watermark), the hours that
// may still have work (Pending: new small objects not yet merged, or an
// hour not closed yet), and the sizes of the compacted objects it has seen
// (the planner's estimate of merged rows). A run reads the links after the
// cursor (one listing per partition), adds their raw objects to the hour
// manifests (a union, shared with the aggregator), and plans only the
// pending hours and the hours those links touch, oldest first, each from its
// manifest and its own compaction records (lake.HourCompactionObjects). An
// hour leaves Pending once it is closed and a plan of it finds nothing to
// merge; an hour compacted in this run stays for one more look, since a
// first output may be small enough to merge again. Commits are checked
// against the hour alone too (lake.CommitLog.CommitCompaction).
//
// The first run (no cursor, or an unreadable one) reads the whole table as
// before, fills the manifests and leaves a cursor. A run that fails leaves
// the cursor where it was: the next run reads the same links again and
// finds the work left. Two compactors that race write the cursor over the
// version they read; the loser's cursor is dropped, which loses nothing:
// the winner's covers every hour it did not finish, and the hours of the
// links after its marks are found again by the next run.

const compactionCursorVersion = 1

type compactionCursor struct {
	Version int              `json:"version"`
	Table   string           `json:"table"`
	Chains  []lake.ChainMark `json:"chains"`
	// Pending are hours that may still have small objects to merge.
	Pending []time.Time `json:"pending,omitempty"`
	// Compacted sums the compacted objects seen, for the size estimate.
	Compacted compactedSize `json:"compacted"`
	UpdatedAt time.Time     `json:"updated_at"`
}

func (c *Compactor) readCursor(ctx context.Context, table string) (compactionCursor, string, bool, error) {
	key := lake.CompactionCursorKey(table)
	cur, version, found, err := lake.ReadCursor(ctx, c.cursors, key, func(cur *compactionCursor) bool {
		return cur.Version == compactionCursorVersion && cur.Table == table
	})
	if err == nil && !found && version != "" {
		c.logger.Warn("compaction cursor unusable; reading the whole table", "key", key)
	}
	return cur, version, found, err
}

// writeCursor replaces the cursor only over the version read. Losing to
// another compactor is not an error (see above).
func (c *Compactor) writeCursor(ctx context.Context, table string, cur compactionCursor, version string) error {
	cur.Version, cur.Table, cur.UpdatedAt = compactionCursorVersion, table, time.Now().UTC()
	slices.SortFunc(cur.Pending, time.Time.Compare)
	cur.Pending = slices.CompactFunc(cur.Pending, time.Time.Equal)
	lost, err := lake.WriteCursor(ctx, c.cursors, lake.CompactionCursorKey(table), cur, version)
	if lost {
		c.logger.Info("another compactor moved the compaction cursor first; keeping its", "table", table)
	}
	return err
}

// compactChanged is a run driven by the cursor.
func (c *Compactor) compactChanged(ctx context.Context, table *schema.Table, now time.Time, fenced func(context.Context) error) (res CompactionResult, err error) {
	cur, version, found, err := c.readCursor(ctx, table.Name)
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	if !found {
		return c.compactWholeTable(ctx, table, now, fenced, version)
	}
	fresh, err := c.commits.LinksSince(ctx, table.Name, cur.Chains)
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	marks, recs := lake.AdvanceMarks(cur.Chains, fresh)
	// The manifests hold every link up to the marks before any hour is
	// planned from them (lake/compaction_hour.go). A run fenced by a newer
	// lease holder writes nothing, not even these.
	if err := checkFence(ctx, fenced); err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	touched, err := c.commits.AddToHourManifests(ctx, table.Name, recs)
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	next := compactionCursor{Chains: marks, Compacted: cur.Compacted}
	hours := append(slices.Clone(cur.Pending), touched...)
	slices.SortFunc(hours, time.Time.Compare)
	hours = slices.CompactFunc(hours, time.Time.Equal)

	wm, ok := WatermarkOf(marks, 0, c.cfg.IdleTimeout, now)
	if !ok {
		next.Pending = hours
		return res, c.writeCursor(ctx, table.Name, next, version)
	}
	if now.Before(wm) {
		wm = now
	}
	closedBefore := wm.Add(-c.cfg.CloseDelay) // as compactionClosedBefore

	budget := c.cfg.MaxGroupsPerRun
	for i, h := range hours {
		if h.Add(time.Hour).After(closedBefore) || budget == 0 {
			next.Pending = append(next.Pending, h) // not closed, or no room left in this run
			continue
		}
		live, ok, err := c.commits.HourCompactionObjects(ctx, table.Name, h)
		if err != nil {
			return res, fmt.Errorf("compact %s: %w", table.Name, err)
		}
		if !ok {
			// The hour's records do not all apply on top of its manifest:
			// plan the remaining hours from the whole table this once.
			return c.compactHoursOfTable(ctx, table, hours[i:], closedBefore, fenced, next, version, res)
		}
		cfg := c.cfg
		cfg.MaxGroupsPerRun = budget
		groups := planCompaction(table.Name, live, closedBefore, cfg, next.Compacted)
		if len(groups) == 0 {
			continue // closed, nothing to merge: done with it
		}
		budget -= len(groups)
		next.Pending = append(next.Pending, h)
		done, err := c.compactGroups(ctx, table, groups, fenced, &res)
		addCompacted(&next.Compacted, done)
		if err != nil {
			return res, err
		}
	}
	if len(recs) == 0 && res.Groups == 0 && slices.EqualFunc(next.Pending, cur.Pending, time.Time.Equal) {
		return res, nil // nothing moved: the cursor stays as it is
	}
	return res, c.writeCursor(ctx, table.Name, next, version)
}

// compactHoursOfTable plans hours (sorted) from the whole table's live
// objects and writes the cursor next with the hours that keep work.
func (c *Compactor) compactHoursOfTable(ctx context.Context, table *schema.Table, hours []time.Time, closedBefore time.Time, fenced func(context.Context) error, next compactionCursor, version string, res CompactionResult) (CompactionResult, error) {
	live, err := c.commits.LiveObjects(ctx, table.Name)
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	want := map[int64]bool{}
	for _, h := range hours {
		want[h.Unix()] = true
	}
	var in []lake.LiveObject
	for _, o := range live {
		if h, ok := lake.ObjectHour(o.Key); ok && want[h.Unix()] {
			in = append(in, o)
		}
	}
	cfg := c.cfg
	cfg.MaxGroupsPerRun = max(1, cfg.MaxGroupsPerRun-res.Groups)
	groups := planCompaction(table.Name, in, closedBefore, cfg, next.Compacted)
	next.Pending = append(next.Pending, pendingHours(table.Name, in, c.cfg)...)
	done, err := c.compactGroups(ctx, table, groups, fenced, &res)
	addCompacted(&next.Compacted, done)
	if err != nil {
		return res, err
	}
	return res, c.writeCursor(ctx, table.Name, next, version)
}

// compactWholeTable is the first run: the whole table is read, as every
// run did before the cursor; the manifests get every link and the cursor
// the hours that may still have work.
func (c *Compactor) compactWholeTable(ctx context.Context, table *schema.Table, now time.Time, fenced func(context.Context) error, version string) (res CompactionResult, err error) {
	chains, err := c.commits.Chains(ctx, table.Name)
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	var recs []lake.CommitRecord
	for _, ch := range chains {
		recs = append(recs, ch.Records...)
	}
	if err := checkFence(ctx, fenced); err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	if _, err := c.commits.AddToHourManifests(ctx, table.Name, recs); err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	next := compactionCursor{Chains: lake.MarkChains(chains)}
	closedBefore, ok := compactionClosedBefore(recs, now, c.cfg)
	if !ok {
		return res, c.writeCursor(ctx, table.Name, next, version)
	}
	live, err := c.commits.LiveObjects(ctx, table.Name)
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	next.Compacted = compactedSizes(live)
	next.Pending = pendingHours(table.Name, live, c.cfg)
	groups := planCompaction(table.Name, live, closedBefore, c.cfg, next.Compacted)
	done, err := c.compactGroups(ctx, table, groups, fenced, &res)
	addCompacted(&next.Compacted, done)
	if err != nil {
		return res, err
	}
	return res, c.writeCursor(ctx, table.Name, next, version)
}

// pendingHours are the hours of live with at least two objects the
// planner may merge, closed or not.
func pendingHours(table string, live []lake.LiveObject, cfg CompactorConfig) []time.Time {
	var out []time.Time
	for h, objs := range smallByHour(table, live, cfg) {
		if len(objs) >= 2 {
			out = append(out, time.Unix(h, 0).UTC())
		}
	}
	slices.SortFunc(out, time.Time.Compare)
	return out
}

func checkFence(ctx context.Context, fenced func(context.Context) error) error {
	if fenced == nil {
		return nil
	}
	return fenced(ctx)
}

func addCompacted(s *compactedSize, done []lake.CompactionRecord) {
	for _, rec := range done {
		for _, o := range rec.Objects {
			if o.Rows > 0 {
				s.Rows += o.Rows
				s.Bytes += o.Size
			}
		}
	}
}
