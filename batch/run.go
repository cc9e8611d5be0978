package batch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/apache/arrow/go/v15/arrow/memory"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Options of one map/reduce run.
type Options struct {
	// Table is summarised by its rollup; it need not have an inbox.
	Table *schema.Table
	// Input holds the files under Prefix (JSON lines, CSV or Parquet as
	// Format says; Compression auto, none, gzip or zstd).
	Input       objstore.BucketReader
	Prefix      string
	Format      string
	Compression string
	// State keeps the run's partial summaries (one object per split, under
	// _batch/<table>/<run>/), so a run started again over the same prefix
	// skips the splits already mapped.
	State objstore.Bucket
	// Summaries receives the reduced summaries, in the aggregator's layout
	// (<table>/<window>/dt=.../<unit>.parquet), replacing what is there:
	// give a run a summary store (or prefix) of its own.
	Summaries objstore.Bucket
	// SplitBytes cuts uncompressed text files (default inbox.DefaultSplitBytes).
	SplitBytes int64
	// Parallel splits are mapped at once (default GOMAXPROCS).
	Parallel int
	// Progress is called (serially) as splits finish.
	Progress func(Progress)
	Logger   *slog.Logger
}

// Progress of a run: of the splits planned, how many are mapped, with
// their bytes (as stored) and records.
type Progress struct {
	Files, Splits, SplitsDone int
	Bytes, BytesDone          int64
	Records                   int64
}

// Stats sums up a run.
type Stats struct {
	Files, Splits, SplitsSkipped int
	Bytes                        int64 // input bytes as stored
	Records, BadRecords          int64 // bad records are in the run's dead letters
	Windows                      int   // finest windows with data
	Objects                      int   // summary objects written
}

// batchRows is how many decoded rows are folded into the partial summary
// at once.
const batchRows = 64 << 10

type split struct {
	file inbox.Entry
	sp   inbox.Split
	key  string // the partial summary's key
}

// Run maps every split of every file under the prefix to a partial
// summary of the finest window and reduces them into the summary store.
func Run(ctx context.Context, o Options) (Stats, error) {
	var st Stats
	if o.Table == nil || o.Table.Rollup == nil {
		return st, errors.New("batch run: the table has no rollup")
	}
	o = o.withDefaults()
	t := *o.Table
	t.Inbox = &schema.InboxSource{Prefix: o.Prefix, Format: o.Format, Compression: o.Compression}
	finest := slices.Min(t.Rollup.Windows)
	sum := sha256.Sum256([]byte(o.Prefix + "\x00" + o.Format))
	root := lake.BatchRunRoot(t.Name, hex.EncodeToString(sum[:8]))

	files, splits, err := plan(ctx, o, &t, root)
	if err != nil {
		return st, err
	}
	st.Files, st.Splits = len(files), len(splits)
	prog := Progress{Files: len(files), Splits: len(splits)}
	for _, s := range splits {
		prog.Bytes += splitBytes(s)
	}
	st.Bytes = prog.Bytes
	var progMu sync.Mutex
	report := func(bytes, recs int64) {
		progMu.Lock()
		defer progMu.Unlock()
		prog.SplitsDone++
		prog.BytesDone += bytes
		prog.Records += recs
		if o.Progress != nil {
			o.Progress(prog)
		}
	}

	parts, err := mapAll(ctx, o, &t, finest, root, splits, report, &st)
	if err != nil {
		return st, err
	}
	merged, err := reduce(ctx, o, &t, finest, splits, parts)
	if err != nil {
		return st, err
	}
	st.Windows = len(merged.Windows())
	st.Objects, err = writeWindows(ctx, o, &t, finest, merged)
	return st, err
}

// withDefaults fills in the options left empty.
func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.SplitBytes <= 0 {
		o.SplitBytes = inbox.DefaultSplitBytes
	}
	if o.Parallel <= 0 {
		o.Parallel = runtime.GOMAXPROCS(0)
	}
	if o.Format == "" {
		o.Format = "jsonl"
	}
	if o.Compression == "" {
		o.Compression = "auto"
	}
	return o
}

