package kafka

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/schema"
)

// Source consumes the tables' topics and feeds a Writer through a Pipeline.
type Source struct {
	cfg     Config
	w       *ingest.Writer
	logger  *slog.Logger
	m       *Metrics
	routers map[string]*schema.Router // by topic: the tables reading it
	meta    map[string]bool           // tables that map record metadata to fields
	opts    []kgo.Opt
	starts  *lake.CommitLog
	cl      *kgo.Client
	adm     *kadm.Client
	pipe    *ingest.Pipeline
	startAt time.Time

	mu      sync.Mutex
	parts   map[topicPartition]*partState
	rewinds map[topicPartition][]rewind     // asked by the pipeline, serviced between polls
	checks  map[topicPartition]pendingCheck // partitions to look at again between polls
	hints   map[topicPartition]int64        // committed chain ends not yet sent to the group
	ends    map[ingest.PartitionKey]int64   // each table's committed chain end, for the hints

	purged map[string]time.Time // topics last purged from the client after their ID changed; poll goroutine only
}

// pendingCheck is a partition whose position vanished, to look at between
// polls once its time has come (metadata may need a moment to catch up).
type pendingCheck struct {
	why   string
	after time.Time
}

type topicPartition struct {
	topic     string
	partition int32
}

// rewind is a table's partition that asked to read again from its chain end.
type rewind struct {
	key ingest.PartitionKey
	end lake.End
}

// partState is what the source knows of an assigned partition.
type partState struct {
	keys    []ingest.PartitionKey // one per table reading the topic, in routing order
	topicID string                // the incarnation its chains are in
	next    lake.Position         // the next position it expects to fetch
}

// Metrics are the Kafka-only series of one process, created once on its
// registerer and given to each of its sources.
type Metrics struct {
	lag         *prometheus.GaugeVec   // topic, partition
	fetchErrors *prometheus.CounterVec // topic
}

// NewMetrics creates the series on reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		lag: f.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_ingest_consumer_lag_records",
			Help: "Records between the last one fetched and the partition's last stable offset.",
		}, []string{"topic", "partition"}),
		fetchErrors: f.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_ingest_fetch_errors_total",
			Help: "Errors returned by fetches.",
		}, []string{"topic"}),
	}
	return m
}

// NewSource prepares a consumer for tables (each names its topic). opts are
// added to the client's options (TLS, SASL, ...). A nil m keeps the metrics
// unregistered.
func NewSource(cfg Config, tables []*schema.Table, w *ingest.Writer, logger *slog.Logger, m *Metrics, opts ...kgo.Opt) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		return nil, errors.New("kafka: no tables to consume")
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	s := &Source{
		cfg:     cfg,
		w:       w,
		logger:  logger,
		m:       m,
		routers: map[string]*schema.Router{},
		meta:    map[string]bool{},
		opts:    opts,
		starts:  w.CommitLog(),
		parts:   map[topicPartition]*partState{},
		rewinds: map[topicPartition][]rewind{},
		checks:  map[topicPartition]pendingCheck{},
		hints:   map[topicPartition]int64{},
		ends:    map[ingest.PartitionKey]int64{},
		purged:  map[string]time.Time{},
	}
	byTopic := map[string][]*schema.Table{}
	var order []string
	for _, t := range tables {
		if t.SourceKind() != schema.SourceKafka {
			continue // another source reads it
		}
		if byTopic[t.Topic] == nil {
			order = append(order, t.Topic)
		}
		byTopic[t.Topic] = append(byTopic[t.Topic], t)
		s.meta[t.Name] = t.MapsMetadata()
		w.InitTableMetrics(t.Name)
		s.m.fetchErrors.WithLabelValues(t.Topic)
	}
	for _, topic := range order {
		r, err := schema.NewRouter(topic, byTopic[topic])
		if err != nil {
			return nil, fmt.Errorf("kafka: %w", err)
		}
		s.routers[topic] = r
	}
	if len(s.routers) == 0 {
		return nil, errors.New("kafka: no table reads a Kafka topic")
	}
	return s, nil
}

// SourceName is the chain source of a topic.
func SourceName(topic string) string { return "kafka:" + topic }

func (s *Source) key(tp topicPartition, t *schema.Table) ingest.PartitionKey {
	return ingest.PartitionKey{Table: t.Name, Source: SourceName(tp.topic), Partition: strconv.Itoa(int(tp.partition))}
}

