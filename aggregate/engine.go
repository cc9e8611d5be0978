package aggregate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/sluicehq/sluice/schema"
)

// batchRows is how many rows are decoded per column before they are folded
// into groups: big enough to amortise the per-batch calls, small enough
// that the column scratch stays in L2.
const batchRows = 4096

// Stats counts what an Aggregator read.
type Stats struct {
	Objects int64
	// Rows is every row read; OutOfRange those outside [from, to), skipped.
	Rows       int64
	OutOfRange int64
}

// Aggregator computes the summary of raw objects for one window size over
// the event-time range [from, to), both aligned to the window. It reads only
// the columns it needs (event time, dimensions, measure inputs), page by
// page through parquet-go's typed page buffers, and folds them into groups
// keyed by (window, dimension values).
//
// AddParquet is safe for concurrent use: each call folds its object into a
// per-goroutine partial state, and Result merges the partials. Every
// measure merges exactly (counts, integer and exact float sums, min/max,
// sketch registers and bins), so the result does not depend on how objects
// were spread over goroutines or in which order they came.
type Aggregator struct {
	t      *schema.Table
	layout *summaryLayout
	err    error
	broken atomic.Pointer[error]

	window        time.Duration
	wus, from, to int64 // microseconds
	etField       int
	etMillis      bool
	cols          []colSpec // one per distinct field read
	etCol         int       // index in cols
	dimCol        []int     // per dimension, index in cols
	measCol       []int     // per measure, index in cols (-1 for count)
	// smallIndex, per integer quantiles measure, is the sketch bin of each
	// value 1 .. smallQuantileValues-1 (nil for other measures).
	smallIndex     [][]int32
	mu             sync.Mutex
	free, partials []*partial
	objects, rows  atomic.Int64
	outOfRange     atomic.Int64
}

// colSpec is one field the aggregator reads, and what it needs from it.
type colSpec struct {
	field    int
	name     string
	typ      schema.Type
	millis   bool
	dim      int // dimension index, or -1
	wantVal  bool
	wantHash bool
}

// NewAggregator returns an aggregator of t's rollup into windows of size
// window over [from, to). A table without a rollup, a window that is not a
// positive whole number of seconds, or bounds not aligned to it make every
// AddParquet fail with the reason.
func NewAggregator(t *schema.Table, window time.Duration, from, to time.Time) *Aggregator {
	a := &Aggregator{t: t, window: window}
	a.err = a.init(from, to)
	if a.err != nil {
		a.err = fmt.Errorf("aggregate table %s: %w", tableName(t), a.err)
	}
	return a
}

// Columns names the table columns the aggregator reads (event time,
// dimensions, measure inputs): a record given to AddRecord needs these and
// no others. Nil if the aggregator could not be set up (see Err).
func (a *Aggregator) Columns() []string {
	if a.err != nil {
		return nil
	}
	names := make([]string, len(a.cols))
	for i := range a.cols {
		names[i] = a.cols[i].name
	}
	return names
}

func (a *Aggregator) init(from, to time.Time) error {
	l, err := newLayout(a.t)
	if err != nil {
		return err
	}
	a.layout = l
	if a.window < time.Second || a.window%time.Second != 0 {
		return fmt.Errorf("window %s is not a positive whole number of seconds", a.window)
	}
	a.wus = a.window.Microseconds()
	a.from, a.to = from.UnixMicro(), to.UnixMicro()
	if a.from%a.wus != 0 || a.to%a.wus != 0 || a.to < a.from {
		return fmt.Errorf("range [%s, %s) is not aligned to the %s window", from.UTC().Format(time.RFC3339Nano), to.UTC().Format(time.RFC3339Nano), a.window)
	}
	byField := map[int]int{}
	use := func(fi int) int {
		if ci, ok := byField[fi]; ok {
			return ci
		}
		f := &a.t.Fields[fi]
		byField[fi] = len(a.cols)
		a.cols = append(a.cols, colSpec{field: fi, name: f.Name, typ: f.Type, millis: f.Unit == schema.UnitMillis, dim: -1})
		return len(a.cols) - 1
	}
	a.etCol = use(a.t.EventTimeIndex())
	a.cols[a.etCol].wantVal = true
	for d, fi := range a.t.Rollup.DimensionIndexes() {
		ci := use(fi)
		a.cols[ci].dim = d
		a.dimCol = append(a.dimCol, ci)
	}
	for i := range l.specs {
		m := &l.specs[i]
		if m.Kind == schema.KindCount {
			a.measCol = append(a.measCol, -1)
			continue
		}
		ci := use(m.FieldIndex())
		if m.Kind == schema.KindDistinct {
			a.cols[ci].wantHash = true
		} else {
			a.cols[ci].wantVal = true
		}
		a.measCol = append(a.measCol, ci)
	}
	a.smallIndex = make([][]int32, len(l.specs))
	for i := range l.specs {
		if m := &l.specs[i]; m.Kind == schema.KindQuantiles && !m.isFloat() {
			a.smallIndex[i] = make([]int32, smallQuantileValues)
			for v := 1; v < smallQuantileValues; v++ {
				a.smallIndex[i][v] = int32(m.mapping.Index(float64(v)))
			}
		}
	}
	return nil
}

