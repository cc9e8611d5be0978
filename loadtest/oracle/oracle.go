package oracle

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/schema"
)

// Column names every summary file has (README: "Summary files").
const (
	colStart = "window_start"
	colEnd   = "window_end"
	colRows  = "__rows"
)

// DistinctSigmas is how many standard errors a distinct estimate may be off.
const DistinctSigmas = 3

// Quantile is one quantile column.
type Quantile struct {
	Column string
	Q      float64
}

// Columns names the summary columns the truth is compared with, as the
// table's rollup defines them. An empty name is a measure the rollup lacks.
type Columns struct {
	Count              string // kind count
	Sum, Min, Max, Avg string // of amount
	Quantiles          []Quantile
	RelativeAccuracy   float64 // of the latency quantiles
	Distinct           string  // of user_id
	Precision          int     // of the distinct sketch
}

// ColumnsFor returns the columns of t's rollup. t must be grouped by
// (event_type, country), as the sample table is, and its measures must be
// over fields the truth keeps: amount (sum, min, max, avg), latency_ms
// (quantiles) and user_id (distinct).
func ColumnsFor(t *schema.Table) (Columns, error) {
	var c Columns
	if t == nil || t.Rollup == nil {
		return c, errors.New("oracle: table has no rollup")
	}
	if !slices.Equal(t.Rollup.Dimensions, []string{"event_type", "country"}) {
		return c, fmt.Errorf("oracle: table %s is grouped by %v; the truth groups by [event_type country]", t.Name, t.Rollup.Dimensions)
	}
	for _, m := range t.Rollup.Measures {
		switch {
		case m.Kind == schema.KindCount:
			c.Count = m.Name
		case m.Kind == schema.KindSum && m.Field == "amount":
			c.Sum = m.Name
		case m.Kind == schema.KindMin && m.Field == "amount":
			c.Min = m.Name
		case m.Kind == schema.KindMax && m.Field == "amount":
			c.Max = m.Name
		case m.Kind == schema.KindAvg && m.Field == "amount":
			c.Avg = m.Name
		case m.Kind == schema.KindQuantiles && m.Field == "latency_ms":
			c.RelativeAccuracy = m.RelativeAccuracy
			if c.RelativeAccuracy == 0 {
				c.RelativeAccuracy = schema.DefaultRelativeAccuracy
			}
			for _, q := range m.Quantiles {
				c.Quantiles = append(c.Quantiles, Quantile{Column: m.QuantileColumn(q), Q: q})
			}
		case m.Kind == schema.KindDistinct && m.Field == "user_id":
			c.Distinct, c.Precision = m.Name, m.Precision
			if c.Precision == 0 {
				c.Precision = schema.DefaultDistinctPrecision
			}
		default:
			return c, fmt.Errorf("oracle: measure %s (%s of %q): the truth does not keep it", m.Name, m.Kind, m.Field)
		}
	}
	return c, nil
}

// Row is one summary row as read from the file. Float columns hold NaN for
// NULL.
type Row struct {
	Start, End         int64 // µs
	Group              gen.Group
	Rows, Count        int64
	Sum, Min, Max, Avg float64
	Quantiles          []float64 // in Columns.Quantiles order
	Distinct           int64
}

// Rows maps window start (µs) to the rows of that window by group.
type Rows map[int64]map[gen.Group]Row