// Run consumes until ctx is done, then flushes and commits what it holds
// (bounded by the writer's flush timeout) and leaves the group.
func (s *Source) Run(ctx context.Context) error {
	s.startAt = time.Now()
	topics := make([]string, 0, len(s.routers))
	for t := range s.routers {
		topics = append(topics, t)
	}
	// The admin client answers metadata and offset questions from inside
	// the group's assignment callback, which the consumer client is busy in.
	adminOpts := append([]kgo.Opt{kgo.SeedBrokers(s.cfg.Brokers...), kgo.ClientID(s.cfg.ClientID + "-admin")}, s.opts...)
	admCl, err := kgo.NewClient(adminOpts...)
	if err != nil {
		return fmt.Errorf("kafka admin client: %w", err)
	}
	defer admCl.Close()
	s.adm = kadm.NewClient(admCl)

	opts := []kgo.Opt{
		kgo.SeedBrokers(s.cfg.Brokers...),
		kgo.ClientID(s.cfg.ClientID),
		kgo.ConsumerGroup(s.cfg.Group),
		kgo.ConsumeTopics(topics...),
		// Never let the client move a partition by itself: a position that
		// vanished (retention, a re-created topic, truncation) comes back
		// as an error, and the source records what happened in the chain.
		kgo.ConsumeResetOffset(kgo.NoResetOffset()),
		// Records of aborted transactions never reach the lake.
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.FetchMaxBytes(s.cfg.FetchMaxBytes),
		kgo.FetchMaxPartitionBytes(s.cfg.FetchMaxPartitionBytes),
		kgo.SessionTimeout(s.cfg.SessionTimeout),
		kgo.RebalanceTimeout(s.cfg.RebalanceTimeout),
		kgo.AdjustFetchOffsetsFn(s.openPartitions),
		kgo.OnPartitionsRevoked(s.onRevoked),
		kgo.OnPartitionsLost(s.onLost),
	}
	if s.cfg.InstanceID != "" {
		opts = append(opts, kgo.InstanceID(s.cfg.InstanceID))
	}
	if age := s.cfg.MetadataMaxAge; age > 0 {
		opts = append(opts, kgo.MetadataMaxAge(age), kgo.MetadataMinAge(min(age, 5*time.Second)))
	}
	opts = append(opts, s.opts...)
	// The pipeline exists before the client: the group may assign
	// partitions (openPartitions) as soon as the client does.
	s.pipe = ingest.NewPipeline(s.w, s, s.logger)
	s.pipe.Start()
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		s.pipe.Close()
		return fmt.Errorf("kafka client: %w", err)
	}
	s.cl = cl

	pollErr := s.poll(ctx)

	// Shut down in order: stop fetching, flush every buffer and wait for its
	// commit, tell the group where we got to, leave.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.w.FlushTimeout())
	defer cancel()
	s.pipe.Drain(shutdownCtx)
	s.commitHints(shutdownCtx)
	cl.Close() // leaves the group; its revoke callback still needs the pipeline
	s.pipe.Close()
	if pollErr != nil && !errors.Is(pollErr, context.Canceled) {
		return pollErr
	}
	return nil
}

func (s *Source) poll(ctx context.Context) error {
	lastHint := time.Now()
	for ctx.Err() == nil {
		s.serviceRewinds(ctx)
		s.serviceChecks(ctx)
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
		recreated := s.fetchErrors(fetches)
		deliverErr := s.deliverFetches(ctx, fetches)
		s.cl.AllowRebalance()
		if deliverErr != nil {
			return deliverErr
		}
		s.readAnew(recreated)
	}
	return ctx.Err()
}

// fetchErrors counts and handles the errors of a poll's fetches, and
// returns the topics that were deleted (and maybe re-created).
func (s *Source) fetchErrors(fetches kgo.Fetches) map[string]bool {
	recreated := map[string]bool{}
	fetches.EachError(func(topic string, partition int32, err error) {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			return
		}
		s.m.fetchErrors.WithLabelValues(topic).Inc()
		tp := topicPartition{topic, partition}
		var loss *kgo.ErrDataLoss
		switch {
		case errors.Is(err, kerr.UnknownTopicID), errors.Is(err, kerr.InconsistentTopicID):
			// The topic was deleted (and maybe re-created). The client
			// keeps reading the first instance of a topic; it reads a
			// new one only once the topic is purged and added again.
			// The partitions then come back through the assignment,
			// where their chains' incarnation is compared.
			recreated[topic] = true
		case errors.Is(err, kerr.OffsetOutOfRange), errors.As(err, &loss):
			// The position vanished: look at the partition between polls.
			s.check(tp, err.Error(), 0)
		default:
			s.logger.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
		}
	})
	return recreated
}

