package aggregate

import (
	"bytes"
	"container/heap"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Compactor merges the small raw objects of closed hours into objects near
// a target size, through compaction records (see lake.CommitLog's
// LiveObjects): new objects are written first, the record last, so a
// reader sees either the old objects or the new ones, never both or
// neither. It is safe to run several Compactors at once: the record's
// conditional create lets one of any overlapping pair win, and the loser's
// objects are left as orphans for the sweeper.
type Compactor struct {
	cfg     CompactorConfig
	bucket  objstore.Bucket
	commits *lake.CommitLog
	logger  *slog.Logger
	m       *compactMetrics
	writer  string
	// cursors keeps the compaction cursors (compact_cursor.go); nil when
	// the store cannot replace objects conditionally, and every run reads
	// the whole table.
	cursors objstore.ConditionalBucket
}

// NewCompactor returns a Compactor writing through bucket and reading the
// commit log commits (which must be over the same bucket). A nil m keeps
// the metrics unregistered.
func NewCompactor(cfg CompactorConfig, bucket objstore.Bucket, commits *lake.CommitLog, logger *slog.Logger, m *Metrics) (*Compactor, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if bucket == nil || commits == nil {
		return nil, fmt.Errorf("%w: bucket and commit log are required", ErrBadCompactorConfig)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("compactor id: %w", err)
	}
	c := &Compactor{cfg: cfg, bucket: bucket, commits: commits, logger: logger,
		m: m.compaction, writer: "compactor-" + hex.EncodeToString(id[:])}
	if cb, ok := bucket.(objstore.ConditionalBucket); ok && commits.Manifests() {
		c.cursors = cb
	}
	return c, nil
}

// Config returns the effective configuration (defaults filled in).
func (c *Compactor) Config() CompactorConfig { return c.cfg }

// CompactionResult sums up one CompactTable call.
type CompactionResult struct {
	Groups     int   // groups planned
	Committed  int   // groups whose compaction record was written
	Conflicts  int   // groups another compactor got to first
	ObjectsIn  int   // objects replaced by committed groups
	ObjectsOut int   // objects created by committed groups
	BytesIn    int64 // bytes replaced
	BytesOut   int64 // bytes created
	Rows       int64 // rows moved
}

// CompactTable plans and compacts up to MaxGroupsPerRun groups of the
// table's closed hours as of now. A group lost to another compactor is
// counted as a conflict, not an error.
func (c *Compactor) CompactTable(ctx context.Context, table *schema.Table, now time.Time) (CompactionResult, error) {
	return c.compactTable(ctx, table, now, nil)
}

// compactTable is CompactTable under a lease: fenced, when not nil, is
// asked before every upload and commit and stops the run with its error
// (a newer lease holder has taken over).
func (c *Compactor) compactTable(ctx context.Context, table *schema.Table, now time.Time, fenced func(context.Context) error) (res CompactionResult, err error) {
	if table == nil {
		return res, errors.New("compact: nil table")
	}
	defer func() {
		outcome := "compacted"
		switch {
		case err != nil:
			outcome = "error"
		case res.Committed == 0 && res.Conflicts > 0:
			outcome = "conflict"
		case res.Committed == 0:
			outcome = "idle"
		}
		c.m.runs.WithLabelValues(table.Name, outcome).Inc()
	}()
	if c.cursors != nil {
		return c.compactChanged(ctx, table, now, fenced)
	}
	recs, err := c.commits.Records(ctx, table.Name)
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	closedBefore, ok := compactionClosedBefore(recs, now, c.cfg)
	if !ok {
		return res, nil
	}
	live, err := c.commits.LiveObjects(ctx, table.Name)
	if err != nil {
		return res, fmt.Errorf("compact %s: %w", table.Name, err)
	}
	groups := PlanCompaction(table.Name, live, closedBefore, c.cfg)
	_, err = c.compactGroups(ctx, table, groups, fenced, &res)
	return res, err
}

// compactGroups compacts groups in order, adding to res, and returns the
// records committed. A group lost to another compactor is counted as a
// conflict and skipped; any other error ends the run.
func (c *Compactor) compactGroups(ctx context.Context, table *schema.Table, groups []CompactionGroup, fenced func(context.Context) error, res *CompactionResult) ([]lake.CompactionRecord, error) {
	res.Groups += len(groups)
	var done []lake.CompactionRecord
	for _, g := range groups {
		rec, err := c.compactGroup(ctx, table, g, fenced)
		switch {
		case errors.Is(err, lake.ErrCompactionConflict):
			res.Conflicts++
			c.m.conflicts.WithLabelValues(table.Name).Inc()
			c.logger.Info("compaction lost to another compactor", "table", table.Name, "hour", g.Hour, "err", err)
			continue
		case err != nil:
			return done, err
		}
		done = append(done, rec)
		res.Committed++
		res.ObjectsIn += len(rec.Replaced)
		res.ObjectsOut += len(rec.Objects)
		res.Rows += rec.Rows
		var in, out int64
		for _, r := range rec.Replaced {
			in += r.Size
		}
		for _, o := range rec.Objects {
			out += o.Size
		}
		res.BytesIn += in
		res.BytesOut += out
		c.m.objectsIn.WithLabelValues(table.Name).Add(float64(len(rec.Replaced)))
		c.m.objectsOut.WithLabelValues(table.Name).Add(float64(len(rec.Objects)))
		c.m.bytesIn.WithLabelValues(table.Name).Add(float64(in))
		c.m.bytesOut.WithLabelValues(table.Name).Add(float64(out))
		c.logger.Info("compacted", "table", table.Name, "hour", g.Hour, "objects_in", len(rec.Replaced),
			"objects_out", len(rec.Objects), "bytes_in", in, "bytes_out", out, "rows", rec.Rows)
	}
	return done, nil
}

// compactGroup merges one group's objects and commits the result.
func (c *Compactor) compactGroup(ctx context.Context, table *schema.Table, g CompactionGroup, fenced func(context.Context) error) (lake.CompactionRecord, error) {
	check := func() error {
		if fenced == nil {
			return nil
		}
		return fenced(ctx)
	}
	keys := make([]string, len(g.Objects))
	for i, o := range g.Objects {
		keys[i] = o.Key
	}
	id := lake.CompactionID(keys)
	what := fmt.Sprintf("compact %s hour %s (%d objects, id %s)", table.Name, g.Hour.Format(time.RFC3339), len(g.Objects), id)
	dir, err := os.MkdirTemp(c.cfg.TempDir, "sluice-compact-")
	if err != nil {
		return lake.CompactionRecord{}, fmt.Errorf("%s: temp dir: %w", what, err)
	}
	defer os.RemoveAll(dir)

	inputs, err := c.download(ctx, dir, g.Objects)
	if err != nil {
		return lake.CompactionRecord{}, fmt.Errorf("%s: %w", what, err)
	}
	m, err := newCompactMerge(table, inputs)
	if err != nil {
		return lake.CompactionRecord{}, fmt.Errorf("%s: %w", what, err)
	}
	defer m.close()

	// Parts of equal row counts, as many as the inputs' size holds targets:
	// the planner keeps groups near one target, so usually one part.
	parts := max(1, int((g.EstimatedBytes+c.cfg.TargetBytes/2)/c.cfg.TargetBytes))
	rec := lake.CompactionRecord{Table: table.Name, Hour: g.Hour, ID: id, Writer: c.writer}
	for _, o := range g.Objects {
		rec.Replaced = append(rec.Replaced, lake.ReplacedObject{Key: o.Key, Rows: o.Rows, Size: o.Size})
	}
	var firstUpload time.Time
	var written int64
	// Keys unique to this attempt: a second compactor of the same inputs,
	// or this one retrying, never overwrites parts a record may name.
	var nonce [6]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return rec, fmt.Errorf("%s: nonce: %w", what, err)
	}
	attempt := hex.EncodeToString(nonce[:])
	for n := range parts {
		rows := g.Rows/int64(parts) + b2i(int64(n) < g.Rows%int64(parts))
		if err := check(); err != nil {
			return rec, fmt.Errorf("%s: %w", what, err)
		}
		if n == 0 {
			// The sweeper watches the hour from here: it deletes the
			// objects this record replaces, or these if it never lands.
			if err := c.commits.NoteCompaction(ctx, table.Name, g.Hour, attempt); err != nil {
				return rec, fmt.Errorf("%s: %w", what, err)
			}
		}
		obj, err := c.writePart(ctx, dir, table, m, lake.CompactedObjectKey(table.Name, g.Hour, id, attempt, n), rows)
		if err != nil {
			return rec, fmt.Errorf("%s: %w", what, err)
		}
		if firstUpload.IsZero() {
			firstUpload = time.Now()
		}
		written += obj.Rows
		rec.Objects = append(rec.Objects, obj)
	}
	if more, err := m.next(); err != nil || more {
		return rec, fmt.Errorf("%s: the objects hold more rows than their commit records say (%d)", what, g.Rows)
	}
	if written != g.Rows {
		return rec, fmt.Errorf("%s: merged %d rows, the commit records say %d", what, written, g.Rows)
	}
	// The sweeper deletes unnamed objects older than its grace; past
	// CommitWithin ours might be gone before the record names them.
	if since := time.Since(firstUpload); since > c.cfg.CommitWithin {
		return rec, fmt.Errorf("%s: %s since the first upload, more than commit_within %s: abandoned", what, since.Round(time.Millisecond), c.cfg.CommitWithin)
	}
	if err := check(); err != nil {
		return rec, fmt.Errorf("%s: %w", what, err)
	}
	committed, err := c.commits.CommitCompaction(ctx, rec)
	if err != nil {
		return rec, fmt.Errorf("%s: %w", what, err)
	}
	return committed, nil
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// compactInput is one downloaded object.
type compactInput struct {
	obj  lake.LiveObject
	path string
}

// download copies the objects into dir, a few at a time; their sizes must
// be what the commit records say.
func (c *Compactor) download(ctx context.Context, dir string, objs []lake.LiveObject) ([]compactInput, error) {
	inputs := make([]compactInput, len(objs))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for i, o := range objs {
		inputs[i] = compactInput{obj: o, path: filepath.Join(dir, fmt.Sprintf("in-%06d.parquet", i))}
		g.Go(func() error {
			rc, err := c.bucket.Get(gctx, o.Key)
			if err != nil {
				return fmt.Errorf("read %s: %w", o.Key, err)
			}
			defer rc.Close()
			f, err := os.Create(inputs[i].path)
			if err != nil {
				return fmt.Errorf("read %s: %w", o.Key, err)
			}
			sum := lake.NewChecksumWriter()
			n, err := io.Copy(io.MultiWriter(f, sum), rc)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("read %s: %w", o.Key, err)
			}
			if n != o.Size {
				return fmt.Errorf("read %s: %w: %d bytes, its record says %d", o.Key, lake.ErrObjectMismatch, n, o.Size)
			}
			if o.Checksum != "" && sum.Sum() != o.Checksum {
				return fmt.Errorf("read %s: %w: checksum %s, its record says %s", o.Key, lake.ErrObjectMismatch, sum.Sum(), o.Checksum)
			}
			return nil
		})
	}
	return inputs, g.Wait()
}

