package ingest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"sync"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/schema"
)

// This file is the source seam. A source (Kafka, Kinesis, an inbox, HTTP)
// polls its partitions and drives a Pipeline: it opens a partition (and
// learns where its chain ends), delivers records with their positions,
// reports holes and restarts it finds, and releases partitions it no longer
// owns. The pipeline decides when to flush, bounds what is in flight, and
// asks the source to rewind when a flush fails. A new source is only its own
// polling and positions.

// PartitionKey names one source partition of a table.
type PartitionKey struct {
	Table     string // the table's name
	Source    string // kind:name, e.g. "kafka:events"
	Partition string // the source's partition: a Kafka partition number, a shard id, an object key
}

func (k PartitionKey) String() string { return k.Table + "/" + k.Source + "/" + k.Partition }

// Record is one record a source delivers.
type Record struct {
	Value []byte
	Pos   lake.Position // its place in the partition; positions increase
	Time  time.Time     // the source's timestamp, kept with dead letters
	// Key and Headers are the record's metadata, for tables that map them
	// to fields (Time too); a source fills them only for such tables.
	Key     []byte
	Headers []schema.Header
	// Skip marks a record of a shared topic that another table takes: it
	// carries no value but moves this table's chain over its position, so
	// a table whose records are rare still commits (and reports its lag)
	// as the source partition advances.
	Skip bool
	// Unrouted marks a record that no table's route takes; it becomes a
	// dead letter with reason unrouted and Why as its error.
	Unrouted bool
	Why      string
	// At places the record in the file it was read from, for sources that
	// read files (the inbox); a dead letter carries it, so that the bad
	// record can be found in the file itself. Streams leave it zero.
	At Location
}

// Location is where a record sits in its source file. A zero Location
// (no File) says nothing; a source that sets File sets Offset or Row.
type Location struct {
	File string // the file's key
	// Offset is the byte offset of the record's line in the file (in the
	// uncompressed stream of a compressed file); -1 for a Parquet row.
	Offset int64
	// Line is the line's number in the file from 1, where the source
	// knows it (a file of one split, or its first split); else 0.
	Line int64
	// Row is a Parquet row's index in the file from 0; -1 for a line.
	Row int64
}

// Feedback is what a source hears back from its pipeline. Both methods are
// called from pipeline goroutines and must not block for long.
type Feedback interface {
	// Rewind asks the source to read the partition again from end.Next: a
	// flush failed, its records were dropped, and end is the chain's end as
	// the lake says once no flush is in flight. The source moves its read
	// position where that cannot race with records it is handing out, then
	// calls Pipeline.Resume(key, end); records delivered in between are
	// dropped.
	Rewind(key PartitionKey, end lake.End)
	// Committed says that the partition's chain now ends at next: a hint
	// for tools (a Kafka group offset), never the truth about progress.
	Committed(key PartitionKey, next lake.Position)
}

// maxInFlightPerPartition bounds the flushes of one partition that encode,
// upload or wait to commit at once.
const maxInFlightPerPartition = 4

// Pipeline turns the records a source delivers into committed raw objects
// through a Writer. Partitions are spread over workers (one per writer
// worker), each of which owns its partitions' buffers: it decodes their
// records, decides when to flush and handles flush outcomes. Calls for one
// partition must come from one goroutine of the source, in order.
type Pipeline struct {
	w        *Writer
	feedback Feedback
	logger   *slog.Logger

	workers []*worker
	// bufs holds []Record slices, handed out by Buffer and returned once
	// appended. A channel rather than a sync.Pool: the ingester collects
	// garbage several times a second, which emptied the pool between polls.
	bufs   chan []Record
	wg     sync.WaitGroup
	once   sync.Once
	closed chan struct{} // closed by Close: pending rewinds give up
}

// NewPipeline prepares a pipeline over w; Start runs its workers.
func NewPipeline(w *Writer, feedback Feedback, logger *slog.Logger) *Pipeline {
	p := &Pipeline{w: w, feedback: feedback, logger: logger, closed: make(chan struct{}), bufs: make(chan []Record, 64)}
	p.workers = make([]*worker, max(1, w.cfg.Workers))
	for i := range p.workers {
		p.workers[i] = &worker{
			p:       p,
			inbox:   make(chan workerMsg, 16),
			results: make(chan FlushResult, 64),
			parts:   map[PartitionKey]*partitionState{},
		}
	}
	return p
}

