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
	m        *Metrics
	writerID string // tells this process's objects apart from a zombie's
	mem      memory.Allocator

	budget   *semaphore.Weighted
	buffered atomic.Int64

	// encoded holds the buffers flushes encode objects into: one that grew
	// to an object's size is used again by the next flush, where a new one
	// grew by doubling each time (3% of a partition's CPU).
	encoded sync.Pool // *bytes.Buffer

	jobs      chan *flushJob
	startOnce sync.Once // the flushers start with the first flush
	flushers  sync.WaitGroup
	closeOnce sync.Once
}

// NewWriter builds a writer; its flushers start with the first flush, and
// Close stops them once every submitted flush has finished. A nil m keeps
// the metrics unregistered.
func NewWriter(cfg WriterConfig, bucket objstore.Bucket, logger *slog.Logger, m *Metrics) (*Writer, error) {
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
	if m == nil {
		m = NewMetrics(nil)
	}
	w := &Writer{
		cfg:      cfg,
		bucket:   bucket,
		commits:  lake.NewCommitLog(bucket).WithLogger(logger).WithMetrics(m.checkpoints),
		logger:   logger,
		m:        m,
		writerID: hex.EncodeToString(id[:]),
		mem:      memory.NewGoAllocator(),
		budget:   semaphore.NewWeighted(cfg.MemoryBudget),
		jobs:     make(chan *flushJob),
	}
	w.encoded.New = func() any { return new(bytes.Buffer) }
	return w, nil
}

// queue is where flushes are handed to the flushers. They start with the
// first flush, so that building a Writer starts no goroutine.
func (w *Writer) queue() chan<- *flushJob {
	w.startOnce.Do(func() {
		// Flushers wait on disk or network and on the commit of the flush
		// before theirs, so there are more of them than cores.
		for range max(4, 2*w.cfg.Workers) {
			w.flushers.Add(1)
			go func() {
				defer w.flushers.Done()
				for job := range w.jobs {
					job.finish(w.flush(job))
				}
			}()
		}
	})
	return w.jobs
}

// CommitLog is the log the writer commits through.
func (w *Writer) CommitLog() *lake.CommitLog { return w.commits }

// FlushTimeout bounds one flush; sources use it to bound their shutdown.
func (w *Writer) FlushTimeout() time.Duration { return w.cfg.FlushTimeout }

// InitTableMetrics starts a table's error, dead-letter and gap series at
// zero, so that rates and alerts see 0 rather than nothing before the first.
func (w *Writer) InitTableMetrics(table string) {
	for _, why := range schema.Reasons() {
		w.m.deadLetters.WithLabelValues(table, string(why))
	}
	for _, why := range []string{"encode", "upload", "commit", "conflict"} {
		w.m.flushFailures.WithLabelValues(table, why)
	}
	for _, c := range []*prometheus.CounterVec{w.m.rewinds, w.m.recordsIn, w.m.recordsWritten, w.m.gapPositions, w.m.sourceResets} {
		c.WithLabelValues(table)
	}
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

	// The chain as it will be once every started flush has committed: the
	// next link's number, where it starts and the source incarnation.
	seq       int64
	chainNext lake.Position
	sourceID  string

	expect   lake.Position // records before it are redeliveries of what is buffered or committed
	lag      int64         // the source's lag after the last record delivered
	lastPos  lake.Position
	pending  int64 // records (good or bad) since the last flush
	bytes    int64 // input bytes since the last flush
	held     int64 // budget bytes this buffer holds
	openedAt time.Time
	// arrivedAt: when the last batch of records arrived (see Arrived).
	arrivedAt time.Time

	// Flushes of one partition encode and upload in parallel, but commit in
	// order: each job waits for the commit of the one before it.
	inflight int
	last     *flushJob
	epoch    int // bumped by Rewind: jobs of an older epoch are history
}

