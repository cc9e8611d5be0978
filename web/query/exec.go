package query

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Meta describes a result.
type Meta struct {
	Table        string    `json:"table"`
	Window       string    `json:"window"`
	SourceWindow string    `json:"source_window"` // the stored window merged into the buckets
	Zone         string    `json:"tz"`
	From         time.Time `json:"from"` // start of the first bucket
	To           time.Time `json:"to"`   // end of the last bucket
	Columns      []Column  `json:"columns"`
	// Watermark is the ingest watermark: windows ending before it get no
	// more data (absent when the lake cannot tell yet).
	Watermark *time.Time `json:"watermark,omitempty"`
	// Complete says the range ends before the watermark and the aggregator
	// has summarised every stored window of the range from exactly the
	// data committed for it: the numbers will not change.
	Complete bool `json:"complete"`
	Rows     int  `json:"rows"`
}

// Result is a computed answer, held whole: it is encoded only once
// nothing can fail any more.
type Result struct {
	Meta Meta
	Rows [][]any // per Columns: time.Time, string, int64, float64, bool or nil
}

// Source reads what queries need from the lake.
type Source struct {
	Raw       *lake.CommitLog       // commit records, for the watermark and completeness
	Summaries objstore.BucketReader // summary objects
	Now       func() time.Time
	// CacheUnits is how many decoded summary objects are kept (0: none).
	// Decoding the sketches is most of a query's work; an entry is used
	// while the object's size and modification time are unchanged, for
	// at most CacheTTL.
	CacheUnits int

	mu    sync.Mutex
	cache map[string]cachedUnit
	// merging serialises merges: cached states are shared between
	// queries, and reading a sketch may reorganise it.
	merging sync.Mutex
}

// CacheTTL bounds how long a cached summary object is trusted: a store
// whose modification times have a coarse grain could otherwise hide a
// rewrite of the same size within that grain.
const CacheTTL = 10 * time.Second

type cachedUnit struct {
	size    int64
	modTime time.Time
	at      time.Time
	data    unitData
}

type unitData struct {
	sum    *aggregate.Summary
	states map[int64]aggregate.WindowState
}

// windowsMetaKey is the footer key the aggregator keeps its window states
// under (see aggregate's service): which inputs each window was built from.
const windowsMetaKey = "sluice.windows"

// Run executes a plan.
func (s *Source) Run(ctx context.Context, t *schema.Table, req Request, p *Plan) (*Result, error) {
	first, last := p.Buckets[0].Start, p.Buckets[len(p.Buckets)-1].End
	unit := aggregate.Unit(p.Source).Microseconds()
	var units []int64
	for u := floorDiv(first, unit) * unit; u < last; u += unit {
		units = append(units, u)
	}
	data := make([]unitData, len(units))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i, u := range units {
		g.Go(func() error {
			d, err := s.readUnit(gctx, t, aggregate.SummaryKey(t.Name, p.Source, time.UnixMicro(u)))
			data[i] = d
			return err
		})
	}
	var recs []lake.CommitRecord
	g.Go(func() error {
		var err error
		recs, err = s.Raw.Records(gctx, t.Name)
		return err
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}

	res := &Result{Meta: Meta{
		Table: t.Name, Window: aggregate.WindowName(req.Window), SourceWindow: aggregate.WindowName(p.Source),
		Zone: req.Zone.String(), From: time.UnixMicro(first).In(req.Zone), To: time.UnixMicro(last).In(req.Zone),
		Columns: p.Columns,
	}}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	wm, ok := aggregate.Watermark(recs, t.Rollup.AllowedLateness, aggregate.DefaultIdleTimeout, now)
	if ok {
		w := wm.In(req.Zone)
		res.Meta.Watermark = &w
		res.Meta.Complete = last <= wm.UnixMicro() && summarised(recs, data, p.Source, first, last)
	}

	s.merging.Lock()
	defer s.merging.Unlock()
	rows, err := s.merge(t, p, data)
	if err != nil {
		return nil, err
	}
	res.Rows = p.output(t, req, rows)
	res.Meta.Rows = len(res.Rows)
	return res, nil
}

// summarised reports whether every stored window in [first, last) that
// has committed inputs holds exactly those (or was frozen with them).
func summarised(recs []lake.CommitRecord, data []unitData, w time.Duration, first, last int64) bool {
	// Only the objects that reach into the range: the rest of the lake
	// says nothing about these windows.
	var objs []aggregate.InputObject
	for _, o := range aggregate.Inputs(recs) {
		if o.MaxMicros >= first && o.MinMicros < last {
			objs = append(objs, o)
		}
	}
	windows := aggregate.WindowInputs(objs, w, time.UnixMicro(last))
	states := map[int64]aggregate.WindowState{}
	for _, d := range data {
		for k, v := range d.states {
			states[k] = v
		}
	}
	for start, links := range windows {
		if start < first || start >= last {
			continue
		}
		st, ok := states[start]
		h := aggregate.InputsHash(links)
		if !ok || (st.Inputs != h && st.Seen != h) {
			return false
		}
	}
	return true
}

func (s *Source) readUnit(ctx context.Context, t *schema.Table, key string) (unitData, error) {
	if s.CacheUnits <= 0 {
		return s.loadUnit(ctx, t, key)
	}
	a, err := s.Summaries.Attributes(ctx, key)
	if objstore.IsNotExist(err) {
		return unitData{}, nil
	}
	if err != nil {
		return unitData{}, fmt.Errorf("read summary %s: %w", key, err)
	}
	now := time.Now()
	s.mu.Lock()
	c, ok := s.cache[key]
	s.mu.Unlock()
	if ok && c.size == a.Size && c.modTime.Equal(a.LastModified) && now.Sub(c.at) < CacheTTL {
		return c.data, nil
	}
	d, err := s.loadUnit(ctx, t, key)
	if err != nil {
		return d, err
	}
	s.mu.Lock()
	if s.cache == nil || len(s.cache) >= s.CacheUnits {
		s.cache = map[string]cachedUnit{} // crude, but bounded
	}
	s.cache[key] = cachedUnit{size: a.Size, modTime: a.LastModified, at: now, data: d}
	s.mu.Unlock()
	return d, nil
}

func (s *Source) loadUnit(ctx context.Context, t *schema.Table, key string) (unitData, error) {
	rc, err := s.Summaries.Get(ctx, key)
	if objstore.IsNotExist(err) {
		return unitData{}, nil
	}
	if err != nil {
		return unitData{}, fmt.Errorf("read summary %s: %w", key, err)
	}
	raw, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return unitData{}, fmt.Errorf("read summary %s: %w", key, err)
	}
	sum, err := aggregate.ReadSummary(bytes.NewReader(raw), int64(len(raw)), t)
	if err != nil {
		return unitData{}, fmt.Errorf("read summary %s: %w", key, err)
	}
	d := unitData{sum: sum, states: map[int64]aggregate.WindowState{}}
	if f, err := parquet.OpenFile(bytes.NewReader(raw), int64(len(raw))); err == nil {
		if meta, ok := f.Lookup(windowsMetaKey); ok {
			var byTime map[string]aggregate.WindowState
			if json.Unmarshal([]byte(meta), &byTime) == nil {
				for k, v := range byTime {
					if ts, err := time.Parse(time.RFC3339Nano, k); err == nil {
						d.states[ts.UnixMicro()] = v
					}
				}
			}
		}
	}
	return d, nil
}

