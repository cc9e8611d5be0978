package verify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"slices"
	"strconv"
	"sync"

	"github.com/parquet-go/parquet-go"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// Metadata columns every raw object carries (see COMMON.md).
const (
	ColSource    = "_source"
	ColPartition = "_partition"
	ColOffset    = "_offset"
)

// Options tune ReadCommitted.
type Options struct {
	// Source keeps only the commit records of this source, e.g.
	// "kafka:events". Empty reads every source, and then the table must
	// have records of one source only: positions are compared by partition.
	Source string
	// SourceID, if set, keeps only the data and gap links of this
	// incarnation of the source (a Kafka topic ID). A topic deleted and
	// re-created repeats its offsets under a new ID, so each incarnation
	// is compared with what was produced to it on its own.
	SourceID string
	// EventIDColumn, if set, is a string column of the raw objects whose
	// values are checked for repeats across distinct positions (a producer
	// that wrote the same event twice). Values are kept as 64-bit hashes,
	// 8 bytes a row.
	EventIDColumn string
	// EventIndex, if set (with EventIDColumn), numbers the event ids the
	// producers made, densely (a generator's sequence): repeats are then
	// found exactly, with one bit per number instead of a hash per row
	// (a few MB rather than hundreds for tens of millions of rows). An id
	// it does not know (ok false) is counted in UnknownEventIDs. The
	// numbers must be bounded: the bits up to the largest are kept.
	EventIndex func(id []byte) (n uint64, ok bool)
	// Parallelism is how many objects are read at once; each is held in
	// memory whole while it is checked. Default 4.
	Parallelism int
	// MaxExamples bounds the examples kept for each kind of finding.
	// Default 10.
	MaxExamples int
}

func (o Options) withDefaults() Options {
	if o.Parallelism <= 0 {
		o.Parallelism = 4
	}
	if o.MaxExamples <= 0 {
		o.MaxExamples = 10
	}
	return o
}

// Issue kinds: ways an object disagrees with its commit record.
const (
	IssueMissingObject = "missing_object"  // named by a record, not in the bucket
	IssueUnreadable    = "unreadable"      // not valid Parquet / JSON lines
	IssueSize          = "size"            // byte size differs from the record's
	IssueChecksum      = "checksum"        // same size, other bytes than the record's checksum says
	IssueRowCount      = "row_count"       // row or line count differs from the record's
	IssueMissingColumn = "missing_column"  // a metadata column is absent
	IssueSource        = "wrong_source"    // _source / "source" differs from the record's
	IssuePartition     = "wrong_partition" // _partition / "partition" differs from the record's
	IssueOffsetRange   = "offset_range"    // _offset outside [FirstOffset, NextOffset)
	IssueDeadLetter    = "bad_dead_letter" // a line without offset or reason
)

// Issue is one inconsistency between a committed object and its record.
type Issue struct {
	Kind   string
	Key    string // object key
	Record string // commit record key
	Rows   int64  // rows or lines affected (0 when the object as a whole)
	Detail string
}

func (i Issue) String() string {
	s := i.Kind + " " + i.Key
	if i.Rows > 0 {
		s += fmt.Sprintf(" (%d rows)", i.Rows)
	}
	if i.Detail != "" {
		s += ": " + i.Detail
	}
	return s
}