// Start runs the workers until Close.
func (p *Pipeline) Start() {
	for _, wk := range p.workers {
		p.wg.Add(1)
		go func() { defer p.wg.Done(); wk.run() }()
	}
}

// Close stops the workers, dropping whatever they hold: Drain first to
// commit it.
func (p *Pipeline) Close() {
	p.once.Do(func() {
		close(p.closed)
		for _, wk := range p.workers {
			close(wk.inbox)
		}
	})
	p.wg.Wait()
}

func (p *Pipeline) workerFor(key PartitionKey) *worker {
	h := fnv.New32a()
	h.Write([]byte(key.Table))
	h.Write([]byte{0})
	h.Write([]byte(key.Source))
	h.Write([]byte{0})
	h.Write([]byte(key.Partition))
	return p.workers[h.Sum32()%uint32(len(p.workers))]
}

// Open reads the partition's chain (writing its genesis first if it is new:
// resolve supplies where it starts, see lake.CommitLog.Open) and hands the
// partition to its worker. The source must deliver records from the
// returned end's position on.
func (p *Pipeline) Open(ctx context.Context, table *schema.Table, key PartitionKey, resolve func(context.Context) (lake.Genesis, error)) (lake.End, error) {
	if table.Name != key.Table {
		return lake.End{}, fmt.Errorf("open %s: table %q does not match", key, table.Name)
	}
	end, err := p.w.commits.Open(ctx, key.Table, key.Source, key.Partition, p.w.writerID, resolve)
	if err != nil {
		return lake.End{}, fmt.Errorf("open %s: %w", key, err)
	}
	p.send(ctx, key, workerMsg{kind: msgOpen, key: key, table: table, end: end})
	return end, nil
}

// Buffer returns a record slice of length n for a Deliver call; Deliver
// takes it over and recycles it once its records are decoded, so a source
// that delivers every poll allocates no new slices in the steady state.
func (p *Pipeline) Buffer(n int) []Record {
	select {
	case v := <-p.bufs:
		if cap(v) >= n {
			return v[:n]
		}
	default:
	}
	return make([]Record, n, max(n, 1024))
}

func (p *Pipeline) recycle(recs []Record) {
	clear(recs) // drop the references to the values
	select {
	case p.bufs <- recs:
	default: // enough kept
	}
}

// Deliver hands records of one partition, in position order, to its worker.
// lag is how many positions the source still holds after the last of them
// (0: the partition is caught up); it is written into the links, where the
// aggregator tells a lagging partition from an idle one. Deliver waits
// while the memory budget is used up (backpressure: a slow store slows the
// source rather than growing memory); only ctx ends the wait.
func (p *Pipeline) Deliver(ctx context.Context, key PartitionKey, recs []Record, lag int64) error {
	if len(recs) == 0 {
		return nil
	}
	var n int64
	skipped := 0
	for _, r := range recs {
		n += int64(len(r.Value)) + 64
		if r.Skip {
			skipped++
		}
	}
	if err := p.w.acquire(ctx, n, p.pressure); err != nil {
		return err
	}
	p.w.m.recordsIn.WithLabelValues(key.Table).Add(float64(len(recs) - skipped))
	if err := p.send(ctx, key, workerMsg{kind: msgRecords, key: key, records: recs, held: n, lag: lag}); err != nil {
		p.w.release(n)
		return err
	}
	return nil
}

// Gap records that the partition's positions up to to can no longer be
// read (retention or truncation removed them before they were ingested):
// after what is buffered, a gap link is committed, counted and logged at
// ERROR. Nothing is skipped silently.
func (p *Pipeline) Gap(ctx context.Context, key PartitionKey, to lake.Position, reason string) error {
	return p.send(ctx, key, workerMsg{kind: msgGap, key: key, pos: to, reason: reason})
}

