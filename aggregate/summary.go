package aggregate

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/schema"
)

// Summary is the rolled-up rows of one window size: one Row per non-empty
// (window, dimension values). Rows are kept sorted by window start, then
// dimension values (NULL first), which is also the order in the file.
type Summary struct {
	Window time.Duration
	Rows   []Row
}

// Row is one group: a window and its dimension values.
type Row struct {
	// Start and End bound the window [Start, End), in microseconds since
	// the Unix epoch (UTC).
	Start, End int64
	// Dims holds one value per rollup dimension: nil for NULL, otherwise a
	// string, int64 or bool by the field's type.
	Dims []any
	// N is the number of input rows in the group (the __rows column).
	N int64
	// M holds one state per rollup measure, in order.
	M []MeasureState
}

// Column names every summary has.
const (
	ColWindowStart = "window_start"
	ColWindowEnd   = "window_end"
	ColRows        = "__rows"
	// MetaWindow is the footer key holding the window size (Go duration).
	MetaWindow = "sluice.window"
	// MetaWindowStates is the footer key holding the WindowState of each
	// window, a JSON object keyed by RFC 3339 window start: readers (ops)
	// tell an up-to-date window from one not yet recomputed with it.
	MetaWindowStates = windowsMetaKey
)

// TotalRows is the number of input rows the summary covers.
func (s *Summary) TotalRows() int64 {
	if s == nil {
		return 0
	}
	var n int64
	for i := range s.Rows {
		n += s.Rows[i].N
	}
	return n
}

// SelectWindows returns the rows whose window starts (microseconds) are in
// starts. The rows are shared, not copied (when every row is kept, the
// slice itself is).
func (s *Summary) SelectWindows(starts []int64) *Summary {
	return s.filter(starts, true)
}

// DropWindows returns the rows whose window starts are not in starts.
func (s *Summary) DropWindows(starts []int64) *Summary {
	return s.filter(starts, false)
}

func (s *Summary) filter(starts []int64, keep bool) *Summary {
	if s == nil {
		return nil
	}
	set := make(map[int64]bool, len(starts))
	for _, st := range starts {
		set[st] = true
	}
	out := &Summary{Window: s.Window}
	// Rows of a window follow each other: one lookup per window.
	lastStart, lastKeep, looked := int64(0), false, false
	kept := func(r *Row) bool {
		if looked && r.Start == lastStart {
			return lastKeep
		}
		lastStart, lastKeep, looked = r.Start, set[r.Start] == keep, true
		return lastKeep
	}
	n := 0
	for i := range s.Rows {
		if kept(&s.Rows[i]) {
			n++
		}
	}
	if n == len(s.Rows) {
		// All of them (a pass selecting the windows it computed): shared
		// as they are, not copied.
		out.Rows = s.Rows
		return out
	}
	out.Rows = make([]Row, 0, n)
	for i := range s.Rows {
		if kept(&s.Rows[i]) {
			out.Rows = append(out.Rows, s.Rows[i])
		}
	}
	return out
}

// Windows lists the distinct window starts, ascending.
func (s *Summary) Windows() []int64 {
	var out []int64
	for i := range s.Rows {
		if n := len(out); n == 0 || out[n-1] != s.Rows[i].Start {
			out = append(out, s.Rows[i].Start)
		}
	}
	return out
}

// compareDims orders dimension values: NULL first, then by value.
func compareDims(a, b []any) int {
	for i := range a {
		x, y := a[i], b[i]
		switch {
		case x == nil && y == nil:
			continue
		case x == nil:
			return -1
		case y == nil:
			return 1
		}
		var c int
		switch xv := x.(type) {
		case string:
			c = strings.Compare(xv, y.(string))
		case int64:
			c = cmp.Compare(xv, y.(int64))
		case bool:
			yv := y.(bool)
			switch {
			case xv == yv:
			case !xv:
				c = -1
			default:
				c = 1
			}
		}
		if c != 0 {
			return c
		}
	}
	return 0
}

func compareRows(a, b *Row) int {
	if c := cmp.Compare(a.Start, b.Start); c != 0 {
		return c
	}
	return compareDims(a.Dims, b.Dims)
}

func (s *Summary) sort() { slices.SortFunc(s.Rows, func(a, b Row) int { return compareRows(&a, &b) }) }