// deliverFetches hands each assigned partition's records to the pipeline,
// except those of a partition being rewound or checked (they are fetched
// again from the position that sets) or fetched from another incarnation
// of its topic (which is checked).
func (s *Source) deliverFetches(ctx context.Context, fetches kgo.Fetches) error {
	var deliverErr error
	fetches.EachTopic(func(ft kgo.FetchTopic) {
		id := topicIDString(ft.TopicID)
		for _, fp := range ft.Partitions {
			if deliverErr != nil || len(fp.Records) == 0 {
				continue
			}
			tp := topicPartition{ft.Topic, fp.Partition}
			s.mu.Lock()
			ps, ok := s.parts[tp]
			_, rewinding := s.rewinds[tp]
			_, checking := s.checks[tp]
			stale := ok && id != "" && ps.topicID != "" && id != ps.topicID
			s.mu.Unlock()
			if !ok || rewinding || checking {
				continue // re-fetched from the position the rewind or check sets
			}
			if stale {
				s.check(tp, "the fetch is of topic ID "+id+", the chain of "+ps.topicID, 0)
				continue
			}
			last := fp.Records[len(fp.Records)-1].Offset
			lag := max(0, fp.LastStableOffset-last-1)
			s.m.lag.WithLabelValues(ft.Topic, strconv.Itoa(int(fp.Partition))).Set(float64(lag))
			if err := s.deliver(ctx, s.routers[ft.Topic], ps.keys, fp.Records, lag); err != nil {
				deliverErr = err
				return
			}
			s.mu.Lock()
			ps.next = lake.PositionOf(last + 1)
			s.mu.Unlock()
		}
	})
	return deliverErr
}

// readAnew purges the recreated topics from the client and consumes them
// again, at most every 5 seconds per topic.
func (s *Source) readAnew(recreated map[string]bool) {
	for topic := range recreated {
		if time.Since(s.purged[topic]) < 5*time.Second {
			continue
		}
		s.purged[topic] = time.Now()
		s.logger.Warn("topic ID changed or unknown: reading the topic anew", "topic", topic)
		s.cl.PurgeTopicsFromClient(topic)
		s.cl.AddConsumeTopics(topic)
	}
}

func topicIDString(id [16]byte) string {
	if id == ([16]byte{}) {
		return ""
	}
	return hex.EncodeToString(id[:])
}