// Restart records that the partition continues in a new incarnation of the
// source (a topic deleted and re-created has a new ID and offsets from
// 0): after what is buffered, a reset link starts the new incarnation at at.
func (p *Pipeline) Restart(ctx context.Context, key PartitionKey, sourceID string, at lake.Position, reason string) error {
	return p.send(ctx, key, workerMsg{kind: msgRestart, key: key, sourceID: sourceID, pos: at, reason: reason})
}

// End records that the partition has no positions after what was
// delivered (a Kinesis shard closed by a split or merge, read to its end):
// after what is buffered, an end link closes the chain. The source learns
// that it is committed from the chain (lake.End.Ended), which is also what
// lets it start the partitions that continue this one.
func (p *Pipeline) End(ctx context.Context, key PartitionKey, reason string) error {
	return p.send(ctx, key, workerMsg{kind: msgEnd, key: key, reason: reason})
}

// Resume answers a Feedback.Rewind: the source now reads from end.Next.
func (p *Pipeline) Resume(ctx context.Context, key PartitionKey, end lake.End) error {
	return p.send(ctx, key, workerMsg{kind: msgResume, key: key, end: end})
}

// Release hands partitions back (revoked or lost): with flush, their
// buffers are committed first (less to redo for the next owner); without,
// dropped (the next owner resumes from the chain end either way). It
// returns once the partitions' flushes have finished.
func (p *Pipeline) Release(ctx context.Context, keys []PartitionKey, flush bool) {
	byWorker := map[*worker][]PartitionKey{}
	for _, k := range keys {
		wk := p.workerFor(k)
		byWorker[wk] = append(byWorker[wk], k)
	}
	p.broadcast(ctx, byWorker, func(list []PartitionKey, ack chan struct{}) workerMsg {
		return workerMsg{kind: msgRelease, keys: list, flush: flush, ack: ack}
	})
}

// Drain flushes every buffer and waits for the commits (shutdown), or for
// ctx.
func (p *Pipeline) Drain(ctx context.Context) {
	all := map[*worker][]PartitionKey{}
	for _, wk := range p.workers {
		all[wk] = nil
	}
	p.broadcast(ctx, all, func(_ []PartitionKey, ack chan struct{}) workerMsg {
		return workerMsg{kind: msgDrain, ack: ack}
	})
}

func (p *Pipeline) broadcast(ctx context.Context, to map[*worker][]PartitionKey, msg func([]PartitionKey, chan struct{}) workerMsg) {
	var acks []chan struct{}
	for wk, list := range to {
		ack := make(chan struct{})
		select {
		case wk.inbox <- msg(list, ack):
			acks = append(acks, ack)
		case <-ctx.Done():
			return
		}
	}
	for _, ack := range acks {
		select {
		case <-ack:
		case <-ctx.Done():
			return
		}
	}
}

func (p *Pipeline) send(ctx context.Context, key PartitionKey, msg workerMsg) error {
	select {
	case p.workerFor(key).inbox <- msg:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// pressure asks every worker to flush its largest buffer, so that the
// memory budget comes back even when no buffer has reached a threshold.
func (p *Pipeline) pressure() {
	for _, wk := range p.workers {
		select {
		case wk.inbox <- workerMsg{kind: msgPressure}:
		default:
		}
	}
}

type msgKind int

const (
	msgOpen     msgKind = iota // a partition assigned, at its chain end
	msgRecords                 // records of one partition, in position order
	msgGap                     // positions lost before they were read
	msgRestart                 // a new incarnation of the source
	msgResume                  // a rewound partition reads from its chain end again
	msgRelease                 // partitions revoked or lost
	msgDrain                   // shutdown: flush everything and wait
	msgPressure                // memory budget used up: flush the largest buffer
	msgEnd                     // the partition has no positions after what was delivered
)

type workerMsg struct {
	kind     msgKind
	key      PartitionKey
	table    *schema.Table
	end      lake.End
	records  []Record
	held     int64
	lag      int64
	pos      lake.Position
	sourceID string
	reason   string
	keys     []PartitionKey
	flush    bool
	ack      chan struct{}
}

// partitionState is a worker's view of one partition.
type partitionState struct {
	*Partition
	key PartitionKey
	// rewinding: a flush failed and the buffer was dropped; records are
	// dropped until the source confirms the rewind with Resume.
	rewinding bool
	// rewindAsked: the source was asked (once no flush was in flight).
	rewindAsked bool
	failures    int  // consecutive failed flushes, for backoff
	conflict    bool // the failure was another writer's link: no backoff
}

type worker struct {
	p       *Pipeline
	inbox   chan workerMsg
	results chan FlushResult
	parts   map[PartitionKey]*partitionState
}

func (wk *worker) run() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case msg, ok := <-wk.inbox:
			if !ok {
				for _, ps := range wk.parts {
					ps.Close()
				}
				return
			}
			wk.handle(msg)
		case r := <-wk.results:
			wk.settle(r)
		case now := <-tick.C:
			wk.flushDue(now)
		}
	}
}

