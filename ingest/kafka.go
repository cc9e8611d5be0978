package ingest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/sluicehq/sluice/schema"
)

// KafkaSource consumes the tables' topics as one member of a consumer group
// and feeds a Writer. The commit log, not the group's offsets, is the truth
// about progress: a partition resumes where its chain of commit records ends,
// and the group offset is committed afterwards only as a hint for tools.
type KafkaSource struct {
	cfg    KafkaConfig
	w      *Writer
	logger *slog.Logger
	m      *metrics
	tables map[string]*schema.Table // by topic
	opts   []kgo.Opt
	cl     *kgo.Client

	workers []*kafkaWorker

	mu       sync.Mutex
	resumeAt map[topicPartition]int64 // chain end found at assignment; -1: none
	rewinds  map[topicPartition]rewind
	hints    map[topicPartition]int64 // committed chain ends not yet sent to the group
}

type topicPartition struct {
	topic     string
	partition int32
}

// NewKafkaSource prepares a consumer for tables (each names its topic). opts
// are added to the client's options (TLS, SASL, ...).
func NewKafkaSource(cfg KafkaConfig, tables []*schema.Table, w *Writer, logger *slog.Logger, reg prometheus.Registerer, opts ...kgo.Opt) (*KafkaSource, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		return nil, errors.New("ingest: no tables to consume")
	}
	s := &KafkaSource{
		cfg:      cfg,
		w:        w,
		logger:   logger,
		m:        newMetrics(reg),
		tables:   map[string]*schema.Table{},
		opts:     opts,
		resumeAt: map[topicPartition]int64{},
		rewinds:  map[topicPartition]rewind{},
		hints:    map[topicPartition]int64{},
	}
	for _, t := range tables {
		if other, dup := s.tables[t.Topic]; dup {
			return nil, fmt.Errorf("ingest: tables %q and %q both read topic %q", other.Name, t.Name, t.Topic)
		}
		s.tables[t.Topic] = t
		// Error and dead-letter series start at zero, so that rates and
		// alerts see 0 rather than nothing before the first one.
		for _, why := range schema.Reasons() {
			s.m.deadLetters.WithLabelValues(t.Name, string(why))
		}
		for _, why := range []string{"encode", "upload", "commit", "conflict"} {
			s.m.flushFailures.WithLabelValues(t.Name, why)
		}
		s.m.rewinds.WithLabelValues(t.Name)
		s.m.recordsIn.WithLabelValues(t.Name)
		s.m.recordsWritten.WithLabelValues(t.Name)
	}
	return s, nil
}

func sourceName(topic string) string { return "kafka:" + topic }

// Run consumes until ctx is done, then flushes and commits what it holds
// (bounded by the writer's flush timeout) and leaves the group.
func (s *KafkaSource) Run(ctx context.Context) error {
	topics := make([]string, 0, len(s.tables))
	for t := range s.tables {
		topics = append(topics, t)
	}
	start := kgo.NewOffset().AtStart()
	if s.cfg.StartOffset == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(s.cfg.Brokers...),
		kgo.ClientID(s.cfg.ClientID),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(start),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxBytes(s.cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(s.cfg.FetchMaxPartitionBytes),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.RebalanceTimeout(s.cfg.RebalanceTimeout),
		kgo.AdjustFetchOffsetsFn(s.resumeFromCommitLog),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
	}
	if s.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(s.cfg.InstanceID))
	}
	opts = append(opts, s.opts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	s.cl = cl

	n := s.w.cfg.Workers
	s.workers = make([]*kafkaWorker, n)
	var wg sync.WaitGroup
	for i := range s.workers {
		wk := &kafkaWorker{
			s:       s,
			inbox:   make(chan workerMsg, 16),
			results: make(chan FlushResult, 64),
			parts:   map[topicPartition]*kafkaPartition{},
		}
		s.workers[i] = wk
		wg.Add(1)
		go func() { defer wg.Done(); wk.run() }()
	}

	pollErr := s.poll(ctx)

	// Shut down in order: stop fetching, flush every buffer and wait for its
	// commit, tell the group where we got to, leave.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.w.cfg.FlushTimeout)
	defer cancel()
	s.drainWorkers(shutdownCtx)
	s.commitHints(shutdownCtx)
	cl.Close() // leaves the group; its revoke callback still needs the workers
	for _, wk := range s.workers {
		close(wk.inbox)
	}
	wg.Wait()
	if pollErr != nil && !errors.Is(pollErr, context.Canceled) {
		return pollErr
	}
	return nil
}