// openPartitions replaces the group's offsets by the chain ends: what is
// committed in the lake is the truth. A partition without a chain gets its
// genesis first.
func (s *Source) openPartitions(ctx context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	topics := make([]string, 0, len(offsets))
	for topic := range offsets {
		topics = append(topics, topic)
	}
	details, err := s.adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, fmt.Errorf("open partitions: list topics: %w", err)
	}
	// Chains are read (and geneses written) a few partitions at a time: a
	// member given many partitions must not spend the rebalance in turn.
	type opened struct {
		tp   topicPartition
		ends []lake.End // per table, in routing order
		id   string
	}
	var tasks []opened
	for topic, parts := range offsets {
		td, ok := details[topic]
		if !ok || td.Err != nil {
			return nil, fmt.Errorf("open partitions: topic %s: %v", topic, td.Err)
		}
		for p := range parts {
			tasks = append(tasks, opened{tp: topicPartition{topic, p}, id: topicIDString(td.ID), ends: make([]lake.End, len(s.routers[topic].Tables()))})
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for i := range tasks {
		for j, t := range s.routers[tasks[i].tp.topic].Tables() {
			g.Go(func() error {
				tp := tasks[i].tp
				partitions := len(details[tp.topic].Partitions)
				end, err := s.pipe.Open(gctx, t, s.key(tp, t), s.genesis(tp, t, tasks[i].id, partitions))
				tasks[i].ends[j] = end
				return err
			})
		}
	}
	if err := g.Wait(); err != nil {
		// Without the chain end we cannot know where to start: fail the
		// join, and the client retries it.
		return nil, err
	}
	for _, t := range tasks {
		tp, id := t.tp, t.id
		// Tables sharing the topic read it once, from the earliest of
		// their chain ends: a table further on skips what it has (Append
		// drops positions before its chain end).
		end := t.ends[0]
		ps := &partState{topicID: end.SourceID, next: end.Next}
		for j, tb := range s.routers[tp.topic].Tables() {
			ps.keys = append(ps.keys, s.key(tp, tb))
			if t.ends[j].Next.Less(ps.next) {
				ps.next = t.ends[j].Next
			}
		}
		s.mu.Lock()
		s.parts[tp] = ps
		delete(s.rewinds, tp)
		delete(s.checks, tp)
		if id != "" && end.SourceID != id {
			// Nothing of the chain's incarnation can be read any more.
			s.checks[tp] = pendingCheck{why: "the topic's ID is " + id + ", the chain's " + end.SourceID}
		}
		s.mu.Unlock()
		end.Next = ps.next
		next, _ := end.Next.Int64()
		offsets[tp.topic][tp.partition] = kgo.NewOffset().At(next).WithEpoch(-1)
		s.logger.Info("partition assigned", "topic", tp.topic, "partition", tp.partition, "resume_offset", next, "link", end.Seq, "topic_id", end.SourceID)
	}
	return offsets, nil
}

// genesis resolves where a new partition starts, once (the lake keeps it).
func (s *Source) genesis(tp topicPartition, t *schema.Table, topicID string, partitions int) func(context.Context) (lake.Genesis, error) {
	return func(ctx context.Context) (lake.Genesis, error) {
		start := s.cfg.StartOffset
		reason := "start_offset " + start
		if start == "latest" {
			pinned, err := s.starts.PinSourceStart(ctx, t.Name, SourceName(tp.topic),
				lake.SourceStart{Partitions: partitions, PinnedAt: s.startAt.UTC()})
			if err != nil {
				return lake.Genesis{}, err
			}
			if int(tp.partition) >= pinned.Partitions {
				start = "earliest"
				reason = fmt.Sprintf("start_offset latest, but partition %d was added after the table started with %d: from its beginning", tp.partition, pinned.Partitions)
			}
		}
		starts, err := s.adm.ListStartOffsets(ctx, tp.topic)
		if err != nil {
			return lake.Genesis{}, fmt.Errorf("list offsets of %s: %w", tp.topic, err)
		}
		ends, err := s.adm.ListEndOffsets(ctx, tp.topic)
		if err != nil {
			return lake.Genesis{}, fmt.Errorf("list offsets of %s: %w", tp.topic, err)
		}
		so, ok1 := starts.Lookup(tp.topic, tp.partition)
		eo, ok2 := ends.Lookup(tp.topic, tp.partition)
		if !ok1 || !ok2 || so.Err != nil || eo.Err != nil {
			return lake.Genesis{}, fmt.Errorf("list offsets of %s/%d: %v %v", tp.topic, tp.partition, so.Err, eo.Err)
		}
		at := so.Offset
		if start == "latest" {
			at = eo.Offset
		}
		return lake.Genesis{At: lake.PositionOf(at), SourceID: topicID, Reason: reason, Lag: eo.Offset - at}, nil
	}
}

// check asks for a partition to be looked at between polls, after delay.
func (s *Source) check(tp topicPartition, why string, delay time.Duration) {
	s.mu.Lock()
	if _, ok := s.parts[tp]; ok {
		if _, already := s.checks[tp]; !already {
			s.checks[tp] = pendingCheck{why: why, after: time.Now().Add(delay)}
		}
	}
	s.mu.Unlock()
}

// serviceChecks finds out what happened to partitions whose position
// vanished, records it in the chain and moves the fetch position:
//   - the topic has another ID (deleted and re-created): a reset link, and
//     the new topic is read from its beginning;
//   - the log now starts after the position (retention): a gap link of the
//     lost offsets, and reading goes on at the log start;
//   - the log now ends before the position (truncation by an unclean
//     leader election): a reset link at the log end;
//   - none of these (a transient error): fetching resumes where it was.
func (s *Source) serviceChecks(ctx context.Context) {
	s.mu.Lock()
	due := make(map[topicPartition]string, len(s.checks))
	now := time.Now()
	for tp, c := range s.checks {
		if _, rewinding := s.rewinds[tp]; !rewinding && !now.Before(c.after) {
			due[tp] = c.why
		}
	}
	s.mu.Unlock()
	for tp, why := range due {
		if err := s.recheck(ctx, tp, why); err != nil {
			s.logger.Warn("looking at a partition whose position vanished failed, will retry", "topic", tp.topic, "partition", tp.partition, "err", err)
			s.mu.Lock()
			if c, ok := s.checks[tp]; ok {
				c.after = time.Now().Add(time.Second)
				s.checks[tp] = c
			}
			s.mu.Unlock()
		}
	}
}

func (s *Source) recheck(ctx context.Context, tp topicPartition, why string) error {
	details, err := s.adm.ListTopics(ctx, tp.topic)
	if err != nil {
		return err
	}
	td, ok := details[tp.topic]
	if !ok || td.Err != nil {
		return fmt.Errorf("topic %s: %v", tp.topic, td.Err)
	}
	startOffs, err := s.adm.ListStartOffsets(ctx, tp.topic)
	if err != nil {
		return err
	}
	endOffs, err := s.adm.ListEndOffsets(ctx, tp.topic)
	if err != nil {
		return err
	}
	so, ok1 := startOffs.Lookup(tp.topic, tp.partition)
	eo, ok2 := endOffs.Lookup(tp.topic, tp.partition)
	if !ok1 || !ok2 || so.Err != nil || eo.Err != nil {
		return fmt.Errorf("offsets of %s/%d unknown", tp.topic, tp.partition)
	}
	id := topicIDString(td.ID)

	s.mu.Lock()
	ps, assigned := s.parts[tp]
	var cur partState
	if assigned {
		cur = *ps
	}
	s.mu.Unlock()
	if !assigned {
		return nil
	}
	logStart, logEnd := lake.PositionOf(so.Offset), lake.PositionOf(eo.Offset)
	at := cur.next
	switch {
	case id != "" && id != cur.topicID:
		at = logStart
		for _, key := range cur.keys {
			if err := s.pipe.Restart(ctx, key, id, at, fmt.Sprintf("topic re-created: ID %s, was %s (%s)", id, cur.topicID, why)); err != nil {
				return err
			}
		}
		cur.topicID = id
	case cur.next.Less(logStart):
		at = logStart
		for _, key := range cur.keys {
			if err := s.pipe.Gap(ctx, key, logStart, fmt.Sprintf("the log starts at %d (retention or deleted records), the chain ended at %s", so.Offset, cur.next)); err != nil {
				return err
			}
		}
	case logEnd.Less(cur.next):
		at = logEnd
		for _, key := range cur.keys {
			if err := s.pipe.Restart(ctx, key, cur.topicID, at, fmt.Sprintf("the log ends at %d, before the chain's end %s: truncated (%s)", eo.Offset, cur.next, why)); err != nil {
				return err
			}
		}
	}
	s.mu.Lock()
	if ps, ok := s.parts[tp]; ok {
		ps.topicID, ps.next = cur.topicID, at
	}
	delete(s.checks, tp)
	s.mu.Unlock()
	off, _ := at.Int64()
	s.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{tp.topic: {tp.partition: {Epoch: -1, Offset: off}}})
	s.logger.Info("partition position checked", "topic", tp.topic, "partition", tp.partition, "offset", off, "why", why)
	return nil
}