func (wk *worker) handle(msg workerMsg) {
	switch msg.kind {
	case msgOpen:
		wk.open(msg)
	case msgRecords:
		wk.bufferRecords(msg)
	case msgGap, msgRestart, msgEnd:
		wk.link(msg)
	case msgResume:
		if ps, ok := wk.parts[msg.key]; ok && ps.rewinding {
			ps.Rewind(msg.end)
			ps.rewinding, ps.rewindAsked = false, false
		}
	case msgRelease:
		wk.releaseParts(msg)
	case msgDrain:
		for _, ps := range wk.parts {
			if !ps.rewinding {
				wk.flush(ps)
			}
		}
		for _, ps := range wk.parts {
			wk.waitIdle(ps)
		}
		close(msg.ack)
	case msgPressure:
		wk.flushLargest()
	}
}

// open opens a partition at its chain end, closing the one it replaces.
func (wk *worker) open(msg workerMsg) {
	if old, ok := wk.parts[msg.key]; ok {
		wk.waitIdle(old)
		old.Close()
	}
	wk.parts[msg.key] = &partitionState{Partition: wk.p.w.newPartition(msg.table, msg.key.Source, msg.key.Partition, msg.end), key: msg.key}
}

// bufferRecords buffers a batch of records, and flushes the partition
// when it is due. Records for a partition that is rewinding (or not open)
// are dropped: the source reads them again.
func (wk *worker) bufferRecords(msg workerMsg) {
	ps, ok := wk.parts[msg.key]
	if !ok || ps.rewinding {
		if !ok {
			wk.p.logger.Error("records for a partition that is not open; dropped", "partition", msg.key.String())
		}
		wk.p.w.release(msg.held)
		return
	}
	ps.Hold(msg.held)
	ps.lag = msg.lag
	// By index: a copy of each record in a loop variable would be moved to
	// the heap once per record if AppendRecord ever let its pointer escape.
	for i := range msg.records {
		ps.AppendRecord(&msg.records[i])
	}
	wk.p.recycle(msg.records)
	now := time.Now()
	ps.Arrived(now)
	if ps.Due(now) {
		wk.flush(ps)
	}
}

// link writes a gap, reset or end link after what is buffered.
func (wk *worker) link(msg workerMsg) {
	ps, ok := wk.parts[msg.key]
	if !ok || ps.rewinding {
		// After the rewind the source reads the chain end again and
		// finds the hole (or the new incarnation, or the end) again.
		return
	}
	wk.flush(ps) // what is buffered comes before the hole
	if ps.rewinding {
		return
	}
	done := wk.done()
	var job *flushJob
	switch msg.kind {
	case msgEnd:
		job = ps.startEnd(msg.reason, done)
	case msgGap:
		if !ps.chainNext.Less(msg.pos) {
			return // nothing between the chain end and the new position
		}
		job = ps.startGap(msg.pos, msg.reason, done)
	default:
		job = ps.startReset(msg.sourceID, msg.pos, msg.reason, done)
	}
	wk.submit(ps, job)
}

// releaseParts closes the partitions a source gave up, flushing them
// first if asked, and acknowledges.
func (wk *worker) releaseParts(msg workerMsg) {
	for _, k := range msg.keys {
		ps, ok := wk.parts[k]
		if !ok {
			continue
		}
		if msg.flush && !ps.rewinding {
			wk.flush(ps)
		}
		wk.waitIdle(ps)
		ps.Close()
		delete(wk.parts, k)
	}
	close(msg.ack)
}