// group is one merged output row before formatting.
type group struct {
	bucket int
	row    aggregate.Row
}

// merge filters the stored rows, moves each to its bucket (and its
// dimensions to the grouped ones) and merges equal groups' states.
func (s *Source) merge(t *schema.Table, p *Plan, data []unitData) ([]group, error) {
	nd := len(t.Rollup.DimensionIndexes())
	keep := make([]bool, nd)
	for _, d := range p.Dims {
		keep[d] = true
	}
	bucketOf := func(start int64) int {
		i, found := slices.BinarySearchFunc(p.Buckets, start, func(b Bucket, s int64) int {
			switch {
			case s < b.Start:
				return 1
			case s >= b.End:
				return -1
			}
			return 0
		})
		if !found {
			return -1
		}
		return i
	}
	part := &aggregate.Summary{Window: p.Source}
	for _, d := range data {
		if d.sum == nil {
			continue
		}
		for _, r := range d.sum.Rows {
			if bucketOf(r.Start) < 0 || !p.matches(r.Dims) {
				continue
			}
			nr := r // shares M: Merge does not modify its inputs
			nr.Start = p.Buckets[bucketOf(r.Start)].Start
			nr.Dims = make([]any, nd)
			for i := range nd {
				if keep[i] {
					nr.Dims[i] = r.Dims[i]
				} else {
					nr.Dims[i] = zeroDim(t, i)
				}
			}
			part.Rows = append(part.Rows, nr)
		}
	}
	merged, err := aggregate.Merge(t, p.Source, part)
	if err != nil {
		return nil, err
	}
	out := make([]group, 0, len(merged.Rows))
	for _, r := range merged.Rows {
		out = append(out, group{bucket: bucketOf(r.Start), row: r})
	}
	return out, nil
}

// zeroDim stands in for a dimension that is not grouped by: the same
// value for every row, of the field's type (Merge checks types).
func zeroDim(t *schema.Table, i int) any {
	f := &t.Fields[t.Rollup.DimensionIndexes()[i]]
	switch f.Type {
	case schema.TypeInt64:
		return int64(0)
	case schema.TypeBool:
		return false
	}
	return ""
}