// OpenPartition reads (or, for a new partition, starts with a genesis link
// that resolve supplies) the partition's chain and returns a buffer whose
// first link follows the chain's end. The source must deliver records from
// the returned end's position on.
func (w *Writer) OpenPartition(ctx context.Context, table *schema.Table, source, partition string, resolve func(context.Context) (lake.Genesis, error)) (*Partition, lake.End, error) {
	end, err := w.commits.Open(ctx, table.Name, source, partition, w.writerID, resolve)
	if err != nil {
		return nil, lake.End{}, err
	}
	return w.newPartition(table, source, partition, end), end, nil
}

// StartAt is a genesis resolver for sources without a notion of earliest or
// latest (and tests): a new partition starts at pos.
func StartAt(pos lake.Position, sourceID string) func(context.Context) (lake.Genesis, error) {
	return func(context.Context) (lake.Genesis, error) {
		return lake.Genesis{At: pos, SourceID: sourceID, Reason: "fixed start"}, nil
	}
}

func (w *Writer) newPartition(table *schema.Table, source, partition string, end lake.End) *Partition {
	return &Partition{
		w:         w,
		table:     table,
		source:    source,
		partition: partition,
		dec:       schema.NewDecoder(table),
		batch:     schema.NewBatch(table, w.mem),
		deadByWhy: map[schema.Reason]int64{},
		seq:       end.Seq,
		chainNext: end.Next,
		sourceID:  end.SourceID,
		expect:    end.Next,
	}
}

// Hold adds n budget bytes (already acquired by the caller) to this buffer;
// they are released once the records are committed or dropped.
func (p *Partition) Hold(n int64) { p.held += n }

// Append decodes one record into the buffer, or into its dead letters with
// the reason it did not fit. A record before the partition's position (a
// redelivery) is skipped: it reports false.
func (p *Partition) Append(value []byte, pos lake.Position, ts time.Time) bool {
	return p.AppendRecord(&Record{Value: value, Pos: pos, Time: ts})
}

// AppendRecord is Append with the record's metadata, for tables that map
// it to fields, and routing: a skipped record only moves the buffer's
// position on (the link that covers it then holds no row of it); an
// unrouted one becomes a dead letter.
func (p *Partition) AppendRecord(r *Record) bool {
	value, pos, ts := r.Value, r.Pos, r.Time
	if pos.Less(p.expect) {
		return false
	}
	p.expect = pos.Succ()
	if p.pending == 0 {
		p.openedAt = time.Now()
	}
	p.pending++
	p.bytes += int64(len(value))
	p.lastPos = pos
	if r.Skip {
		return true
	}
	if r.Unrouted {
		p.addDeadLetter(value, pos, ts, &r.At, &schema.RecordError{Reason: schema.ReasonUnrouted, Detail: r.Why})
		return true
	}
	offset, ok := pos.Int64()
	if !ok {
		offset = -1 // positions past int64 (Kinesis) have no offset column value
	}
	meta := schema.Meta{Source: p.source, Partition: p.partition, Offset: offset, Key: r.Key, Headers: r.Headers, Time: ts}
	eventTime, err := p.dec.Decode(p.batch, value, meta)
	if err == nil {
		p.eventTimes = append(p.eventTimes, eventTime)
		return true
	}
	p.addDeadLetter(value, pos, ts, &r.At, err)
	return true
}

type deadLetter struct {
	Table     string        `json:"table"`
	Source    string        `json:"source"`
	Partition string        `json:"partition"`
	Position  lake.Position `json:"position"`
	Offset    *int64        `json:"offset,omitempty"` // the position as a number, where it fits (Kafka)
	Timestamp time.Time     `json:"timestamp,omitzero"`
	Reason    string        `json:"reason"`
	Field     string        `json:"field,omitempty"`
	Error     string        `json:"error"`
	Value     *string       `json:"value,omitempty"`
	ValueB64  []byte        `json:"value_b64,omitempty"`
	// Where the record is in its source file, for records read from files
	// (position counts lines within a split, which a user cannot find
	// without the ledger); absent for streams.
	File       string `json:"file,omitempty"`
	FileOffset *int64 `json:"file_offset,omitempty"` // bytes before the line, uncompressed
	FileLine   *int64 `json:"file_line,omitempty"`   // from 1, where known
	FileRow    *int64 `json:"file_row,omitempty"`    // Parquet, from 0
}

