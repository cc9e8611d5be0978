package query

import (
	"slices"
	"time"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/schema"
)

// Bucket is one output window [Start, End), microseconds since the epoch.
type Bucket struct{ Start, End int64 }

// Plan is what a request reads and produces; pure, from the request and
// the table alone.
type Plan struct {
	Buckets []Bucket
	Source  time.Duration // the stored window merged into buckets
	Dims    []int         // indexes into the rollup's dimensions to group by
	Columns []Column      // output columns
	Measure []outMeasure  // per output measure column
	// Filters by rollup dimension index: accepted values in their string
	// form ("null" for NULL).
	Filters map[int]map[string]bool
	order   int // output column index to order by, -1 for none
}

// Column is one output column.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"` // timestamp, string, int64, float64, bool
	// Measure is the measure kind of a measure column (count, sum, min,
	// max, avg, distinct, quantiles); empty for times and dimensions.
	Measure string `json:"measure,omitempty"`
}

// outMeasure is how one output column comes from a measure state.
type outMeasure struct {
	measure int // index in the rollup's measures
	kind    schema.MeasureKind
	float   bool    // the input field is float64
	q       float64 // quantile
}

// Buckets lays out the buckets of size w that start in [from, to) in
// loc's wall clock, with the one holding from first: sub-day sizes must
// divide a day and restart at every local midnight (so a 23-hour day has
// 23 hourly buckets and a 25-hour one 25); day sizes are runs of local
// calendar days, however long those are.
func Buckets(w time.Duration, from, to time.Time, loc *time.Location) ([]Bucket, error) {
	const day = 24 * time.Hour
	if w < day && day%w != 0 {
		return nil, badf("window %s does not divide a day", w)
	}
	if w > day && w%day != 0 {
		return nil, badf("window %s is longer than a day but not a number of days", w)
	}
	midnight := func(t time.Time) time.Time {
		t = t.In(loc)
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
	}
	var out []Bucket
	add := func(s, e time.Time) error {
		if len(out) >= maxBuckets {
			return badf("more than %d buckets: use a larger window or a shorter range", maxBuckets)
		}
		out = append(out, Bucket{s.UnixMicro(), e.UnixMicro()})
		return nil
	}
	d := midnight(from)
	if w >= day {
		days := int(w / day)
		for s := d; s.Before(to); {
			e := time.Date(s.Year(), s.Month(), s.Day()+days, 0, 0, 0, 0, loc)
			if e.After(from) {
				if err := add(s, e); err != nil {
					return nil, err
				}
			}
			s = e
		}
		return out, nil
	}
	for ; d.Before(to); d = time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, loc) {
		next := time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, loc)
		for s := d; s.Before(next) && s.Before(to); s = s.Add(w) {
			e := s.Add(w)
			if e.After(next) {
				e = next // the last bucket of a 25-hour day with a 2h window
			}
			if e.After(from) {
				if err := add(s, e); err != nil {
					return nil, err
				}
			}
		}
	}
	return out, nil
}

// SourceWindow picks the coarsest stored window every bucket boundary
// falls on; a bucket finer than the finest stored window is refused.
func SourceWindow(stored []time.Duration, w time.Duration, buckets []Bucket) (time.Duration, error) {
	ws := slices.Sorted(slices.Values(stored))
	if len(ws) == 0 {
		return 0, badf("the table has no rollup windows")
	}
	if w < ws[0] {
		return 0, badf("window %s is finer than the finest stored window %s", w, aggregate.WindowName(ws[0]))
	}
	for i := len(ws) - 1; i >= 0; i-- {
		s := ws[i].Microseconds()
		ok := true
		for _, b := range buckets {
			if b.Start%s != 0 || b.End%s != 0 {
				ok = false
				break
			}
		}
		if ok {
			return ws[i], nil
		}
	}
	return 0, badf("window %s in this time zone does not fall on stored window boundaries (%s is the finest)", w, aggregate.WindowName(ws[0]))
}

