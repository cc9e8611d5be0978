package ingest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/memory"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/semaphore"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Writer turns the buffers of source partitions into raw Parquet objects and
// commit records. Sources own their Partitions and hand full ones to the
// Writer, whose flushers encode and upload them in parallel.
type Writer struct {
	cfg      WriterConfig
	bucket   objstore.Bucket
	commits  *lake.CommitLog
	logger   *slog.Logger
	m        *metrics
	writerID string // tells this process's objects apart from a zombie's
	mem      memory.Allocator

	budget   *semaphore.Weighted
	buffered atomic.Int64

	jobs      chan *flushJob
	flushers  sync.WaitGroup
	closeOnce sync.Once
}

// NewWriter starts the flushers. Close stops them once every submitted
// flush has finished.
func NewWriter(cfg WriterConfig, bucket objstore.Bucket, logger *slog.Logger, reg prometheus.Registerer) (*Writer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("writer id: %w", err)
	}
	w := &Writer{
		cfg:      cfg,
		bucket:   bucket,
		commits:  lake.NewCommitLog(bucket),
		logger:   logger,
		m:        newMetrics(reg),
		writerID: hex.EncodeToString(id[:]),
		mem:      memory.NewGoAllocator(),
		budget:   semaphore.NewWeighted(cfg.MemoryBudget),
		jobs:     make(chan *flushJob),
	}
	// Flushers wait on disk or network and on the commit of the flush before
	// theirs, so there are more of them than cores.
	for range max(4, 2*cfg.Workers) {
		w.flushers.Add(1)
		go func() {
			defer w.flushers.Done()
			for job := range w.jobs {
				job.finish(w.flush(job))
			}
		}()
	}
	return w, nil
}

// Close waits for the flushes in progress. No flush may be submitted after.
func (w *Writer) Close() {
	w.closeOnce.Do(func() { close(w.jobs) })
	w.flushers.Wait()
}

