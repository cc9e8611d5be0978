package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"slices"
	"time"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// maxFailures bounds the differences listed per check.
const maxFailures = 50

// failures collects differences, keeping the first maxFailures.
type failures struct {
	list  []string
	total int
}

func (f *failures) add(format string, args ...any) {
	f.total++
	if len(f.list) < maxFailures {
		f.list = append(f.list, fmt.Sprintf(format, args...))
	}
}

// DeadLetterCheck says whether malformed records were refused for the
// reason they were made to have.
type DeadLetterCheck struct {
	Lines       int64            `json:"lines"`
	ByReason    map[string]int64 `json:"by_reason"`
	Checked     int64            `json:"checked"`      // lines whose expected reason was kept
	WrongReason int64            `json:"wrong_reason"` // lines whose reason differs
	Failures    []string         `json:"failures,omitempty"`
}

// checkDeadLetters reads every live dead-letter object and compares each
// line's reason with the kind of record produced at its position.
func checkDeadLetters(ctx context.Context, raw objstore.Bucket, table string, truth *Truth) (DeadLetterCheck, error) {
	res := DeadLetterCheck{ByReason: map[string]int64{}}
	objs, err := lake.NewCommitLog(raw).LiveDeadLetters(ctx, table)
	if err != nil {
		return res, fmt.Errorf("list dead letters: %w", err)
	}
	var fails failures
	for _, o := range objs {
		data, err := readAll(ctx, raw, o.Key)
		if err != nil {
			if objstore.IsNotExist(err) {
				continue // the raw verifier reports it as missing
			}
			return res, err
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for sc.Scan() {
			var dl struct {
				Partition string `json:"partition"`
				Offset    *int64 `json:"offset"`
				Reason    string `json:"reason"`
			}
			if json.Unmarshal(sc.Bytes(), &dl) != nil || dl.Offset == nil {
				continue // the raw verifier reports unreadable lines
			}
			res.Lines++
			res.ByReason[dl.Reason]++
			pos := verify.Position{Partition: dl.Partition, Offset: *dl.Offset}
			want, ok := truth.reason(pos)
			if !ok {
				continue
			}
			res.Checked++
			if string(want) != dl.Reason {
				res.WrongReason++
				fails.add("dead letter %s: reason %q, produced as %q", pos, dl.Reason, want)
			}
		}
	}
	res.Failures = fails.list
	return res, nil
}

// WindowCheck sums up the summaries of one window size.
type WindowCheck struct {
	Window   string `json:"window"`
	Closed   int    `json:"closed"`   // windows with data ending at or before the watermark
	Verified int    `json:"verified"` // closed windows whose summary matched
	Failed   int    `json:"failed"`
	Skipped  int    `json:"skipped"` // closed windows over MaxExactRows, not recomputed
	Open     int    `json:"open"`    // windows with data not closed at the end
	Groups   int64  `json:"groups"`  // summary rows checked
}

// SummaryCheck is the summary verification's outcome.
type SummaryCheck struct {
	Watermark time.Time     `json:"watermark"`
	Windows   []WindowCheck `json:"windows"`
	Failures  []string      `json:"failures,omitempty"`
	failed    int
}

// summaryInputs is what the summaries are checked against: the commit log
// and the live raw objects at the end of the run.
type summaryInputs struct {
	recs []lake.CommitRecord
	live []lake.LiveObject
	wm   time.Time
}

func loadSummaryInputs(ctx context.Context, env Env, idle time.Duration) (summaryInputs, bool, error) {
	var in summaryInputs
	cl := lake.NewCommitLog(env.Raw)
	recs, err := cl.Records(ctx, env.Table.Name)
	if err != nil {
		return in, false, fmt.Errorf("read commit log: %w", err)
	}
	in.recs = recs
	wm, ok := aggregate.Watermark(recs, env.Table.Rollup.AllowedLateness, idle)
	if !ok {
		return in, false, nil
	}
	in.wm = wm
	in.live, err = cl.LiveObjects(ctx, env.Table.Name)
	if err != nil {
		return in, false, fmt.Errorf("list live objects: %w", err)
	}
	return in, true, nil
}

// staleWindows counts closed windows whose summary is missing or was built
// from other inputs than the commit log now holds: the aggregator has not
// caught up with them yet.
func staleWindows(ctx context.Context, env Env, in summaryInputs) (stale, closed int, err error) {
	objs := aggregate.Inputs(in.recs)
	units := map[string]map[int64]aggregate.WindowState{}
	for _, w := range env.Table.Rollup.Windows {
		for start, links := range aggregate.WindowInputs(objs, w, in.wm) {
			closed++
			key := aggregate.SummaryKey(env.Table.Name, w, time.UnixMicro(start).Truncate(aggregate.Unit(w)))
			states, ok := units[key]
			if !ok {
				states, err = readWindowStates(ctx, env.Summaries, key)
				if objstore.IsNotExist(err) {
					states, err = map[int64]aggregate.WindowState{}, nil
				}
				if err != nil {
					return 0, 0, err
				}
				units[key] = states
			}
			if st, ok := states[start]; !ok || st.Inputs != aggregate.InputsHash(links) {
				stale++
			}
		}
	}
	return stale, closed, nil
}

// checkSummaries verifies every closed window of every size: its summary
// exists, was built from every committed input, equals an exact
// recomputation from the committed raw rows, and those rows agree with what
// was produced.
func checkSummaries(ctx context.Context, env Env, in summaryInputs, truth *Truth, maxRows int64) (SummaryCheck, error) {
	t := env.Table
	res := SummaryCheck{Watermark: in.wm}
	var fails failures
	objs := aggregate.Inputs(in.recs)
	amount := -1 // the rollup's sum of amount: checked against the produced cents
	for i, m := range t.Rollup.Measures {
		if m.Kind == schema.KindSum && m.Field == "amount" {
			amount = i
		}
	}
	for _, w := range t.Rollup.Windows {
		wc := WindowCheck{Window: aggregate.WindowName(w)}
		closed := aggregate.WindowInputs(objs, w, in.wm)
		all := aggregate.WindowInputs(objs, w, time.UnixMicro(math.MaxInt64/2))
		wc.Open = len(all) - len(closed)
		starts := make([]int64, 0, len(closed))
		for s := range closed {
			starts = append(starts, s)
		}
		slices.Sort(starts)
		wc.Closed = len(starts)
		cache := map[string][]byte{}
		var unitKey string
		var unit *aggregate.Summary
		var states map[int64]aggregate.WindowState
		for _, start := range starts {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			ws := time.UnixMicro(start).UTC()
			name := fmt.Sprintf("%s window %s", wc.Window, ws.Format(time.RFC3339))
			key := aggregate.SummaryKey(t.Name, w, ws.Truncate(aggregate.Unit(w)))
			if key != unitKey {
				unitKey, unit, states = key, nil, nil
				data, err := readAll(ctx, env.Summaries, key)
				if err != nil && !objstore.IsNotExist(err) {
					return res, err
				}
				if err == nil {
					if states, err = windowStates(key, data); err != nil {
						fails.add("%s: %v", name, err)
					} else if unit, err = aggregate.ReadSummary(bytes.NewReader(data), int64(len(data)), t); err != nil {
						fails.add("%s: summary %s unreadable: %v", name, key, err)
					}
				}
			}
			st, ok := states[start]
			if unit == nil || !ok {
				wc.Failed++
				fails.add("%s: no summary (expected in %s)", name, key)
				continue
			}
			if st.Inputs != aggregate.InputsHash(closed[start]) {
				wc.Failed++
				fails.add("%s: summary built from other inputs than the %d commit records now overlapping it (aggregator behind)", name, len(closed[start]))
				continue
			}
			from, to := start, start+w.Microseconds()
			var rows int64
			var keys []string
			for _, o := range in.live {
				if o.MaxEventTimeMicros >= from && o.MinEventTimeMicros < to && o.Rows > 0 {
					rows += o.Rows
					keys = append(keys, o.Key)
				}
			}
			if rows > maxRows {
				wc.Skipped++
				continue
			}
			datas := make([][]byte, 0, len(keys))
			for _, k := range keys {
				d, ok := cache[k]
				if !ok {
					var err error
					if d, err = readAll(ctx, env.Raw, k); err != nil {
						if objstore.IsNotExist(err) {
							continue // the raw verifier reports it as missing
						}
						return res, err
					}
					cache[k] = d
				}
				datas = append(datas, d)
			}
			ex, err := aggregate.ExactRecompute(t, w, ws, ws.Add(w), datas...)
			if err != nil {
				return res, fmt.Errorf("%s: exact recomputation: %w", name, err)
			}
			got := unit.SelectWindows([]int64{start})
			wc.Groups += int64(len(got.Rows))
			bad := false
			if err := ex.Check(t, got); err != nil {
				bad = true
				fails.add("%s: summary differs from the committed raw rows: %v", name, err)
			}
			if err := checkTruth(truth.window(ws, w), ex, amount); err != nil {
				bad = true
				fails.add("%s: committed raw rows differ from what was produced: %v", name, err)
			}
			if bad {
				wc.Failed++
			} else {
				wc.Verified++
			}
			// Objects wholly before the next window are not needed again.
			for _, o := range in.live {
				if o.MaxEventTimeMicros < to {
					delete(cache, o.Key)
				}
			}
		}
		res.failed += wc.Failed
		res.Windows = append(res.Windows, wc)
	}
	res.Failures = fails.list
	return res, nil
}

// checkTruth compares the exact recomputation of one window with the
// producers' counts and amounts per (event_type, country).
func checkTruth(want map[[2]string]group, ex *aggregate.Exact, amount int) error {
	var errs []string
	seen := map[[2]string]bool{}
	for _, r := range ex.Rows {
		k := [2]string{dimString(r.Dims[0]), dimString(r.Dims[1])}
		seen[k] = true
		g, ok := want[k]
		if !ok {
			errs = append(errs, fmt.Sprintf("group %v: %d rows committed, none produced", k, r.N))
			continue
		}
		if r.N != g.count {
			errs = append(errs, fmt.Sprintf("group %v: %d rows committed, %d produced", k, r.N, g.count))
		}
		if amount >= 0 {
			// Each amount is the double nearest cents/100 (relative error
			// 2^-53) and amounts are not negative, so the exact sum of the
			// doubles, rounded once, is within 2^-52 of the produced total
			// relative to it; a cent more or less is far outside.
			exact := new(big.Float).SetPrec(4096)
			if fs := r.M[amount].FloatSum; fs != nil {
				exact.Set(fs)
			}
			got, _ := exact.Float64()
			wantSum := float64(g.cents) / 100
			if tol := 1e-13 * math.Max(1, math.Abs(wantSum)); math.Abs(got-wantSum) > tol {
				errs = append(errs, fmt.Sprintf("group %v: amount sum %v committed, %v produced", k, got, wantSum))
			}
		}
	}
	for k, g := range want {
		if !seen[k] {
			errs = append(errs, fmt.Sprintf("group %v: %d rows produced, none committed", k, g.count))
		}
	}
	if len(errs) == 0 {
		return nil
	}
	slices.Sort(errs)
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Sprintf("and %d more", len(errs)-5))
	}
	return fmt.Errorf("%v", errs)
}

func dimString(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}
