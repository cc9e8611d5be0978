package aggregate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-co-op/gocron/v2"
	"github.com/parquet-go/parquet-go"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// windowsMetaKey holds, in a summary object's footer, the WindowState of
// every window the object holds, keyed by window start (RFC 3339).
const windowsMetaKey = "sluice.windows"

// Service runs the aggregation jobs of the tables that declare a rollup.
type Service struct {
	cfg       Config
	raw       objstore.Bucket            // committed raw objects and the commit log
	summaries objstore.ConditionalBucket // summary objects, written conditionally; may be the same bucket as raw
	commits   *lake.CommitLog
	tables    []*schema.Table
	locker    *BucketLocker
	compactor *Compactor // nil when compaction is off
	logger    *slog.Logger
	m         *Metrics
	now       func() time.Time

	// sweeper sweeps sweepTables (every table, with a rollup or not); nil
	// when sweeping is off. See sweeper.go.
	sweeper     *lake.Sweeper
	sweepTables []*schema.Table
}

// NewService prepares the jobs. Tables without a rollup are ignored. The
// summary store must replace objects conditionally (objstore.ConditionalBucket):
// summaries are written only over the version read, and leases are fenced
// there. A nil m keeps the metrics unregistered.
func NewService(cfg Config, raw, summaries objstore.Bucket, tables []*schema.Table, owner string, logger *slog.Logger, m *Metrics) (*Service, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	cs, ok := summaries.(objstore.ConditionalBucket)
	if !ok {
		return nil, fmt.Errorf("aggregate: summary store %s cannot replace objects conditionally", summaries.Name())
	}
	now := time.Now
	if off := cfg.ClockOffset; off != 0 {
		now = func() time.Time { return time.Now().Add(off) }
	}
	locker := NewBucketLocker(cs, cfg.Lease, owner)
	locker.skew, locker.now = cfg.ClockSkew, now
	s := &Service{
		cfg: cfg, raw: raw, summaries: cs, commits: lake.NewCommitLog(raw),
		locker: locker, logger: logger, m: m, now: now,
	}
	for _, t := range tables {
		if t.Rollup != nil {
			s.tables = append(s.tables, t)
			s.m.tooLate.WithLabelValues(t.Name)
			s.m.fenced.WithLabelValues(t.Name)
			for _, outcome := range []string{"ok", "error", "locked"} {
				s.m.runs.WithLabelValues(t.Name, outcome)
			}
		}
	}
	if len(s.tables) == 0 {
		return nil, errors.New("aggregate: no table declares a rollup")
	}
	if cfg.CompactEvery > 0 {
		c, err := NewCompactor(cfg.Compaction, raw, s.commits, logger, m)
		if err != nil {
			return nil, err
		}
		s.compactor = c
	}
	if cfg.Sweep.Every > 0 {
		sw, err := lake.NewSweeper(cfg.Sweep.SweepConfig, raw, summaries, owner, logger, m.sweep)
		if err != nil {
			return nil, err
		}
		s.sweeper, s.sweepTables = sw, tables
		for _, t := range tables {
			sw.InitTableMetrics(t.Name)
		}
	}
	return s, nil
}

// Tables are the tables this service aggregates.
func (s *Service) Tables() []*schema.Table { return s.tables }

func jobName(t *schema.Table) string        { return "aggregate-" + t.Name }
func compactJobName(t *schema.Table) string { return "compact-" + t.Name }

func (s *Service) scheduledCompaction(ctx context.Context, t *schema.Table) {
	lease, err := s.locker.Wait(ctx, compactJobName(t))
	if err != nil {
		return
	}
	runCtx, cancel := s.leaseContext(ctx, lease)
	defer cancel()
	fenced := func(ctx context.Context) error { return s.locker.CheckFence(ctx, compactJobName(t), lease.Epoch) }
	res, err := s.compactor.compactTable(runCtx, t, s.now(), fenced)
	if err != nil && ctx.Err() == nil {
		s.logger.Error("compaction failed", "table", t.Name, "err", err)
		return
	}
	s.logger.Debug("compaction run", "table", t.Name, "result", fmt.Sprintf("%+v", res))
}