// smallQuantileValues bounds the integer values (1 up to it) whose sketch
// bin index is looked up rather than computed with a logarithm: latencies in
// milliseconds and the like are mostly small integers.
const smallQuantileValues = 4096

// Stats returns what has been read so far.
func (a *Aggregator) Stats() Stats {
	return Stats{Objects: a.objects.Load(), Rows: a.rows.Load(), OutOfRange: a.outOfRange.Load()}
}

// AddParquet folds one raw object (a Parquet file with the table's raw
// columns; other columns are ignored) into the state. Rows outside
// [from, to) are skipped and counted. After an error the aggregator holds
// part of the object and must be discarded: Result is then not meaningful
// and further calls return the same error.
func (a *Aggregator) AddParquet(r io.ReaderAt, size int64) (err error) {
	if a.err != nil {
		return a.err
	}
	if e := a.broken.Load(); e != nil {
		return *e
	}
	p := a.acquire()
	defer a.release(p)
	defer func() {
		// parquet-go can panic on corrupt input; bad input must not crash
		// the aggregator.
		if v := recover(); v != nil {
			err = fmt.Errorf("aggregate table %s: corrupt object: %v", a.t.Name, v)
		}
		if err != nil {
			a.broken.CompareAndSwap(nil, &err)
		}
	}()
	f, err := parquet.OpenFile(r, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return fmt.Errorf("aggregate table %s: open object: %w", a.t.Name, err)
	}
	if err := p.addFile(f); err != nil {
		return fmt.Errorf("aggregate table %s: %w", a.t.Name, err)
	}
	a.objects.Add(1)
	return nil
}

func (a *Aggregator) acquire() *partial {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := len(a.free); n > 0 {
		p := a.free[n-1]
		a.free = a.free[:n-1]
		return p
	}
	p := newPartial(a)
	a.partials = append(a.partials, p)
	return p
}

func (a *Aggregator) release(p *partial) {
	a.mu.Lock()
	a.free = append(a.free, p)
	a.mu.Unlock()
}

// Result returns one row per non-empty (window, dimension values), sorted.
// Call it after every AddParquet has returned; the aggregator is spent.
func (a *Aggregator) Result() *Summary {
	out := &Summary{Window: a.window}
	if a.err != nil {
		return out
	}
	a.mu.Lock()
	parts := a.partials
	a.partials, a.free = nil, nil
	a.mu.Unlock()
	if len(parts) == 0 {
		return out
	}
	dst := parts[0]
	for _, p := range parts[1:] {
		if err := dst.merge(p); err != nil {
			// Only an int64 sum overflow gets here; it is reported per
			// object by AddParquet first in all but contrived cases.
			e := fmt.Errorf("aggregate table %s: %w", a.t.Name, err)
			a.broken.CompareAndSwap(nil, &e)
		}
	}
	out.Rows = dst.rowsOut()
	out.sort()
	return out
}

