package gen

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// ProducerConfig says what to produce and how fast.
type ProducerConfig struct {
	// Topic receives the events. Required.
	Topic string
	// Events is how many events to produce; 0 produces until ctx is done.
	Events int64
	// Rate is the target events per second; 0 is as fast as the broker
	// acknowledges them (bounded by MaxInFlight).
	Rate float64
	// Burst is how many events may go out at once after an idle spell, the
	// token bucket's size. Default Rate/100 (10 ms worth), at least 1.
	Burst int
	// MaxInFlight bounds events handed to the client but not yet
	// acknowledged, which bounds memory. Default 8192.
	MaxInFlight int
	// DrainTimeout bounds the wait for in-flight acknowledgements after ctx
	// is done; what is still unacknowledged then is counted as failed.
	// Default 10s.
	DrainTimeout time.Duration
	// Progress, if set, is called about every ProgressEvery (default 1s)
	// from the producing goroutine, and once at the end.
	Progress      func(ProducerStats)
	ProgressEvery time.Duration
	// OnAck, if set, is called for every event once the broker acknowledged
	// it (err nil; the record carries partition and offset) or it failed.
	// It runs on the client's callback goroutine and must be quick. The
	// record's Value and Key must not be retained.
	OnAck func(r *kgo.Record, err error)
}

// ProducerStats are a producer's counters. Produced = Acked + Failed once
// Run has returned.
type ProducerStats struct {
	Produced   int64 // handed to the client
	Acked      int64 // acknowledged by the broker
	Failed     int64 // failed or abandoned
	AckedBytes int64 // value bytes of acknowledged events
	Elapsed    time.Duration
}

// Producer sends a Generator's events to a Kafka topic through a kgo client.
type Producer struct {
	cl  *kgo.Client
	gen *Generator
	cfg ProducerConfig

	startMu  sync.Mutex
	started  time.Time
	produced atomic.Int64
	acked    atomic.Int64
	failed   atomic.Int64
	bytes    atomic.Int64

	errOnce  sync.Once
	firstErr error
}

// NewProducer returns a producer of g's events to cl. The client's own
// options (acks, compression, linger, partitioner) apply; the events are
// keyed by user_id.
func NewProducer(cl *kgo.Client, g *Generator, cfg ProducerConfig) (*Producer, error) {
	switch {
	case cl == nil || g == nil:
		return nil, errors.New("producer needs a client and a generator")
	case cfg.Topic == "":
		return nil, errors.New("producer needs a topic")
	case cfg.Events < 0:
		return nil, fmt.Errorf("events %d: must not be negative", cfg.Events)
	case !(cfg.Rate >= 0) || math.IsInf(cfg.Rate, 0):
		return nil, fmt.Errorf("rate %v: must be a finite number >= 0", cfg.Rate)
	case cfg.Burst < 0 || cfg.MaxInFlight < 0 || cfg.DrainTimeout < 0 || cfg.ProgressEvery < 0:
		return nil, errors.New("burst, max in flight, drain timeout and progress interval must not be negative")
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = 8192
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.Burst == 0 {
		cfg.Burst = max(1, int(cfg.Rate/100))
	}
	return &Producer{cl: cl, gen: g, cfg: cfg}, nil
}

// Stats returns the counters so far; safe to call while Run runs.
func (p *Producer) Stats() ProducerStats {
	s := ProducerStats{
		Produced:   p.produced.Load(),
		Acked:      p.acked.Load(),
		Failed:     p.failed.Load(),
		AckedBytes: p.bytes.Load(),
	}
	p.startMu.Lock()
	if !p.started.IsZero() {
		s.Elapsed = time.Since(p.started)
	}
	p.startMu.Unlock()
	return s
}

// maxEventBytes is more than any generated event needs, so Next never has to
// grow (and copy) a slab.
const maxEventBytes = 512

const slabBytes = 1 << 20

// Run produces until Events were acknowledged, ctx is done, or an event
// fails. It waits for in-flight events (up to DrainTimeout after ctx is
// done) and returns the final counters. The error is nil when all Events
// were acknowledged, or, with Events == 0, when ctx ended the run; otherwise
// it is the first delivery error or ctx's error.
func (p *Producer) Run(ctx context.Context) (ProducerStats, error) {
	p.startMu.Lock()
	p.started = time.Now()
	start := p.started
	p.startMu.Unlock()
	// Records outlive ctx so that a cancelled run can still collect acks for
	// what it sent; abandon them only after DrainTimeout.
	recCtx, abandon := context.WithCancel(context.WithoutCancel(ctx))
	defer abandon()
	// stop ends production early on the first delivery error.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()

	sem := make(chan struct{}, p.cfg.MaxInFlight)
	var wg sync.WaitGroup
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			p.failed.Add(1)
			p.errOnce.Do(func() { p.firstErr = fmt.Errorf("produce to %s: %w", r.Topic, err) })
			stop()
		} else {
			p.acked.Add(1)
			p.bytes.Add(int64(len(r.Value)))
		}
		if p.cfg.OnAck != nil {
			p.cfg.OnAck(r, err)
		}
		<-sem
		wg.Done()
	}

	var tb *tokenBucket
	if p.cfg.Rate > 0 {
		tb = newTokenBucket(p.cfg.Rate, p.cfg.Burst, time.Now)
	}
	var (
		slab    []byte
		recs    []kgo.Record
		nextRep = start.Add(p.cfg.ProgressEvery)
	)
	for p.cfg.Events == 0 || p.produced.Load() < p.cfg.Events {
		if tb != nil {
			if err := tb.wait(runCtx); err != nil {
				break
			}
		}
		select {
		case sem <- struct{}{}:
		case <-runCtx.Done():
		}
		if runCtx.Err() != nil {
			break
		}
		if cap(slab)-len(slab) < maxEventBytes {
			slab = make([]byte, 0, slabBytes)
		}
		value, key, _ := p.gen.Next(slab[len(slab):])
		slab = slab[:len(slab)+len(value)]
		if len(recs) == 0 {
			recs = make([]kgo.Record, 1024)
		}
		r := &recs[0]
		recs = recs[1:]
		r.Topic, r.Key, r.Value = p.cfg.Topic, key, value
		wg.Add(1)
		p.produced.Add(1)
		p.cl.Produce(recCtx, r, promise)

		if p.cfg.Progress != nil && p.produced.Load()%1024 == 0 {
			if now := time.Now(); now.After(nextRep) {
				p.cfg.Progress(p.Stats())
				nextRep = now.Add(p.cfg.ProgressEvery)
			}
		}
	}

	p.waitAcks(ctx, &wg, abandon)
	return p.finish(ctx)
}