func (s *KafkaSource) poll(ctx context.Context) error {
	lastHint := time.Now()
	for ctx.Err() == nil {
		s.serviceRewinds(ctx)
		if time.Since(lastHint) > 5*time.Second {
			s.commitHintsAsync()
			lastHint = time.Now()
		}
		pollCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fetches := s.cl.PollRecords(pollCtx, 10_000)
		cancel()
		if fetches.IsClientClosed() {
			return nil
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
				return
			}
			s.m.fetchErrors.WithLabelValues(topic).Inc()
			s.logger.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
		})
		var dispatchErr error
		fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
			if dispatchErr != nil || len(fp.Records) == 0 {
				return
			}
			last := fp.Records[len(fp.Records)-1].Offset
			s.m.lag.WithLabelValues(fp.Topic, strconv.Itoa(int(fp.Partition))).Set(float64(max(0, fp.HighWatermark-last-1)))
			var n int64
			for _, r := range fp.Records {
				n += int64(len(r.Value)) + 64
			}
			if err := s.w.acquire(ctx, n, s.pressure); err != nil {
				dispatchErr = err
				return
			}
			tp := topicPartition{fp.Topic, fp.Partition}
			s.workerFor(tp).inbox <- workerMsg{kind: msgRecords, tp: tp, records: fp.Records, held: n}
		})
		s.cl.AllowRebalance()
		if dispatchErr != nil {
			return dispatchErr
		}
	}
	return ctx.Err()
}

func (s *KafkaSource) workerFor(tp topicPartition) *kafkaWorker {
	h := fnv.New32a()
	h.Write([]byte(tp.topic))
	return s.workers[(h.Sum32()+uint32(tp.partition))%uint32(len(s.workers))]
}

// pressure asks every worker to flush its largest buffer, so that the
// memory budget comes back even when no buffer has reached a threshold.
func (s *KafkaSource) pressure() {
	for _, wk := range s.workers {
		select {
		case wk.inbox <- workerMsg{kind: msgPressure}:
		default:
		}
	}
}

// resumeFromCommitLog replaces the group's offsets by the commit log's
// chain ends: what is committed there is the truth.
func (s *KafkaSource) resumeFromCommitLog(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, parts := range offsets {
		table := s.tables[topic]
		for p := range parts {
			tp := topicPartition{topic, p}
			next, found, err := s.w.commits.Resume(ctx, table.Name, sourceName(topic), strconv.Itoa(int(p)))
			if err != nil {
				// Without the chain end we cannot know where to start: fail the
				// join, and the client retries it.
				return nil, fmt.Errorf("resume %s/%d from commit log: %w", topic, p, err)
			}
			s.mu.Lock()
			if found {
				s.resumeAt[tp] = next
				parts[p] = kgo.NewOffset().At(next).WithEpoch(-1)
			} else {
				s.resumeAt[tp] = -1
				if s.cfg.StartOffset == "latest" {
					parts[p] = kgo.NewOffset().AtEnd()
				} else {
					parts[p] = kgo.NewOffset().AtStart()
				}
			}
			s.mu.Unlock()
			s.logger.Info("partition assigned", "topic", topic, "partition", p, "resume_offset", next, "from_commit_log", found)
		}
	}
	return offsets, nil
}

func (s *KafkaSource) takeResume(tp topicPartition) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if next, ok := s.resumeAt[tp]; ok {
		return next
	}
	return -1
}

func (s *KafkaSource) onRevoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	s.releasePartitions(ctx, revoked, true)
	s.commitHints(ctx)
}

func (s *KafkaSource) onLost(ctx context.Context, cl *kgo.Client, lost map[string][]int32) {
	s.releasePartitions(ctx, lost, false)
}

// releasePartitions hands partitions back: with flush, their buffers are
// committed first (less to redo for the next owner); without, dropped (the
// next owner resumes from the chain end either way).
func (s *KafkaSource) releasePartitions(ctx context.Context, tps map[string][]int32, flush bool) {
	byWorker := map[*kafkaWorker][]topicPartition{}
	for topic, parts := range tps {
		for _, p := range parts {
			tp := topicPartition{topic, p}
			byWorker[s.workerFor(tp)] = append(byWorker[s.workerFor(tp)], tp)
			s.mu.Lock()
			delete(s.resumeAt, tp)
			delete(s.rewinds, tp)
			s.mu.Unlock()
		}
	}
	var acks []chan struct{}
	for wk, list := range byWorker {
		ack := make(chan struct{})
		acks = append(acks, ack)
		wk.inbox <- workerMsg{kind: msgRelease, tps: list, flush: flush, ack: ack}
	}
	for _, ack := range acks {
		<-ack
	}
	if !flush {
		s.mu.Lock()
		for _, list := range byWorker {
			for _, tp := range list {
				delete(s.hints, tp)
			}
		}
		s.mu.Unlock()
	}
}