// summaryCol is one column of the summary file: how to get its value from
// a row and how to put it back. Getters may keep per-row state in their
// layout (a row's quantiles are taken together): a layout's getters are for
// one goroutine.
type summaryCol struct {
	name     string
	node     parquet.Node
	optional bool
	get      func(r *Row) (parquet.Value, error)
	set      func(r *Row, v parquet.Value) error
}

type summaryLayout struct {
	t     *schema.Table
	specs []measureSpec
	cols  []summaryCol
}

// Parquet nodes of the summary columns; nodes are immutable.
var (
	nodeTimestamp = parquet.Timestamp(parquet.Microsecond)
	nodeInt64     = parquet.Int(64)
	nodeDouble    = parquet.Leaf(parquet.DoubleType)
	nodeBytes     = parquet.Encoded(parquet.Leaf(parquet.ByteArrayType), &parquet.Plain)
	nullValue     = parquet.NullValue()
)

func newLayout(t *schema.Table) (*summaryLayout, error) {
	specs, err := newMeasureSpecs(t)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", tableName(t), err)
	}
	l := &summaryLayout{t: t, specs: specs}
	l.cols = append(l.cols, windowCols()...)
	for di, fi := range t.Rollup.DimensionIndexes() {
		l.cols = append(l.cols, dimensionCol(di, &t.Fields[fi]))
	}
	l.cols = append(l.cols, rowsCol())
	for mi := range specs {
		l.cols = append(l.cols, measureCols{t: t, m: &specs[mi], mi: mi}.cols()...)
	}
	return l, nil
}

func windowCols() []summaryCol {
	return []summaryCol{
		{name: ColWindowStart, node: nodeTimestamp,
			get: func(r *Row) (parquet.Value, error) { return parquet.Int64Value(r.Start), nil },
			set: func(r *Row, v parquet.Value) error { r.Start = v.Int64(); return nil }},
		{name: ColWindowEnd, node: nodeTimestamp,
			get: func(r *Row) (parquet.Value, error) { return parquet.Int64Value(r.End), nil },
			set: func(r *Row, v parquet.Value) error { r.End = v.Int64(); return nil }},
	}
}

// dimensionCol is the column of dimension di, field f.
func dimensionCol(di int, f *schema.Field) summaryCol {
	c := summaryCol{name: f.Name, optional: f.Nullable}
	switch f.Type {
	case schema.TypeString:
		c.node = parquet.Encoded(parquet.String(), &parquet.RLEDictionary)
		c.get = func(r *Row) (parquet.Value, error) {
			if r.Dims[di] == nil {
				return nullValue, nil
			}
			return parquet.ByteArrayValue([]byte(r.Dims[di].(string))), nil
		}
		c.set = func(r *Row, v parquet.Value) error { r.Dims[di] = string(v.ByteArray()); return nil }
	case schema.TypeInt64:
		c.node = nodeInt64
		c.get = func(r *Row) (parquet.Value, error) {
			if r.Dims[di] == nil {
				return nullValue, nil
			}
			return parquet.Int64Value(r.Dims[di].(int64)), nil
		}
		c.set = func(r *Row, v parquet.Value) error { r.Dims[di] = v.Int64(); return nil }
	case schema.TypeBool:
		c.node = parquet.Leaf(parquet.BooleanType)
		c.get = func(r *Row) (parquet.Value, error) {
			if r.Dims[di] == nil {
				return nullValue, nil
			}
			return parquet.BooleanValue(r.Dims[di].(bool)), nil
		}
		c.set = func(r *Row, v parquet.Value) error { r.Dims[di] = v.Boolean(); return nil }
	}
	return c
}

func rowsCol() summaryCol {
	return summaryCol{name: ColRows, node: nodeInt64,
		get: func(r *Row) (parquet.Value, error) { return parquet.Int64Value(r.N), nil },
		set: func(r *Row, v parquet.Value) error { r.N = v.Int64(); return nil }}
}

// measureCols builds the columns of measure m, the mi-th of table t.
type measureCols struct {
	t  *schema.Table
	m  *measureSpec
	mi int
}

func (c measureCols) st(r *Row) *MeasureState { return &r.M[c.mi] }

// markSeen marks a state as holding values when its file column is set.
func markSeen(s *MeasureState) {
	if s.n == 0 {
		s.n = 1
	}
}

// ignore is the setter of derived columns.
func ignore(*Row, parquet.Value) error { return nil }