// writePart writes the next rows rows of the merge as one object under key
// and uploads it.
func (c *Compactor) writePart(ctx context.Context, dir string, table *schema.Table, m *compactMerge, key string, rows int64) (lake.CommittedObject, error) {
	obj := lake.CommittedObject{Key: key, Kind: lake.KindRaw, MinEventTimeMicros: 1<<63 - 1, MaxEventTimeMicros: -1 << 63}
	f, err := os.CreateTemp(dir, "out-*.parquet")
	if err != nil {
		return obj, fmt.Errorf("write %s: %w", key, err)
	}
	defer f.Close()
	pw := parquet.NewWriter(f, m.schema,
		schema.CreatedBy(),
		parquet.DataPageStatistics(false),
		parquet.DictionaryMaxBytes(1<<20),
		parquet.KeyValueMetadata("sluice.compaction", key),
	)
	batch := make([]parquet.Row, 0, 1024)
	inGroup := 0
	writeBatch := func() error {
		if len(batch) == 0 {
			return nil
		}
		if _, err := pw.WriteRows(batch); err != nil {
			return err
		}
		inGroup += len(batch)
		batch = batch[:0]
		if inGroup >= c.cfg.RowGroupRows {
			inGroup = 0
			return pw.Flush()
		}
		return nil
	}
	// Rows of the batch point into the inputs' read buffers: they are
	// written (copied) before any input refills its buffer.
	m.beforeRefill = writeBatch
	for obj.Rows < rows {
		more, err := m.next()
		if err != nil {
			return obj, fmt.Errorf("write %s: %w", key, err)
		}
		if !more {
			break
		}
		row := m.row()
		t := row[m.eventCol].Int64() * m.eventScale
		obj.MinEventTimeMicros = min(obj.MinEventTimeMicros, t)
		obj.MaxEventTimeMicros = max(obj.MaxEventTimeMicros, t)
		batch = append(batch, row)
		obj.Rows++
		if len(batch) == cap(batch) {
			if err := writeBatch(); err != nil {
				return obj, fmt.Errorf("write %s: %w", key, err)
			}
		}
	}
	if err := writeBatch(); err != nil {
		return obj, fmt.Errorf("write %s: %w", key, err)
	}
	m.beforeRefill = nil
	if err := pw.Close(); err != nil {
		return obj, fmt.Errorf("write %s: close: %w", key, err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return obj, fmt.Errorf("write %s: %w", key, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return obj, fmt.Errorf("write %s: %w", key, err)
	}
	sum := lake.NewChecksumWriter()
	if _, err := io.Copy(sum, f); err != nil {
		return obj, fmt.Errorf("write %s: checksum: %w", key, err)
	}
	obj.Checksum = sum.Sum()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return obj, fmt.Errorf("write %s: %w", key, err)
	}
	if err := c.bucket.Put(ctx, key, f, size); err != nil {
		return obj, fmt.Errorf("upload %s: %w", key, err)
	}
	obj.Size = size
	if obj.Rows == 0 {
		obj.MinEventTimeMicros, obj.MaxEventTimeMicros = 0, 0
	}
	return obj, nil
}

// compactMerge yields the rows of several raw objects in (_source,
// _partition, _offset) order: a k-way merge over inputs each sorted that
// way. An input's file is opened only when its first row comes up, and
// closed when it is exhausted, so objects of one partition (disjoint offset
// ranges, the usual case) are read one after another.
type compactMerge struct {
	schema     *parquet.Schema
	srcCol     int
	partCol    int
	offCol     int
	eventCol   int
	eventScale int64 // to micros
	cursors    compactHeap
	cur        *compactCursor // the cursor whose row was last returned
	prev       parquet.Row    // key columns of the last row, to catch duplicates
	// beforeRefill runs before any input reads more rows into its buffer,
	// which invalidates the rows handed out so far.
	beforeRefill func() error
}

type compactCursor struct {
	in    compactInput
	file  *os.File
	rgs   []parquet.RowGroup
	rg    int
	rows  parquet.Rows
	buf   []parquet.Row
	n     int
	pos   int
	first parquet.Row // key before the file is open: its first row
	open  bool
	conv  parquet.Conversion // to the table's schema, for objects that predate a field
}

func newCompactMerge(table *schema.Table, inputs []compactInput) (*compactMerge, error) {
	nf := len(table.Fields)
	m := &compactMerge{srcCol: nf, partCol: nf + 1, offCol: nf + 2, eventCol: table.EventTimeIndex(), eventScale: 1}
	if table.Fields[m.eventCol].Unit == schema.UnitMillis {
		m.eventScale = 1000
	}
	want := table.ParquetSchema()
	var largest int64 = -1
	for _, in := range inputs {
		f, pf, err := openCompactInput(in)
		if err != nil {
			return nil, err
		}
		var conv parquet.Conversion
		if err := sameColumns(want, pf.Schema()); err != nil {
			// An object written before nullable fields were added: its rows
			// are converted to the table's schema, the new columns NULL.
			if oerr := olderColumns(want, pf.Schema()); oerr != nil {
				f.Close()
				return nil, fmt.Errorf("%s: %w", in.obj.Key, err)
			}
			if conv, err = parquet.Convert(want, pf.Schema()); err != nil {
				f.Close()
				return nil, fmt.Errorf("%s: convert to the table's schema: %w", in.obj.Key, err)
			}
		}
		if pf.NumRows() != in.obj.Rows {
			f.Close()
			return nil, fmt.Errorf("%s has %d rows, its record says %d", in.obj.Key, pf.NumRows(), in.obj.Rows)
		}
		// The largest input's encodings (which string columns the writer
		// found worth a dictionary, from the biggest sample) are kept, when
		// it has the table's columns.
		if in.obj.Size > largest && conv == nil {
			largest, m.schema = in.obj.Size, pf.Schema()
		}
		cur := &compactCursor{in: in, buf: make([]parquet.Row, 64), conv: conv}
		cur.rgs = pf.RowGroups()
		cur.file = f
		ok, err := cur.advance()
		if err == nil && ok {
			cur.first = cur.buf[cur.pos].Clone()
		}
		cur.closeFile()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.obj.Key, err)
		}
		if ok {
			m.cursors.items = append(m.cursors.items, cur)
		}
	}
	if m.schema == nil {
		m.schema = want // every input predates a field
	}
	m.cursors.m = m
	heap.Init(&m.cursors)
	return m, nil
}