// Err returns the first error AddParquet or Result met, if any.
func (a *Aggregator) Err() error {
	if a.err != nil {
		return a.err
	}
	if e := a.broken.Load(); e != nil {
		return *e
	}
	return nil
}

// stateBlock is how many groups' measure states are allocated together:
// states grow by blocks, so adding groups never copies the states already
// there (one slice grown by append copied them, with write barriers, again
// and again: 5% of a pass with 52k groups).
const stateBlock = 256

// state is group g's state of measure mi.
func (p *partial) state(g int32, mi int) *MeasureState {
	return &p.states[g/stateBlock][int(g%stateBlock)*p.nm+mi]
}

// partial is one goroutine's aggregation state.
type partial struct {
	a      *Aggregator
	nm     int
	stride int // key ints: window (2) + dimensions

	keys   []int32 // stride per group
	slots  []int32 // open addressing: group+1, 0 empty
	rows   []int64
	states [][]MeasureState // blocks of stateBlock groups, nm states each
	dims   []*intern

	// scratch for one batch
	gids []int32
	key  []int32
	cols []colReader
}

func newPartial(a *Aggregator) *partial {
	nd := len(a.dimCol)
	p := &partial{a: a, nm: len(a.layout.specs), stride: 2 + nd, slots: make([]int32, 1024),
		gids: make([]int32, batchRows), key: make([]int32, 2+nd)}
	for d := 0; d < nd; d++ {
		p.dims = append(p.dims, newIntern(a.cols[a.dimCol[d]].typ))
	}
	p.cols = make([]colReader, len(a.cols))
	for i := range a.cols {
		c := &p.cols[i]
		c.spec = &a.cols[i]
		c.valid = make([]bool, batchRows)
		if c.spec.wantVal {
			c.val = make([]uint64, batchRows)
		}
		if c.spec.wantHash {
			c.hash = make([]uint64, batchRows)
		}
		if c.spec.dim >= 0 {
			c.id = make([]int32, batchRows)
			c.intern = p.dims[c.spec.dim]
		}
	}
	return p
}

func hashKey(k []int32) uint64 {
	h := uint64(0x9E3779B97F4A7C15)
	for _, v := range k {
		h ^= uint64(uint32(v))
		h *= 0xBF58476D1CE4E5B9
		h ^= h >> 31
	}
	return h
}

// group returns the id of the group with key k, creating it if needed.
func (p *partial) group(k []int32) int32 {
	mask := uint64(len(p.slots) - 1)
	for i := hashKey(k) & mask; ; i = (i + 1) & mask {
		s := p.slots[i]
		if s == 0 {
			return p.insert(k, i)
		}
		g := int(s - 1)
		if equalKeys(p.keys[g*p.stride:(g+1)*p.stride], k) {
			return int32(g)
		}
	}
}

