package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/loadtest/oracle"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Env is the pipeline under test, as the harness reaches it.
type Env struct {
	// Mode names the setup in the report, e.g. "embedded" or "external".
	Mode string
	// Table is the table the topic feeds; it must have a rollup unless
	// Config.NoSummaries.
	Table *schema.Table
	// Source is the commit-record source of the topic, "kafka:<topic>".
	Source string
	// Raw holds the committed raw objects and the commit log.
	Raw objstore.Bucket
	// Summaries holds the summary objects; nil skips summary checks.
	Summaries objstore.Bucket
	// IdleTimeout is the aggregator's idle timeout (for the watermark).
	IdleTimeout time.Duration
	// ConsumerLag, if set, reads the ingester's lag gauge.
	ConsumerLag MetricLag
	// Aggregator, if set, reads the aggregator's window counters (how many
	// windows late data made it recompute).
	Aggregator MetricAggregator
	// ProcPID, if > 0, is the process whose CPU and memory are reported,
	// and ProcLabel says what it holds.
	ProcPID   int
	ProcLabel string
	// Progress receives a status line every second (nil: none).
	Progress io.Writer
	Logger   *slog.Logger
	// SummariesAsOf is the clock at which Verify judges which windows are
	// closed (zero: now). The aggregator caps its watermark at its clock
	// minus the allowed lateness, so with event times near the clock a
	// window may close while the raw data is being verified; Run sets this
	// to when it saw the aggregator caught up, so that the summaries are
	// judged against what was closed then.
	SummariesAsOf time.Time
}

// Run produces, waits for the pipeline, verifies and measures. The error
// is for a run that could not be carried out (no broker, unreadable
// store); what the verifier found is in the report (Report.OK).
func Run(ctx context.Context, cfg Config, env Env) (*Report, error) {
	cfg, env, err := prepare(cfg, env)
	if err != nil {
		return nil, err
	}
	truth, err := newRunTruth(cfg, env)
	if err != nil {
		return nil, err
	}
	tl := timeline{start: time.Now()}
	if !cfg.Start.IsZero() {
		tl.shift = cfg.Start.Sub(tl.start)
	}
	ps := newProducers(cfg, env.Table, truth, func(wall time.Time) time.Time { return wall.Add(tl.shift) })
	var deadline time.Time
	if cfg.Duration > 0 {
		deadline = tl.start.Add(cfg.Duration)
	}
	mon := newMonitor(env, ps, tl.start, cfg.Duration)
	monCtx, stopMon := context.WithCancel(ctx)
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.run(monCtx) }()
	stopMonitor := func() { stopMon(); <-monDone }
	defer stopMonitor()

	rep := &Report{Mode: env.Mode, Started: tl.start.UTC(), Config: reportConfig(cfg), Truth: truth}
	var fails failures
	if err := produce(ctx, cfg, env, ps, truth, deadline, &tl); err != nil {
		return nil, err
	}
	if err := waitPipeline(ctx, cfg, env, mon, truth, &tl, &fails); err != nil {
		return nil, err
	}
	stopMonitor()
	tl.catchUpEnd = time.Now()

	fmt.Fprint(progressOut(env), "verifying ...")
	if env.SummariesAsOf.IsZero() {
		env.SummariesAsOf = tl.summariesAt
	}
	v, err := Verify(ctx, cfg, env, truth)
	if err != nil {
		return nil, err
	}
	rep.Raw, rep.DeadLetters, rep.Summaries = v.Raw, v.DeadLetters, v.Summaries
	for _, f := range v.Failures {
		fails.add("%s", f)
	}
	fmt.Fprint(progressOut(env), "\r\x1b[K")

	if err := measure(ctx, rep, cfg, env, ps, mon, truth, tl); err != nil {
		return nil, err
	}
	rep.Failures = fails.list
	rep.Verdict = "OK"
	if fails.total > 0 {
		rep.Verdict = "FAILED"
	}
	return rep, nil
}

// timeline is when a run's phases ended.
type timeline struct {
	start      time.Time
	shift      time.Duration // from the wall clock to the event clock
	produceEnd time.Time
	lastReal   time.Time // the latest acknowledged event time
	drainEnd   time.Time
	catchUpEnd time.Time
	// summariesAt is the clock at which the summaries were last seen up to
	// date with every closed window (or at which waiting gave up).
	summariesAt time.Time
}