// olderColumns reports why got is not want less some nullable columns: the
// schema of an object written before those fields were added.
func olderColumns(want, got *parquet.Schema) error {
	have := map[string]parquet.Field{}
	for _, g := range got.Fields() {
		have[g.Name()] = g
	}
	for _, w := range want.Fields() {
		g, ok := have[w.Name()]
		switch {
		case !ok && !w.Optional():
			return fmt.Errorf("lacks required column %s", w.Name())
		case ok && (w.Type().Kind() != g.Type().Kind() || w.Optional() != g.Optional() || !g.Leaf()):
			return fmt.Errorf("column %s is %s (optional %v), the table's is %s (optional %v)", w.Name(), g.Type(), g.Optional(), w.Type(), w.Optional())
		}
		delete(have, w.Name())
	}
	for name := range have {
		return fmt.Errorf("has column %s, which the table does not", name)
	}
	return nil
}

func openCompactInput(in compactInput) (*os.File, *parquet.File, error) {
	f, err := os.Open(in.path)
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", in.obj.Key, err)
	}
	pf, err := parquet.OpenFile(f, in.obj.Size, parquet.SkipBloomFilters(true))
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("open %s: %w", in.obj.Key, err)
	}
	return f, pf, nil
}

// sameColumns checks that got has want's columns, in order, with the same
// types and repetition; encodings may differ.
func sameColumns(want, got *parquet.Schema) error {
	wf, gf := want.Fields(), got.Fields()
	if len(wf) != len(gf) {
		return fmt.Errorf("has %d columns, the table %d", len(gf), len(wf))
	}
	for i := range wf {
		w, g := wf[i], gf[i]
		if w.Name() != g.Name() || w.Type().Kind() != g.Type().Kind() || w.Optional() != g.Optional() || !g.Leaf() {
			return fmt.Errorf("column %d is %s %s (optional %v), the table's is %s %s (optional %v)",
				i, g.Name(), g.Type(), g.Optional(), w.Name(), w.Type(), w.Optional())
		}
	}
	return nil
}

