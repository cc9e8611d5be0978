package oracle

import (
	"bytes"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/schema"
)

func sampleColumns(t *testing.T) Columns {
	t.Helper()
	c, err := ColumnsFor(schema.SampleTables()[0])
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var start = time.Date(2026, 4, 1, 10, 0, 0, 0, time.UTC)

// oneWindow is a truth with two groups in the minute at start: 200
// purchases from 150 users in DE and one click with a null country.
func oneWindow(t *testing.T) *gen.Truth {
	t.Helper()
	tr, err := gen.NewTruth(time.Minute, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 {
		ev := gen.Event{TS: start.Add(time.Duration(i) * 100 * time.Millisecond), EventType: "purchase", Country: "DE",
			User: uint64(10_000_000 + i%150), Amount: float64(100+i) / 100, LatencyMS: int64(1 + i*i%997)}
		tr.Add(&ev)
	}
	ev := gen.Event{TS: start.Add(59 * time.Second), EventType: "click", User: 10_000_001, LatencyMS: 40}
	tr.Add(&ev)
	for i := range 3 {
		ev := gen.Event{TS: start.Add(58 * time.Second), EventType: "logout", Country: "FR", User: uint64(10_000_001 + i), LatencyMS: 40}
		tr.Add(&ev)
	}
	return tr
}

// rowsFor builds the summary rows a correct aggregator writes for the
// truth's window: every measure exact, quantiles exact too.
func rowsFor(c Columns, w time.Duration, s int64, want map[gen.Group]gen.Stats) map[gen.Group]Row {
	out := map[gen.Group]Row{}
	for g, st := range want {
		r := Row{Start: s, End: s + w.Microseconds(), Group: g, Rows: st.Count, Count: st.Count,
			Sum: st.Sum, Min: st.Min, Max: st.Max, Avg: st.Avg(), Distinct: st.Users}
		for _, q := range c.Quantiles {
			v, _ := st.Quantile(q.Q)
			r.Quantiles = append(r.Quantiles, float64(v))
		}
		out[g] = r
	}
	return out
}

// Every measure is compared: a change to any one column is reported by
// the column's name, and estimates are held to their sketch's bound.
func TestCompare(t *testing.T) {
	c := sampleColumns(t)
	tr := oneWindow(t)
	s := start.UnixMicro()
	want := tr.Window(time.Minute, s)
	de := gen.Group{EventType: "purchase", Country: "DE"}
	click := gen.Group{EventType: "click"}
	logout := gen.Group{EventType: "logout", Country: "FR"}
	p50, _ := want[de].Quantile(0.5)
	users := float64(want[de].Users)
	sigma := 1.04 / math.Sqrt(math.Ldexp(1, c.Precision)) * users
	cases := []struct {
		name   string
		change func(rows map[gen.Group]Row)
		want   string // "" for no difference
	}{
		{name: "equal", change: func(map[gen.Group]Row) {}},
		{name: "__rows", change: func(r map[gen.Group]Row) { x := r[de]; x.Rows++; r[de] = x }, want: "__rows"},
		{name: "count", change: func(r map[gen.Group]Row) { x := r[de]; x.Count--; r[de] = x }, want: "events"},
		{name: "sum by one ulp", change: func(r map[gen.Group]Row) { x := r[de]; x.Sum = math.Nextafter(x.Sum, 0); r[de] = x }, want: "amount_sum"},
		{name: "min", change: func(r map[gen.Group]Row) { x := r[de]; x.Min = 1.01; r[de] = x }, want: "amount_min"},
		{name: "max", change: func(r map[gen.Group]Row) { x := r[de]; x.Max = 2.98; r[de] = x }, want: "amount_max"},
		{name: "avg", change: func(r map[gen.Group]Row) { x := r[de]; x.Avg = math.Nextafter(x.Avg, 10); r[de] = x }, want: "amount_avg"},
		{name: "null max", change: func(r map[gen.Group]Row) { x := r[de]; x.Max = math.NaN(); r[de] = x }, want: "amount_max"},
		{name: "p50 within accuracy", change: func(r map[gen.Group]Row) { x := r[de]; x.Quantiles[0] = float64(p50) * 1.0099; r[de] = x }},
		{name: "p50 beyond accuracy", change: func(r map[gen.Group]Row) { x := r[de]; x.Quantiles[0] = float64(p50) * 1.0101; r[de] = x }, want: "latency_p50"},
		{name: "p99 null", change: func(r map[gen.Group]Row) { x := r[de]; x.Quantiles[2] = math.NaN(); r[de] = x }, want: "latency_p99"},
		{name: "distinct within 3 sigma", change: func(r map[gen.Group]Row) { x := r[de]; x.Distinct += int64(3 * sigma); r[de] = x }},
		{name: "distinct beyond 3 sigma", change: func(r map[gen.Group]Row) { x := r[de]; x.Distinct += int64(3*sigma) + 1; r[de] = x }, want: "users"},
		{name: "distinct of one user off by one", change: func(r map[gen.Group]Row) { x := r[click]; x.Distinct = 2; r[click] = x }, want: "users"},
		{name: "distinct of one user as none", change: func(r map[gen.Group]Row) { x := r[click]; x.Distinct = 0; r[click] = x }, want: "users"},
		// Two of three users sharing a sparse index: the sketch says 2.
		{name: "distinct of three users one below", change: func(r map[gen.Group]Row) { x := r[logout]; x.Distinct = 2; r[logout] = x }},
		{name: "distinct of three users two below", change: func(r map[gen.Group]Row) { x := r[logout]; x.Distinct = 1; r[logout] = x }, want: "users"},
		{name: "distinct of three users one above", change: func(r map[gen.Group]Row) { x := r[logout]; x.Distinct = 4; r[logout] = x }, want: "users"},
		{name: "window end", change: func(r map[gen.Group]Row) { x := r[de]; x.End += 1; r[de] = x }, want: "window_end"},
		{name: "missing group", change: func(r map[gen.Group]Row) { delete(r, click) }, want: "no summary row"},
		{name: "extra group", change: func(r map[gen.Group]Row) { r[gen.Group{EventType: "login"}] = r[click] }, want: "no event produced"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows := rowsFor(c, time.Minute, s, want)
			for g, r := range rows {
				r.Quantiles = append([]float64(nil), r.Quantiles...)
				rows[g] = r
			}
			tc.change(rows)
			diffs := c.Compare(time.Minute, s, rows, want)
			switch {
			case tc.want == "" && len(diffs) > 0:
				t.Fatalf("differences reported: %v", diffs)
			case tc.want != "" && (len(diffs) != 1 || !strings.Contains(diffs[0], tc.want)):
				t.Fatalf("differences %v, want one naming %q", diffs, tc.want)
			}
		})
	}
}

// fileRow is a summary row as a Parquet writer other than Sluice's writes
// it, with the documented column names.
type fileRow struct {
	WindowStart int64    `parquet:"window_start,timestamp(microsecond)"`
	WindowEnd   int64    `parquet:"window_end,timestamp(microsecond)"`
	EventType   string   `parquet:"event_type"`
	Country     *string  `parquet:"country,optional"`
	Rows        int64    `parquet:"__rows"`
	Events      int64    `parquet:"events"`
	Sum         *float64 `parquet:"amount_sum,optional"`
	Min         *float64 `parquet:"amount_min,optional"`
	Max         *float64 `parquet:"amount_max,optional"`
	Avg         *float64 `parquet:"amount_avg,optional"`
	P50         *float64 `parquet:"latency_p50,optional"`
	P90         *float64 `parquet:"latency_p90,optional"`
	P99         *float64 `parquet:"latency_p99,optional"`
	Users       int64    `parquet:"users"`
}

// Read takes rows from a Parquet file by column name, NULL country as the
// empty string, and refuses a window and group seen twice.
func TestReadAndCheck(t *testing.T) {
	c := sampleColumns(t)
	tr := oneWindow(t)
	s := start.UnixMicro()
	var frs []fileRow
	for _, w := range []time.Duration{time.Minute, time.Hour} {
		for g, r := range rowsFor(c, w, s, tr.Window(w, s)) {
			fr := fileRow{WindowStart: r.Start, WindowEnd: r.End, EventType: g.EventType, Rows: r.Rows, Events: r.Count,
				Sum: &r.Sum, Min: &r.Min, Max: &r.Max, Avg: &r.Avg, P50: &r.Quantiles[0], P90: &r.Quantiles[1], P99: &r.Quantiles[2], Users: r.Distinct}
			if g.Country != "" {
				fr.Country = &g.Country
			}
			if w == time.Minute {
				frs = append(frs, fr)
			}
		}
	}
	var buf bytes.Buffer
	if err := parquet.Write(&buf, frs); err != nil {
		t.Fatal(err)
	}
	rows := Rows{}
	if err := c.Read(rows, "a.parquet", buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	res := c.Check(tr, time.Minute, rows, start.Add(time.Hour).UnixMicro())
	if res.Checked != 1 || res.Groups != 3 || res.Failed != 0 { // purchase/DE, click/NULL, logout/FR
		t.Fatalf("check: %+v", res)
	}
	// A window the truth does not know is reported, as is a closed window
	// without rows.
	if res := c.Check(tr, time.Minute, Rows{s + 60e6: rows[s]}, start.Add(time.Hour).UnixMicro()); res.Failed != 2 {
		t.Fatalf("shifted rows: %+v", res)
	}
	if err := c.Read(rows, "b.parquet", buf.Bytes()); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("reading the same rows again: %v", err)
	}
}

// The truth keeps only the sample table's measures; anything else is
// refused rather than silently left unchecked.
func TestColumnsForRefusesOtherRollups(t *testing.T) {
	tbl := *schema.SampleTables()[0]
	r := *tbl.Rollup
	r.Measures = append([]schema.Measure{{Name: "lat_sum", Kind: schema.KindSum, Field: "latency_ms"}}, r.Measures...)
	tbl.Rollup = &r
	if _, err := ColumnsFor(&tbl); err == nil {
		t.Error("a sum of latency_ms was accepted")
	}
	r2 := *schema.SampleTables()[0].Rollup
	r2.Dimensions = []string{"event_type"}
	tbl.Rollup = &r2
	if _, err := ColumnsFor(&tbl); err == nil {
		t.Error("a rollup by event_type alone was accepted")
	}
}
