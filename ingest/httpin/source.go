package httpin

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/schema"
)

// SourceName is the chain source of a table's HTTP partitions.
func SourceName(table string) string { return schema.SourceHTTP + ":" + table }

// Pipeline is the part of ingest.Pipeline the source drives.
type Pipeline interface {
	Open(ctx context.Context, table *schema.Table, key ingest.PartitionKey, resolve func(context.Context) (lake.Genesis, error)) (lake.End, error)
	Buffer(n int) []ingest.Record
	Deliver(ctx context.Context, key ingest.PartitionKey, recs []ingest.Record, lag int64) error
	Restart(ctx context.Context, key ingest.PartitionKey, sourceID string, at lake.Position, reason string) error
	Resume(ctx context.Context, key ingest.PartitionKey, end lake.End) error
}

// ErrNotDurable is returned by Wait when the records were not committed in
// time; they stay queued and may still be committed.
var ErrNotDurable = errors.New("records not yet committed")

// Source holds one partition per table and assigns its positions.
type Source struct {
	pipe     Pipeline
	instance string
	logger   *slog.Logger
	parts    map[string]*partition // by table name
}

// partition is the in-memory log of one table's HTTP partition in this
// incarnation: records from the last committed position on, so a rewind
// can deliver them again.
type partition struct {
	key   ingest.PartitionKey
	table *schema.Table
	sid   string // this incarnation's source id

	// assign serialises position assignment with whatever must happen
	// before the positions become visible (an idempotency claim).
	assign sync.Mutex

	mu        sync.Mutex
	log       [][]byte // values at positions base, base+1, ...
	times     []time.Time
	base      uint64 // position of log[0]; everything before is committed
	next      uint64 // next position to assign: base+len(log)
	delivered uint64 // next position to hand to the pipeline
	rewind    *lake.End
	failed    error // the partition cannot go on (another writer took it over)
	wake      chan struct{}
	committed chan struct{} // closed and replaced whenever base moves
}

// NewSource prepares a partition for every table fed by HTTP. instance
// names this server's partitions; two servers writing to one lake need
// different names. Open starts them (in a new incarnation) on a pipeline
// whose feedback is the source; Run delivers the records.
func NewSource(tables []*schema.Table, instance string, logger *slog.Logger) (*Source, error) {
	if instance == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "local"
		}
		instance = h
	}
	s := &Source{instance: instance, logger: logger, parts: map[string]*partition{}}
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("http source id: %w", err)
	}
	sid := fmt.Sprintf("http-%s-%s", time.Now().UTC().Format("20060102T150405Z"), hex.EncodeToString(id[:]))
	for _, t := range tables {
		p := &partition{
			key:       ingest.PartitionKey{Table: t.Name, Source: SourceName(t.Name), Partition: instance},
			table:     t,
			sid:       sid,
			wake:      make(chan struct{}, 1),
			committed: make(chan struct{}),
		}
		if err := lake.ValidateCommitNames(p.key.Table, p.key.Source, p.key.Partition); err != nil {
			return nil, fmt.Errorf("http source: instance name: %w", err)
		}
		s.parts[t.Name] = p
	}
	return s, nil
}

// Open opens every partition on pipe, each in a new incarnation.
func (s *Source) Open(ctx context.Context, pipe Pipeline) error {
	s.pipe = pipe
	for _, p := range s.parts {
		end, err := pipe.Open(ctx, p.table, p.key, ingest.StartAt(lake.Position{}, p.sid))
		if err != nil {
			return err
		}
		if end.SourceID != p.sid {
			// An earlier run wrote this chain: start a new incarnation, so
			// its positions cannot be mistaken for the earlier run's.
			if err := pipe.Restart(ctx, p.key, p.sid, lake.Position{}, "http ingest server started"); err != nil {
				return err
			}
		}
	}
	return nil
}

// Instance is the partition name of this server's chains.
func (s *Source) Instance() string { return s.instance }

// Table returns the table's definition, or nil if HTTP does not feed it.
func (s *Source) Table(name string) *schema.Table {
	if p := s.parts[name]; p != nil {
		return p.table
	}
	return nil
}

// Span is a run of positions [First, Next) in one incarnation of a
// partition.
type Span struct {
	SourceID  string `json:"source_id"`
	Partition string `json:"partition"`
	First     uint64 `json:"first"`
	Next      uint64 `json:"next"`
}