// Committed is what readers of one table can see: the positions held by
// the raw and dead-letter objects that commit records on the chains name.
type Committed struct {
	Table  string
	Source string // the source read; "" if the table has no records

	Records           int   // commit records on the chains
	RawObjects        int   // raw objects named
	DeadLetterObjects int   // dead-letter objects named
	Rows              int64 // raw rows read, repetitions included
	DeadLetters       int64 // dead-letter lines read, repetitions included

	// Anomalies are commit-area objects outside the chains; readers ignore
	// them, and so does Committed.
	Anomalies []lake.Anomaly
	// Gaps are the chains' gap links: positions the source lost before they
	// were ingested (retention, truncation), recorded rather than skipped.
	Gaps []lake.CommitRecord
	// Resets are the chains' reset links: a source partition that started a
	// new incarnation (a re-created topic).
	Resets []lake.CommitRecord

	// Issues are inconsistencies between objects and their records, up to
	// MaxExamples per kind; IssueCounts has them all, by kind.
	Issues      []Issue
	IssueCounts map[string]int64

	// DuplicateEventIDs counts raw rows whose EventIDColumn value was seen
	// before in another row (only with Options.EventIDColumn).
	DuplicateEventIDs int64
	// UnknownEventIDs counts raw rows whose EventIDColumn value is null
	// or, with Options.EventIndex, an id it does not know.
	UnknownEventIDs int64

	// CompactedObjects are live objects written by compaction; their rows
	// are read in place of the replaced objects the records name, which
	// the sweeper may have deleted. ReplacedObjects counts those.
	CompactedObjects, ReplacedObjects int
	// RetiredObjects are objects the records name in hours a retention
	// record retired: not read, their positions are not in the result.
	RetiredObjects int

	maxExamples int
	raw, dead   map[string]*offsetBag // by partition
	eventIDs    []uint64              // hashes, or numbers with Options.EventIndex
	eventBits   []uint64              // with Options.EventIndex: the numbers seen
	byIndex     bool
}

// Partitions returns the partitions with committed positions.
func (c *Committed) Partitions() []string {
	seen := map[string]bool{}
	for p := range c.raw {
		seen[p] = true
	}
	for p := range c.dead {
		seen[p] = true
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sortPartitions(out)
	return out
}

func (c *Committed) addIssue(is Issue) {
	if c.IssueCounts == nil {
		c.IssueCounts = map[string]int64{}
	}
	if c.IssueCounts[is.Kind] < int64(c.maxExamples) {
		c.Issues = append(c.Issues, is)
	}
	c.IssueCounts[is.Kind]++
}

// ReadCommitted reads every raw and dead-letter object named by the commit
// records on the table's chains and checks each against its record. A raw
// object that compaction replaced is not read: the live object compaction
// wrote in its place is, once, with its rows checked against their own
// partition (retention-retired objects are skipped and counted). It fails
// only when the bucket cannot be read; what is wrong with the data is in
// the result.
func ReadCommitted(ctx context.Context, b objstore.BucketReader, table string, opts Options) (*Committed, error) {
	opts = opts.withDefaults()
	log := lake.NewCommitLog(readOnly{b})
	chains, err := log.Chains(ctx, table)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", table, err)
	}
	// Read after the chains, so every object a compaction replaced is on them.
	liveObjs, err := log.LiveObjects(ctx, table)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", table, err)
	}
	horizon, err := log.Retention(ctx, table)
	if err != nil {
		return nil, fmt.Errorf("verify %s: %w", table, err)
	}
	live := make(map[string]bool, len(liveObjs))
	var compacted []lake.LiveObject
	for _, o := range liveObjs {
		live[o.Key] = true
		if o.Compaction != "" {
			compacted = append(compacted, o)
		}
	}
	isRetired := func(key string) bool {
		h, ok := lake.ObjectHour(key)
		return ok && !horizon.RawBefore.IsZero() && h.Before(horizon.RawBefore)
	}
	c := &Committed{
		Table:       table,
		Source:      opts.Source,
		IssueCounts: map[string]int64{},
		maxExamples: opts.MaxExamples,
		raw:         map[string]*offsetBag{},
		dead:        map[string]*offsetBag{},
	}
	recs, err := c.dataRecords(chains, opts)
	if err != nil {
		return nil, err
	}
	c.Records = len(recs)
	if err := c.readObjects(ctx, b, recs, compacted, live, isRetired, opts); err != nil {
		return nil, err
	}
	c.countDuplicateEventIDs()
	return c, nil
}