// plan lists the files under the prefix and cuts each into splits, in the
// order of their partial summaries' keys under root.
func plan(ctx context.Context, o Options, t *schema.Table, root string) ([]inbox.Entry, []split, error) {
	var files []inbox.Entry
	err := o.Input.Iter(ctx, o.Prefix, func(a objstore.ObjectAttrs) error {
		if inbox.Ignored(a.Key) || a.Size == 0 {
			return nil
		}
		files = append(files, inbox.Entry{Key: a.Key, Version: a.ETag, Size: a.Size, Format: o.Format})
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("batch run: list %s: %w", o.Prefix, err)
	}
	var splits []split
	var planMu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range files {
		g.Go(func() error {
			e := files[i]
			comp, sps, err := inbox.Plan(gctx, o.Input, t, e, o.SplitBytes)
			if err != nil {
				return err
			}
			e.Compression = comp
			files[i] = e
			id := sha256.Sum256([]byte(e.Key + "\x00" + e.Version + "\x00" + fmt.Sprint(e.Size)))
			planMu.Lock()
			defer planMu.Unlock()
			for _, sp := range sps {
				splits = append(splits, split{file: e, sp: sp, key: lake.BatchPartialKey(root, hex.EncodeToString(id[:12]), sp.Index)})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, nil, fmt.Errorf("batch run: plan: %w", err)
	}
	slices.SortFunc(splits, func(a, b split) int { return strings.Compare(a.key, b.key) })
	return files, splits, nil
}

// mapAll maps every split to a partial summary, written once
// (create-if-absent): a split whose partial is there is skipped. report is
// called as each split is done. It returns the partials it mapped, by
// split (nil for a skipped split), so the reduce reads back only the
// partials of splits mapped before: writing them is what makes a run
// resumable, reading back what is still in memory would only decode again.
func mapAll(ctx context.Context, o Options, t *schema.Table, finest time.Duration, root string, splits []split, report func(bytes, recs int64), st *Stats) ([]*aggregate.Summary, error) {
	var nrec, nbad, nskip atomic.Int64
	parts := make([]*aggregate.Summary, len(splits))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Parallel)
	for i, s := range splits {
		g.Go(func() error {
			if _, err := o.State.Attributes(gctx, s.key); err == nil {
				nskip.Add(1)
				report(splitBytes(s), 0)
				return nil
			} else if !objstore.IsNotExist(err) {
				return err
			}
			part, n, b, err := mapSplit(gctx, o, t, finest, s, root)
			if err != nil {
				return fmt.Errorf("map %s split %d: %w", s.file.Key, s.sp.Index, err)
			}
			parts[i] = part
			nrec.Add(n)
			nbad.Add(b)
			report(splitBytes(s), n)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("batch run: %w", err)
	}
	st.Records, st.BadRecords, st.SplitsSkipped = nrec.Load(), nbad.Load(), int(nskip.Load())
	return parts, nil
}

// reduce merges the partials into a summary of the finest window, in one
// go: merging them one by one would copy the growing result for each.
// parts holds the partials mapped by this run; the others are read from
// the state store.
func reduce(ctx context.Context, o Options, t *schema.Table, finest time.Duration, splits []split, parts []*aggregate.Summary) (*aggregate.Summary, error) {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Parallel)
	for i, s := range splits {
		if parts[i] != nil {
			continue
		}
		g.Go(func() error {
			data, err := get(gctx, o.State, s.key)
			if err != nil {
				return fmt.Errorf("batch run: reduce: %w", err)
			}
			part, err := aggregate.ReadPartial(data, t)
			if err != nil {
				return fmt.Errorf("batch run: reduce: %s: %w", s.key, err)
			}
			parts[i] = part
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	// The parts are this run's own and not used again: the merge may take
	// their states over rather than copy each group's.
	merged, err := aggregate.MergeOwned(t, finest, parts...)
	if err != nil {
		return nil, fmt.Errorf("batch run: reduce: %w", err)
	}
	return merged, nil
}

// writeWindows writes every window size of the rollup, each merged from
// the finest, and returns how many objects it wrote.
func writeWindows(ctx context.Context, o Options, t *schema.Table, finest time.Duration, merged *aggregate.Summary) (int, error) {
	// Each window size is merged from the largest smaller size that divides
	// it (1d from 1h rather than from 1m: fewer rows to sort and merge, the
	// same states since every measure merges exactly), one after the other
	// (a sketch is not safe to read while another goroutine encodes it: its
	// estimate compacts it), then written in parallel.
	bySize := make([]*aggregate.Summary, len(t.Rollup.Windows))
	order := slices.Clone(t.Rollup.Windows)
	slices.Sort(order)
	done := map[time.Duration]*aggregate.Summary{finest: merged}
	for _, w := range order {
		if w == finest {
			continue
		}
		from := finest
		for _, d := range order {
			if d < w && w%d == 0 && done[d] != nil {
				from = d
			}
		}
		sw, err := aggregate.Merge(t, w, done[from])
		if err != nil {
			return 0, fmt.Errorf("batch run: reduce to %s: %w", aggregate.WindowName(w), err)
		}
		done[w] = sw
	}
	for i, w := range t.Rollup.Windows {
		bySize[i] = done[w]
	}
	var objects atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(o.Parallel)
	for i, w := range t.Rollup.Windows {
		g.Go(func() error {
			n, err := writeUnits(gctx, o.Summaries, t, w, bySize[i], o.Prefix)
			objects.Add(int64(n))
			return err
		})
	}
	err := g.Wait()
	return int(objects.Load()), err
}

func splitBytes(s split) int64 { return inbox.SplitSize(s.file, s.sp) }

// mapSplit decodes one split and folds it into a partial summary of the
// finest window, written to s.key and returned; bad records go to a
// dead-letter object beside it, with the file and the record's position in
// the split.
func mapSplit(ctx context.Context, o Options, t *schema.Table, finest time.Duration, s split, root string) (part *aggregate.Summary, records, bad int64, err error) {
	dec := schema.NewDecoder(t)
	b := schema.NewBatch(t, memory.NewGoAllocator())
	defer b.Release()
	agg := aggregate.NewAggregator(t, finest, time.Unix(0, 0), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC))
	if err := agg.Err(); err != nil {
		return nil, 0, 0, err
	}
	// Every record is still validated whole (a bad line is dead-lettered
	// here as the stream's ingester would), but only the columns the
	// aggregator reads are copied into the batch.
	if err := b.Project(agg.Columns()...); err != nil {
		return nil, 0, 0, err
	}
	fold := func() error {
		if b.Len() == 0 {
			return nil
		}
		rec := b.NewRecord()
		// The aggregator copies what it keeps (dimension values are
		// interned as Go strings), so the record's buffers can be filled
		// again by the next batch instead of allocated and zeroed anew.
		defer schema.RecycleRecord(rec)
		return agg.AddRecord(rec)
	}
	var dead bytes.Buffer
	meta := schema.Meta{Source: "batch", Partition: inbox.PartitionName(s.file.Key, s.file.Version, s.sp.Index)}
	_, _, err = inbox.EachRecord(ctx, o.Input, t, s.file, s.sp, func(v []byte, pos int64, at ingest.Location) error {
		records++
		meta.Offset = pos
		if _, err := dec.Decode(b, v, meta); err != nil {
			bad++
			dl := map[string]any{"file": s.file.Key, "split": s.sp.Index, "position": pos, "error": err.Error(), "value": string(v)}
			// Like the inbox's dead letters: where the line is in the file itself.
			if at.Offset >= 0 {
				dl["file_offset"] = at.Offset
			}
			if at.Line > 0 {
				dl["file_line"] = at.Line
			}
			if at.Row >= 0 {
				dl["file_row"] = at.Row
			}
			line, _ := json.Marshal(dl)
			dead.Write(line)
			dead.WriteByte('\n')
			return nil
		}
		if b.Len() >= batchRows {
			return fold()
		}
		return nil
	})
	if err == nil {
		err = fold()
	}
	if err != nil {
		return nil, 0, 0, err
	}
	if dead.Len() > 0 {
		dkey := lake.BatchDeadLetterKey(root, s.key)
		if err := o.State.Put(ctx, dkey, bytes.NewReader(dead.Bytes()), int64(dead.Len())); err != nil {
			return nil, 0, 0, err
		}
	}
	part = agg.Result()
	// A compact partial, not a summary file: only a resumed run reads it.
	data, err := aggregate.AppendPartial(nil, t, part)
	if err != nil {
		return nil, 0, 0, err
	}
	if err := agg.Err(); err != nil {
		return nil, 0, 0, err
	}
	if err := o.State.PutIfAbsent(ctx, s.key, data); err != nil && !objstore.IsExists(err) {
		return nil, 0, 0, err
	}
	return part, records - bad, bad, nil
}

// writeUnits writes the windows of sw into one object per unit.
func writeUnits(ctx context.Context, dst objstore.Bucket, t *schema.Table, w time.Duration, sw *aggregate.Summary, prefix string) (int, error) {
	unit := aggregate.Unit(w).Microseconds()
	byUnit := map[int64][]int64{}
	for _, s := range sw.Windows() {
		u := s - ((s%unit)+unit)%unit
		byUnit[u] = append(byUnit[u], s)
	}
	n := 0
	for _, u := range slices.Sorted(func(yield func(int64) bool) {
		for u := range byUnit {
			if !yield(u) {
				return
			}
		}
	}) {
		var buf bytes.Buffer
		if err := aggregate.WriteSummary(&buf, t, sw.SelectWindows(byUnit[u]), map[string]string{"sluice.batch.input": prefix}); err != nil {
			return n, err
		}
		key := aggregate.SummaryKey(t.Name, w, time.UnixMicro(u))
		if err := dst.Put(ctx, key, bytes.NewReader(buf.Bytes()), int64(buf.Len())); err != nil {
			return n, fmt.Errorf("write %s: %w", key, err)
		}
		n++
	}
	return n, nil
}

func get(ctx context.Context, b objstore.BucketReader, key string) ([]byte, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(rc); err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return buf.Bytes(), nil
}