// Rewind is called by the pipeline after a failed flush; the fetch
// position moves between polls.
func (s *Source) Rewind(key ingest.PartitionKey, end lake.End) {
	n, err := strconv.Atoi(key.Partition)
	if err != nil {
		return
	}
	tp := topicPartition{key.Source[len("kafka:"):], int32(n)}
	s.mu.Lock()
	if _, ok := s.parts[tp]; ok {
		s.rewinds[tp] = append(s.rewinds[tp], rewind{key: key, end: end})
	}
	s.mu.Unlock()
}

// serviceRewinds runs between polls, where moving the client's fetch
// position cannot race with records being handed out.
func (s *Source) serviceRewinds(ctx context.Context) {
	s.mu.Lock()
	due := s.rewinds
	s.rewinds = map[topicPartition][]rewind{}
	s.mu.Unlock()
	for tp, list := range due {
		// Tables sharing the topic read it again from the earliest chain
		// end asked for; the others skip what they already have.
		end := list[0].end
		for _, rw := range list[1:] {
			if rw.end.Next.Less(end.Next) {
				end = rw.end
			}
		}
		s.mu.Lock()
		ps, ok := s.parts[tp]
		if ok {
			ps.next, ps.topicID = end.Next, end.SourceID
		}
		s.mu.Unlock()
		if !ok {
			continue
		}
		off, _ := end.Next.Int64()
		s.cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{tp.topic: {tp.partition: {Epoch: -1, Offset: off}}})
		for _, rw := range list {
			if err := s.pipe.Resume(ctx, rw.key, rw.end); err != nil {
				return
			}
			s.logger.Info("partition rewound to its chain end", "table", rw.key.Table, "topic", tp.topic, "partition", tp.partition, "offset", off, "link", rw.end.Seq)
		}
	}
}