// prepare checks cfg and env and fills in their defaults.
func prepare(cfg Config, env Env) (Config, Env, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, env, err
	}
	if env.Table == nil || env.Raw == nil {
		return cfg, env, errors.New("loadtest: a table and a raw store are required")
	}
	if env.Summaries == nil || env.Table.Rollup == nil {
		cfg.NoSummaries = true
	}
	if cfg.NoSummaries {
		env.Summaries = nil
	}
	if env.Source == "" {
		env.Source = "kafka:" + cfg.Topic
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, env, nil
}

// newRunTruth is the generators' truth of a run, with the summaries' when
// they are checked.
func newRunTruth(cfg Config, env Env) (*Truth, error) {
	truth := NewTruth()
	if cfg.NoSummaries {
		return truth, nil
	}
	if _, err := oracle.ColumnsFor(env.Table); err != nil {
		return nil, fmt.Errorf("loadtest: the generated events cannot check this table's summaries: %w", err)
	}
	sums, err := gen.NewTruth(env.Table.Rollup.Windows...)
	if err != nil {
		return nil, err
	}
	truth.Summaries = sums
	return truth, nil
}

// produce sends the events until deadline, then the markers that close
// the last windows.
func produce(ctx context.Context, cfg Config, env Env, ps *producers, truth *Truth, deadline time.Time, tl *timeline) error {
	prodErr := ps.run(ctx, deadline)
	tl.produceEnd = time.Now()
	lastReal, haveEvents := truth.MaxEventTime()
	tl.lastReal = lastReal
	if prodErr != nil {
		return fmt.Errorf("produce: %w", prodErr)
	}
	if !haveEvents {
		return errors.New("loadtest: no event was acknowledged")
	}
	if !cfg.NoSummaries {
		at := closingMarkers(env.Table.Rollup, lastReal, cfg.LateBy)
		if err := ps.sendMarkers(ctx, at); err != nil {
			return err
		}
	}
	return nil
}

// waitPipeline waits for the ingester to commit what was acknowledged,
// then for the aggregator to summarise it.
func waitPipeline(ctx context.Context, cfg Config, env Env, mon *monitor, truth *Truth, tl *timeline, fails *failures) error {
	mon.setPhase("draining")
	drained, err := waitCommitted(ctx, env, truth, cfg.DrainTimeout)
	if err != nil {
		return err
	}
	tl.drainEnd = time.Now()
	if !drained {
		fails.add("not every acknowledged record was committed within %s", cfg.DrainTimeout)
	}
	if !cfg.NoSummaries {
		mon.setPhase("aggregating")
		at, err := waitSummaries(ctx, env, cfg.CatchUpTimeout)
		if err != nil {
			return err
		}
		tl.summariesAt = at
	}
	return nil
}

// measure fills in the report's figures: rates, latencies, lag and the
// process's CPU and memory.
func measure(ctx context.Context, rep *Report, cfg Config, env Env, ps *producers, mon *monitor, truth *Truth, tl timeline) error {
	samples, firstSeen, proc0, procEnd, procOK := mon.result()
	good, bad, bytes := truth.Counts()
	rep.Produced = ProducedStats{
		Good: good, Bad: bad, Bytes: bytes, Failed: ps.failed.Load(),
		Seconds: tl.produceEnd.Sub(tl.start).Seconds(), Producers: cfg.Producers,
	}
	rep.Produced.Rate = float64(good+bad) / rep.Produced.Seconds
	rep.Produced.LateBeyondLateness = truth.LateBeyondLateness()
	if env.Aggregator != nil && !cfg.NoSummaries {
		if st, ok := env.Aggregator(ctx); ok {
			rep.Aggregator = &st
		}
	}
	ps.latMu.Lock()
	rep.AckLatencyMS = percentiles(ps.ackLat, 1e3)
	ps.latMu.Unlock()

	commitLat, lastCommit, err := commitLatency(ctx, env, truth)
	if err != nil {
		return err
	}
	rep.CommitLatencyMS = percentiles(commitLat, 1e3)
	rep.CommitLatencyCDF = cdf(commitLat, 1e3)
	rep.Ingest = IngestStats{
		Rows: rep.Raw.CommittedRows, DeadLetters: rep.Raw.CommittedDeadLetters,
		DrainSeconds: tl.drainEnd.Sub(tl.produceEnd).Seconds(),
	}
	if !lastCommit.IsZero() {
		rep.Ingest.Seconds = lastCommit.Sub(tl.start).Seconds()
		rep.Ingest.Rate = float64(rep.Raw.CommittedRows+rep.Raw.CommittedDeadLetters) / rep.Ingest.Seconds
	}
	if !cfg.NoSummaries {
		rep.CatchUpSeconds = tl.catchUpEnd.Sub(tl.drainEnd).Seconds()
		sumLat := summaryLatency(env, firstSeen, tl.start, tl.lastReal, tl.shift)
		sl := percentiles(sumLat, 1e6)
		rep.SummaryLatencyS = &sl
	}
	rep.Series = samples
	rep.Lag = lagStats(samples, tl.produceEnd.Sub(tl.start).Seconds(), cfg.Rate)
	if procOK {
		rep.Process = &ProcessStats{
			Label: env.ProcLabel, PID: env.ProcPID,
			CPUSeconds:   (procEnd.cpu - proc0.cpu).Seconds(),
			PeakRSSBytes: procEnd.peak,
		}
		if el := tl.catchUpEnd.Sub(tl.start).Seconds(); el > 0 {
			rep.Process.AvgCores = rep.Process.CPUSeconds / el
		}
		if n := float64(good + bad); n > 0 {
			rep.Process.CPUSecondsPerMillion = rep.Process.CPUSeconds / (n / 1e6)
		}
	}
	return nil
}