func (c measureCols) valueNode() parquet.Node {
	switch c.m.typ {
	case schema.TypeFloat64:
		return nodeDouble
	case schema.TypeTimestamp:
		if c.m.t(c.t).Unit == schema.UnitMillis {
			return parquet.Timestamp(parquet.Millisecond)
		}
		return nodeTimestamp
	}
	return nodeInt64
}

func (c measureCols) valueOf(bits uint64) parquet.Value {
	if c.m.isFloat() {
		return parquet.DoubleValue(math.Float64frombits(bits))
	}
	return parquet.Int64Value(int64(bits))
}

func (c measureCols) bitsOf(v parquet.Value) uint64 {
	if c.m.isFloat() {
		return math.Float64bits(v.Double())
	}
	return uint64(v.Int64())
}

func (c measureCols) sumValue(s *MeasureState) parquet.Value {
	if c.m.isFloat() {
		return parquet.DoubleValue(s.fsum.float64())
	}
	return parquet.Int64Value(s.isum)
}

// xsumCol holds the exact parts of a float sum.
func (c measureCols) xsumCol() summaryCol {
	return summaryCol{name: c.m.Name + "__xsum", node: nodeBytes, optional: true,
		get: func(r *Row) (parquet.Value, error) {
			if c.st(r).n == 0 {
				return nullValue, nil
			}
			return parquet.ByteArrayValue(appendParts(nil, c.st(r).fsum.parts())), nil
		},
		set: func(r *Row, v parquet.Value) error {
			s := c.st(r)
			markSeen(s)
			return s.addSumParts(v.ByteArray())
		}}
}

func (c measureCols) cols() []summaryCol {
	switch c.m.Kind {
	case schema.KindCount:
		return c.countCols()
	case schema.KindSum:
		return c.sumCols()
	case schema.KindMin, schema.KindMax:
		return c.minMaxCols()
	case schema.KindAvg:
		return c.avgCols()
	case schema.KindDistinct:
		return c.distinctCols()
	case schema.KindQuantiles:
		return c.quantileCols()
	}
	return nil
}

func (c measureCols) countCols() []summaryCol {
	return []summaryCol{{name: c.m.Name, node: nodeInt64,
		get: func(r *Row) (parquet.Value, error) { return parquet.Int64Value(c.st(r).n), nil },
		set: func(r *Row, v parquet.Value) error { c.st(r).n = v.Int64(); return nil }}}
}

func (c measureCols) sumCols() []summaryCol {
	sum := summaryCol{name: c.m.Name, node: c.valueNode(), optional: true,
		get: func(r *Row) (parquet.Value, error) {
			if c.st(r).n == 0 {
				return nullValue, nil
			}
			return c.sumValue(c.st(r)), nil
		},
		set: func(r *Row, v parquet.Value) error { markSeen(c.st(r)); c.st(r).isum = v.Int64(); return nil }}
	if c.m.isFloat() {
		sum.set = ignore // the exact parts carry the state
		return []summaryCol{sum, c.xsumCol()}
	}
	return []summaryCol{sum}
}

func (c measureCols) minMaxCols() []summaryCol {
	isMin := c.m.Kind == schema.KindMin
	return []summaryCol{{name: c.m.Name, node: c.valueNode(), optional: true,
		get: func(r *Row) (parquet.Value, error) {
			s := c.st(r)
			switch {
			case s.n == 0:
				return nullValue, nil
			case isMin:
				return c.valueOf(s.lo), nil
			}
			return c.valueOf(s.hi), nil
		},
		set: func(r *Row, v parquet.Value) error {
			s := c.st(r)
			markSeen(s)
			s.lo, s.hi = c.bitsOf(v), c.bitsOf(v)
			return nil
		}}}
}