// dataRecords collects the data links of the chains (of opts.Source, and
// opts.SourceID's incarnation), and keeps their gaps, resets and
// anomalies in c. Links of several sources are refused: set opts.Source.
func (c *Committed) dataRecords(chains []lake.Chain, opts Options) ([]lake.CommitRecord, error) {
	var recs []lake.CommitRecord
	sources := map[string]bool{}
	for _, ch := range chains {
		c.Anomalies = append(c.Anomalies, ch.Anomalies...)
		if opts.Source != "" && ch.Source != opts.Source {
			continue
		}
		if len(ch.Records) > 0 {
			sources[ch.Source] = true
			c.Source = ch.Source
		}
		for _, r := range ch.Records {
			if opts.SourceID != "" && r.SourceID != opts.SourceID && r.Kind != lake.LinkReset {
				continue
			}
			switch r.Kind {
			case lake.LinkData:
				recs = append(recs, r)
			case lake.LinkGap:
				c.Gaps = append(c.Gaps, r)
			case lake.LinkReset:
				c.Resets = append(c.Resets, r)
			}
		}
	}
	if len(sources) > 1 {
		names := make([]string, 0, len(sources))
		for s := range sources {
			names = append(names, s)
		}
		slices.Sort(names)
		return nil, fmt.Errorf("verify %s: records of several sources %v: set Options.Source", c.Table, names)
	}
	return recs, nil
}

// maxPreallocatedEventIDs bounds the room readObjects makes for event id
// hashes from what the commit records say (64 Mi rows, 512 MiB).
const maxPreallocatedEventIDs = 64 << 20