// DimString is the string a filter compares a dimension value with.
func DimString(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case int64:
		return strconv.FormatInt(x, 10)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

func (p *Plan) matches(dims []any) bool {
	for i, set := range p.Filters {
		if i >= len(dims) || !set[DimString(dims[i])] {
			return false
		}
	}
	return true
}

// output turns merged groups into rows: ordered, limited and zero-filled.
func (p *Plan) output(t *schema.Table, req Request, groups []group) [][]any {
	type key = string
	dimKey := func(r *aggregate.Row) key {
		var b []byte
		for _, d := range p.Dims {
			b = append(b, DimString(r.Dims[d])...)
			b = append(b, 0)
		}
		return string(b)
	}
	byBucket := make([][]group, len(p.Buckets))
	for _, g := range groups {
		if g.bucket >= 0 {
			byBucket[g.bucket] = append(byBucket[g.bucket], g)
		}
	}
	if req.Fill {
		seen := map[key][]any{}
		for _, g := range groups {
			seen[dimKey(&g.row)] = g.row.Dims
		}
		if len(p.Dims) == 0 || len(seen) == 0 {
			seen = map[key][]any{"": make([]any, len(t.Rollup.DimensionIndexes()))}
			if len(p.Dims) > 0 {
				seen = map[key][]any{} // nothing seen: no groups to fill
			}
		}
		for bi := range byBucket {
			have := map[key]bool{}
			for _, g := range byBucket[bi] {
				have[dimKey(&g.row)] = true
			}
			for k, dims := range seen {
				if !have[k] {
					byBucket[bi] = append(byBucket[bi], group{bucket: bi, row: aggregate.Row{Dims: dims}})
				}
			}
		}
	}
	var out [][]any
	for bi, gs := range byBucket {
		b := p.Buckets[bi]
		var rows [][]any
		for _, g := range gs {
			row := make([]any, 0, len(p.Columns))
			row = append(row, time.UnixMicro(b.Start).In(req.Zone), time.UnixMicro(b.End).In(req.Zone))
			for _, d := range p.Dims {
				row = append(row, g.row.Dims[d])
			}
			for _, m := range p.Measure {
				row = append(row, m.value(&g.row))
			}
			rows = append(rows, row)
		}
		slices.SortFunc(rows, func(a, b []any) int { return compareRows(a, b, 2) })
		if len(p.Dims) > 0 && p.order >= 0 {
			slices.SortStableFunc(rows, func(a, b []any) int { return p.compareOrder(a, b, req.Desc) })
			if req.Limit > 0 && len(rows) > req.Limit {
				rows = rows[:req.Limit]
			}
		}
		out = append(out, rows...)
	}
	if len(p.Dims) == 0 && p.order >= 0 {
		slices.SortStableFunc(out, func(a, b []any) int { return p.compareOrder(a, b, req.Desc) })
	}
	if len(p.Dims) == 0 && req.Limit > 0 && len(out) > req.Limit {
		out = out[:req.Limit]
	}
	return out
}

// compareOrder orders by the order column, NULLs last either way.
func (p *Plan) compareOrder(a, b []any, desc bool) int {
	x, y := a[p.order], b[p.order]
	switch {
	case x == nil && y == nil:
		return 0
	case x == nil:
		return 1
	case y == nil:
		return -1
	}
	c := compareValues(x, y)
	if desc {
		c = -c
	}
	return c
}

func compareRows(a, b []any, from int) int {
	for i := from; i < len(a); i++ {
		if c := compareValues(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func compareValues(x, y any) int {
	switch {
	case x == nil && y == nil:
		return 0
	case x == nil:
		return -1
	case y == nil:
		return 1
	}
	switch xv := x.(type) {
	case string:
		return cmp.Compare(xv, y.(string))
	case int64:
		return cmp.Compare(xv, y.(int64))
	case float64:
		return cmp.Compare(xv, y.(float64))
	case bool:
		yv := y.(bool)
		switch {
		case xv == yv:
			return 0
		case !xv:
			return -1
		}
		return 1
	case time.Time:
		return xv.Compare(y.(time.Time))
	}
	return 0
}

// value computes the column from a merged state; zero-filled rows have no
// states: counts and sums are 0 there, the rest NULL.
func (m outMeasure) value(r *aggregate.Row) any {
	if r.M == nil {
		switch m.kind {
		case schema.KindCount, schema.KindDistinct:
			return int64(0)
		case schema.KindSum:
			if m.float {
				return float64(0)
			}
			return int64(0)
		}
		return nil
	}
	s := &r.M[m.measure]
	switch m.kind {
	case schema.KindCount:
		return s.Count()
	case schema.KindDistinct:
		return int64(s.Distinct()) // under Source.merging: it may compact the sketch
	case schema.KindSum:
		if m.float {
			return s.SumFloat()
		}
		return s.SumInt()
	case schema.KindMin, schema.KindMax:
		if m.float {
			lo, hi, ok := s.MinMaxFloat()
			if !ok {
				return nil
			}
			if m.kind == schema.KindMin {
				return lo
			}
			return hi
		}
		lo, hi, ok := s.MinMaxInt()
		if !ok {
			return nil
		}
		if m.kind == schema.KindMin {
			return lo
		}
		return hi
	case schema.KindAvg:
		if s.Count() == 0 {
			return nil
		}
		if m.float {
			return s.SumFloat() / float64(s.Count())
		}
		return float64(s.SumInt()) / float64(s.Count())
	case schema.KindQuantiles:
		v, ok := s.Quantile(m.q)
		if !ok {
			return nil
		}
		return v
	}
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