func (s *KafkaSource) drainWorkers(ctx context.Context) {
	var acks []chan struct{}
	for _, wk := range s.workers {
		ack := make(chan struct{})
		acks = append(acks, ack)
		wk.inbox <- workerMsg{kind: msgDrain, ack: ack}
	}
	for _, ack := range acks {
		select {
		case <-ack:
		case <-ctx.Done():
			return
		}
	}
}

// rewind is a pending request to restart a partition at its chain end.
type rewind struct {
	at time.Time
	// from is where to restart when the partition has no commit record yet:
	// the first offset of the dropped buffer. (SetOffsets ignores the
	// symbolic "start" offset, so it must be a real one.)
	from int64
}

// requestRewind is called by a worker whose flush failed: the partition's
// buffer was dropped and consumption must restart at the chain end, or at
// from (the dropped buffer's first offset) if nothing was committed yet.
func (s *KafkaSource) requestRewind(tp topicPartition, after time.Duration, from int64) {
	s.mu.Lock()
	if prev, ok := s.rewinds[tp]; ok && prev.from >= 0 && (from < 0 || prev.from < from) {
		from = prev.from
	}
	s.rewinds[tp] = rewind{at: time.Now().Add(after), from: from}
	s.mu.Unlock()
}

// serviceRewinds runs between polls, where moving the client's fetch
// position cannot race with records being handed out.
func (s *KafkaSource) serviceRewinds(ctx context.Context) {
	s.mu.Lock()
	due := map[topicPartition]rewind{}
	now := time.Now()
	for tp, r := range s.rewinds {
		if !now.Before(r.at) {
			due[tp] = r
		}
	}
	s.mu.Unlock()
	for tp, r := range due {
		table := s.tables[tp.topic]
		next, found, err := s.w.commits.Resume(ctx, table.Name, sourceName(tp.topic), strconv.Itoa(int(tp.partition)))
		if err != nil {
			s.logger.Warn("rewind: reading commit log failed, will retry", "topic", tp.topic, "partition", tp.partition, "err", err)
			s.requestRewind(tp, 2*time.Second, r.from)
			continue
		}
		if !found {
			next = r.from
		}
		if next < 0 {
			// Cannot happen: a flush that failed had records, so a first
			// offset. Refuse to guess rather than skip records.
			s.logger.Error("rewind: no position to restart from; partition stays paused", "topic", tp.topic, "partition", tp.partition)
			continue
		}
		s.mu.Lock()
		delete(s.rewinds, tp)
		s.mu.Unlock()
		s.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{tp.topic: {tp.partition: {Epoch: -1, Offset: next}}})
		s.workerFor(tp).inbox <- workerMsg{kind: msgReset, tp: tp, next: next}
		s.m.rewinds.WithLabelValues(table.Name).Inc()
		s.logger.Info("partition rewound to its last commit", "topic", tp.topic, "partition", tp.partition, "offset", next, "from_commit_log", found)
	}
}

func (s *KafkaSource) noteCommitted(tp topicPartition, next int64) {
	s.mu.Lock()
	s.hints[tp] = next
	s.mu.Unlock()
}

func (s *KafkaSource) takeHints() map[string]map[int32]kgo.EpochOffset {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hints) == 0 {
		return nil
	}
	out := map[string]map[int32]kgo.EpochOffset{}
	for tp, next := range s.hints {
		if out[tp.topic] == nil {
			out[tp.topic] = map[int32]kgo.EpochOffset{}
		}
		out[tp.topic][tp.partition] = kgo.EpochOffset{Epoch: -1, Offset: next}
	}
	clear(s.hints)
	return out
}

// commitHints tells the group how far the commit log got. It is a hint for
// lag tools only; a lost hint costs nothing.
func (s *KafkaSource) commitHints(ctx context.Context) {
	if h := s.takeHints(); h != nil {
		s.cl.CommitOffsetsSync(ctx, h, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				s.logger.Debug("group offset hint not committed", "err", err)
			}
		})
	}
}

func (s *KafkaSource) commitHintsAsync() {
	if h := s.takeHints(); h != nil {
		s.cl.CommitOffsets(context.Background(), h, nil)
	}
}