// NewPlan checks req against t and plans it.
func NewPlan(t *schema.Table, req Request) (*Plan, error) {
	if t.Rollup == nil {
		return nil, badf("table %s has no rollup", t.Name)
	}
	buckets, err := Buckets(req.Window, req.From, req.To, req.Zone)
	if err != nil {
		return nil, err
	}
	src, err := SourceWindow(t.Rollup.Windows, req.Window, buckets)
	if err != nil {
		return nil, err
	}
	p := &Plan{Buckets: buckets, Source: src, Filters: map[int]map[string]bool{}, order: -1}
	p.Columns = []Column{{Name: "start", Type: "timestamp"}, {Name: "end", Type: "timestamp"}}
	if err := p.planDims(t, req); err != nil {
		return nil, err
	}
	if err := p.planMeasures(t, req.Measures); err != nil {
		return nil, err
	}
	if req.OrderBy != "" {
		for i, c := range p.Columns {
			if c.Name == req.OrderBy {
				p.order = i
			}
		}
		if p.order < 0 {
			return nil, badf("order_by %q is not an output column", req.OrderBy)
		}
	}
	return p, nil
}

// planDims checks the request's group_by and filters against the rollup's
// dimensions and plans them.
func (p *Plan) planDims(t *schema.Table, req Request) error {
	dimIdx := map[string]int{}
	for i, fi := range t.Rollup.DimensionIndexes() {
		dimIdx[t.Fields[fi].Name] = i
	}
	seen := map[string]bool{}
	for _, g := range req.GroupBy {
		i, ok := dimIdx[g]
		if !ok {
			return badf("group_by %q is not a dimension of %s (%v)", g, t.Name, t.Rollup.Dimensions)
		}
		if seen[g] {
			return badf("group_by %q twice", g)
		}
		seen[g] = true
		p.Dims = append(p.Dims, i)
		p.Columns = append(p.Columns, Column{Name: g, Type: string(t.Fields[t.Rollup.DimensionIndexes()[i]].Type)})
	}
	for dim, vals := range req.Filters {
		i, ok := dimIdx[dim]
		if !ok {
			return badf("filter on %q: not a dimension of %s", dim, t.Name)
		}
		set := map[string]bool{}
		for _, v := range vals {
			set[v] = true
		}
		p.Filters[i] = set
	}
	return nil
}

// planMeasures adds the output columns of the measures asked for (all
// when none is), a column per quantile.
func (p *Plan) planMeasures(t *schema.Table, measures []string) error {
	want := map[string]bool{}
	for _, m := range measures {
		want[m] = true
	}
	found := 0
	for mi := range t.Rollup.Measures {
		m := &t.Rollup.Measures[mi]
		if len(want) > 0 && !want[m.Name] {
			continue
		}
		found++
		float := m.FieldIndex() >= 0 && t.Fields[m.FieldIndex()].Type == schema.TypeFloat64
		numType := "int64"
		if float {
			numType = "float64"
		}
		add := func(name, typ string, om outMeasure) {
			p.Columns = append(p.Columns, Column{Name: name, Type: typ, Measure: string(m.Kind)})
			p.Measure = append(p.Measure, om)
		}
		om := outMeasure{measure: mi, kind: m.Kind, float: float}
		switch m.Kind {
		case schema.KindCount, schema.KindDistinct:
			add(m.Name, "int64", om)
		case schema.KindSum, schema.KindMin, schema.KindMax:
			add(m.Name, numType, om)
		case schema.KindAvg:
			add(m.Name, "float64", om)
		case schema.KindQuantiles:
			for _, q := range m.Quantiles {
				om.q = q
				add(m.QuantileColumn(q), "float64", om)
			}
		}
	}
	if found < len(want) {
		return badf("measures %v: not all are measures of %s", measures, t.Name)
	}
	return nil
}
