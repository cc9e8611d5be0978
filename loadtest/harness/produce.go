package harness

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	hdr "github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/schema"
)

// recMeta travels with a record through the client (as its Context, which
// the client only carries) so the acknowledgement knows what was sent
// without a lookup.
type recMeta struct {
	context.Context
	rec  kgo.Record
	ev   gen.Event
	bad  schema.Reason // "" for a good event
	sent time.Time
	// lateBeyond: the event time was more than the allowed lateness behind
	// the event clock when the event was made.
	lateBeyond bool
	// block holds this recMeta and slab the record's value (nil for the
	// markers): each is used again once all its records are acknowledged.
	block *shared[[]recMeta]
	slab  *shared[[]byte]
}

// shared is a buffer many records are cut from (their values, or their
// recMetas), used again once every record in it is acknowledged:
// allocating (and zeroing) new ones for every thousand events was several
// per cent of a flat-out run's CPU, garbage collection not counted.
type shared[T any] struct {
	v    T
	refs atomic.Int64 // records in flight, plus one while a producer fills it
}

// reusePool keeps shared buffers whose records are all acknowledged.
type reusePool[T any] struct {
	free  chan *shared[T]
	fresh func() T  // a new buffer
	reset func(T) T // a used buffer, emptied
}

func newReusePool[T any](fresh func() T, reset func(T) T) *reusePool[T] {
	return &reusePool[T]{free: make(chan *shared[T], 64), fresh: fresh, reset: reset}
}

// take returns an empty buffer holding the caller's reference.
func (p *reusePool[T]) take() *shared[T] {
	var s *shared[T]
	select {
	case s = <-p.free:
		s.v = p.reset(s.v)
	default:
		s = &shared[T]{v: p.fresh()}
	}
	s.refs.Store(1)
	return s
}

// release drops one reference to s (nil: none); the last one frees it.
func (p *reusePool[T]) release(s *shared[T]) {
	if s != nil && s.refs.Add(-1) == 0 {
		select {
		case p.free <- s:
		default: // enough kept: the collector takes it
		}
	}
}

// producers are the parallel producers of one run and their counters.
type producers struct {
	cfg   Config
	table *schema.Table
	truth *Truth
	// clock turns a wall-clock reading into the event clock: shifted to
	// Config.Start if set.
	clock func(wall time.Time) time.Time
	// wall is read for every event and every acknowledgement while run
	// runs; set before its producers start.
	wall *coarseClock

	produced atomic.Int64 // handed to a client
	acked    atomic.Int64
	failed   atomic.Int64
	claimed  atomic.Int64 // against cfg.Events

	latMu  sync.Mutex
	ackLat *hdr.Histogram // sent -> acknowledged, µs

	slabs *reusePool[[]byte]
	metas *reusePool[[]recMeta]

	errMu    sync.Mutex
	firstErr error
	stopped  atomic.Bool // a record failed: stop producing
}

func newProducers(cfg Config, table *schema.Table, truth *Truth, clock func(wall time.Time) time.Time) *producers {
	return &producers{cfg: cfg, table: table, truth: truth, clock: clock, ackLat: newLatencyHistogram(),
		slabs: newReusePool(func() []byte { return make([]byte, 0, slabBytes) }, func(b []byte) []byte { return b[:0] }),
		metas: newReusePool(func() []recMeta { return make([]recMeta, 1024) }, func(m []recMeta) []recMeta { return m })}
}

// newLatencyHistogram tracks 1µs .. 1h at 3 significant digits.
func newLatencyHistogram() *hdr.Histogram { return hdr.New(1, int64(time.Hour/time.Microsecond), 3) }

func (ps *producers) fail(err error) {
	ps.errMu.Lock()
	if ps.firstErr == nil {
		ps.firstErr = err
	}
	ps.errMu.Unlock()
	ps.stopped.Store(true)
}

func (ps *producers) err() error {
	ps.errMu.Lock()
	defer ps.errMu.Unlock()
	return ps.firstErr
}

func (ps *producers) newClient(extra ...kgo.Opt) (*kgo.Client, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(ps.cfg.Brokers...),
		kgo.ProducerLinger(5 * time.Millisecond),
		kgo.MaxBufferedRecords(1 << 14), // bounds memory: Produce blocks beyond it
		kgo.DefaultProduceTopic(ps.cfg.Topic),
	}, extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client: %w", err)
	}
	return cl, nil
}