func (c measureCols) avgCols() []summaryCol {
	cols := []summaryCol{
		{name: c.m.Name, node: nodeDouble, optional: true,
			get: func(r *Row) (parquet.Value, error) {
				s := c.st(r)
				if s.n == 0 {
					return nullValue, nil
				}
				if c.m.isFloat() {
					return parquet.DoubleValue(s.fsum.float64() / float64(s.n)), nil
				}
				return parquet.DoubleValue(float64(s.isum) / float64(s.n)), nil
			},
			set: ignore},
		{name: c.m.Name + "__sum", node: c.valueNode(), optional: true,
			get: func(r *Row) (parquet.Value, error) {
				if c.st(r).n == 0 {
					return nullValue, nil
				}
				return c.sumValue(c.st(r)), nil
			},
			set: func(r *Row, v parquet.Value) error {
				if !c.m.isFloat() {
					c.st(r).isum = v.Int64()
				}
				return nil
			}},
		{name: c.m.Name + "__count", node: nodeInt64,
			get: func(r *Row) (parquet.Value, error) { return parquet.Int64Value(c.st(r).n), nil },
			set: func(r *Row, v parquet.Value) error { c.st(r).n = v.Int64(); return nil }},
	}
	if c.m.isFloat() {
		x := c.xsumCol()
		x.set = func(r *Row, v parquet.Value) error { return c.st(r).addSumParts(v.ByteArray()) }
		cols = append(cols, x)
	}
	return cols
}

func (c measureCols) distinctCols() []summaryCol {
	return []summaryCol{
		{name: c.m.Name, node: nodeInt64,
			get: func(r *Row) (parquet.Value, error) {
				if c.st(r).n == 0 {
					return parquet.Int64Value(0), nil
				}
				// The estimate only: the __hll column encodes the sketch
				// (encoding it here too copied every dense sketch twice).
				return parquet.Int64Value(int64(c.st(r).hll.Estimate())), nil
			},
			set: ignore},
		{name: c.m.Name + "__hll", node: nodeBytes, optional: true,
			get: func(r *Row) (parquet.Value, error) {
				if c.st(r).n == 0 {
					return nullValue, nil
				}
				_, b, err := encodeHLL(c.st(r).hll)
				return parquet.ByteArrayValue(b), err
			},
			set: func(r *Row, v parquet.Value) error {
				sk, err := decodeHLL(v.ByteArray(), c.m.Precision)
				if err != nil {
					return err
				}
				c.st(r).hll = sk
				markSeen(c.st(r))
				return nil
			}},
	}
}

func (c measureCols) quantileCols() []summaryCol {
	var cols []summaryCol
	// A row's quantiles and sketch bytes are taken together, in one walk of
	// its sketch, by the first of its columns asked for one. The bytes go
	// into blocks shared by the rows (one allocation per block, not per
	// row); a block's bytes stay as long as a value refers to them.
	var (
		of    *Row
		vals  = make([]float64, len(c.m.Quantiles))
		some  bool
		enc   []byte
		block []byte
		e     = newSketchEncoder()
	)
	take := func(r *Row) {
		if of == r {
			return
		}
		if cap(block)-len(block) < sketchBlock/16 {
			block = make([]byte, 0, sketchBlock)
		}
		at := len(block)
		block, some = c.st(r).appendSketchAndQuantiles(e, block, c.m.Quantiles, vals)
		of, enc = r, block[at:len(block):len(block)]
	}
	for qi, q := range c.m.Quantiles {
		cols = append(cols, summaryCol{name: c.m.QuantileColumn(q), node: nodeDouble, optional: true,
			get: func(r *Row) (parquet.Value, error) {
				take(r)
				if !some || math.IsNaN(vals[qi]) {
					return nullValue, nil
				}
				return parquet.DoubleValue(vals[qi]), nil
			},
			set: ignore})
	}
	return append(cols, summaryCol{name: c.m.Name + "__sketch", node: nodeBytes, optional: true,
		get: func(r *Row) (parquet.Value, error) {
			take(r)
			if !some {
				return nullValue, nil
			}
			return parquet.ByteArrayValue(enc), nil
		},
		set: func(r *Row, v parquet.Value) error {
			dd, err := c.m.decodeDD(v.ByteArray())
			if err != nil {
				return err
			}
			c.st(r).dd = dd
			c.st(r).n = int64(dd.GetCount())
			return nil
		}})
}

// summaryRowBlock is how many rows' values WriteSummary takes before
// writing them out.
const summaryRowBlock = 2048

// sketchBlock is the size of the blocks encoded sketches are written into.
const sketchBlock = 64 << 10

func (m *measureSpec) t(t *schema.Table) *schema.Field { return &t.Fields[m.FieldIndex()] }

func tableName(t *schema.Table) string {
	if t == nil {
		return "<nil>"
	}
	return t.Name
}