// Run schedules every table's job with gocron until ctx is done. Jobs run
// one at a time per table here, and one at a time across processes through
// the store-backed locker.
func (s *Service) Run(ctx context.Context) error {
	sched, err := gocron.NewScheduler(gocron.WithDistributedLocker(s.locker), gocron.WithLogger(gocronLogger{s.logger}))
	if err != nil {
		return fmt.Errorf("aggregate scheduler: %w", err)
	}
	for _, t := range s.tables {
		_, err := sched.NewJob(gocron.DurationJob(s.cfg.Interval),
			gocron.NewTask(func(ctx context.Context) { s.scheduledRun(ctx, t) }),
			gocron.WithName(jobName(t)),
			gocron.WithSingletonMode(gocron.LimitModeReschedule),
			gocron.WithStartAt(gocron.WithStartImmediately()),
			gocron.WithContext(ctx),
		)
		if err != nil {
			return fmt.Errorf("aggregate job %s: %w", t.Name, err)
		}
		if s.compactor == nil {
			continue
		}
		_, err = sched.NewJob(gocron.DurationJob(s.cfg.CompactEvery),
			gocron.NewTask(func(ctx context.Context) { s.scheduledCompaction(ctx, t) }),
			gocron.WithName(compactJobName(t)),
			gocron.WithSingletonMode(gocron.LimitModeReschedule),
			gocron.WithContext(ctx),
		)
		if err != nil {
			return fmt.Errorf("compaction job %s: %w", t.Name, err)
		}
	}
	if err := s.addSweepJobs(ctx, sched); err != nil {
		return err
	}
	sched.Start()
	<-ctx.Done()
	return sched.Shutdown()
}

func (s *Service) scheduledRun(ctx context.Context, t *schema.Table) {
	// The lease may start a little later (its slot, plus the clock-skew
	// margin): wait for it, so the previous holder has stopped.
	lease, err := s.locker.Wait(ctx, jobName(t))
	if err != nil {
		s.m.runs.WithLabelValues(t.Name, "locked").Inc()
		return
	}
	runCtx, cancel := s.leaseContext(ctx, lease)
	defer cancel()
	if _, err := s.runOnce(runCtx, t, &writeFence{key: jobName(t), epoch: lease.Epoch}); err != nil && ctx.Err() == nil {
		s.logger.Error("aggregation run failed", "table", t.Name, "err", err, "epoch", lease.Epoch)
	}
}

// leaseContext ends well before the lease does, so the next holder never
// sees a write of ours land after it started. The lease is on the locker's
// clock; the context's deadline on the real one.
func (s *Service) leaseContext(ctx context.Context, lease Lease) (context.Context, context.CancelFunc) {
	left := lease.Until.Add(-s.cfg.Lease / 10).Sub(s.now())
	return context.WithDeadline(ctx, time.Now().Add(left))
}

// writeFence is the lease a run writes under: before each write the
// lease's fence must not have passed epoch.
type writeFence struct {
	key   string
	epoch int64
}

// RunStats says what one run did.
type RunStats struct {
	Watermark  time.Time
	Computed   int // windows summarised for the first time
	Recomputed int
	Skipped    int
	Late       int   // frozen windows with new records
	TooLate    int64 // records counted as too late
	RowsRead   int64
	Objects    int // summary objects written
}

// RunOnce brings every closed window of t up to date: finest windows from
// raw data, coarser ones by merging finer summaries. Safe to repeat: an
// unchanged window is skipped, a recomputed one is rewritten whole. It
// takes no lease; its writes are still conditional on the versions read,
// so it never overwrites a summary another aggregator wrote meanwhile.
func (s *Service) RunOnce(ctx context.Context, t *schema.Table) (RunStats, error) {
	return s.runOnce(ctx, t, nil)
}

func (s *Service) runOnce(ctx context.Context, t *schema.Table, fence *writeFence) (st RunStats, err error) {
	start := s.now()
	defer func() {
		s.m.jobDuration.WithLabelValues(t.Name).Observe(time.Since(start).Seconds())
		outcome := "ok"
		if err != nil {
			outcome = "error"
		} else {
			s.m.lastSuccess.WithLabelValues(t.Name).Set(float64(s.now().Unix()))
		}
		s.m.runs.WithLabelValues(t.Name, outcome).Inc()
	}()
	if s.commits.Manifests() {
		return s.runIncremental(ctx, t, fence)
	}
	return s.runFull(ctx, t, fence, nil)
}

