package aggtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/schema"
)

// ExactRow is a group computed exactly from raw rows, the reference a
// summary is checked against.
type ExactRow struct {
	Start int64
	Dims  []any
	N     int64
	M     []ExactMeasure
}

// ExactMeasure holds exact inputs of one measure for one group.
type ExactMeasure struct {
	Count    int64      // non-null values (rows for count)
	IntSum   int64      // int64 fields
	FloatSum *big.Float // float64 fields, exact
	Min, Max float64    // float64 fields
	MinI     int64      // int64 and timestamp fields
	MaxI     int64
	Distinct map[string]struct{}
	Values   []float64 // quantiles: every value, sorted by Check
}

// Exact is an exact recomputation of a summary from raw objects.
type Exact struct {
	Window time.Duration
	Rows   map[string]*ExactRow // by groupKey
}

// ExactRecompute computes, the slow and obvious way, what the summary of
// the raw objects over [from, to) in windows of size window must be. It
// reads every row through parquet-go's generic row reader, a different
// path from the Aggregator's page decoding, and keeps every distinct value
// and every quantile input, so it is for tests and verification of modest
// data sizes, not for production.
func ExactRecompute(t *schema.Table, window time.Duration, from, to time.Time, objects ...[]byte) (*Exact, error) {
	measures, err := rollupMeasures(t)
	if err != nil {
		return nil, err
	}
	wus, fromUS, toUS := window.Microseconds(), from.UnixMicro(), to.UnixMicro()
	if wus <= 0 {
		return nil, fmt.Errorf("window %s", window)
	}
	ex := &Exact{Window: window, Rows: map[string]*ExactRow{}}
	et := &t.Fields[t.EventTimeIndex()]
	for oi, obj := range objects {
		f, err := parquet.OpenFile(bytes.NewReader(obj), int64(len(obj)))
		if err != nil {
			return nil, fmt.Errorf("object %d: %w", oi, err)
		}
		col := func(name string) (int, error) {
			lc, ok := f.Schema().Lookup(name)
			if !ok {
				return 0, fmt.Errorf("object %d: no column %s", oi, name)
			}
			return lc.ColumnIndex, nil
		}
		etc, err := col(et.Name)
		if err != nil {
			return nil, err
		}
		dimc := make([]int, len(t.Rollup.Dimensions))
		for d, name := range t.Rollup.Dimensions {
			if dimc[d], err = col(name); err != nil {
				return nil, err
			}
		}
		mc := make([]int, len(measures))
		for i, m := range measures {
			mc[i] = -1
			if m.FieldIndex() >= 0 {
				if mc[i], err = col(m.Field); err != nil {
					return nil, err
				}
			}
		}
		r := parquet.NewReader(f)
		buf := make([]parquet.Row, 64)
		for {
			n, err := r.ReadRows(buf)
			for _, row := range buf[:n] {
				ts := row[etc].Int64()
				if et.Unit == schema.UnitMillis {
					ts *= 1000
				}
				if ts < fromUS || ts >= toUS {
					continue
				}
				start := fromUS + floorDiv(ts-fromUS, wus)*wus
				dims := make([]any, len(dimc))
				for d, c := range dimc {
					dims[d] = plainValue(row[c], t.Fields[t.Rollup.DimensionIndexes()[d]].Type)
				}
				k := groupKey(start, dims)
				g := ex.Rows[k]
				if g == nil {
					g = &ExactRow{Start: start, Dims: dims, M: make([]ExactMeasure, len(measures))}
					ex.Rows[k] = g
				}
				g.N++
				for i, m := range measures {
					exactAdd(m, &g.M[i], row, mc[i])
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("object %d: %w", oi, err)
			}
		}
		if err := r.Close(); err != nil {
			return nil, err
		}
	}
	for _, g := range ex.Rows {
		for i := range g.M {
			slices.Sort(g.M[i].Values)
		}
	}
	return ex, nil
}

// rollupMeasures are the table's measures, in summary column order.
func rollupMeasures(t *schema.Table) ([]*schema.Measure, error) {
	if t == nil || t.Rollup == nil {
		return nil, errors.New("table has no rollup")
	}
	ms := make([]*schema.Measure, len(t.Rollup.Measures))
	for i := range t.Rollup.Measures {
		ms[i] = &t.Rollup.Measures[i]
	}
	return ms, nil
}

// floorDiv is a/b rounded toward negative infinity, so that event times
// before from fall into the window that holds them.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

func isFloat(m *schema.Measure) bool { return m.FieldType() == schema.TypeFloat64 }

func plainValue(v parquet.Value, typ schema.Type) any {
	if v.IsNull() {
		return nil
	}
	switch typ {
	case schema.TypeString:
		return string(v.ByteArray())
	case schema.TypeBool:
		return v.Boolean()
	case schema.TypeFloat64:
		return v.Double()
	}
	return v.Int64()
}

func exactAdd(m *schema.Measure, e *ExactMeasure, row parquet.Row, c int) {
	if m.Kind == schema.KindCount {
		e.Count++
		return
	}
	v := row[c]
	if v.IsNull() {
		return
	}
	switch m.Kind {
	case schema.KindSum, schema.KindAvg:
		if isFloat(m) {
			if e.FloatSum == nil {
				e.FloatSum = new(big.Float).SetPrec(4096)
			}
			e.FloatSum.Add(e.FloatSum, new(big.Float).SetFloat64(v.Double()))
		} else {
			e.IntSum += v.Int64()
		}
	case schema.KindMin, schema.KindMax:
		if isFloat(m) {
			f := v.Double()
			if math.IsNaN(f) {
				return
			}
			if e.Count == 0 || f < e.Min || (f == 0 && e.Min == 0 && math.Signbit(f)) {
				e.Min = f
			}
			if e.Count == 0 || f > e.Max || (f == 0 && e.Max == 0 && !math.Signbit(f)) {
				e.Max = f
			}
		} else {
			x := v.Int64()
			if e.Count == 0 || x < e.MinI {
				e.MinI = x
			}
			if e.Count == 0 || x > e.MaxI {
				e.MaxI = x
			}
		}
	case schema.KindDistinct:
		if e.Distinct == nil {
			e.Distinct = map[string]struct{}{}
		}
		e.Distinct[string(v.Bytes())] = struct{}{}
	case schema.KindQuantiles:
		if isFloat(m) {
			e.Values = append(e.Values, v.Double())
		} else {
			e.Values = append(e.Values, float64(v.Int64()))
		}
	}
	e.Count++
}

func groupKey(start int64, dims []any) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d", start)
	for _, d := range dims {
		fmt.Fprintf(&b, "|%#v", d)
	}
	return b.String()
}