func (l *summaryLayout) schema() *parquet.Schema {
	cols := make([]schema.Column, 0, len(l.cols))
	for _, c := range l.cols {
		n := c.node
		if c.optional {
			n = parquet.Optional(n)
		} else {
			n = parquet.Required(n)
		}
		cols = append(cols, schema.Column{Name: c.name, Node: n})
	}
	return parquet.NewSchema(l.t.Name+"_summary", schema.OrderedGroup(cols...))
}

// newRow returns an empty row with fresh measure states.
func (l *summaryLayout) newRow() Row {
	r := Row{Dims: make([]any, len(l.t.Rollup.Dimensions)), M: make([]MeasureState, len(l.specs))}
	for i := range l.specs {
		l.specs[i].init(&r.M[i])
	}
	return r
}

// SummarySchema is the Parquet schema of t's summary files: window_start
// and window_end (TIMESTAMP micros, UTC, required), the dimensions (their
// types, nullable as the field), __rows, then each measure's columns (see
// schema.Measure.Columns). Plain columns are directly usable from DuckDB,
// Spark or pyarrow; __ columns hold mergeable state.
func SummarySchema(t *schema.Table) (*parquet.Schema, error) {
	l, err := newLayout(t)
	if err != nil {
		return nil, err
	}
	return l.schema(), nil
}

// WriteSummary writes s as one Parquet file. Equal summaries give equal
// bytes: rows are sorted, sketches encoded canonically, float sums exact,
// and the footer's key-value metadata (kv plus the window size) sorted.
func WriteSummary(w io.Writer, t *schema.Table, s *Summary, kv map[string]string) error {
	l, err := newLayout(t)
	if err != nil {
		return fmt.Errorf("write summary: %w", err)
	}
	if s == nil {
		return errors.New("write summary: nil summary")
	}
	rows := slices.Clone(s.Rows)
	tmp := Summary{Rows: rows}
	tmp.sort()
	for i := range rows {
		if err := l.checkRow(&rows[i]); err != nil {
			return fmt.Errorf("write summary for table %s: row %d: %w", t.Name, i, err)
		}
	}
	opts := []parquet.WriterOption{
		l.schema(),
		parquet.Compression(schema.ZstdFastest),
		schema.CreatedBy(),
		parquet.DataPageStatistics(false),
	}
	meta := map[string]string{MetaWindow: s.Window.String()}
	for k, v := range kv {
		meta[k] = v
	}
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		opts = append(opts, parquet.KeyValueMetadata(k, meta[k]))
	}
	pw := parquet.NewWriter(w, opts...)
	cols := pw.ColumnWriters()
	// Every column's values are taken row by row, while the row's sketches
	// are in cache (a quantile or an encoding walks the sketch's bins; taken
	// column by column, each pass fetched every sketch from memory again),
	// then written column by column, a block of rows at a time: the values
	// of a block, not of the whole file, are held (they were 40 MB a pass).
	chunk := min(len(rows), summaryRowBlock)
	vals := make([][]parquet.Value, len(l.cols))
	for ci := range vals {
		vals[ci] = make([]parquet.Value, chunk)
	}
	for from := 0; from < len(rows); from += chunk {
		block := rows[from:min(from+chunk, len(rows))]
		for i := range block {
			for ci, c := range l.cols {
				v, err := c.get(&block[i])
				if err != nil {
					return fmt.Errorf("write summary for table %s: column %s: %w", t.Name, c.name, err)
				}
				if c.optional && !v.IsNull() {
					v.SetDefinitionLevel(1)
				}
				vals[ci][i] = v
			}
		}
		for ci, c := range l.cols {
			if _, err := cols[ci].WriteRowValues(vals[ci][:len(block)]); err != nil {
				return fmt.Errorf("write summary for table %s: column %s: %w", t.Name, c.name, err)
			}
		}
	}
	if err := pw.Close(); err != nil {
		return fmt.Errorf("write summary for table %s: %w", t.Name, err)
	}
	return nil
}