// waitAcks waits for the events in flight; once ctx is done, only up to
// DrainTimeout, then abandon gives them up.
func (p *Producer) waitAcks(ctx context.Context, wg *sync.WaitGroup, abandon context.CancelFunc) {
	drained := make(chan struct{})
	go func() { wg.Wait(); close(drained) }()
	if ctx.Err() != nil {
		select {
		case <-drained:
		case <-time.After(p.cfg.DrainTimeout):
			abandon()
			<-drained
		}
	} else {
		<-drained
	}
}

// finish reports the final counters and says how the run ended: the first
// delivery error, or ctx's error when it stopped the run short of Events.
func (p *Producer) finish(ctx context.Context) (ProducerStats, error) {
	st := p.Stats()
	if p.cfg.Progress != nil {
		p.cfg.Progress(st)
	}
	if p.firstErr != nil {
		return st, p.firstErr
	}
	if ctx.Err() != nil && p.cfg.Events > 0 {
		return st, fmt.Errorf("produce to %s: stopped after %d of %d events: %w", p.cfg.Topic, st.Acked, p.cfg.Events, ctx.Err())
	}
	return st, nil
}

// tokenBucket paces events: it holds up to burst tokens, refilled at rate
// per second, and each event takes one.
type tokenBucket struct {
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    func() time.Time
}

func newTokenBucket(rate float64, burst int, now func() time.Time) *tokenBucket {
	// Start full so the first burst goes out at once.
	return &tokenBucket{rate: rate, burst: float64(burst), tokens: float64(burst), last: now(), now: now}
}

// take takes one token if there is one; otherwise it returns how long until
// there will be.
func (b *tokenBucket) take() time.Duration {
	now := b.now()
	b.tokens = math.Min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second))
}

// wait blocks until a token is available and takes it.
func (b *tokenBucket) wait(ctx context.Context) error {
	for {
		d := b.take()
		if d == 0 {
			return nil
		}
		// Timers cannot wake us more precisely than about a millisecond;
		// the bucket makes up for oversleeping with the tokens it refilled.
		t := time.NewTimer(max(d, time.Millisecond))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
}