// Check compares a summary with the exact recomputation: the same groups;
// rows, counts, sums, min, max and avg exactly equal (float sums are exact
// sums rounded once on both sides, so bit-equal); distinct counts within
// 3 standard errors of the HyperLogLog (1.04/sqrt(2^p)) plus one; quantiles
// within the DDSketch's relative accuracy of the exact value at rank
// floor or ceil of q*(n-1). It returns every mismatch, joined.
func (e *Exact) Check(t *schema.Table, s *aggregate.Summary) error {
	measures, err := rollupMeasures(t)
	if err != nil {
		return err
	}
	var errs []error
	fail := func(format string, args ...any) {
		if len(errs) < 20 {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	seen := map[string]bool{}
	for i := range s.Rows {
		r := &s.Rows[i]
		k := groupKey(r.Start, r.Dims)
		g := e.Rows[k]
		if g == nil {
			fail("group %s: in the summary, not in the raw data", k)
			continue
		}
		seen[k] = true
		if r.End-r.Start != e.Window.Microseconds() {
			fail("group %s: window [%d, %d) is not %s long", k, r.Start, r.End, e.Window)
		}
		if r.N != g.N {
			fail("group %s: __rows %d, exact %d", k, r.N, g.N)
		}
		for mi, m := range measures {
			if err := checkMeasure(m, &r.M[mi], &g.M[mi]); err != nil {
				fail("group %s: measure %s: %v", k, m.Name, err)
			}
		}
	}
	for k := range e.Rows {
		if !seen[k] {
			fail("group %s: in the raw data, not in the summary", k)
		}
	}
	return errors.Join(errs...)
}

func checkMeasure(m *schema.Measure, s *aggregate.MeasureState, e *ExactMeasure) error {
	switch m.Kind {
	case schema.KindCount:
		if s.Count() != e.Count {
			return fmt.Errorf("count %d, exact %d", s.Count(), e.Count)
		}
	case schema.KindSum, schema.KindAvg:
		if (s.Count() > 0) != (e.Count > 0) || (m.Kind == schema.KindAvg && s.Count() != e.Count) {
			return fmt.Errorf("%d values, exact %d", s.Count(), e.Count)
		}
		if e.Count == 0 {
			return nil
		}
		if isFloat(m) {
			want, _ := e.FloatSum.Float64()
			if got := s.SumFloat(); math.Float64bits(got) != math.Float64bits(want) {
				return fmt.Errorf("sum %v, exact %v", got, want)
			}
		} else if s.SumInt() != e.IntSum {
			return fmt.Errorf("sum %d, exact %d", s.SumInt(), e.IntSum)
		}
	case schema.KindMin, schema.KindMax:
		if (s.Count() > 0) != (e.Count > 0) {
			return fmt.Errorf("has values %v, exact %v", s.Count() > 0, e.Count > 0)
		}
		if e.Count == 0 {
			return nil
		}
		if isFloat(m) {
			lo, hi, _ := s.MinMaxFloat()
			if (m.Kind == schema.KindMin && math.Float64bits(lo) != math.Float64bits(e.Min)) ||
				(m.Kind == schema.KindMax && math.Float64bits(hi) != math.Float64bits(e.Max)) {
				return fmt.Errorf("min/max %v/%v, exact %v/%v", lo, hi, e.Min, e.Max)
			}
		} else {
			lo, hi, _ := s.MinMaxInt()
			if (m.Kind == schema.KindMin && lo != e.MinI) || (m.Kind == schema.KindMax && hi != e.MaxI) {
				return fmt.Errorf("min/max %d/%d, exact %d/%d", lo, hi, e.MinI, e.MaxI)
			}
		}
	case schema.KindDistinct:
		exact := float64(len(e.Distinct))
		got := float64(s.Distinct())
		tol := 3*1.04/math.Sqrt(math.Pow(2, float64(m.Precision)))*exact + 1
		if math.Abs(got-exact) > tol {
			return fmt.Errorf("distinct %v, exact %v (tolerance %.1f)", got, exact, tol)
		}
	case schema.KindQuantiles:
		vals := e.Values
		if len(vals) == 0 {
			if _, ok := s.Quantile(0.5); ok {
				return errors.New("quantiles of an empty group")
			}
			return nil
		}
		for _, q := range m.Quantiles {
			got, ok := s.Quantile(q)
			if !ok {
				return fmt.Errorf("no quantile %v", q)
			}
			rank := q * float64(len(vals)-1)
			lo, hi := vals[int(math.Floor(rank))], vals[int(math.Ceil(rank))]
			within := func(x float64) bool {
				return math.Abs(got-x) <= m.RelativeAccuracy*math.Abs(x)*(1+1e-9)
			}
			if !within(lo) && !within(hi) && !(got >= lo && got <= hi) {
				return fmt.Errorf("quantile %v = %v, exact between %v and %v (relative accuracy %v)", q, got, lo, hi, m.RelativeAccuracy)
			}
		}
	}
	return nil
}