// checkRow rejects rows that do not fit the layout, which would otherwise
// panic in a type assertion.
func (l *summaryLayout) checkRow(r *Row) error {
	if len(r.Dims) != len(l.t.Rollup.Dimensions) || len(r.M) != len(l.specs) {
		return fmt.Errorf("row has %d dimensions and %d measures, the rollup %d and %d",
			len(r.Dims), len(r.M), len(l.t.Rollup.Dimensions), len(l.specs))
	}
	for i, fi := range l.t.Rollup.DimensionIndexes() {
		f := &l.t.Fields[fi]
		ok := true
		switch r.Dims[i].(type) {
		case nil:
			ok = f.Nullable
		case string:
			ok = f.Type == schema.TypeString
		case int64:
			ok = f.Type == schema.TypeInt64
		case bool:
			ok = f.Type == schema.TypeBool
		default:
			ok = false
		}
		if !ok {
			return fmt.Errorf("dimension %s: value %#v does not fit type %s (nullable %v)", f.Name, r.Dims[i], f.Type, f.Nullable)
		}
	}
	for i := range l.specs {
		m, s := &l.specs[i], &r.M[i]
		missing := (m.Kind == schema.KindDistinct && s.hll == nil) || (m.Kind == schema.KindQuantiles && s.dd == nil)
		if missing {
			return fmt.Errorf("measure %s: state not initialised", m.Name)
		}
	}
	return nil
}

// olderShape says why f is a summary of another rollup shape than t's (a
// column missing or of another type), "" if it has t's shape.
func olderShape(f *parquet.File, t *schema.Table) string {
	l, err := newLayout(t)
	if err != nil {
		return ""
	}
	want := l.schema()
	for _, c := range l.cols {
		lc, ok := f.Schema().Lookup(c.name)
		if !ok {
			return "no column " + c.name
		}
		wc, _ := want.Lookup(c.name)
		if lc.Node.Type().Kind() != wc.Node.Type().Kind() || lc.Node.Optional() != wc.Node.Optional() {
			return "column " + c.name + " of another type"
		}
	}
	return ""
}

// ReadSummary reads a file written by WriteSummary for t. Columns are found
// by name and must have the types SummarySchema gives them.
func ReadSummary(r io.ReaderAt, size int64, t *schema.Table) (*Summary, error) {
	l, err := newLayout(t)
	if err != nil {
		return nil, fmt.Errorf("read summary: %w", err)
	}
	f, err := parquet.OpenFile(r, size, parquet.SkipBloomFilters(true), parquet.SkipPageIndex(true))
	if err != nil {
		return nil, fmt.Errorf("read summary: %w", err)
	}
	s := &Summary{}
	if w, ok := f.Lookup(MetaWindow); ok {
		d, err := time.ParseDuration(w)
		if err != nil {
			return nil, fmt.Errorf("read summary: footer %s=%q: %w", MetaWindow, w, err)
		}
		s.Window = d
	}
	want := l.schema()
	leaf := make([]int, len(l.cols)) // file column of each layout column
	for i, c := range l.cols {
		lc, ok := f.Schema().Lookup(c.name)
		if !ok {
			return nil, fmt.Errorf("read summary for table %s: column %s is missing", t.Name, c.name)
		}
		wc, _ := want.Lookup(c.name)
		if lc.Node.Type().Kind() != wc.Node.Type().Kind() || lc.Node.Optional() != wc.Node.Optional() {
			return nil, fmt.Errorf("read summary for table %s: column %s is %s, want %s", t.Name, c.name, lc.Node.Type(), wc.Node.Type())
		}
		leaf[i] = lc.ColumnIndex
	}
	n := int(f.NumRows())
	s.Rows = make([]Row, n)
	for i := range s.Rows {
		s.Rows[i] = l.newRow()
	}
	base := 0
	for _, rg := range f.RowGroups() {
		chunks := rg.ColumnChunks()
		for ci, c := range l.cols {
			pages := chunks[leaf[ci]].Pages()
			row := base
			err := func() error {
				defer pages.Close()
				buf := make([]parquet.Value, 256)
				for {
					p, err := pages.ReadPage()
					if err == io.EOF {
						return nil
					}
					if err != nil {
						return err
					}
					vr := p.Values()
					for {
						k, err := vr.ReadValues(buf)
						for _, v := range buf[:k] {
							if row >= n {
								return errors.New("more values than rows")
							}
							if !v.IsNull() {
								if err := c.set(&s.Rows[row], v); err != nil {
									return fmt.Errorf("row %d: %w", row, err)
								}
							}
							row++
						}
						if err == io.EOF {
							break
						}
						if err != nil {
							return err
						}
					}
					parquet.Release(p)
				}
			}()
			if err != nil {
				return nil, fmt.Errorf("read summary for table %s: column %s: %w", t.Name, c.name, err)
			}
			if row != base+int(rg.NumRows()) {
				return nil, fmt.Errorf("read summary for table %s: column %s has %d values, row group %d rows", t.Name, c.name, row-base, rg.NumRows())
			}
		}
		base += int(rg.NumRows())
	}
	if s.Window == 0 && n > 0 {
		s.Window = time.Duration(s.Rows[0].End-s.Rows[0].Start) * time.Microsecond
	}
	for i := range s.Rows {
		r := &s.Rows[i]
		if time.Duration(r.End-r.Start)*time.Microsecond != s.Window || r.Start%s.Window.Microseconds() != 0 {
			return nil, fmt.Errorf("read summary for table %s: row %d: window [%d, %d) is not an aligned %s window", t.Name, i, r.Start, r.End, s.Window)
		}
		// Counts of sum/min/max states are only "some" after a file; a
		// count or avg column set them exactly already.
	}
	s.sort()
	return s, nil
}