// runFull reads the whole commit log of t and brings every closed window
// up to date. With a cursor (the run's own, read from the summary store) it
// also records the inputs of every hour in the hour manifests and leaves a
// cursor at the chains' ends, so the next run reads only what follows.
func (s *Service) runFull(ctx context.Context, t *schema.Table, fence *writeFence, cur *cursorAt) (st RunStats, err error) {
	chains, live, err := s.commits.LiveSnapshot(ctx, t.Name)
	if err != nil {
		return st, fmt.Errorf("read commit log: %w", err)
	}
	recs := lake.ChainRecords(chains)
	r := t.Rollup
	wm, cause, ok := WatermarkHeld(recs, r.AllowedLateness, s.cfg.IdleTimeout, s.now())
	s.m.observeWatermark(t.Name, wm, cause, ok, s.now())
	if !ok {
		return st, nil
	}
	st.Watermark = wm
	if cur != nil {
		// Before the summaries and the cursor: every link the cursor will
		// pass is then in the manifests.
		if _, err := s.commits.AddToHourManifests(ctx, t.Name, recs); err != nil {
			return st, err
		}
	}
	objs, err := s.unretired(ctx, t, Inputs(recs))
	if err != nil {
		return st, err
	}
	if cur == nil {
		_, err := s.bringUpToDate(ctx, t, objs, live, wm, nil, &st, nil, fence)
		return st, err
	}
	budget, cancel := runBudget(ctx)
	defer cancel()
	failed, err := s.bringUpToDate(budget, t, objs, live, wm, nil, &st, nil, fence)
	if err != nil && len(failed) == 0 {
		if !cutShort(err, budget, ctx) {
			return st, err
		}
		// Cut short by the lease, on a table too long to finish in one:
		// the cursor passes the links all the same (they are in the
		// manifests), and every hour with inputs is retried. The next run
		// reads those hours from the manifests instead of the whole log,
		// and skips the units this one finished.
		hours := inputHours(objs)
		s.logger.Warn("first aggregation run over the whole table cut short by its lease; the next run goes on from here",
			"table", t.Name, "hours_left_to_check", len(hours), "err", err)
		c := runCursor{Chains: lake.MarkChains(chains), Retry: hours}
		return st, errors.Join(err, s.writeCursor(ctx, t, c, cur.version, fence))
	}
	c := runCursor{Chains: lake.MarkChains(chains), ClosedThrough: wm, Retry: retryHours(nil, failed)}
	return st, errors.Join(err, s.writeCursor(ctx, t, c, cur.version, fence))
}

// Backfill brings the windows in [from, to) up to date, reporting progress
// per finest-window unit.
func (s *Service) Backfill(ctx context.Context, t *schema.Table, from, to time.Time, progress func(done, total int)) (RunStats, error) {
	var st RunStats
	chains, live, err := s.commits.LiveSnapshot(ctx, t.Name)
	if err != nil {
		return st, fmt.Errorf("read commit log: %w", err)
	}
	recs := lake.ChainRecords(chains)
	wm, ok := Watermark(recs, t.Rollup.AllowedLateness, s.cfg.IdleTimeout, s.now())
	if !ok {
		return st, nil
	}
	if to.After(wm) {
		to = wm
	}
	st.Watermark = wm
	objs, err := s.unretired(ctx, t, Inputs(recs))
	if err != nil {
		return st, err
	}
	keep := func(w time.Duration, start int64) bool {
		return start >= from.UnixMicro() && (to.IsZero() || start+w.Microseconds() <= to.UnixMicro())
	}
	_, err = s.bringUpToDate(ctx, t, objs, live, to, keep, &st, progress, nil)
	return st, err
}

// bringUpToDate brings the closed windows (ending at or before wm) that
// objs feed up to date: all of them, or those keep accepts. live are the
// raw objects to read, at least those of the windows kept. Units skipped
// for bad data are returned as spans [start, end) µs, with their errors
// joined in err; any other error stops the run and comes with no spans.
func (s *Service) bringUpToDate(ctx context.Context, t *schema.Table, objs []InputObject, live []lake.LiveObject, wm time.Time,
	keep func(w time.Duration, start int64) bool, st *RunStats, progress func(done, total int), fence *writeFence) ([][2]int64, error) {
	byLink := map[Link][]InputObject{}
	for _, o := range objs {
		byLink[o.Link] = append(byLink[o.Link], o)
	}
	liveByKey := make(map[string]lake.LiveObject, len(live))
	for _, o := range live {
		liveByKey[o.Key] = o
	}
	raw := rawInputs{live: live, liveByKey: liveByKey, byLink: byLink}
	r := t.Rollup
	var failed [][2]int64 // spans whose windows could not be brought up to date
	var failures []error
	for i, w := range r.Windows {
		windows := WindowInputs(objs, w, wm)
		if keep != nil {
			for start := range windows {
				if !keep(w, start) {
					delete(windows, start)
				}
			}
		}
		units := groupByUnit(windows, w)
		unitStarts := make([]int64, 0, len(units))
		for u := range units {
			unitStarts = append(unitStarts, u)
		}
		slices.Sort(unitStarts)
		var finer time.Duration
		if i > 0 {
			finer = r.Windows[i-1]
		}
		var err error
		failed, failures, err = s.updateUnits(ctx, t, w, finer, unitStarts, units, wm, raw, st, progress, fence, failed, failures)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			progress = nil // reported for the finest windows only
		}
	}
	return failed, errors.Join(failures...)
}