// Committed notes a chain end to send to the group as a hint.
func (s *Source) Committed(key ingest.PartitionKey, next lake.Position) {
	n, err := strconv.Atoi(key.Partition)
	off, ok := next.Int64()
	if err != nil || !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Tables sharing a topic commit apart: the group hears the least end.
	tp := topicPartition{key.Source[len("kafka:"):], int32(n)}
	s.ends[key] = off
	if ps, ok := s.parts[tp]; ok {
		for _, k := range ps.keys {
			end, ok := s.ends[k]
			if !ok {
				return // a table without a commit since the assignment: no hint yet
			}
			off = min(off, end)
		}
	}
	s.hints[tp] = off
}

func (s *Source) onRevoked(ctx context.Context, _ *kgo.Client, revoked map[string][]int32) {
	s.release(ctx, revoked, true)
	s.commitHints(ctx)
}

func (s *Source) onLost(ctx context.Context, _ *kgo.Client, lost map[string][]int32) {
	s.release(ctx, lost, false)
}

func (s *Source) release(ctx context.Context, tps map[string][]int32, flush bool) {
	var keys []ingest.PartitionKey
	s.mu.Lock()
	for topic, parts := range tps {
		for _, p := range parts {
			tp := topicPartition{topic, p}
			if ps, ok := s.parts[tp]; ok {
				keys = append(keys, ps.keys...)
				for _, k := range ps.keys {
					delete(s.ends, k)
				}
			}
			delete(s.parts, tp)
			delete(s.rewinds, tp)
			delete(s.checks, tp)
			if !flush {
				delete(s.hints, tp)
			}
		}
	}
	s.mu.Unlock()
	s.pipe.Release(ctx, keys, flush)
}

func (s *Source) takeHints() map[string]map[int32]kgo.EpochOffset {
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

// commitHints tells the group how far the chains got. It is a hint for lag
// tools only; a lost hint costs nothing.
func (s *Source) commitHints(ctx context.Context) {
	if h := s.takeHints(); h != nil {
		s.cl.CommitOffsetsSync(ctx, h, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, _ *kmsg.OffsetCommitResponse, err error) {
			if err != nil {
				s.logger.Debug("group offset hint not committed", "err", err)
			}
		})
	}
}

func (s *Source) commitHintsAsync() {
	if h := s.takeHints(); h != nil {
		s.cl.CommitOffsets(context.Background(), h, nil)
	}
}

// deliver hands a fetched batch of one partition to every table reading its
// topic. With routing, each table gets every position: its own records
// whole, the others' as skipped positions (so its chain moves on with the
// partition), and a record no route takes goes whole, as unrouted, to the
// first table.
func (s *Source) deliver(ctx context.Context, rt *schema.Router, keys []ingest.PartitionKey, in []*kgo.Record, lag int64) error {
	tables := rt.Tables()
	var targets []int
	var whys map[int]string
	if rt.Routed() {
		targets = make([]int, len(in))
		for i, r := range in {
			var why string
			if targets[i], why = rt.Route(r.Value); targets[i] < 0 {
				if whys == nil {
					whys = map[int]string{}
				}
				whys[i] = why
			}
		}
	}
	for ti, key := range keys {
		meta := s.meta[tables[ti].Name]
		recs := s.pipe.Buffer(len(in))
		for i, r := range in {
			pos := lake.PositionOf(r.Offset)
			target := 0
			if targets != nil {
				target = targets[i]
			}
			switch {
			case target == ti:
				recs[i] = ingest.Record{Value: r.Value, Pos: pos, Time: r.Timestamp}
				if meta {
					recs[i].Key = r.Key
					recs[i].Headers = headers(r.Headers)
				}
			case target < 0 && ti == 0:
				recs[i] = ingest.Record{Value: r.Value, Pos: pos, Time: r.Timestamp, Unrouted: true, Why: whys[i]}
			default:
				recs[i] = ingest.Record{Pos: pos, Skip: true}
			}
		}
		if err := s.pipe.Deliver(ctx, key, recs, lag); err != nil {
			return err
		}
	}
	return nil
}

func headers(hs []kgo.RecordHeader) []schema.Header {
	if len(hs) == 0 {
		return nil
	}
	out := make([]schema.Header, len(hs))
	for i, h := range hs {
		out[i] = schema.Header{Key: h.Key, Value: h.Value}
	}
	return out
}