// Merge combines summaries into windows of size window, a multiple of each
// input's window (equal is allowed: it combines partial summaries of the
// same windows). Rows of the same (window, dimensions) are merged; sketches
// merge, exact measures stay exact. The inputs are not modified.
func Merge(t *schema.Table, window time.Duration, parts ...*Summary) (*Summary, error) {
	return merge(t, window, false, parts)
}

// MergeOwned is Merge for a caller that hands its parts over: the result
// takes the first input row of each group as it is (its dimension values
// and measure states) and merges the others into it, instead of copying
// every row into fresh states. When most groups come from one part (the
// partials of files that follow each other in event time) that saves
// allocating and merging a state per measure per row. The parts must not
// be used afterwards; the result is the one Merge gives.
func MergeOwned(t *schema.Table, window time.Duration, parts ...*Summary) (*Summary, error) {
	return merge(t, window, true, parts)
}

func merge(t *schema.Table, window time.Duration, owned bool, parts []*Summary) (*Summary, error) {
	l, err := newLayout(t)
	if err != nil {
		return nil, fmt.Errorf("merge summaries: %w", err)
	}
	wus := window.Microseconds()
	if wus <= 0 || time.Duration(wus)*time.Microsecond != window {
		return nil, fmt.Errorf("merge summaries for table %s: window %s is not a positive whole number of microseconds", t.Name, window)
	}
	var all []*Row
	for pi, p := range parts {
		if p == nil {
			continue
		}
		if len(p.Rows) > 0 && (p.Window <= 0 || window%p.Window != 0) {
			return nil, fmt.Errorf("merge summaries for table %s: window %s is not a multiple of input %d's window %s", t.Name, window, pi, p.Window)
		}
		for i := range p.Rows {
			r := &p.Rows[i]
			if err := l.checkRow(r); err != nil {
				return nil, fmt.Errorf("merge summaries for table %s: input %d row %d: %w", t.Name, pi, i, err)
			}
			all = append(all, r)
		}
	}
	// Inputs in a fixed order make the merge order, and so the result,
	// independent of how the caller listed them.
	slices.SortStableFunc(all, func(a, b *Row) int {
		if c := cmp.Compare(floorDiv(a.Start, wus), floorDiv(b.Start, wus)); c != 0 {
			return c
		}
		if c := compareDims(a.Dims, b.Dims); c != 0 {
			return c
		}
		return cmp.Compare(a.Start, b.Start)
	})
	out := &Summary{Window: window}
	for _, r := range all {
		start := floorDiv(r.Start, wus) * wus
		var dst *Row
		if n := len(out.Rows); n > 0 && out.Rows[n-1].Start == start && compareDims(out.Rows[n-1].Dims, r.Dims) == 0 {
			dst = &out.Rows[n-1]
		} else if owned {
			nr := *r
			nr.Start, nr.End = start, start+wus
			out.Rows = append(out.Rows, nr)
			continue
		} else {
			nr := l.newRow()
			nr.Start, nr.End = start, start+wus
			copy(nr.Dims, r.Dims)
			out.Rows = append(out.Rows, nr)
			dst = &out.Rows[len(out.Rows)-1]
		}
		dst.N += r.N
		for i := range l.specs {
			if err := l.specs[i].merge(&dst.M[i], &r.M[i]); err != nil {
				return nil, fmt.Errorf("merge summaries for table %s: window %s: %w", t.Name, time.UnixMicro(start).UTC().Format(time.RFC3339), err)
			}
		}
	}
	return out, nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