// unitOutcome is what computing one unit gave: the write to make (nil
// when nothing changed), the unit's counts, or why it failed.
type unitOutcome struct {
	write    func(ctx context.Context) error
	st       RunStats
	err      error
	notFiner bool // built from finer windows that could not be brought up to date
}

// updateUnits brings the units of one window size up to date. Up to
// GOMAXPROCS units are computed at once, each folding its raw objects on
// GOMAXPROCS/units goroutines: with many units, one goroutine each, so no
// per-goroutine partial states are merged (with 52k groups that merge was
// a tenth of the pass). A unit is encoded where it was computed, so
// encoding runs in parallel too. Outcomes are taken in unit order, and a
// writer goroutine stores the units in that order while later ones are
// computed; coarser windows read the finer summaries, so every unit is
// stored before updateUnits returns. Memory holds at most GOMAXPROCS units
// being computed, two more computed and waiting their turn, one waiting for
// the writer and one being stored (all but the first encoded: bytes only).
//
// Spans of units skipped for bad data are added to failed and their
// errors to failures; any other error stops the pass.
func (s *Service) updateUnits(ctx context.Context, t *schema.Table, w, finer time.Duration, unitStarts []int64, units map[int64]map[int64][]Link,
	wm time.Time, raw rawInputs, st *RunStats, progress func(done, total int), fence *writeFence,
	failed [][2]int64, failures []error) ([][2]int64, []error, error) {
	procs := runtime.GOMAXPROCS(0)
	par := max(1, min(procs, len(unitStarts)))
	workers := max(1, procs/par)
	writer, wctx := startUnitWriter(ctx)
	cctx, cancel := context.WithCancel(wctx)
	defer cancel()
	finerFailed := slices.Clone(failed) // the units of this size only add to failed after this
	outcomes := make([]chan unitOutcome, len(unitStarts))
	for n := range outcomes {
		outcomes[n] = make(chan unitOutcome, 1)
	}
	// A unit takes a compute slot while it is computed, and a place ahead
	// until its outcome is taken: a unit that finishes early frees its core
	// at once, but finished units wait (as bytes) only a few deep.
	slots := make(chan struct{}, par)
	ahead := make(chan struct{}, par+2)
	var computing sync.WaitGroup
	launched := make(chan struct{})
	go func() {
		defer close(launched)
		for n, u := range unitStarts {
			if !acquire(cctx, ahead) || !acquire(cctx, slots) {
				for _, o := range outcomes[n:] {
					o <- unitOutcome{err: cctx.Err()}
				}
				return
			}
			computing.Add(1)
			go func() {
				defer computing.Done()
				defer func() { <-slots }()
				var out unitOutcome
				if overlaps(finerFailed, u, u+Unit(w).Microseconds()) {
					out.notFiner = true
				} else {
					out.write, out.err = s.updateUnit(cctx, t, w, finer, u, units[u], wm, raw, &out.st, fence, workers)
				}
				outcomes[n] <- out
			}()
		}
	}()
	stop := func(err error) ([][2]int64, []error, error) {
		cancel()
		<-launched
		computing.Wait()
		written, werr := writer.wait()
		st.Objects += written
		return nil, nil, errors.Join(werr, err)
	}
	for n, u := range unitStarts {
		out := <-outcomes[n]
		<-ahead
		if writer.failed() != nil {
			return stop(nil) // later units stopped because a write failed
		}
		if err := ctx.Err(); err != nil {
			return stop(err)
		}
		st.add(out.st)
		end := u + Unit(w).Microseconds()
		if out.notFiner {
			// Built from finer windows that could not be brought up to
			// date: left as it is until they can.
			s.m.windows.WithLabelValues(t.Name, WindowName(w), "failed").Add(float64(len(units[u])))
			failed = append(failed, [2]int64{u, end}) // retried with the rest
			continue
		}
		if out.err != nil {
			err := fmt.Errorf("%s %s windows of %s: %w", t.Name, w, time.UnixMicro(u).UTC().Format(time.RFC3339), out.err)
			if !errors.Is(err, ErrBadObject) {
				return stop(err)
			}
			// Bad data in one unit never stops the rest of the table:
			// it is skipped, logged and counted, and the run reports it.
			s.logger.Error("windows skipped: an input object cannot be aggregated", "table", t.Name, "window", w, "unit", time.UnixMicro(u).UTC(), "err", err)
			s.m.windows.WithLabelValues(t.Name, WindowName(w), "failed").Add(float64(len(units[u])))
			failed = append(failed, [2]int64{u, end})
			failures = append(failures, err)
		} else if out.write != nil {
			if err := writer.write(out.write); err != nil {
				return stop(nil)
			}
		}
		if progress != nil {
			progress(n+1, len(unitStarts))
		}
	}
	<-launched
	computing.Wait()
	written, err := writer.wait()
	st.Objects += written
	if err != nil {
		return nil, nil, err
	}
	return failed, failures, nil
}