func (p *Partition) addDeadLetter(value []byte, pos lake.Position, ts time.Time, at *Location, err error) {
	reason := schema.Reason("undecodable")
	var field string
	var re *schema.RecordError
	if errors.As(err, &re) {
		reason, field = re.Reason, re.Field
	}
	dl := deadLetter{
		Table: p.table.Name, Source: p.source, Partition: p.partition, Position: pos,
		Timestamp: ts.UTC(), Reason: string(reason), Field: field, Error: err.Error(),
	}
	if offset, ok := pos.Int64(); ok {
		dl.Offset = &offset
	}
	if at.File != "" {
		// Copies, not pointers into at: at points into the caller's record,
		// which must not escape to the heap for the sake of a dead letter.
		loc := *at
		dl.File = loc.File
		if loc.Offset >= 0 {
			dl.FileOffset = &loc.Offset
		}
		if loc.Line > 0 {
			dl.FileLine = &loc.Line
		}
		if loc.Row >= 0 {
			dl.FileRow = &loc.Row
		}
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
		line = fmt.Appendf(nil, `{"position":"%s","reason":%q,"error":%q}`, pos, reason, mErr.Error())
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
	return p.pending >= int64(c.FlushRecords) || p.bytes >= c.FlushBytes || now.Sub(p.openedAt) >= c.FlushInterval ||
		c.FlushIdle > 0 && !p.arrivedAt.IsZero() && now.Sub(p.arrivedAt) >= c.FlushIdle
}

// Arrived notes that records arrived at now, for flush_idle. The owner
// calls it once per batch of records: a clock read per record would be a
// measurable share of the record path.
func (p *Partition) Arrived(now time.Time) { p.arrivedAt = now }

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
	case p.w.queue() <- job:
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
	job := p.newJob(lake.LinkData, p.lastPos.Succ(), done)
	job.records = p.pending
	job.rec = p.batch.NewRecord()
	job.eventTimes = p.eventTimes
	job.dead = bytes.Clone(p.dead.Bytes())
	job.deadCount = p.deadCount
	job.deadByWhy = p.deadByWhy
	job.held = p.held
	p.eventTimes = make([]int64, 0, cap(p.eventTimes))
	p.dead.Reset()
	p.deadCount, p.pending, p.bytes, p.held = 0, 0, 0, 0
	p.deadByWhy = map[schema.Reason]int64{}
	return job, nil
}

// newJob starts the next link of the chain, of kind, ending at next.
func (p *Partition) newJob(kind string, next lake.Position, done func(FlushResult)) *flushJob {
	job := &flushJob{
		table:     p.table,
		source:    p.source,
		partition: p.partition,
		kind:      kind,
		seq:       p.seq,
		first:     p.chainNext,
		next:      next,
		sourceID:  p.sourceID,
		lag:       p.lag,
		started:   time.Now(),
		done:      done,
		epoch:     p.epoch,
		prev:      p.last,
		committed: make(chan struct{}),
	}
	p.inflight++
	p.last = job
	p.seq++
	p.chainNext = next
	return job
}

// startGap moves the buffer into a flush (the caller submits it first, so
// the link order is kept) and returns a job that records positions up to to
// as lost: the source found that they can no longer be read.
func (p *Partition) startGap(to lake.Position, reason string, done func(FlushResult)) *flushJob {
	job := p.newJob(lake.LinkGap, to, done)
	job.reason = reason
	if p.expect.Less(to) {
		p.expect = to
	}
	return job
}

// startReset returns a job that starts a new incarnation of the source at
// at (a topic re-created under a new ID): positions restart there.
func (p *Partition) startReset(sourceID string, at lake.Position, reason string, done func(FlushResult)) *flushJob {
	p.chainNext = at
	job := p.newJob(lake.LinkReset, at, done)
	job.first = at
	job.sourceID = sourceID
	job.reason = reason
	p.sourceID = sourceID
	p.expect = at
	return job
}