// flushLargest flushes the partition holding the most bytes, to give
// memory back under pressure.
func (wk *worker) flushLargest() {
	var largest *partitionState
	for _, ps := range wk.parts {
		if !ps.rewinding && ps.Pending() > 0 && (largest == nil || ps.Bytes() > largest.Bytes()) {
			largest = ps
		}
	}
	if largest != nil {
		wk.flush(largest)
	}
}

func (wk *worker) done() func(FlushResult) {
	results := wk.results
	return func(r FlushResult) { results <- r }
}

// flush starts a flush of ps. Beyond maxInFlightPerPartition flushes of one
// partition the worker waits for them (backpressure from a slow store), as
// Deliver does for the memory budget.
func (wk *worker) flush(ps *partitionState) {
	if ps.Pending() == 0 || ps.rewinding {
		return
	}
	for ps.InFlight() >= maxInFlightPerPartition {
		wk.settle(<-wk.results)
		if ps.rewinding || ps.Pending() == 0 {
			return
		}
	}
	job, err := ps.startFlush(wk.done())
	if err != nil || job == nil {
		return
	}
	wk.submit(ps, job)
}

// submit hands a started job to the writer's flushers. Flushers never block
// on a full results channel for long: the worker drains it while it waits.
func (wk *worker) submit(ps *partitionState, job *flushJob) {
	for {
		select {
		case wk.p.w.queue() <- job:
			return
		case r := <-wk.results:
			wk.settle(r)
		}
	}
}

// waitIdle blocks until ps has no flush in progress.
func (wk *worker) waitIdle(ps *partitionState) {
	for ps.Busy() {
		wk.settle(<-wk.results)
	}
}

func (wk *worker) settle(r FlushResult) {
	key := PartitionKey{Table: r.Table, Source: r.Source, Partition: r.Partition}
	ps, ok := wk.parts[key]
	if !ok {
		return
	}
	if ps.Settled(r) {
		// Whatever failed (upload, commit, a conflict with another owner),
		// the records are still in the source: drop the buffer and read
		// again from the chain end, once it is final.
		ps.rewinding = true
		ps.failures++
		ps.conflict = r.Conflict
		wk.p.logger.Warn("flush failed; rewinding partition to its chain end", "partition", key.String(),
			"link", r.Seq, "first", r.First, "next", r.Next, "conflict", r.Conflict, "err", r.Err)
	} else if r.Err == nil {
		if !ps.rewinding {
			ps.failures = 0
		}
		wk.p.feedback.Committed(key, r.Next)
	}
	if ps.rewinding && !ps.rewindAsked && !ps.Busy() {
		ps.rewindAsked = true
		wk.askRewind(ps)
	}
}

// askRewind reads the chain end (final now: no flush of the partition is in
// flight) after a backoff and asks the source to read from there.
func (wk *worker) askRewind(ps *partitionState) {
	backoff := min(time.Duration(1<<min(ps.failures, 6))*250*time.Millisecond, 15*time.Second)
	if ps.conflict {
		backoff = 0
	}
	key, commits, logger, feedback, closed := ps.key, wk.p.w.commits, wk.p.logger, wk.p.feedback, wk.p.closed
	rewinds := wk.p.w.m.rewinds.WithLabelValues(key.Table)
	sleep := func(d time.Duration) bool {
		select {
		case <-time.After(d):
			return true
		case <-closed:
			return false
		}
	}
	go func() {
		if !sleep(backoff) {
			return
		}
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			end, found, err := commits.Resume(ctx, key.Table, key.Source, key.Partition)
			cancel()
			if err == nil && !found {
				err = errors.New("the partition has no chain")
			}
			if err == nil {
				rewinds.Inc()
				feedback.Rewind(key, end)
				return
			}
			logger.Warn("rewind: reading the chain end failed, will retry", "partition", key.String(), "err", err)
			if !sleep(min(time.Duration(attempt+1)*time.Second, 15*time.Second)) {
				return
			}
		}
	}()
}

func (wk *worker) flushDue(now time.Time) {
	for _, ps := range wk.parts {
		if !ps.rewinding && ps.Due(now) {
			wk.flush(ps)
		}
	}
}