// readObjects reads, in parallel, the objects of recs that are neither
// retired nor replaced, and the compacted objects, and merges what each
// holds into c.
func (c *Committed) readObjects(ctx context.Context, b objstore.BucketReader, recs []lake.CommitRecord, compacted []lake.LiveObject,
	live map[string]bool, isRetired func(key string) bool, opts Options) error {
	var key eventKeyFunc
	c.byIndex = opts.EventIDColumn != "" && opts.EventIndex != nil
	switch {
	case c.byIndex:
		key = opts.EventIndex
	case opts.EventIDColumn != "":
		seed := maphash.MakeSeed()
		key = func(id []byte) (uint64, bool) { return maphash.Bytes(seed, id), true }
	}
	if opts.EventIDColumn != "" && !c.byIndex {
		// One hash per row read, known up front from the records: a slice
		// grown by doubling instead held up to twice that at its peak
		// (over 200 MB for a minute of the load test flat out).
		var rows int64
		for _, rec := range recs {
			for _, obj := range rec.Objects {
				if obj.Kind == lake.KindRaw && live[obj.Key] && !isRetired(obj.Key) {
					rows += obj.Rows
				}
			}
		}
		for _, o := range compacted {
			rows += o.Rows
		}
		// A record is not trusted for more than that: past it the slice
		// grows as before.
		c.eventIDs = slices.Grow(c.eventIDs, int(min(max(rows, 0), maxPreallocatedEventIDs)))
	}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(opts.Parallelism)
	for _, rec := range recs {
		for _, obj := range rec.Objects {
			switch {
			case isRetired(obj.Key):
				c.RetiredObjects++
				continue
			case obj.Kind == lake.KindRaw && !live[obj.Key]:
				c.ReplacedObjects++ // its rows are in a compacted object
				continue
			}
			g.Go(func() error {
				res, err := readObject(gctx, b, rec, obj, opts.EventIDColumn, key)
				if err != nil {
					return err
				}
				mu.Lock()
				c.merge(obj, res)
				mu.Unlock()
				return nil
			})
		}
	}
	for _, o := range compacted {
		c.CompactedObjects++
		// A compacted object may hold rows of several partitions: each row
		// counts for its own, and no offset range applies.
		rec := lake.CommitRecord{Table: c.Table, Source: c.Source, Partition: o.Partition, Kind: kindCompacted}
		g.Go(func() error {
			res, err := readObject(gctx, b, rec, o.CommittedObject, opts.EventIDColumn, key)
			if err != nil {
				return err
			}
			for i := range res.issues {
				res.issues[i].Record = o.Compaction
			}
			mu.Lock()
			c.merge(o.CommittedObject, res)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("verify %s: %w", c.Table, err)
	}
	return nil
}

// countDuplicateEventIDs counts the event ids read more than once.
func (c *Committed) countDuplicateEventIDs() {
	if len(c.eventIDs) == 0 {
		return
	}
	slices.Sort(c.eventIDs)
	for i := 1; i < len(c.eventIDs); i++ {
		if c.eventIDs[i] == c.eventIDs[i-1] {
			c.DuplicateEventIDs++
		}
	}
	c.eventIDs = nil
}

func (c *Committed) merge(obj lake.CommittedObject, res objectResult) {
	target := c.raw
	if obj.Kind == lake.KindDeadLetter {
		target = c.dead
		c.DeadLetterObjects++
		c.DeadLetters += res.rows
	} else {
		c.RawObjects++
		c.Rows += res.rows
	}
	for p, bag := range res.positions {
		if target[p] == nil {
			target[p] = &offsetBag{}
		}
		target[p].addBag(bag)
	}
	for _, is := range res.issues {
		c.addIssue(is)
	}
	c.UnknownEventIDs += res.unknownEventIDs
	if !c.byIndex {
		c.eventIDs = append(c.eventIDs, res.eventIDs...)
		return
	}
	for _, n := range res.eventIDs {
		w := n / 64
		if w >= uint64(len(c.eventBits)) {
			c.eventBits = slices.Grow(c.eventBits, int(w)+1-len(c.eventBits))[:w+1]
		}
		bit := uint64(1) << (n % 64)
		if c.eventBits[w]&bit != 0 {
			c.DuplicateEventIDs++
		}
		c.eventBits[w] |= bit
	}
}

// eventKeyFunc turns an event id into what repeats are found by: a hash,
// or the number Options.EventIndex gives it.
type eventKeyFunc func(id []byte) (uint64, bool)

type objectResult struct {
	rows      int64
	positions map[string]*offsetBag
	issues    []Issue
	eventIDs  []uint64
	// unknownEventIDs counts null ids and ids the key function refused.
	unknownEventIDs int64
}

func (r *objectResult) add(partition string, offset int64) {
	bag := r.positions[partition]
	if bag == nil {
		bag = &offsetBag{}
		r.positions[partition] = bag
	}
	bag.add(offset)
}

// kindCompacted marks the record readObject gets for an object written by
// compaction: it has no position range, and no partition if it holds rows
// of several.
const kindCompacted = "compacted"

// readObject reads one committed object and checks it against rec. An
// error means the bucket failed; a bad object is reported as issues.
func readObject(ctx context.Context, b objstore.BucketReader, rec lake.CommitRecord, obj lake.CommittedObject, idColumn string, key eventKeyFunc) (objectResult, error) {
	res := objectResult{positions: map[string]*offsetBag{}}
	recKey := lake.RecordKey(rec)
	issue := func(kind string, rows int64, format string, args ...any) {
		res.issues = append(res.issues, Issue{Kind: kind, Key: obj.Key, Record: recKey, Rows: rows, Detail: fmt.Sprintf(format, args...)})
	}
	rc, err := b.Get(ctx, obj.Key)
	if objstore.IsNotExist(err) {
		issue(IssueMissingObject, obj.Rows, "named by the commit record but absent")
		return res, nil
	}
	if err != nil {
		return res, fmt.Errorf("read %s: %w", obj.Key, err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return res, fmt.Errorf("read %s: %w", obj.Key, err)
	}
	if int64(len(data)) != obj.Size {
		issue(IssueSize, 0, "%d bytes, the record says %d", len(data), obj.Size)
	} else if err := lake.CheckObject(obj, data); err != nil {
		issue(IssueChecksum, 0, "%v", err)
	}
	switch obj.Kind {
	case lake.KindRaw:
		checkRaw(&res, data, rec, idColumn, key, issue)
	case lake.KindDeadLetter:
		checkDeadLetters(&res, data, rec, issue)
	default:
		issue(IssueUnreadable, obj.Rows, "unknown object kind %q", obj.Kind)
		return res, nil
	}
	if res.rows != obj.Rows {
		issue(IssueRowCount, 0, "holds %d rows, the record says %d", res.rows, obj.Rows)
	}
	return res, nil
}

type issueFunc func(kind string, rows int64, format string, args ...any)

// checkRaw reads the metadata columns of a raw Parquet object. Columns are
// read one after another within a row group, so a row group's offsets are
// held while its partition column is compared.
func checkRaw(res *objectResult, data []byte, rec lake.CommitRecord, idColumn string, key eventKeyFunc, issue issueFunc) {
	compacted := rec.Kind == kindCompacted
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		issue(IssueUnreadable, 0, "%v", err)
		return
	}
	cols, missing := metadataColumns(f.Schema(), idColumn)
	if missing != "" {
		issue(IssueMissingColumn, 0, "no column %s", missing)
		return
	}
	var (
		offsets    []int64
		otherParts map[int]string // row -> _partition, where it is not the record's
		wrongSrc   int64
		outOfRange int64
		wrongPart  int64
	)
	for gi, rg := range f.RowGroups() {
		chunks := rg.ColumnChunks()
		offsets = offsets[:0]
		clear(otherParts)
		err := readColumn(chunks[cols[ColOffset]], func(_ int, v parquet.Value) {
			offsets = append(offsets, v.Int64())
		})
		if err == nil {
			err = readColumn(chunks[cols[ColPartition]], func(row int, v parquet.Value) {
				if p := v.ByteArray(); string(p) != rec.Partition {
					if otherParts == nil {
						otherParts = map[int]string{}
					}
					otherParts[row] = string(p)
				}
			})
		}
		var sources int
		if err == nil {
			err = readColumn(chunks[cols[ColSource]], func(_ int, v parquet.Value) {
				sources++
				if string(v.ByteArray()) != rec.Source {
					wrongSrc++
				}
			})
		}
		var ids int
		if err == nil && idColumn != "" {
			err = readColumn(chunks[cols[idColumn]], func(_ int, v parquet.Value) {
				ids++
				if v.IsNull() {
					res.unknownEventIDs++
				} else if k, ok := key(v.ByteArray()); ok {
					res.eventIDs = append(res.eventIDs, k)
				} else {
					res.unknownEventIDs++
				}
			})
		}
		if err != nil {
			issue(IssueUnreadable, 0, "row group %d: %v", gi, err)
			return
		}
		if n := int64(len(offsets)); n != rg.NumRows() || int64(sources) != n || (idColumn != "" && int64(ids) != n) {
			issue(IssueUnreadable, 0, "row group %d: %d rows but %d offsets, %d sources, %d ids", gi, rg.NumRows(), n, sources, ids)
		}
		for row, off := range offsets {
			p := rec.Partition
			if other, ok := otherParts[row]; ok {
				p = other
				if !compacted || rec.Partition != "" {
					wrongPart++
				}
			}
			if first, next := rec.Offsets(); !compacted && (off < first || off >= next) {
				outOfRange++
			}
			res.add(p, off)
		}
		res.rows += int64(len(offsets))
	}
	if wrongSrc > 0 {
		issue(IssueSource, wrongSrc, "rows whose %s is not %q", ColSource, rec.Source)
	}
	if wrongPart > 0 {
		issue(IssuePartition, wrongPart, "rows whose %s is not %q", ColPartition, rec.Partition)
	}
	if outOfRange > 0 {
		issue(IssueOffsetRange, outOfRange, "rows whose %s is outside [%s, %s)", ColOffset, rec.First, rec.Next)
	}
}

// metadataColumns are the indexes of the metadata columns (and the event
// id's, if idColumn is set) by name; missing names one the schema lacks.
func metadataColumns(sch *parquet.Schema, idColumn string) (cols map[string]int, missing string) {
	cols = map[string]int{}
	names := []string{ColSource, ColPartition, ColOffset}
	if idColumn != "" {
		names = append(names, idColumn)
	}
	for _, name := range names {
		leaf, ok := sch.Lookup(name)
		if !ok {
			return nil, name
		}
		cols[name] = leaf.ColumnIndex
	}
	return cols, ""
}

// readColumn calls fn with every value of a column chunk and its row index
// within the row group.
func readColumn(cc parquet.ColumnChunk, fn func(row int, v parquet.Value)) error {
	pages := cc.Pages()
	defer pages.Close()
	buf := make([]parquet.Value, 1024)
	row := 0
	for {
		p, err := pages.ReadPage()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		vr := p.Values()
		for {
			n, err := vr.ReadValues(buf)
			for _, v := range buf[:n] {
				fn(row, v)
				row++
			}
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				parquet.Release(p)
				return err
			}
		}
		parquet.Release(p)
	}
}

// deadLetterLine is the part of a dead-letter line the verifier needs.
type deadLetterLine struct {
	Source    string `json:"source"`
	Partition string `json:"partition"`
	Offset    *int64 `json:"offset"`
	Reason    string `json:"reason"`
}

// maxDeadLetterLine bounds one line: a record of up to a few MiB, base64
// encoded, with its metadata.
const maxDeadLetterLine = 16 << 20

func checkDeadLetters(res *objectResult, data []byte, rec lake.CommitRecord, issue issueFunc) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), maxDeadLetterLine)
	var wrongSrc, wrongPart, outOfRange, bad int64
	line := 0
	for sc.Scan() {
		line++
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		var dl deadLetterLine
		if err := json.Unmarshal(sc.Bytes(), &dl); err != nil {
			issue(IssueUnreadable, 1, "line %d: %v", line, err)
			continue
		}
		if dl.Offset == nil || dl.Reason == "" {
			bad++
			if dl.Offset == nil {
				continue
			}
		}
		p := rec.Partition
		if dl.Partition != rec.Partition {
			p = dl.Partition
			wrongPart++
		}
		if dl.Source != rec.Source {
			wrongSrc++
		}
		if first, next := rec.Offsets(); *dl.Offset < first || *dl.Offset >= next {
			outOfRange++
		}
		res.add(p, *dl.Offset)
		res.rows++
	}
	if err := sc.Err(); err != nil {
		issue(IssueUnreadable, 0, "after line %d: %v", line, err)
	}
	if bad > 0 {
		issue(IssueDeadLetter, bad, "lines without an offset or a reason")
	}
	if wrongSrc > 0 {
		issue(IssueSource, wrongSrc, "lines whose source is not %q", rec.Source)
	}
	if wrongPart > 0 {
		issue(IssuePartition, wrongPart, "lines whose partition is not %q", rec.Partition)
	}
	if outOfRange > 0 {
		issue(IssueOffsetRange, outOfRange, "lines whose offset is outside [%s, %s)", rec.First, rec.Next)
	}
}

// readOnly lets a BucketReader back a CommitLog, which only reads here.
type readOnly struct{ objstore.BucketReader }

var errReadOnly = errors.New("verify: the bucket is read-only")

func (readOnly) Put(context.Context, string, io.Reader, int64) error { return errReadOnly }
func (readOnly) PutIfAbsent(context.Context, string, []byte) error   { return errReadOnly }
func (readOnly) Delete(context.Context, string) error                { return errReadOnly }
func (r readOnly) Name() string {
	if n, ok := r.BucketReader.(interface{ Name() string }); ok {
		return n.Name()
	}
	return "read-only bucket"
}

// sortPartitions orders numeric partitions numerically, others lexically
// after them.
func sortPartitions(ps []string) {
	slices.SortFunc(ps, func(a, b string) int {
		ai, aerr := strconv.ParseInt(a, 10, 64)
		bi, berr := strconv.ParseInt(b, 10, 64)
		switch {
		case aerr == nil && berr == nil:
			switch {
			case ai < bi:
				return -1
			case ai > bi:
				return 1
			}
			return 0
		case aerr == nil:
			return -1
		case berr == nil:
			return 1
		}
		if a < b {
			return -1
		} else if a > b {
			return 1
		}
		return 0
	})
}