// now is the wall clock as the producers read it: coarse while they run.
func (ps *producers) now() time.Time {
	if ps.wall == nil {
		return time.Now()
	}
	return ps.wall.Now()
}

// acker takes the acknowledgements of one client. A client calls its
// promises one at a time, so an acker keeps its state without a lock and
// hands the good events to the Truth a batch at a time: taking the Truth's
// locks and the latency histogram's for every record was about a fifth of
// an acknowledgement's cost flat out.
type acker struct {
	ps   *producers
	lat  *hdr.Histogram // sent -> acknowledged, µs
	good goodAcks
}

// ackBatch is how many good events an acker holds before it hands them on.
const ackBatch = 512

func (ps *producers) newAcker() *acker { return &acker{ps: ps, lat: newLatencyHistogram()} }

// promise is every record's acknowledgement.
func (a *acker) promise(r *kgo.Record, err error) {
	ps := a.ps
	m := r.Context.(*recMeta)
	// r is m.rec and its value lies in m.slab: both may be used again as
	// soon as they are released, so that is the last thing done.
	defer ps.metas.release(m.block)
	defer ps.slabs.release(m.slab)
	now := ps.now()
	if err != nil {
		ps.failed.Add(1)
		ps.fail(fmt.Errorf("produce to %s: %w", r.Topic, err))
		return
	}
	ps.acked.Add(1)
	_ = a.lat.RecordValue(max(1, now.Sub(m.sent).Microseconds()))
	if m.bad != "" {
		ps.truth.ackBad(r.Partition, r.Offset, m.bad, len(r.Value))
		return
	}
	a.good.add(r.Partition, r.Offset, &m.ev, m.lateBeyond, len(r.Value), now)
	if len(a.good.events) >= ackBatch {
		a.ps.truth.ackGoods(&a.good)
	}
}

// finish hands on what the acker holds. It is called once the client's
// Flush has returned: every promise has run, and no other will.
func (a *acker) finish() {
	a.ps.truth.ackGoods(&a.good)
	a.ps.latMu.Lock()
	a.ps.ackLat.Merge(a.lat)
	a.ps.latMu.Unlock()
}

// run produces until ctx is done, the deadline passes or cfg.Events were
// claimed, in cfg.Producers goroutines, then waits (up to DrainTimeout)
// for every acknowledgement.
func (ps *producers) run(ctx context.Context, deadline time.Time) error {
	ps.wall = startCoarseClock()
	defer ps.wall.Stop()
	var wg sync.WaitGroup
	errs := make([]error, ps.cfg.Producers)
	for i := range ps.cfg.Producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = ps.runOne(ctx, i, deadline)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return ps.err()
}

const slabBytes = 1 << 20