// Append queues values for table and returns their positions. before runs
// with the span assigned but before any of it can be delivered; if it
// fails, nothing is queued. The caller waits for durability with Wait.
func (s *Source) Append(table string, values [][]byte, before func(Span) error) (Span, error) {
	p := s.parts[table]
	if p == nil {
		return Span{}, fmt.Errorf("table %q is not fed by HTTP", table)
	}
	p.assign.Lock()
	defer p.assign.Unlock()
	p.mu.Lock()
	if p.failed != nil {
		p.mu.Unlock()
		return Span{}, p.failed
	}
	span := Span{SourceID: p.sid, Partition: s.instance, First: p.next, Next: p.next + uint64(len(values))}
	p.mu.Unlock()
	if before != nil {
		if err := before(span); err != nil {
			return Span{}, err
		}
	}
	now := time.Now()
	p.mu.Lock()
	for _, v := range values {
		p.log = append(p.log, v)
		p.times = append(p.times, now)
	}
	p.next = span.Next
	p.mu.Unlock()
	p.signal()
	return span, nil
}

// Committed reports up to which position the table's partition is
// committed in this incarnation.
func (s *Source) committedUpTo(table string) (uint64, chan struct{}, error) {
	p := s.parts[table]
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.base, p.committed, p.failed
}

// Wait blocks until span is committed, ctx ends (ErrNotDurable) or the
// partition fails.
func (s *Source) Wait(ctx context.Context, table string, span Span) error {
	p := s.parts[table]
	if p == nil || span.SourceID != p.sid {
		return fmt.Errorf("span of another incarnation")
	}
	for {
		base, ch, failed := s.committedUpTo(table)
		if base >= span.Next {
			return nil
		}
		if failed != nil {
			return failed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ErrNotDurable, ctx.Err())
		}
	}
}

// SourceID is the incarnation of the table's partition in this process.
func (s *Source) SourceID(table string) string {
	if p := s.parts[table]; p != nil {
		return p.sid
	}
	return ""
}

func (p *partition) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Rewind implements ingest.Feedback: a flush failed, deliver again from
// end.Next.
func (s *Source) Rewind(key ingest.PartitionKey, end lake.End) {
	p := s.parts[key.Table]
	if p == nil || key != p.key {
		return
	}
	p.mu.Lock()
	p.rewind = &end
	p.mu.Unlock()
	p.signal()
}

// Committed implements ingest.Feedback: the chain now ends at next.
func (s *Source) Committed(key ingest.PartitionKey, next lake.Position) {
	p := s.parts[key.Table]
	if p == nil || key != p.key {
		return
	}
	n, ok := next.Int64()
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	// A reset link reports position 0 of the new incarnation; records of
	// this incarnation only move base forward.
	if u := uint64(n); u > p.base && u <= p.next {
		drop := u - p.base
		clear(p.log[:drop])
		p.log = p.log[drop:]
		p.times = p.times[drop:]
		p.base = u
		close(p.committed)
		p.committed = make(chan struct{})
	}
}

// maxDeliver bounds the records of one Deliver call.
const maxDeliver = 4096

// Run delivers queued records to the pipeline, one goroutine per
// partition (the seam wants one caller per partition), until ctx ends.
func (s *Source) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, p := range s.parts {
		wg.Add(1)
		go func() { defer wg.Done(); s.deliverLoop(ctx, p) }()
	}
	wg.Wait()
	return nil
}

func (s *Source) deliverLoop(ctx context.Context, p *partition) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		}
		for {
			p.mu.Lock()
			rw := p.rewind
			p.rewind = nil
			p.mu.Unlock()
			if rw != nil {
				if rw.SourceID != p.sid {
					err := fmt.Errorf("http partition %s was taken over by source %q", p.key, rw.SourceID)
					s.logger.Error("http ingest stops a partition", "partition", p.key.String(), "err", err)
					p.mu.Lock()
					p.failed = err
					close(p.committed)
					p.committed = make(chan struct{})
					p.mu.Unlock()
					return
				}
				if err := s.pipe.Resume(ctx, p.key, *rw); err != nil {
					return
				}
				n, _ := rw.Next.Int64()
				p.mu.Lock()
				p.delivered = max(uint64(n), p.base)
				p.mu.Unlock()
			}
			p.mu.Lock()
			from, to := p.delivered, min(p.next, p.delivered+maxDeliver)
			if from >= to {
				p.mu.Unlock()
				break
			}
			recs := s.pipe.Buffer(int(to - from))
			for i := range recs {
				j := from + uint64(i) - p.base
				recs[i] = ingest.Record{Value: p.log[j], Pos: lake.PositionOf(int64(from) + int64(i)), Time: p.times[j]}
			}
			p.delivered = to
			p.mu.Unlock()
			if err := s.pipe.Deliver(ctx, p.key, recs, 0); err != nil {
				return
			}
		}
	}
}