// Read reads one summary file and adds its rows to rows. A (window, group)
// already present is an error: every window lives in one file only.
func (c Columns) Read(rows Rows, name string, data []byte) error {
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	idx, err := c.columnIndexes(f.Schema())
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	r := parquet.NewReader(f)
	defer r.Close()
	buf := make([]parquet.Row, 256)
	for {
		n, err := r.ReadRows(buf)
		for _, pr := range buf[:n] {
			row := c.row(pr, idx)
			w := rows[row.Start]
			if w == nil {
				w = map[gen.Group]Row{}
				rows[row.Start] = w
			}
			if _, dup := w[row.Group]; dup {
				return fmt.Errorf("%s: window %s group %s appears twice", name, fmtStart(row.Start), row.Group)
			}
			w[row.Group] = row
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

// columnIndexes are the indexes of the columns the oracle reads, by name.
func (c Columns) columnIndexes(sch *parquet.Schema) (map[string]int, error) {
	idx := map[string]int{}
	names := []string{colStart, colEnd, "event_type", "country", colRows, c.Count, c.Sum, c.Min, c.Max, c.Avg, c.Distinct}
	for _, q := range c.Quantiles {
		names = append(names, q.Column)
	}
	for _, n := range names {
		if n == "" {
			continue
		}
		lc, ok := sch.Lookup(n)
		if !ok {
			return nil, fmt.Errorf("no column %s", n)
		}
		idx[n] = lc.ColumnIndex
	}
	return idx, nil
}

// row reads the oracle's columns of one summary row; idx gives their
// indexes by name.
func (c Columns) row(pr parquet.Row, idx map[string]int) Row {
	vals := make(map[int]parquet.Value, len(pr))
	for _, v := range pr {
		vals[v.Column()] = v
	}
	get := func(n string) parquet.Value {
		if n == "" {
			return parquet.NullValue()
		}
		return vals[idx[n]]
	}
	flt := func(n string) float64 {
		v := get(n)
		if v.IsNull() {
			return math.NaN()
		}
		return v.Double()
	}
	str := func(n string) string {
		v := get(n)
		if v.IsNull() {
			return ""
		}
		return string(v.ByteArray())
	}
	row := Row{
		Start: get(colStart).Int64(), End: get(colEnd).Int64(),
		Group: gen.Group{EventType: str("event_type"), Country: str("country")},
		Rows:  get(colRows).Int64(), Count: get(c.Count).Int64(),
		Sum: flt(c.Sum), Min: flt(c.Min), Max: flt(c.Max), Avg: flt(c.Avg),
		Distinct: get(c.Distinct).Int64(),
	}
	for _, q := range c.Quantiles {
		row.Quantiles = append(row.Quantiles, flt(q.Column))
	}
	return row
}

func fmtStart(us int64) string { return time.UnixMicro(us).UTC().Format(time.RFC3339) }

// Compare compares the rows of one window of size w with the truth's
// groups and returns one line per difference, naming the group and the
// column; nil when they agree.
func (c Columns) Compare(w time.Duration, start int64, got map[gen.Group]Row, want map[gen.Group]gen.Stats) []string {
	var out []string
	add := func(g gen.Group, format string, args ...any) {
		out = append(out, fmt.Sprintf("group %s: ", g)+fmt.Sprintf(format, args...))
	}
	// Exact float comparison: NaN (NULL) never equals a value.
	flt := func(g gen.Group, col string, got, want float64) {
		if col != "" && got != want {
			add(g, "%s %v, produced %v", col, got, want)
		}
	}
	for g, s := range want {
		r, ok := got[g]
		if !ok {
			add(g, "%d events produced, no summary row", s.Count)
			continue
		}
		if r.End != start+w.Microseconds() {
			add(g, "window_end %s, want %s", fmtStart(r.End), fmtStart(start+w.Microseconds()))
		}
		if r.Rows != s.Count {
			add(g, "%s %d, produced %d", colRows, r.Rows, s.Count)
		}
		if c.Count != "" && r.Count != s.Count {
			add(g, "%s %d, produced %d", c.Count, r.Count, s.Count)
		}
		flt(g, c.Sum, r.Sum, s.Sum)
		flt(g, c.Min, r.Min, s.Min)
		flt(g, c.Max, r.Max, s.Max)
		flt(g, c.Avg, r.Avg, s.Avg())
		for i, q := range c.Quantiles {
			exact, ok := s.Quantile(q.Q)
			got := r.Quantiles[i]
			// The sketch's guarantee, with room for float rounding only.
			tol := c.RelativeAccuracy*math.Abs(float64(exact))*(1+1e-9) + 1e-9
			if !ok || !(math.Abs(got-float64(exact)) <= tol) {
				add(g, "%s %v, exact %d (of %d values), allowed ±%.4g", q.Column, got, exact, s.LatencyValues(), tol)
			}
		}
		if c.Distinct != "" {
			tol := DistinctSigmas * 1.04 / math.Sqrt(math.Ldexp(1, c.Precision)) * float64(s.Users)
			// A small set is held in the sketch's sparse form, one entry
			// per 25-bit hash index: two users whose hashes share an index
			// count once. For a group of n users that happens with odds of
			// about n²/2^26, far below the error bound above for large n,
			// but for the many groups of a few dozen users in a run it
			// happens now and then (23 users estimated as 22, their hashes
			// 22 distinct indices). So one user fewer is always allowed;
			// above the truth only the error bound is (collisions never
			// add users).
			below := tol
			if s.Users >= 2 {
				below = max(tol, 1)
			}
			if d := float64(r.Distinct - s.Users); d > tol || -d > below {
				add(g, "%s %d, exact %d, allowed %.4g below and %.4g above", c.Distinct, r.Distinct, s.Users, below, tol)
			}
		}
	}
	for g, r := range got {
		if _, ok := want[g]; !ok {
			add(g, "summary row with %s %d, no event produced", colRows, r.Rows)
		}
	}
	slices.Sort(out)
	return out
}

// Result is the outcome of checking every window of one size.
type Result struct {
	Window   time.Duration
	Checked  int   // windows compared
	Groups   int64 // summary rows compared
	Failed   int   // windows with a difference
	Failures []string
}

// Check compares every window of size w that holds events and ends at or
// before until (µs) with rows, and reports rows of such windows that hold
// no event. Windows ending after until are not compared.
func (c Columns) Check(truth *gen.Truth, w time.Duration, rows Rows, until int64) Result {
	res := Result{Window: w}
	wu := w.Microseconds()
	want := map[int64]bool{}
	for _, s := range truth.Starts(w) {
		if s+wu <= until {
			want[s] = true
		}
	}
	for s := range rows {
		if s+wu <= until && !want[s] {
			want[s] = true // reported: rows without events
		}
	}
	for _, s := range slices.Sorted(func(yield func(int64) bool) {
		for s := range want {
			if !yield(s) {
				return
			}
		}
	}) {
		res.Checked++
		res.Groups += int64(len(rows[s]))
		if d := c.Compare(w, s, rows[s], truth.Window(w, s)); len(d) > 0 {
			res.Failed++
			res.Failures = append(res.Failures, fmt.Sprintf("window %s %s: %s", windowName(w), fmtStart(s), strings.Join(d, "; ")))
		}
	}
	return res
}

func windowName(w time.Duration) string {
	switch {
	case w%(24*time.Hour) == 0:
		return fmt.Sprintf("%dd", w/(24*time.Hour))
	case w%time.Hour == 0:
		return fmt.Sprintf("%dh", w/time.Hour)
	case w%time.Minute == 0:
		return fmt.Sprintf("%dm", w/time.Minute)
	}
	return w.String()
}