func progressOut(env Env) io.Writer {
	if env.Progress == nil {
		return io.Discard
	}
	return env.Progress
}

// markerMargin is room, in event time, for the aggregator to lag behind
// ingest when the end-of-run markers move the watermark.
const markerMargin = 10 * time.Minute

// closingMarkers returns the event time of the end-of-run markers: one
// event per partition there moves the watermark past the end of every
// window holding real events, up to the coarsest window size for which
// that stays within the late horizon. Windows that still receive real
// events when the markers land must not be frozen by them: the oldest
// such event lies LateBy (plus the aggregator's lag, markerMargin) behind
// the last one, and the markers' watermark must stay within the horizon
// of it.
func closingMarkers(r *schema.Rollup, lastReal time.Time, lateBy time.Duration) time.Time {
	lastUS := lastReal.UnixMicro()
	at := lastReal.Add(r.Windows[0] + r.AllowedLateness + time.Second)
	for _, w := range r.Windows {
		wu := w.Microseconds()
		end := (lastUS/wu + 1) * wu // event times are after 1970
		cand := time.UnixMicro(end).UTC().Add(r.AllowedLateness + time.Second)
		if cand.Add(-r.AllowedLateness).Sub(lastReal)+lateBy+markerMargin > r.LateHorizon {
			break
		}
		at = cand
	}
	return at
}