// startEnd returns a job that closes the chain at its end: the source
// partition has no positions after it (a closed Kinesis shard read to its
// end).
func (p *Partition) startEnd(reason string, done func(FlushResult)) *flushJob {
	job := p.newJob(lake.LinkEnd, p.chainNext, done)
	job.reason = reason
	// Nothing is left to read: the aggregator may idle the partition out
	// of its watermark (after its idle timeout, by which time the
	// partitions that continue it hold it).
	job.lag = 0
	return job
}

// abandon gives back a job that was never submitted; its records are lost
// from the buffer, so the caller must rewind the partition.
func (p *Partition) abandon(job *flushJob) {
	p.inflight--
	p.last = job.prev
	if job.rec != nil {
		schema.RecycleRecord(job.rec)
	}
	p.w.release(job.held)
}

// Settled must be called by the owner when the done callback of a flush
// has run. It reports whether this result is the first failure of the
// buffer's epoch: the buffer is then dropped and the owner must rewind the
// partition to its chain end once no flush is in flight (Busy is false):
// only then is the chain end in the lake final, whichever of the flushes in
// flight fail or commit. Later failures of the same epoch report false.
func (p *Partition) Settled(r FlushResult) (failed bool) {
	p.inflight--
	if p.last != nil && p.last.seq == r.Seq && p.last.epoch == r.epoch {
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
// returns its budget. The chain position becomes unknown until Rewind.
func (p *Partition) Drop() {
	if rec := p.batch.NewRecord(); rec != nil {
		schema.RecycleRecord(rec)
	}
	p.eventTimes = p.eventTimes[:0]
	p.dead.Reset()
	p.deadCount, p.pending, p.bytes = 0, 0, 0
	p.deadByWhy = map[schema.Reason]int64{}
	p.w.release(p.held)
	p.held = 0
}

// Rewind drops the buffer and continues from end, the chain's end as read
// from the lake: the source redelivers from end.Next.
func (p *Partition) Rewind(end lake.End) {
	p.Drop()
	p.epoch++
	p.last = nil
	p.seq = end.Seq
	p.chainNext = end.Next
	p.sourceID = end.SourceID
	p.expect = end.Next
}

// Close releases the buffer's memory. The partition must not be used after.
func (p *Partition) Close() {
	p.Drop()
	p.batch.Release()
}

// FlushResult is the outcome of one flush.
type FlushResult struct {
	Table, Source, Partition string
	Seq                      int64 // the link's number
	Kind                     string
	First, Next              lake.Position
	Err                      error
	// Conflict is set when another writer committed this link first: this
	// process no longer owns the partition's chain at that point.
	Conflict bool
	epoch    int
}

type flushJob struct {
	table             *schema.Table
	source, partition string
	kind              string
	seq               int64
	first, next       lake.Position
	sourceID, reason  string
	lag               int64
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
	res := FlushResult{Table: job.table.Name, Source: job.source, Partition: job.partition, Seq: job.seq, Kind: job.kind,
		First: job.first, Next: job.next, epoch: job.epoch}
	defer w.release(job.held)
	if job.rec != nil {
		// The flush holds the only reference: its buffers go back to the
		// batches that fill next.
		defer schema.RecycleRecord(job.rec)
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.FlushTimeout)
	defer cancel()

	table := job.table.Name
	rec := lake.CommitRecord{
		Version:     lake.CommitRecordVersion,
		Table:       table,
		Source:      job.source,
		Partition:   job.partition,
		Seq:         job.seq,
		Kind:        job.kind,
		First:       job.first,
		Next:        job.next,
		SourceID:    job.sourceID,
		Reason:      job.reason,
		Lag:         job.lag,
		DeadLetters: job.deadCount,
		Writer:      w.writerID,
		Objects:     []lake.CommittedObject{},
	}
	if job.kind == lake.LinkData {
		if err := w.upload(ctx, job, &rec); err != nil {
			res.Err = err
			return res
		}
	}
	if job.prev != nil {
		select {
		case <-job.prev.committed:
		case <-ctx.Done():
			res.Err = fmt.Errorf("commit %s partition %s link %d: waiting for the previous flush: %w", job.source, job.partition, job.seq, ctx.Err())
			return res
		}
		if !job.prev.ok {
			res.Err = fmt.Errorf("commit %s partition %s link %d: %w", job.source, job.partition, job.seq, errPreviousFlushFailed)
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
		res.Err = fmt.Errorf("commit %s partition %s link %d: %w", job.source, job.partition, job.seq, err)
		return res
	}
	w.m.commits.WithLabelValues(table).Inc()
	w.m.objects.WithLabelValues(table, "commit").Inc()
	switch job.kind {
	case lake.LinkGap:
		n := job.first.Distance(job.next)
		w.m.gapPositions.WithLabelValues(table).Add(float64(n))
		w.logger.Error("positions lost before they could be ingested; recorded as a gap link", "table", table, "source", job.source,
			"partition", job.partition, "from", job.first, "to", job.next, "positions", n, "reason", job.reason)
	case lake.LinkEnd:
		w.logger.Info("source partition read to its end; its chain is closed", "table", table, "source", job.source,
			"partition", job.partition, "at", job.next, "reason", job.reason)
	case lake.LinkReset:
		w.m.sourceResets.WithLabelValues(table).Inc()
		w.logger.Error("source partition restarted under a new incarnation; recorded as a reset link", "table", table, "source", job.source,
			"partition", job.partition, "source_id", job.sourceID, "at", job.next, "reason", job.reason)
	}
	w.m.recordsWritten.WithLabelValues(table).Add(float64(rec.Records))
	for why, n := range job.deadByWhy {
		w.m.deadLetters.WithLabelValues(table, string(why)).Add(float64(n))
	}
	w.m.flushDuration.WithLabelValues(table).Observe(time.Since(job.started).Seconds())
	return res
}

// upload writes the job's raw objects, one per event-time hour, and its
// dead letters, and names them in rec. Every key carries a nonce of its
// own: a retry, or a zombie writer, never overwrites an object that a
// commit record may already vouch for.
func (w *Writer) upload(ctx context.Context, job *flushJob, rec *lake.CommitRecord) error {
	table := job.table.Name
	var nonce [6]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("flush %s partition %s: nonce: %w", job.source, job.partition, err)
	}
	name := fmt.Sprintf("%s-%s-%020d-%s-%s", safeName(job.source), safeName(job.partition), job.seq, w.writerID, hex.EncodeToString(nonce[:]))
	buf := w.encoded.Get().(*bytes.Buffer)
	defer w.encoded.Put(buf)
	for _, group := range groupByHour(job.eventTimes) {
		buf.Reset()
		if _, err := schema.WriteParquet(buf, job.table, job.rec, group.rows, schema.WriterOptions{Compression: w.cfg.Compression}); err != nil {
			w.m.flushFailures.WithLabelValues(table, "encode").Inc()
			return fmt.Errorf("encode %s partition %s: %w", job.source, job.partition, err)
		}
		key := lake.RawObjectKey(table, time.UnixMicro(group.hour*hourMicros), name)
		size := int64(buf.Len())
		if err := w.bucket.Put(ctx, key, bytes.NewReader(buf.Bytes()), size); err != nil {
			w.m.flushFailures.WithLabelValues(table, "upload").Inc()
			return fmt.Errorf("upload %s: %w", key, err)
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
			Key: key, Kind: lake.KindRaw, Rows: rows, Size: size, Checksum: lake.Checksum(buf.Bytes()),
			MinEventTimeMicros: group.min, MaxEventTimeMicros: group.max,
		})
	}
	if job.deadCount > 0 {
		key := lake.DeadLetterKey(table, time.Now(), name)
		size := int64(len(job.dead))
		if err := w.bucket.Put(ctx, key, bytes.NewReader(job.dead), size); err != nil {
			w.m.flushFailures.WithLabelValues(table, "upload").Inc()
			return fmt.Errorf("upload %s: %w", key, err)
		}
		w.m.objects.WithLabelValues(table, lake.KindDeadLetter).Inc()
		w.m.bytesWritten.WithLabelValues(table, lake.KindDeadLetter).Add(float64(size))
		rec.Objects = append(rec.Objects, lake.CommittedObject{Key: key, Kind: lake.KindDeadLetter, Rows: job.deadCount, Size: size, Checksum: lake.Checksum(job.dead)})
	}
	return nil
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