func equalKeys(a, b []int32) bool {
	for i := range b {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func (p *partial) insert(k []int32, slot uint64) int32 {
	g := int32(len(p.rows))
	p.keys = append(p.keys, k...)
	p.rows = append(p.rows, 0)
	if g%stateBlock == 0 {
		p.states = append(p.states, make([]MeasureState, stateBlock*p.nm))
	}
	for i := range p.a.layout.specs {
		p.a.layout.specs[i].init(p.state(g, i))
	}
	p.slots[slot] = g + 1
	if len(p.rows)*2 > len(p.slots) { // keep the load under 1/2
		p.slots = make([]int32, 2*len(p.slots))
		mask := uint64(len(p.slots) - 1)
		for gi := range p.rows {
			i := hashKey(p.keys[gi*p.stride:(gi+1)*p.stride]) & mask
			for p.slots[i] != 0 {
				i = (i + 1) & mask
			}
			p.slots[i] = int32(gi) + 1
		}
	}
	return g
}

func (p *partial) addFile(f *parquet.File) error {
	a := p.a
	leaves := make([]int, len(a.cols))
	for i := range a.cols {
		c := &a.cols[i]
		lc, ok := f.Schema().Lookup(c.name)
		p.cols[i].absent = false
		if !ok {
			// Written before the field was added to the table: a nullable
			// field reads as NULL in every row. A required one cannot.
			if !a.t.Fields[c.field].Nullable {
				return fmt.Errorf("object has no column %s, and the field is not nullable", c.name)
			}
			p.cols[i].absent = true
			leaves[i] = -1
			continue
		}
		if err := checkLeaf(c, lc); err != nil {
			return err
		}
		leaves[i] = lc.ColumnIndex
		p.cols[i].maxDef = byte(lc.MaxDefinitionLevel)
	}
	var rowsRead, skipped int64
	for _, rg := range f.RowGroups() {
		chunks := rg.ColumnChunks()
		for i := range p.cols {
			if leaves[i] >= 0 {
				p.cols[i].start(chunks[leaves[i]].Pages())
			}
		}
		err := func() error {
			defer func() {
				for i := range p.cols {
					p.cols[i].close()
				}
			}()
			n := rg.NumRows()
			for off := int64(0); off < n; off += batchRows {
				k := int(min(batchRows, n-off))
				for i := range p.cols {
					if err := p.cols[i].fill(k); err != nil {
						return fmt.Errorf("column %s: %w", p.cols[i].spec.name, err)
					}
				}
				s, err := p.fold(k)
				if err != nil {
					return err
				}
				skipped += s
			}
			rowsRead += n
			return nil
		}()
		if err != nil {
			return err
		}
	}
	a.rows.Add(rowsRead)
	a.outOfRange.Add(skipped)
	return nil
}

// checkLeaf makes sure a file column has the physical type the field needs,
// so a mismatched object is an error, not garbage or a panic.
func checkLeaf(c *colSpec, lc parquet.LeafColumn) error {
	if lc.MaxRepetitionLevel != 0 || lc.MaxDefinitionLevel > 1 || !lc.Node.Leaf() {
		return fmt.Errorf("column %s is nested or repeated", c.name)
	}
	kind := lc.Node.Type().Kind()
	want := parquet.ByteArray
	switch c.typ {
	case schema.TypeInt64, schema.TypeTimestamp:
		want = parquet.Int64
	case schema.TypeFloat64:
		want = parquet.Double
	case schema.TypeBool:
		want = parquet.Boolean
	}
	if kind != want {
		return fmt.Errorf("column %s is %s, field type %s needs %s", c.name, kind, c.typ, want)
	}
	if c.typ == schema.TypeTimestamp {
		lt := lc.Node.Type().LogicalType()
		var ts *format.TimestampType
		if lt != nil {
			ts, _ = lt.Value.(*format.TimestampType)
		}
		if ts == nil {
			return fmt.Errorf("column %s is not a timestamp", c.name)
		}
		_, millis := ts.Unit.Value.(*format.MilliSeconds)
		_, micros := ts.Unit.Value.(*format.MicroSeconds)
		if millis != c.millis || (!millis && !micros) {
			return fmt.Errorf("column %s has timestamp unit %s, the table says %s", c.name, &ts.Unit, map[bool]string{true: "millis", false: "micros"}[c.millis])
		}
	}
	return nil
}

// fold groups k decoded rows and updates the measures. It returns how many
// rows fell outside the range.
func (p *partial) fold(k int) (int64, error) {
	a := p.a
	et := p.cols[a.etCol].val
	gids := p.gids[:k]
	key := p.key
	var skipped int64
	scale := int64(1)
	if a.cols[a.etCol].millis {
		scale = 1000
	}
	for j := 0; j < k; j++ {
		ts := int64(et[j]) * scale
		if ts < a.from || ts >= a.to {
			gids[j] = -1
			skipped++
			continue
		}
		w := (ts - a.from) / a.wus
		key[0], key[1] = int32(w), int32(w>>32)
		for d, ci := range a.dimCol {
			key[2+d] = p.cols[ci].id[j]
		}
		g := p.group(key)
		gids[j] = g
		p.rows[g]++
	}
	for mi := range a.layout.specs {
		m := &a.layout.specs[mi]
		ci := a.measCol[mi]
		if ci < 0 {
			continue // count: taken from the group's rows
		}
		c := &p.cols[ci]
		valid := c.valid[:k]
		switch m.Kind {
		case schema.KindSum, schema.KindAvg:
			if m.isFloat() {
				for j, g := range gids {
					if g >= 0 && valid[j] {
						s := p.state(g, mi)
						s.addFloat(float64frombits(c.val[j]))
						s.n++
					}
				}
				continue
			}
			for j, g := range gids {
				if g >= 0 && valid[j] {
					s := p.state(g, mi)
					sum, over := addInt64(s.isum, int64(c.val[j]))
					if over {
						return skipped, fmt.Errorf("measure %s: int64 sum overflows", m.Name)
					}
					s.isum = sum
					s.n++
				}
			}
		case schema.KindMin, schema.KindMax:
			for j, g := range gids {
				if g >= 0 && valid[j] {
					m.addMinMax(p.state(g, mi), c.val[j])
				}
			}
		case schema.KindDistinct:
			for j, g := range gids {
				if g >= 0 && valid[j] {
					s := p.state(g, mi)
					s.hll.InsertHash(c.hash[j])
					s.n++
				}
			}
		case schema.KindQuantiles:
			small := a.smallIndex[mi]
			for j, g := range gids {
				if g >= 0 && valid[j] {
					if iv := int64(c.val[j]); iv > 0 && iv < int64(len(small)) {
						// What dd.Add does for a positive value, with
						// the bin looked up.
						s := p.state(g, mi)
						s.dd.GetPositiveValueStore().AddWithCount(int(small[iv]), 1)
						s.n++
						continue
					}
					v := float64(int64(c.val[j]))
					if m.isFloat() {
						v = float64frombits(c.val[j])
					}
					s := p.state(g, mi)
					// NaN and values beyond the sketch's range (~1e308)
					// cannot be tracked; they are left out.
					if s.dd.Add(v) == nil {
						s.n++
					}
				}
			}
		}
	}
	return skipped, nil
}

// merge folds partial o into p, translating o's interned dimension ids.
func (p *partial) merge(o *partial) error {
	key := make([]int32, p.stride)
	specs := p.a.layout.specs
	for g := range o.rows {
		copy(key, o.keys[g*o.stride:(g+1)*o.stride])
		for d := range p.dims {
			key[2+d] = p.dims[d].id(o.dims[d].value(key[2+d]))
		}
		dg := p.group(key)
		p.rows[dg] += o.rows[g]
		for mi := range specs {
			if err := specs[mi].merge(p.state(dg, mi), o.state(int32(g), mi)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (p *partial) rowsOut() []Row {
	a := p.a
	out := make([]Row, len(p.rows))
	for g := range p.rows {
		k := p.keys[g*p.stride : (g+1)*p.stride]
		w := int64(uint32(k[0])) | int64(k[1])<<32
		r := Row{Start: a.from + w*a.wus, N: p.rows[g], Dims: make([]any, len(p.dims))}
		r.End = r.Start + a.wus
		for d := range p.dims {
			r.Dims[d] = p.dims[d].value(k[2+d])
		}
		off := g % stateBlock * p.nm
		r.M = p.states[g/stateBlock][off : off+p.nm : off+p.nm]
		for mi := range a.layout.specs {
			if a.layout.specs[mi].Kind == schema.KindCount {
				r.M[mi].n = r.N
			}
		}
		out[g] = r
	}
	return out
}

// AggregateObjects aggregates whole raw objects held in memory with the
// given number of goroutines (0: GOMAXPROCS).
func AggregateObjects(ctx context.Context, t *schema.Table, window time.Duration, from, to time.Time, workers int, objects [][]byte) (*Summary, Stats, error) {
	a := NewAggregator(t, window, from, to)
	if a.err != nil {
		return nil, Stats{}, a.err
	}
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	next := atomic.Int64{}
	var wg sync.WaitGroup
	errs := make([]error, workers)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(objects) || ctx.Err() != nil {
					return
				}
				if err := a.AddParquet(bytes.NewReader(objects[i]), int64(len(objects[i]))); err != nil {
					errs[w] = fmt.Errorf("object %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(append(errs, ctx.Err())...); err != nil {
		return nil, a.Stats(), err
	}
	s := a.Result()
	return s, a.Stats(), a.Err()
}