// advance moves to the next row, reading more when the buffer is used up;
// false at the end of the input.
func (c *compactCursor) advance() (bool, error) {
	c.pos++
	for c.pos >= c.n {
		if c.rows == nil {
			if c.rg >= len(c.rgs) {
				return false, nil
			}
			c.rows = c.rgs[c.rg].Rows()
			c.rg++
		}
		n, err := c.rows.ReadRows(c.buf)
		if c.conv != nil && n > 0 {
			if _, cerr := c.conv.Convert(c.buf[:n]); cerr != nil {
				return false, cerr
			}
		}
		c.n, c.pos = n, 0
		if errors.Is(err, io.EOF) {
			c.rows.Close()
			c.rows = nil
			err = nil
		}
		if err != nil {
			return false, err
		}
	}
	return true, nil
}

func (c *compactCursor) row() parquet.Row {
	if !c.open {
		return c.first
	}
	return c.buf[c.pos]
}

func (c *compactCursor) closeFile() {
	if c.rows != nil {
		c.rows.Close()
		c.rows = nil
	}
	if c.file != nil {
		c.file.Close()
		c.file = nil
	}
	c.rgs, c.n, c.pos, c.rg = nil, 0, 0, 0
}

// next moves to the next row of the merge; false when all are read.
func (m *compactMerge) next() (bool, error) {
	if m.cur != nil {
		// The row just returned is done with; move its input on.
		c := m.cur
		m.cur = nil
		if c.pos+1 >= c.n && m.beforeRefill != nil {
			if err := m.beforeRefill(); err != nil {
				return false, err
			}
		}
		more, err := c.advance()
		if err != nil {
			return false, fmt.Errorf("read %s: %w", c.in.obj.Key, err)
		}
		if more {
			heap.Fix(&m.cursors, 0)
		} else {
			c.closeFile()
			heap.Pop(&m.cursors)
		}
	}
	if m.cursors.Len() == 0 {
		return false, nil
	}
	top := m.cursors.items[0]
	if !top.open {
		// Its first row is up: open it for real. The same first row comes
		// back, so the heap order holds.
		f, pf, err := openCompactInput(top.in)
		if err != nil {
			return false, err
		}
		top.file, top.rgs, top.open, top.pos, top.n = f, pf.RowGroups(), true, -1, 0
		if more, err := top.advance(); err != nil || !more {
			return false, fmt.Errorf("read %s: lost its rows on reopening: %v", top.in.obj.Key, err)
		}
		top.first = nil
	}
	row := top.row()
	if m.prev != nil && m.compare(m.prev, row) == 0 {
		return false, fmt.Errorf("row (%s, %s, %d) is in two of the objects", row[m.srcCol], row[m.partCol], row[m.offCol].Int64())
	}
	m.prev = append(m.prev[:0], row[m.srcCol].Clone(), row[m.partCol].Clone(), row[m.offCol])
	m.cur = top
	return true, nil
}