// acquire reserves n input bytes of the memory budget, waiting while it is
// used up; pressure is called at most every 100ms while waiting, so that the
// caller can ask for buffers to be flushed and the budget to come back.
func (w *Writer) acquire(ctx context.Context, n int64, pressure func()) error {
	n = min(n, w.cfg.MemoryBudget)
	if w.budget.TryAcquire(n) {
		w.m.bufferedBytes.Set(float64(w.buffered.Add(n)))
		return nil
	}
	w.m.budgetWaits.Inc()
	for {
		pressure()
		waitCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		err := w.budget.Acquire(waitCtx, n)
		cancel()
		if err == nil {
			w.m.bufferedBytes.Set(float64(w.buffered.Add(n)))
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (w *Writer) release(n int64) {
	if n <= 0 {
		return
	}
	n = min(n, w.cfg.MemoryBudget)
	w.budget.Release(n)
	w.m.bufferedBytes.Set(float64(w.buffered.Add(-n)))
}

// Partition buffers the records of one source partition between flushes.
// It is not safe for concurrent use: one goroutine owns it.
type Partition struct {
	w         *Writer
	table     *schema.Table
	source    string
	partition string

	dec        *schema.Decoder
	batch      *schema.Batch
	eventTimes []int64
	dead       bytes.Buffer
	deadCount  int64
	deadByWhy  map[schema.Reason]int64

	chainNext  int64 // first offset of the next commit record; -1: the first record's
	lastOffset int64
	nextOffset int64 // records below it are redeliveries of what is buffered or committed
	pending    int64 // records (good or bad) since the last flush
	bytes      int64 // input bytes since the last flush
	held       int64 // budget bytes this buffer holds
	openedAt   time.Time

	// Flushes of one partition encode and upload in parallel, but commit in
	// order: each job waits for the commit of the one before it.
	inflight int
	last     *flushJob
	epoch    int // bumped by Reset: jobs of an older epoch are history
}

// NewPartition starts a buffer whose first commit record will start at
// chainNext (the end of the partition's chain in the commit log), or at the
// first appended record's offset if chainNext is negative.
func (w *Writer) NewPartition(table *schema.Table, source, partition string, chainNext int64) *Partition {
	return &Partition{
		w:          w,
		table:      table,
		source:     source,
		partition:  partition,
		dec:        schema.NewDecoder(table),
		batch:      schema.NewBatch(table, w.mem),
		deadByWhy:  map[schema.Reason]int64{},
		chainNext:  chainNext,
		nextOffset: max(chainNext, 0),
	}
}

// Hold adds n budget bytes (already acquired by the caller) to this buffer;
// they are released once the records are committed or dropped.
func (p *Partition) Hold(n int64) { p.held += n }

// Append decodes one record into the buffer, or into its dead letters with
// the reason it did not fit. A record below the partition's position (a
// redelivery) is skipped: it reports false.
func (p *Partition) Append(value []byte, offset int64, ts time.Time) bool {
	if offset < p.nextOffset {
		return false
	}
	p.nextOffset = offset + 1
	if p.pending == 0 {
		p.openedAt = time.Now()
		if p.chainNext < 0 {
			p.chainNext = offset
		}
	}
	p.pending++
	p.bytes += int64(len(value))
	p.lastOffset = offset
	meta := schema.Meta{Source: p.source, Partition: p.partition, Offset: offset}
	eventTime, err := p.dec.Decode(p.batch, value, meta)
	if err == nil {
		p.eventTimes = append(p.eventTimes, eventTime)
		return true
	}
	p.addDeadLetter(value, offset, ts, err)
	return true
}

type deadLetter struct {
	Table     string    `json:"table"`
	Source    string    `json:"source"`
	Partition string    `json:"partition"`
	Offset    int64     `json:"offset"`
	Timestamp time.Time `json:"timestamp,omitzero"`
	Reason    string    `json:"reason"`
	Field     string    `json:"field,omitempty"`
	Error     string    `json:"error"`
	Value     *string   `json:"value,omitempty"`
	ValueB64  []byte    `json:"value_b64,omitempty"`
}

func (p *Partition) addDeadLetter(value []byte, offset int64, ts time.Time, err error) {
	reason := schema.Reason("undecodable")
	var field string
	var re *schema.RecordError
	if errors.As(err, &re) {
		reason, field = re.Reason, re.Field
	}
	dl := deadLetter{
		Table: p.table.Name, Source: p.source, Partition: p.partition, Offset: offset,
		Timestamp: ts.UTC(), Reason: string(reason), Field: field, Error: err.Error(),
	}
	// Keep the original bytes exactly: as text when they are text, else base64.
	if utf8.Valid(value) {
		s := string(value)
		dl.Value = &s
	} else {
		dl.ValueB64 = value
	}
	line, mErr := json.Marshal(dl)
	if mErr != nil { // cannot happen for these types; keep the record anyway
		line = fmt.Appendf(nil, `{"offset":%d,"reason":%q,"error":%q}`, offset, reason, mErr.Error())
	}
	p.dead.Write(line)
	p.dead.WriteByte('\n')
	p.deadCount++
	p.deadByWhy[reason]++
}

// Pending reports how many records wait for a flush.
func (p *Partition) Pending() int64 { return p.pending }

// Bytes reports the input bytes waiting for a flush.
func (p *Partition) Bytes() int64 { return p.bytes }

// Busy reports whether a flush of this partition is still in progress.
func (p *Partition) Busy() bool { return p.inflight > 0 }

// InFlight reports how many flushes of this partition are in progress.
func (p *Partition) InFlight() int { return p.inflight }

// Due reports whether the buffer has reached a flush threshold at now.
func (p *Partition) Due(now time.Time) bool {
	if p.pending == 0 {
		return false
	}
	c := p.w.cfg
	return p.pending >= int64(c.FlushRecords) || p.bytes >= c.FlushBytes || now.Sub(p.openedAt) >= c.FlushInterval
}

// Flush hands the buffer to a flusher and starts a new one, waiting while
// every flusher is busy. done is called from the flusher goroutine with the
// outcome; the owner must then call Settled. Several flushes of a partition
// may be in progress: they commit in the order they were started, and once
// one fails, every later one of the same epoch fails too.
func (p *Partition) Flush(ctx context.Context, done func(FlushResult)) error {
	job, err := p.startFlush(done)
	if err != nil || job == nil {
		return err
	}
	select {
	case p.w.jobs <- job:
		return nil
	case <-ctx.Done():
		p.abandon(job)
		return ctx.Err()
	}
}

// startFlush moves the buffer into a job; nil if there is nothing to flush.
func (p *Partition) startFlush(done func(FlushResult)) (*flushJob, error) {
	if p.pending == 0 {
		return nil, nil
	}
	job := &flushJob{
		table:      p.table,
		source:     p.source,
		partition:  p.partition,
		first:      p.chainNext,
		next:       p.lastOffset + 1,
		records:    p.pending,
		rec:        p.batch.NewRecord(),
		eventTimes: p.eventTimes,
		dead:       bytes.Clone(p.dead.Bytes()),
		deadCount:  p.deadCount,
		deadByWhy:  p.deadByWhy,
		held:       p.held,
		started:    time.Now(),
		done:       done,
		epoch:      p.epoch,
		prev:       p.last,
		committed:  make(chan struct{}),
	}
	p.inflight++
	p.last = job
	p.chainNext = job.next
	p.eventTimes = make([]int64, 0, cap(p.eventTimes))
	p.dead.Reset()
	p.deadCount, p.pending, p.bytes, p.held = 0, 0, 0, 0
	p.deadByWhy = map[schema.Reason]int64{}
	return job, nil
}

// abandon gives back a job that was never submitted; its records are lost
// from the buffer, so the caller must rewind the partition.
func (p *Partition) abandon(job *flushJob) {
	p.inflight--
	p.last = job.prev
	job.rec.Release()
	p.w.release(job.held)
}

// Settled must be called by the owner when the done callback of a flush
// has run. It reports whether the caller must rewind the source to the chain
// end: the first failure of an epoch drops the buffer and asks for it; later
// failures of the same epoch follow from it and ask for nothing more.
func (p *Partition) Settled(r FlushResult) (rewind bool) {
	p.inflight--
	if p.last != nil && p.last.first == r.FirstOffset && p.last.epoch == r.epoch {
		p.last = nil
	}
	if r.Err == nil || r.epoch != p.epoch {
		return false
	}
	p.Drop()
	p.epoch++
	p.last = nil
	return true
}

// Drop discards everything buffered (a rewind or a lost partition) and
// returns its budget. The chain position becomes unknown until Reset.
func (p *Partition) Drop() {
	if rec := p.batch.NewRecord(); rec != nil {
		rec.Release()
	}
	p.eventTimes = p.eventTimes[:0]
	p.dead.Reset()
	p.deadCount, p.pending, p.bytes = 0, 0, 0
	p.deadByWhy = map[schema.Reason]int64{}
	p.w.release(p.held)
	p.held = 0
}

// Reset sets the offset at which the next commit record starts, after a
// rewind to the chain end.
func (p *Partition) Reset(chainNext int64) {
	p.epoch++
	p.last = nil
	p.chainNext = chainNext
	p.nextOffset = max(chainNext, 0)
}

// Close releases the buffer's memory. The partition must not be used after.
func (p *Partition) Close() {
	p.Drop()
	p.batch.Release()
}

// FlushResult is the outcome of one flush.
type FlushResult struct {
	Table, Source, Partition string
	FirstOffset, NextOffset  int64
	Err                      error
	// Conflict is set when another writer committed this range first: this
	// process no longer owns the partition's chain at that point.
	Conflict bool
	epoch    int
}

type flushJob struct {
	table             *schema.Table
	source, partition string
	first, next       int64
	records           int64
	rec               arrow.Record
	eventTimes        []int64
	dead              []byte
	deadCount         int64
	deadByWhy         map[schema.Reason]int64
	held              int64
	started           time.Time
	done              func(FlushResult)
	epoch             int
	prev              *flushJob     // the partition's previous flush, committed before this one
	committed         chan struct{} // closed once this job's outcome is known
	ok                bool          // set before committed is closed
}

func (j *flushJob) finish(r FlushResult) {
	j.ok = r.Err == nil
	close(j.committed)
	j.done(r)
}

// errPreviousFlushFailed fails every flush queued behind a failed one: its
// commit record would not start where the chain ends.
var errPreviousFlushFailed = errors.New("an earlier flush of the partition failed")

const hourMicros = int64(time.Hour / time.Microsecond)

// flush writes the job's objects, then its commit record. Nothing is visible
// to readers until the record exists; a failed flush leaves only orphans.
func (w *Writer) flush(job *flushJob) FlushResult {
	res := FlushResult{Table: job.table.Name, Source: job.source, Partition: job.partition, FirstOffset: job.first, NextOffset: job.next, epoch: job.epoch}
	defer w.release(job.held)
	defer job.rec.Release()
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.FlushTimeout)
	defer cancel()

	table := job.table.Name
	rec := lake.CommitRecord{
		Version:     lake.CommitRecordVersion,
		Table:       table,
		Source:      job.source,
		Partition:   job.partition,
		FirstOffset: job.first,
		NextOffset:  job.next,
		DeadLetters: job.deadCount,
		Writer:      w.writerID,
	}
	name := fmt.Sprintf("%s-%s-%020d-%s", safeName(job.source), safeName(job.partition), job.first, w.writerID)

	var buf bytes.Buffer
	for _, group := range groupByHour(job.eventTimes) {
		buf.Reset()
		if _, err := schema.WriteParquet(&buf, job.table, job.rec, group.rows, schema.WriterOptions{Compression: w.cfg.Compression}); err != nil {
			w.m.flushFailures.WithLabelValues(table, "encode").Inc()
			res.Err = fmt.Errorf("encode %s partition %s: %w", job.source, job.partition, err)
			return res
		}
		t := time.UnixMicro(group.hour * hourMicros).UTC()
		key := fmt.Sprintf("%s/dt=%s/hour=%02d/%s.parquet", table, t.Format(time.DateOnly), t.Hour(), name)
		size := int64(buf.Len())
		if err := w.bucket.Put(ctx, key, bytes.NewReader(buf.Bytes()), size); err != nil {
			w.m.flushFailures.WithLabelValues(table, "upload").Inc()
			res.Err = fmt.Errorf("upload %s: %w", key, err)
			return res
		}
		w.m.objects.WithLabelValues(table, lake.KindRaw).Inc()
		w.m.bytesWritten.WithLabelValues(table, lake.KindRaw).Add(float64(size))
		w.m.objectSize.WithLabelValues(table).Observe(float64(size))
		rows := int64(len(group.rows))
		if group.rows == nil {
			rows = int64(len(job.eventTimes))
		}
		rec.Records += rows
		rec.Objects = append(rec.Objects, lake.CommittedObject{
			Key: key, Kind: lake.KindRaw, Rows: rows, Size: size,
			MinEventTimeMicros: group.min, MaxEventTimeMicros: group.max,
		})
	}
	if job.deadCount > 0 {
		now := time.Now().UTC()
		key := fmt.Sprintf("_deadletter/%s/dt=%s/hour=%02d/%s.jsonl", table, now.Format(time.DateOnly), now.Hour(), name)
		size := int64(len(job.dead))
		if err := w.bucket.Put(ctx, key, bytes.NewReader(job.dead), size); err != nil {
			w.m.flushFailures.WithLabelValues(table, "upload").Inc()
			res.Err = fmt.Errorf("upload %s: %w", key, err)
			return res
		}
		w.m.objects.WithLabelValues(table, lake.KindDeadLetter).Inc()
		w.m.bytesWritten.WithLabelValues(table, lake.KindDeadLetter).Add(float64(size))
		rec.Objects = append(rec.Objects, lake.CommittedObject{Key: key, Kind: lake.KindDeadLetter, Rows: job.deadCount, Size: size})
	}
	if job.prev != nil {
		select {
		case <-job.prev.committed:
		case <-ctx.Done():
			res.Err = fmt.Errorf("commit %s partition %s [%d,%d): waiting for the previous flush: %w", job.source, job.partition, job.first, job.next, ctx.Err())
			return res
		}
		if !job.prev.ok {
			res.Err = fmt.Errorf("commit %s partition %s [%d,%d): %w", job.source, job.partition, job.first, job.next, errPreviousFlushFailed)
			return res
		}
		job.prev = nil // let it be collected
	}
	rec.CommittedAt = time.Now().UTC()
	if err := w.commits.Commit(ctx, rec); err != nil {
		if errors.Is(err, lake.ErrCommitConflict) || errors.Is(err, objstore.ErrExists) {
			res.Conflict = true
			w.m.flushFailures.WithLabelValues(table, "conflict").Inc()
		} else {
			w.m.flushFailures.WithLabelValues(table, "commit").Inc()
		}
		res.Err = fmt.Errorf("commit %s partition %s [%d,%d): %w", job.source, job.partition, job.first, job.next, err)
		return res
	}
	w.m.commits.WithLabelValues(table).Inc()
	w.m.objects.WithLabelValues(table, "commit").Inc()
	w.m.recordsWritten.WithLabelValues(table).Add(float64(rec.Records))
	for why, n := range job.deadByWhy {
		w.m.deadLetters.WithLabelValues(table, string(why)).Add(float64(n))
	}
	w.m.flushDuration.WithLabelValues(table).Observe(time.Since(job.started).Seconds())
	return res
}

type hourGroup struct {
	hour     int64 // hours since the epoch
	rows     []int // nil: all rows
	min, max int64 // event time, micros
}

// groupByHour splits rows by event-time hour; a buffer that touched a single
// hour (the usual case) is written whole without a selection.
func groupByHour(eventTimes []int64) []hourGroup {
	if len(eventTimes) == 0 {
		return nil
	}
	first := floorDiv(eventTimes[0], hourMicros)
	single := true
	for _, t := range eventTimes {
		if floorDiv(t, hourMicros) != first {
			single = false
			break
		}
	}
	if single {
		g := hourGroup{hour: first, min: eventTimes[0], max: eventTimes[0]}
		for _, t := range eventTimes {
			g.min, g.max = min(g.min, t), max(g.max, t)
		}
		return []hourGroup{g}
	}
	index := map[int64]int{}
	var groups []hourGroup
	for i, t := range eventTimes {
		h := floorDiv(t, hourMicros)
		gi, ok := index[h]
		if !ok {
			gi = len(groups)
			index[h] = gi
			groups = append(groups, hourGroup{hour: h, min: t, max: t})
		}
		g := &groups[gi]
		g.rows = append(g.rows, i)
		g.min, g.max = min(g.min, t), max(g.max, t)
	}
	return groups
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

// safeName keeps object names portable across file systems and S3 tools.
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '-'
	}, s)
}