func (ps *producers) runOne(ctx context.Context, i int, deadline time.Time) error {
	cl, err := ps.newClient()
	if err != nil {
		return err
	}
	defer cl.Close()
	acks := ps.newAcker()
	seed := ps.cfg.Seed*1_000_003 + int64(i)
	var lateness time.Duration
	if ps.table.Rollup != nil {
		lateness = ps.table.Rollup.AllowedLateness
	}
	// One clock reading per event serves the deadline, the pacing, the
	// event time and the send time.
	var now time.Time
	var made time.Time // the event clock when the last event was made
	clock := func() time.Time { made = ps.clock(now); return made }
	g, err := gen.New(gen.Config{Seed: seed, Users: ps.cfg.Users, ZipfS: ps.cfg.ZipfS, Clock: clock,
		LateShare: ps.cfg.LateShare, LateBy: ps.cfg.LateBy, NullShare: ps.cfg.NullShare})
	if err != nil {
		return err
	}
	ps.truth.addGenerator(g)
	rng := rand.New(rand.NewPCG(uint64(seed), 0xbad))
	rate := ps.cfg.Rate / float64(ps.cfg.Producers)
	maxBytes := ps.table.MaxRecordBytes
	var (
		sl     *shared[[]byte]
		block  *shared[[]recMeta]
		metas  []recMeta
		sent   int64
		badIdx = i // producers start at different kinds
		start  = time.Now()
	)
	for ctx.Err() == nil && !ps.stopped.Load() {
		now = ps.now()
		if !deadline.IsZero() && !now.Before(deadline) {
			break
		}
		if ps.cfg.Events > 0 && ps.claimed.Add(1) > ps.cfg.Events {
			break
		}
		if rate > 0 {
			if !waitTurn(ctx, start, now, sent, rate) {
				break
			}
			now = ps.now() // it may have slept
		}
		if sl == nil || cap(sl.v)-len(sl.v) < 512 {
			ps.slabs.release(sl)
			sl = ps.slabs.take()
		}
		if len(metas) == 0 {
			ps.metas.release(block)
			block = ps.metas.take()
			metas = block.v
		}
		m := &metas[0]
		metas = metas[1:]
		value, key, ev := g.Next(sl.v[len(sl.v):])
		sl.v = sl.v[:len(sl.v)+len(value)]
		sl.refs.Add(1)
		block.refs.Add(1)
		m.block, m.slab = block, sl
		m.Context, m.ev, m.bad = context.Background(), ev, ""
		m.lateBeyond = ev.Late && made.Sub(ev.TS) > lateness
		if ps.cfg.BadShare > 0 && rng.Float64() < ps.cfg.BadShare {
			m.bad = BadKinds[badIdx%len(BadKinds)]
			badIdx++
			value = malform(value, m.bad, maxBytes)
		} else if ps.cfg.EventBytes > 0 {
			value = pad(value, ps.cfg.EventBytes)
		}
		// The record's timestamp is the clock read above: left zero, the
		// client would read the clock again for every record.
		m.rec = kgo.Record{Key: key, Value: value, Context: m, Timestamp: now}
		m.sent = now
		ps.produced.Add(1)
		cl.Produce(context.Background(), &m.rec, acks.promise)
		sent++
	}
	ps.slabs.release(sl)
	ps.metas.release(block)
	flushCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ps.cfg.DrainTimeout)
	defer cancel()
	if err := cl.Flush(flushCtx); err != nil {
		// Promises may still run: acks is left alone, and the run fails.
		return fmt.Errorf("producer %d: waiting for acknowledgements: %w", i, err)
	}
	acks.finish()
	return nil
}

// waitTurn paces a producer that sent sent events since start at rate
// per second: by the schedule since start, so that oversleeping is made up
// for by the next events rather than lost. It is false when ctx is done.
func waitTurn(ctx context.Context, start, now time.Time, sent int64, rate float64) bool {
	due := int64(now.Sub(start).Seconds()*rate) + 1
	if sent < due {
		return true
	}
	wait := time.Duration(float64(sent-due+1) / rate * float64(time.Second))
	t := time.NewTimer(max(wait, time.Millisecond))
	select {
	case <-t.C:
	case <-ctx.Done():
		t.Stop()
	}
	return ctx.Err() == nil
}

// sendMarkers produces one good event with event time at to every
// partition that has records, so that every partition's committed event
// time (and with it the watermark) moves past the last real window.
func (ps *producers) sendMarkers(ctx context.Context, at time.Time) error {
	parts := ps.truth.partitions()
	if len(parts) == 0 {
		return nil
	}
	cl, err := ps.newClient(kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return err
	}
	defer cl.Close()
	g, err := gen.New(gen.Config{Seed: ps.cfg.Seed ^ 0x3a5e, Users: ps.cfg.Users, ZipfS: ps.cfg.ZipfS,
		Clock: func() time.Time { return at }})
	if err != nil {
		return err
	}
	ps.truth.addGenerator(g)
	acks := ps.newAcker()
	metas := make([]recMeta, len(parts))
	for i, p := range parts {
		m := &metas[i]
		value, key, ev := g.Next(nil)
		m.Context, m.ev, m.lateBeyond = context.Background(), ev, false
		m.rec = kgo.Record{Key: key, Value: value, Partition: p, Context: m}
		m.sent = time.Now()
		ps.produced.Add(1)
		cl.Produce(context.Background(), &m.rec, acks.promise)
	}
	flushCtx, cancel := context.WithTimeout(ctx, ps.cfg.DrainTimeout)
	defer cancel()
	if err := cl.Flush(flushCtx); err != nil {
		return fmt.Errorf("watermark markers: %w", err)
	}
	acks.finish()
	return ps.err()
}