// row is the current row; valid until beforeRefill runs.
func (m *compactMerge) row() parquet.Row { return m.cur.row() }

// compare orders rows by (_source, _partition, _offset); a row of three
// values is such a key already (m.prev).
func (m *compactMerge) compare(a, b parquet.Row) int {
	ka, kb := m.key(a), m.key(b)
	if c := bytes.Compare(ka[0].ByteArray(), kb[0].ByteArray()); c != 0 {
		return c
	}
	if c := bytes.Compare(ka[1].ByteArray(), kb[1].ByteArray()); c != 0 {
		return c
	}
	x, y := ka[2].Int64(), kb[2].Int64()
	switch {
	case x < y:
		return -1
	case x > y:
		return 1
	}
	return 0
}

func (m *compactMerge) key(r parquet.Row) [3]parquet.Value {
	if len(r) == 3 {
		return [3]parquet.Value{r[0], r[1], r[2]}
	}
	return [3]parquet.Value{r[m.srcCol], r[m.partCol], r[m.offCol]}
}

func (m *compactMerge) close() {
	for _, c := range m.cursors.items {
		c.closeFile()
	}
	m.cursors.items = nil
}

type compactHeap struct {
	items []*compactCursor
	m     *compactMerge
}

func (h compactHeap) Len() int { return len(h.items) }
func (h compactHeap) Less(i, j int) bool {
	return h.m.compare(h.items[i].row(), h.items[j].row()) < 0
}
func (h compactHeap) Swap(i, j int) { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *compactHeap) Push(x any)   { h.items = append(h.items, x.(*compactCursor)) }
func (h *compactHeap) Pop() any {
	x := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return x
}

type compactMetrics struct {
	bytesIn, bytesOut     *prometheus.CounterVec // table
	objectsIn, objectsOut *prometheus.CounterVec // table
	runs                  *prometheus.CounterVec // table, outcome
	conflicts             *prometheus.CounterVec // table
}

func newCompactMetrics(f promauto.Factory) *compactMetrics {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return f.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	return &compactMetrics{
		bytesIn:    counter("sluice_aggregate_compaction_bytes_in_total", "Bytes of raw objects replaced by compaction.", "table"),
		bytesOut:   counter("sluice_aggregate_compaction_bytes_out_total", "Bytes of compacted objects committed.", "table"),
		objectsIn:  counter("sluice_aggregate_compaction_objects_in_total", "Raw objects replaced by compaction.", "table"),
		objectsOut: counter("sluice_aggregate_compaction_objects_out_total", "Compacted objects committed.", "table"),
		runs: counter("sluice_aggregate_compaction_runs_total",
			"Compaction runs by outcome: compacted, idle (nothing to do), conflict (every group lost to another compactor), error.", "table", "outcome"),
		conflicts: counter("sluice_aggregate_compaction_conflicts_total", "Groups lost to another compactor.", "table"),
	}
}
