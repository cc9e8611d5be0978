package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/oracle"
	"github.com/sluicehq/sluice/loadtest/verify"
	"github.com/sluicehq/sluice/objstore"
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
	Closed   int    `json:"closed"`   // windows with events ending at or before the watermark
	Verified int    `json:"verified"` // closed windows whose summary equals the truth
	Failed   int    `json:"failed"`
	Open     int    `json:"open"`   // windows with events not closed at the end
	Groups   int64  `json:"groups"` // summary rows checked
}

// SummaryCheck is the summary verification's outcome.
type SummaryCheck struct {
	Watermark time.Time     `json:"watermark"`
	Windows   []WindowCheck `json:"windows"`
	Failures  []string      `json:"failures,omitempty"`
	failed    int
}

// summaryInputs is what decides which windows are closed: the commit log
// at the end of the run and the watermark it gives.
type summaryInputs struct {
	recs []lake.CommitRecord
	wm   time.Time
}

func loadSummaryInputs(ctx context.Context, env Env, idle time.Duration, now time.Time) (summaryInputs, bool, error) {
	var in summaryInputs
	recs, err := lake.NewCommitLog(env.Raw).Records(ctx, env.Table.Name)
	if err != nil {
		return in, false, fmt.Errorf("read commit log: %w", err)
	}
	in.recs = recs
	wm, ok := aggregate.Watermark(recs, env.Table.Rollup.AllowedLateness, idle, now)
	if !ok {
		return in, false, nil
	}
	in.wm = wm
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

// checkSummaries verifies every closed window of every size against the
// generators' truth: it reads every summary object of the table as a user
// would (loadtest/oracle) and compares each measure of each group with
// what was produced. A closed window is one holding produced events that
// ends at or before the watermark; its summary must exist, must not hold
// groups nobody produced, and must have been built from every committed
// input (otherwise the aggregator is behind, which is reported as such).
func checkSummaries(ctx context.Context, env Env, in summaryInputs, truth *Truth) (SummaryCheck, error) {
	t := env.Table
	res := SummaryCheck{Watermark: in.wm}
	var fails failures
	if truth.Summaries == nil {
		return res, errors.New("check summaries: the truth keeps no summaries")
	}
	cols, err := oracle.ColumnsFor(t)
	if err != nil {
		return res, err
	}
	until := in.wm.UnixMicro()
	objs := aggregate.Inputs(in.recs)
	for _, w := range t.Rollup.Windows {
		wc := WindowCheck{Window: aggregate.WindowName(w)}
		wu := w.Microseconds()
		rows, states, err := readWindowSummaries(ctx, env, cols, wc.Window, &fails)
		if err != nil {
			return res, err
		}
		inputs := aggregate.WindowInputs(objs, w, in.wm)
		closed, open := closedWindows(truth.Summaries.Starts(w), rows, wu, until)
		wc.Open += open
		for _, start := range slices.Sorted(maps.Keys(closed)) {
			if err := ctx.Err(); err != nil {
				return res, err
			}
			wc.Closed++
			name := fmt.Sprintf("%s window %s", wc.Window, time.UnixMicro(start).UTC().Format(time.RFC3339))
			got := rows[start]
			wc.Groups += int64(len(got))
			if st, ok := states[start]; len(got) > 0 && ok && st.Inputs != aggregate.InputsHash(inputs[start]) {
				wc.Failed++
				fails.add("%s: summary built from other inputs than the %d commit records now overlapping it (aggregator behind)", name, len(inputs[start]))
				continue
			}
			if diffs := cols.Compare(w, start, got, truth.Summaries.Window(w, start)); len(diffs) > 0 {
				wc.Failed++
				if len(diffs) > 5 {
					diffs = append(diffs[:5], fmt.Sprintf("and %d more", len(diffs)-5))
				}
				fails.add("%s: summary differs from what was produced: %s", name, strings.Join(diffs, "; "))
				continue
			}
			wc.Verified++
		}
		res.failed += wc.Failed
		res.Windows = append(res.Windows, wc)
	}
	res.Failures = fails.list
	return res, nil
}

// readWindowSummaries reads the summary objects of the windows named
// window as a user would, and the state each window was built from. An
// object that cannot be read is a failure, not an error.
func readWindowSummaries(ctx context.Context, env Env, cols oracle.Columns, window string, fails *failures) (oracle.Rows, map[int64]aggregate.WindowState, error) {
	rows := oracle.Rows{}
	states := map[int64]aggregate.WindowState{}
	err := env.Summaries.Iter(ctx, lake.SummaryWindowPrefix(env.Table.Name, window), func(a objstore.ObjectAttrs) error {
		if !strings.HasSuffix(a.Key, ".parquet") {
			return nil
		}
		data, err := readAll(ctx, env.Summaries, a.Key)
		if err != nil {
			return err
		}
		if err := cols.Read(rows, a.Key, data); err != nil {
			fails.add("%s window: summary %s unreadable: %v", window, a.Key, err)
			return nil
		}
		st, err := windowStates(a.Key, data)
		if err != nil {
			fails.add("%s window: %v", window, err)
			return nil
		}
		maps.Copy(states, st)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read %s summaries: %w", window, err)
	}
	return rows, states, nil
}

// closedWindows are the windows of wu µs that end by until and either
// hold produced events (starts) or have summary rows (where nothing was
// produced: reported as such); open counts the produced ones still open.
func closedWindows(starts []int64, rows oracle.Rows, wu, until int64) (closed map[int64]bool, open int) {
	closed = map[int64]bool{}
	for _, s := range starts {
		if s+wu <= until {
			closed[s] = true
		} else {
			open++
		}
	}
	for s := range rows {
		if s+wu <= until && !closed[s] {
			closed[s] = true
		}
	}
	return closed, open
}