// acquire takes a place in sem, false if ctx ends first.
func acquire(ctx context.Context, sem chan struct{}) bool {
	select {
	case sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// add adds a unit's counts to the run's.
func (st *RunStats) add(o RunStats) {
	st.Computed += o.Computed
	st.Recomputed += o.Recomputed
	st.Skipped += o.Skipped
	st.Late += o.Late
	st.TooLate += o.TooLate
	st.RowsRead += o.RowsRead
	st.Objects += o.Objects
}

// ErrBadObject is wrapped by a run's error when a committed object could
// not be aggregated (it does not match its record, or cannot be read as the
// table's Parquet); the windows it feeds are skipped, the rest go on.
var ErrBadObject = errors.New("object cannot be aggregated")

// overlaps reports whether [from, to) meets one of spans.
func overlaps(spans [][2]int64, from, to int64) bool {
	for _, sp := range spans {
		if from < sp[1] && sp[0] < to {
			return true
		}
	}
	return false
}

func groupByUnit(windows map[int64][]Link, w time.Duration) map[int64]map[int64][]Link {
	unit := Unit(w).Microseconds()
	out := map[int64]map[int64][]Link{}
	for start, links := range windows {
		u := floorTo(start, unit)
		if out[u] == nil {
			out[u] = map[int64][]Link{}
		}
		out[u][start] = links
	}
	return out
}

// SummaryKey is where the windows of size w in the unit starting at
// unitStart live: `<table>/<window>/dt=YYYY-MM-DD/<unit>.parquet`.
func SummaryKey(table string, w time.Duration, unitStart time.Time) string {
	return lake.SummaryKey(table, WindowName(w), unitStart, Unit(w) == time.Hour)
}

// WindowName spells a window size the way table definitions do: 1m, 5m, 1h, 1d.
func WindowName(w time.Duration) string {
	switch {
	case w%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", w/(24*time.Hour))
	case w%time.Hour == 0:
		return fmt.Sprintf("%dh", w/time.Hour)
	case w%time.Minute == 0:
		return fmt.Sprintf("%dm", w/time.Minute)
	default:
		return fmt.Sprintf("%ds", w/time.Second)
	}
}

// rawInputs are a run's raw objects: the live ones (what a window is
// computed from) and, by link, those its commit records name.
type rawInputs struct {
	live      []lake.LiveObject
	liveByKey map[string]lake.LiveObject
	byLink    map[Link][]InputObject
}

// updateUnit computes the windows of one summary object that need it, and
// returns the write that brings the object up to date (nil if nothing
// changed). Raw objects are folded on workers goroutines.
func (s *Service) updateUnit(ctx context.Context, t *schema.Table, w, finer time.Duration, unitStart int64, windows map[int64][]Link,
	wm time.Time, raw rawInputs, st *RunStats, fence *writeFence, workers int) (func(context.Context) error, error) {
	key := SummaryKey(t.Name, w, time.UnixMicro(unitStart))
	existingRows, states, version, err := s.readUnit(ctx, t, key)
	if err != nil {
		return nil, err
	}
	decisions := Decide(windows, states, w, wm, t.Rollup.LateHorizon)
	wname := WindowName(w)
	var compute []int64
	var added addedLinks
	changed := false
	for _, d := range decisions {
		switch d.Action {
		case Skip:
			st.Skipped++
			s.m.windows.WithLabelValues(t.Name, wname, "skipped").Inc()
		case Compute:
			if prev, had := states[d.Start]; had && finer == 0 && len(difference(prev.Links, d.Inputs)) > 0 {
				// Computed from links this run has not seen: another
				// aggregator read the log later than we did. Writing our
				// older view over it would undo its work until the window
				// changes again (runs skip what their cursor has passed).
				s.m.fenced.WithLabelValues(t.Name).Inc()
				return nil, fmt.Errorf("window %s: %w: its summary holds links this run has not read; another aggregator is ahead",
					time.UnixMicro(d.Start).UTC().Format(time.RFC3339), ErrFenced)
			}
			prev, had := states[d.Start]
			if !had || finer != 0 || !added.add(prev, d, w, raw) {
				compute = append(compute, d.Start)
			}
			if had {
				st.Recomputed++
				s.m.windows.WithLabelValues(t.Name, wname, "recomputed").Inc()
			} else {
				st.Computed++
				s.m.windows.WithLabelValues(t.Name, wname, "summarised").Inc()
			}
			ws := WindowState{Inputs: d.Hash, Seen: d.Hash}
			if finer == 0 {
				ws.Links, ws.LinksExact = d.Inputs, true
			}
			states[d.Start] = ws
			changed = true
		case CountLate:
			st.Late++
			s.m.windows.WithLabelValues(t.Name, wname, "late").Inc()
			ws := states[d.Start]
			if finer == 0 {
				n, err := s.countRows(ctx, t, w, d.Start, d.NewLinks, raw.byLink)
				if err != nil {
					return nil, err
				}
				ws.TooLate += n
				ws.Late = mergeLinks(ws.Late, d.NewLinks)
				st.TooLate += n
				s.m.tooLate.WithLabelValues(t.Name).Add(float64(n))
			}
			ws.Seen = d.Hash
			states[d.Start] = ws
			changed = true
		}
	}
	if !changed {
		return nil, nil
	}
	var fresh *Summary
	if len(compute) > 0 {
		slices.Sort(compute)
		from, to := time.UnixMicro(compute[0]), time.UnixMicro(compute[len(compute)-1]).Add(w)
		if finer == 0 {
			fresh, err = s.computeFromRaw(ctx, t, w, from, to, raw.live, st, workers)
		} else {
			fresh, err = s.computeFromFiner(ctx, t, w, finer, from, to)
		}
		if err != nil {
			return nil, err
		}
		fresh = fresh.SelectWindows(compute)
	}
	// The existing rows are decoded only now that something changed: a
	// unit whose windows are all up to date costs its footer only.
	existing, err := existingRows()
	if err != nil {
		return nil, err
	}
	var parts []*Summary
	if existing != nil {
		parts = append(parts, existing.DropWindows(append(slices.Clip(compute), added.windows()...)))
	}
	if fresh != nil {
		parts = append(parts, fresh)
	}
	if len(added.groups) > 0 {
		merged, err := s.mergeAdded(ctx, t, w, existing, &added, st, workers)
		if err != nil {
			return nil, err
		}
		parts = append(parts, merged)
	}
	out, err := combineUnit(t, w, parts...)
	if err != nil {
		return nil, err
	}
	// Encoded here, on the unit's goroutine: units are encoded in
	// parallel, and the writer only stores them, in order.
	data, err := encodeUnit(t, key, out, states)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		if err := s.writeUnit(ctx, t, key, data, version, fence); err != nil {
			return fmt.Errorf("%s %s windows of %s: %w", t.Name, w, time.UnixMicro(unitStart).UTC().Format(time.RFC3339), err)
		}
		return nil
	}, nil
}

// combineUnit puts together the kept and the recomputed windows of a unit.
// They are disjoint sets of windows of size w, each row already one group,
// so their rows only need putting in order: merging them (Merge) would copy
// every sketch into a new one for nothing. Parts that are not of that shape
// (a duplicate group, another window size) go through Merge.
func combineUnit(t *schema.Table, w time.Duration, parts ...*Summary) (*Summary, error) {
	out := &Summary{Window: w}
	for _, p := range parts {
		if p == nil {
			continue
		}
		if len(p.Rows) > 0 && p.Window != w {
			return Merge(t, w, parts...)
		}
		if out.Rows == nil {
			out.Rows = p.Rows // the common case, one part: not copied
			continue
		}
		out.Rows = append(slices.Clip(out.Rows), p.Rows...)
	}
	if !slices.IsSortedFunc(out.Rows, func(a, b Row) int { return compareRows(&a, &b) }) {
		out.Rows = slices.Clone(out.Rows)
		out.sort()
	}
	for i := 1; i < len(out.Rows); i++ {
		if compareRows(&out.Rows[i-1], &out.Rows[i]) == 0 {
			return Merge(t, w, parts...)
		}
	}
	return out, nil
}

func mergeLinks(a, b []Link) []Link {
	out := append(slices.Clone(a), b...)
	slices.SortFunc(out, Link.compare)
	return slices.CompactFunc(out, func(x, y Link) bool { return x == y })
}

// computeFromRaw aggregates the live raw objects overlapping [from, to),
// workers objects at a time: memory holds at most that many objects.
func (s *Service) computeFromRaw(ctx context.Context, t *schema.Table, w time.Duration, from, to time.Time, live []lake.LiveObject, st *RunStats,
	workers int) (*Summary, error) {
	agg := NewAggregator(t, w, from, to)
	fromUS, toUS := from.UnixMicro(), to.UnixMicro()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(workers)
	var rows atomic.Int64
	for _, o := range live {
		if o.MaxEventTimeMicros < fromUS || o.MinEventTimeMicros >= toUS {
			continue
		}
		g.Go(func() error {
			data, err := s.readSized(gctx, s.raw, o.Key, o.Size)
			if err != nil {
				return err
			}
			if err := lake.CheckObject(o.CommittedObject, data); err != nil {
				return fmt.Errorf("aggregate: %w: %w", ErrBadObject, err)
			}
			if err := agg.AddParquet(bytes.NewReader(data), int64(len(data))); err != nil {
				return fmt.Errorf("aggregate %s: %w: %w", o.Key, ErrBadObject, err)
			}
			rows.Add(o.Rows)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	st.RowsRead += rows.Load()
	s.m.rowsRead.WithLabelValues(t.Name).Add(float64(rows.Load()))
	return agg.Result(), nil
}

// computeFromFiner merges the finer summaries covering [from, to): coarser
// windows never read raw data again.
func (s *Service) computeFromFiner(ctx context.Context, t *schema.Table, w, finer time.Duration, from, to time.Time) (*Summary, error) {
	unit := Unit(finer)
	var parts []*Summary
	for u := from.Truncate(unit); u.Before(to); u = u.Add(unit) {
		rows, _, _, err := s.readUnit(ctx, t, SummaryKey(t.Name, finer, u))
		if err != nil {
			return nil, err
		}
		sum, err := rows()
		if err != nil {
			return nil, err
		}
		if sum != nil {
			parts = append(parts, sum)
		}
	}
	return Merge(t, w, parts...)
}

// countRows counts the rows of links' raw objects inside one window: the
// records that came too late for it. It reads the objects as first
// committed; after compaction has removed them, it counts from the commit
// record when the object lies wholly in the window.
func (s *Service) countRows(ctx context.Context, t *schema.Table, w time.Duration, start int64, links []Link, byLink map[Link][]InputObject) (int64, error) {
	var n int64
	end := start + w.Microseconds()
	for _, l := range links {
		for _, o := range byLink[l] {
			if o.MaxMicros < start || o.MinMicros >= end {
				continue
			}
			if o.MinMicros >= start && o.MaxMicros < end {
				n += o.Rows
				continue
			}
			data, err := s.readAll(ctx, s.raw, o.Key)
			if objstore.IsNotExist(err) {
				s.logger.Warn("too-late object already compacted away; its records in the window are not counted", "key", o.Key)
				continue
			}
			if err != nil {
				return 0, err
			}
			agg := NewAggregator(t, w, time.UnixMicro(start), time.UnixMicro(end))
			if err := agg.AddParquet(bytes.NewReader(data), int64(len(data))); err != nil {
				return 0, fmt.Errorf("count %s: %w", o.Key, err)
			}
			n += agg.Result().TotalRows()
		}
	}
	return n, nil
}

// readUnit returns a summary object's window states and version, and a
// function that decodes its rows (nil when it does not exist yet, or is of
// an earlier rollup shape); empty and "" when it does not exist yet. The
// rows are decoded only when asked for: deciding what a unit needs takes
// its footer alone.
func (s *Service) readUnit(ctx context.Context, t *schema.Table, key string) (func() (*Summary, error), map[int64]WindowState, string, error) {
	noRows := func() (*Summary, error) { return nil, nil }
	states := map[int64]WindowState{}
	data, version, err := s.summaries.GetVersion(ctx, key)
	if objstore.IsNotExist(err) {
		return noRows, states, "", nil
	}
	if err != nil {
		return nil, nil, "", err
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, nil, "", fmt.Errorf("open summary %s: %w", key, err)
	}
	if why := olderShape(f, t); why != "" {
		// Written for an earlier rollup (a measure or dimension since
		// added): every window of the unit is computed again, from raw
		// data or the finer windows, and written in the new shape (over
		// this version).
		s.logger.Info("summary of an earlier rollup shape; recomputing its windows", "key", key, "why", why)
		return noRows, states, version, nil
	}
	if meta, ok := f.Lookup(windowsMetaKey); ok {
		var byTime map[string]WindowState
		if err := json.Unmarshal([]byte(meta), &byTime); err != nil {
			return nil, nil, "", fmt.Errorf("summary %s: window states: %w", key, err)
		}
		for k, v := range byTime {
			ts, err := time.Parse(time.RFC3339Nano, k)
			if err != nil {
				return nil, nil, "", fmt.Errorf("summary %s: window %q: %w", key, k, err)
			}
			states[ts.UnixMicro()] = v
		}
	}
	rows := func() (*Summary, error) {
		sum, err := ReadSummary(bytes.NewReader(data), int64(len(data)), t)
		if err != nil {
			return nil, fmt.Errorf("read summary %s: %w", key, err)
		}
		return sum, nil
	}
	return rows, states, version, nil
}

// encodeUnit encodes the summary object of key: sum's rows, and states in
// the footer.
func encodeUnit(t *schema.Table, key string, sum *Summary, states map[int64]WindowState) ([]byte, error) {
	byTime := make(map[string]WindowState, len(states))
	starts := make([]int64, 0, len(states))
	for k := range states {
		starts = append(starts, k)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i] < starts[j] })
	for _, k := range starts {
		byTime[time.UnixMicro(k).UTC().Format(time.RFC3339Nano)] = states[k]
	}
	meta, err := json.Marshal(byTime) // map keys marshal sorted: deterministic
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := WriteSummary(&buf, t, sum, map[string]string{windowsMetaKey: string(meta)}); err != nil {
		return nil, fmt.Errorf("encode summary %s: %w", key, err)
	}
	return buf.Bytes(), nil
}

// writeUnit replaces the summary object at key with data only if it is
// still the version read (version "": creates it only if it is still
// absent), and, under a lease, only while no newer lease was taken. A write
// that loses is counted in sluice_aggregate_fenced_writes_total and fails
// the run; the next run starts over from what the winner wrote.
func (s *Service) writeUnit(ctx context.Context, t *schema.Table, key string, data []byte, version string, fence *writeFence) error {
	var err error
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("not writing %s: %w", key, err) // the lease is over
	}
	if fence != nil {
		if err := s.locker.CheckFence(ctx, fence.key, fence.epoch); err != nil {
			if errors.Is(err, ErrFenced) {
				s.m.fenced.WithLabelValues(t.Name).Inc()
			}
			return fmt.Errorf("not writing %s: %w", key, err)
		}
	}
	if version == "" {
		err = s.summaries.PutIfAbsent(ctx, key, data)
	} else {
		err = s.summaries.PutIfMatch(ctx, key, data, version)
	}
	if objstore.IsExists(err) || objstore.IsChanged(err) {
		// A retried attempt of ours may have landed, or another writer
		// wrote these very bytes: then nothing was lost.
		if cur, _, gerr := s.summaries.GetVersion(ctx, key); gerr == nil && bytes.Equal(cur, data) {
			err = nil
		} else {
			s.m.fenced.WithLabelValues(t.Name).Inc()
			return fmt.Errorf("write summary %s: %w: another aggregator wrote it since it was read (%v)", key, ErrFenced, err)
		}
	}
	if err != nil {
		return fmt.Errorf("write summary %s: %w", key, err)
	}
	return nil
}

func (s *Service) readAll(ctx context.Context, b objstore.Bucket, key string) ([]byte, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// readSized reads an object its commit record says is size bytes long
// into a buffer of that size, not one grown (and copied) as it is read.
// A record's size is only a hint here: CheckObject verifies it.
func (s *Service) readSized(ctx context.Context, b objstore.Bucket, key string, size int64) ([]byte, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	const maxHint = 256 << 20 // a bad record must not make us allocate its claim
	buf := bytes.NewBuffer(make([]byte, 0, min(max(size, 0), maxHint)+bytes.MinRead))
	_, err = buf.ReadFrom(rc)
	return buf.Bytes(), err
}

type gocronLogger struct{ l *slog.Logger }

func (g gocronLogger) Debug(msg string, args ...any) { g.l.Debug(msg, args...) }
func (g gocronLogger) Info(msg string, args ...any)  { g.l.Debug(msg, args...) }
func (g gocronLogger) Warn(msg string, args ...any)  { g.l.Warn(msg, args...) }
func (g gocronLogger) Error(msg string, args ...any) { g.l.Error(msg, args...) }