// waitCommitted polls the commit log until every partition's chain reaches
// past its last acknowledged offset, or timeout.
func waitCommitted(ctx context.Context, env Env, truth *Truth, timeout time.Duration) (bool, error) {
	want := truth.Expected.Ends()
	cl := lake.NewCommitLog(env.Raw)
	deadline := time.Now().Add(timeout)
	for {
		chains, err := cl.Chains(ctx, env.Table.Name)
		if err != nil {
			return false, fmt.Errorf("read commit log: %w", err)
		}
		ends := map[string]int64{}
		for _, ch := range chains {
			if ch.Source != env.Source {
				continue
			}
			if end, ok := ch.End(); ok {
				ends[ch.Partition], _ = end.Next.Int64()
			}
		}
		done := true
		for p, end := range want {
			if ends[p] < end {
				done = false
			}
		}
		if done {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitSummaries polls until every closed window's summary was built from
// all of its committed inputs, or timeout.
func waitSummaries(ctx context.Context, env Env, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		now := time.Now()
		in, ok, err := loadSummaryInputs(ctx, env, env.IdleTimeout, now)
		if err != nil {
			return now, err
		}
		if ok {
			stale, _, err := staleWindows(ctx, env, in)
			if err != nil {
				return now, err
			}
			if stale == 0 {
				return now, nil
			}
		}
		if time.Now().After(deadline) {
			return now, nil // the verifier reports what is stale
		}
		select {
		case <-ctx.Done():
			return now, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}

// commitLatency measures, for sampled offsets, the time from the producer's
// acknowledgement to the commit record that made the record visible
// (committed_at, the ingester's clock). It also returns the last commit
// time of a record holding data.
func commitLatency(ctx context.Context, env Env, truth *Truth) (*hdr.Histogram, time.Time, error) {
	h := newLatencyHistogram()
	var last time.Time
	chains, err := lake.NewCommitLog(env.Raw).Chains(ctx, env.Table.Name)
	if err != nil {
		return h, last, fmt.Errorf("read commit log: %w", err)
	}
	samples := truth.ackSamples()
	for _, ch := range chains {
		if ch.Source != env.Source {
			continue
		}
		for _, r := range ch.Records {
			if r.Records+r.DeadLetters > 0 && r.CommittedAt.After(last) {
				last = r.CommittedAt
			}
		}
		p, err := strconv.Atoi(ch.Partition)
		if err != nil {
			continue
		}
		s := samples[int32(p)]
		i := 0
		for _, r := range ch.Records { // chain order is offset order
			for first, _ := r.Offsets(); i < len(s) && s[i].offset < first; {
				i++
			}
			for _, next := r.Offsets(); i < len(s) && s[i].offset < next; i++ {
				_ = h.RecordValue(max(1, r.CommittedAt.Sub(s[i].at()).Microseconds()))
			}
		}
	}
	return h, last, nil
}

// summaryLatency measures, for every finest window closed by real traffic
// (not by the end-of-run markers) during the run, the time from the
// window's end to when its summary first appeared (the summary object's
// modification time). A window cannot appear before the watermark (latest
// event time minus the allowed lateness) passes its end, so this includes
// the allowed lateness by design. shift is event time minus wall time.
func summaryLatency(env Env, firstSeen map[windowID]time.Time, start, lastReal time.Time, shift time.Duration) *hdr.Histogram {
	h := newLatencyHistogram()
	limit := lastReal.Add(-env.Table.Rollup.AllowedLateness)
	w := env.Table.Rollup.Windows[0]
	name := aggregate.WindowName(w)
	for id, seen := range firstSeen {
		if id.Window != name || time.UnixMicro(id.Start).Add(w).After(limit) {
			continue
		}
		end := time.UnixMicro(id.Start).Add(w).Add(-shift) // on the wall clock
		if end.Before(start) {
			continue
		}
		_ = h.RecordValue(max(1, seen.Sub(end).Microseconds()))
	}
	return h
}

// Verification is the verifier's verdict on the stores as they are now.
type Verification struct {
	Failures    []string // one line per kind of difference; empty when OK
	Raw         RawCheck
	DeadLetters DeadLetterCheck
	Summaries   *SummaryCheck
}

// OK reports whether nothing differs.
func (v Verification) OK() bool { return len(v.Failures) == 0 }

// Verify checks the stores against truth: every acknowledged record is
// committed exactly once (malformed ones as dead letters with the reason
// they were made to have), and every closed window's summary is right. It
// can be run again on a finished run (Report.Truth), e.g. after planting a
// fault. The error is for stores that cannot be read.
func Verify(ctx context.Context, cfg Config, env Env, truth *Truth) (Verification, error) {
	cfg = cfg.WithDefaults()
	if env.Source == "" {
		env.Source = "kafka:" + cfg.Topic
	}
	var v Verification
	var fails failures
	// Verify raw data.
	got, err := verify.ReadCommitted(ctx, env.Raw, env.Table.Name, verify.Options{Source: env.Source,
		EventIDColumn: "event_id", EventIndex: truth.eventIndex()})
	if err != nil {
		return v, err
	}
	raw := verify.Compare(truth.Expected, got)
	v.Raw = rawCheck(raw)
	if !raw.OK() {
		fails.add("raw data: %d lost, %d duplicated, %d unexpected, %d misfiled, %d object issues",
			raw.Lost.Positions, raw.Duplicated.Positions, raw.Unexpected.Positions, raw.Misfiled.Positions, v.Raw.ObjectIssues)
	}
	if raw.DuplicateEventIDs > 0 {
		fails.add("raw data: %d rows repeat another row's event_id", raw.DuplicateEventIDs)
	}
	if raw.UnknownEventIDs > 0 {
		fails.add("raw data: %d rows have an event_id no producer made", raw.UnknownEventIDs)
	}
	dl, err := checkDeadLetters(ctx, env.Raw, env.Table.Name, truth)
	if err != nil {
		return v, err
	}
	v.DeadLetters = dl
	if dl.WrongReason > 0 {
		fails.add("dead letters: %d with another reason than the one produced", dl.WrongReason)
	}

	// Verify summaries.
	if !cfg.NoSummaries && env.Summaries != nil && env.Table.Rollup != nil {
		asOf := env.SummariesAsOf
		if asOf.IsZero() {
			asOf = time.Now()
		}
		in, ok, err := loadSummaryInputs(ctx, env, env.IdleTimeout, asOf)
		if err != nil {
			return v, err
		}
		if !ok {
			fails.add("summaries: no watermark: nothing committed")
		} else {
			sc, err := checkSummaries(ctx, env, in, truth)
			if err != nil {
				return v, err
			}
			v.Summaries = &sc
			if sc.failed > 0 {
				first, _, _ := strings.Cut(sc.Failures[0], "\n")
				fails.add("summaries: %d closed windows wrong or missing, e.g. %s", sc.failed, first)
			}
		}
	}
	v.Failures = fails.list
	return v, nil
}
