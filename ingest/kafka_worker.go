package ingest

import (
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type msgKind int

const (
	msgRecords  msgKind = iota // records of one partition, in offset order
	msgRelease                 // partitions revoked or lost
	msgReset                   // a rewound partition's chain end
	msgDrain                   // shutdown: flush everything and wait
	msgPressure                // memory budget used up: flush the largest buffer
)

type workerMsg struct {
	kind    msgKind
	tp      topicPartition
	records []*kgo.Record
	held    int64
	tps     []topicPartition
	flush   bool
	next    int64
	ack     chan struct{}
}

// maxInFlightPerPartition bounds the flushes of one partition that encode,
// upload or wait to commit at once.
const maxInFlightPerPartition = 4

type kafkaPartition struct {
	*Partition
	rewinding bool // records are dropped until the rewind's reset arrives
	failures  int  // consecutive failed flushes, for backoff
}

// kafkaWorker owns a fixed share of the partitions: it decodes their records,
// decides when to flush and tracks flush outcomes. Messages from the poll
// loop arrive in order, so a release or reset is seen after every record
// handed out before it.
type kafkaWorker struct {
	s       *KafkaSource
	inbox   chan workerMsg
	results chan FlushResult
	parts   map[topicPartition]*kafkaPartition
}

func (wk *kafkaWorker) run() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case msg, ok := <-wk.inbox:
			if !ok {
				for _, p := range wk.parts {
					p.Close()
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

func (wk *kafkaWorker) handle(msg workerMsg) {
	switch msg.kind {
	case msgRecords:
		p := wk.partition(msg.tp)
		if p.rewinding {
			wk.s.w.release(msg.held)
			return
		}
		p.Hold(msg.held)
		for _, r := range msg.records {
			p.Append(r.Value, r.Offset, r.Timestamp)
		}
		wk.s.m.recordsIn.WithLabelValues(p.table.Name).Add(float64(len(msg.records)))
		if p.Due(time.Now()) {
			wk.flush(msg.tp, p)
		}
	case msgRelease:
		for _, tp := range msg.tps {
			p, ok := wk.parts[tp]
			if !ok {
				continue
			}
			if msg.flush && !p.rewinding {
				wk.flush(tp, p)
			}
			wk.waitIdle(p)
			p.Close()
			delete(wk.parts, tp)
		}
		close(msg.ack)
	case msgReset:
		if p, ok := wk.parts[msg.tp]; ok {
			p.Drop()
			p.Reset(msg.next)
			p.rewinding = false
		}
	case msgDrain:
		for tp, p := range wk.parts {
			if !p.rewinding {
				wk.flush(tp, p)
			}
		}
		for _, p := range wk.parts {
			wk.waitIdle(p)
		}
		close(msg.ack)
	case msgPressure:
		var largest *kafkaPartition
		var largestTP topicPartition
		for tp, p := range wk.parts {
			if !p.rewinding && p.Pending() > 0 && (largest == nil || p.Bytes() > largest.Bytes()) {
				largest, largestTP = p, tp
			}
		}
		if largest != nil {
			wk.flush(largestTP, largest)
		}
	}
}

func (wk *kafkaWorker) partition(tp topicPartition) *kafkaPartition {
	p, ok := wk.parts[tp]
	if !ok {
		table := wk.s.tables[tp.topic]
		p = &kafkaPartition{Partition: wk.s.w.NewPartition(table, sourceName(tp.topic), strconv.Itoa(int(tp.partition)), wk.s.takeResume(tp))}
		wk.parts[tp] = p
	}
	return p
}

// flush starts a flush of p. Beyond maxInFlightPerPartition flushes of one
// partition the worker waits for them (backpressure from a slow store), as
// the poll loop does for the memory budget.
func (wk *kafkaWorker) flush(tp topicPartition, p *kafkaPartition) {
	if p.Pending() == 0 || p.rewinding {
		return
	}
	for p.InFlight() >= maxInFlightPerPartition {
		wk.settle(<-wk.results)
		if p.rewinding || p.Pending() == 0 {
			return
		}
	}
	results := wk.results
	job, err := p.startFlush(func(r FlushResult) { results <- r })
	if err != nil || job == nil {
		return
	}
	// Flushers never block on a full results channel for long: the worker
	// drains it while it waits to submit.
	for {
		select {
		case wk.s.w.jobs <- job:
			return
		case r := <-wk.results:
			wk.settle(r)
		}
	}
}

// waitIdle blocks until p has no flush in progress.
func (wk *kafkaWorker) waitIdle(p *kafkaPartition) {
	for p.Busy() {
		wk.settle(<-wk.results)
	}
}

func (wk *kafkaWorker) settle(r FlushResult) {
	n, _ := strconv.Atoi(r.Partition)
	tp := topicPartition{topic: r.Source[len("kafka:"):], partition: int32(n)}
	p, ok := wk.parts[tp]
	if !ok {
		return
	}
	rewind := p.Settled(r)
	if r.Err == nil {
		p.failures = 0
		wk.s.noteCommitted(tp, r.NextOffset)
		return
	}
	if !rewind {
		return // follows from a failure already being handled
	}
	// Whatever failed (upload, commit, a conflict with another owner), the
	// records are still in Kafka: drop the buffer and start again from the
	// last commit. Nothing committed is touched, nothing is lost.
	p.rewinding = true
	p.failures++
	backoff := min(time.Duration(1<<min(p.failures, 6))*250*time.Millisecond, 15*time.Second)
	if r.Conflict {
		backoff = 0
	}
	wk.s.logger.Warn("flush failed; rewinding partition to its last commit", "topic", tp.topic, "partition", tp.partition,
		"first_offset", r.FirstOffset, "next_offset", r.NextOffset, "conflict", r.Conflict, "retry_in", backoff, "err", r.Err)
	wk.s.requestRewind(tp, backoff, r.FirstOffset)
}

func (wk *kafkaWorker) flushDue(now time.Time) {
	for tp, p := range wk.parts {
		if !p.rewinding && p.Due(now) {
			wk.flush(tp, p)
		}
	}
}
