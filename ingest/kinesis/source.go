package kinesis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// api is what the source calls of Kinesis.
type api interface {
	ListShards(context.Context, *kinesis.ListShardsInput, ...func(*kinesis.Options)) (*kinesis.ListShardsOutput, error)
	GetShardIterator(context.Context, *kinesis.GetShardIteratorInput, ...func(*kinesis.Options)) (*kinesis.GetShardIteratorOutput, error)
	GetRecords(context.Context, *kinesis.GetRecordsInput, ...func(*kinesis.Options)) (*kinesis.GetRecordsOutput, error)
}

// Source reads the tables' streams and feeds a Writer through a Pipeline.
type Source struct {
	cfg     Config
	w       *ingest.Writer
	commits *lake.CommitLog
	leases  leaseStore
	logger  *slog.Logger
	m       *Metrics
	tables  map[string]*schema.Table // by stream
	api     api
	pipe    *ingest.Pipeline

	mu      sync.Mutex
	readers map[shardKey]*reader
}

type shardKey struct{ stream, shard string }

// reader is one shard this process holds a lease of.
type reader struct {
	key     ingest.PartitionKey
	sk      shardKey
	table   *schema.Table
	shard   types.Shard
	parents []string // listed parents, whose chains must end first
	lease   Lease    // as last written by this process; lease loop only
	cancel  context.CancelFunc
	done    chan struct{}
	rewind  chan lake.End // from the pipeline, at most one pending
	ended   atomic.Bool   // the shard's chain has ended
}

// NewSource prepares a reader of the streams of tables that name one
// (`kinesis: {stream: ...}`). bucket holds the leases: the lake's own,
// which must replace objects conditionally. A nil m keeps the metrics
// unregistered.
func NewSource(ctx context.Context, cfg Config, tables []*schema.Table, w *ingest.Writer, bucket objstore.Bucket, logger *slog.Logger, m *Metrics) (*Source, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cb, ok := bucket.(objstore.ConditionalBucket)
	if !ok {
		return nil, fmt.Errorf("kinesis: the store %s cannot replace objects conditionally, which shard leases need", bucket.Name())
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if cfg.Owner == "" {
		host, _ := os.Hostname()
		var b [4]byte
		_, _ = rand.Read(b[:])
		cfg.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
	}
	s := &Source{
		cfg:     cfg,
		w:       w,
		commits: w.CommitLog(),
		leases:  leaseStore{b: cb},
		logger:  logger.With("source", "kinesis", "owner", cfg.Owner),
		m:       m,
		tables:  map[string]*schema.Table{},
		readers: map[shardKey]*reader{},
	}
	for _, t := range tables {
		if t.SourceKind() != schema.SourceKinesis {
			continue
		}
		if other, dup := s.tables[t.Kinesis.Stream]; dup {
			return nil, fmt.Errorf("kinesis: tables %q and %q both read stream %q", other.Name, t.Name, t.Kinesis.Stream)
		}
		s.tables[t.Kinesis.Stream] = t
		w.InitTableMetrics(t.Name)
	}
	if len(s.tables) == 0 {
		return nil, errors.New("kinesis: no table reads a Kinesis stream")
	}
	client, err := newClient(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s.api = client
	return s, nil
}

// newClient builds the Kinesis client: the usual AWS chain for region and
// credentials, unless the config names them. The SDK's own retries are off:
// the source retries every call itself and counts throttling.
func newClient(ctx context.Context, cfg Config) (*kinesis.Client, error) {
	var opts []func(*awsconfig.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, awsconfig.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	ac, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("kinesis: load AWS config: %w", err)
	}
	if ac.Region == "" {
		return nil, fmt.Errorf("kinesis: %w", ErrNoRegion)
	}
	return kinesis.NewFromConfig(ac, func(o *kinesis.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.Retryer = aws.NopRetryer{}
	}), nil
}

// SourceName is the chain source of a stream.
func SourceName(stream string) string { return "kinesis:" + stream }

// Run reads until ctx is done, then stops its readers, commits what they
// delivered (bounded by the writer's flush timeout) and frees its leases,
// so other processes take the shards at once.
func (s *Source) Run(ctx context.Context) error {
	s.pipe = ingest.NewPipeline(s.w, s, s.logger)
	s.pipe.Start()
	s.logger.Info("kinesis source starting", "config", s.cfg, "streams", len(s.tables))
	tick := time.NewTicker(s.cfg.LeaseRenew)
	defer tick.Stop()
	for ctx.Err() == nil {
		for stream, t := range s.tables {
			s.cycle(ctx, stream, t)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.w.FlushTimeout())
	defer cancel()
	s.mu.Lock()
	held := make([]*reader, 0, len(s.readers))
	for _, r := range s.readers {
		held = append(held, r)
	}
	s.mu.Unlock()
	for _, r := range held {
		r.cancel()
		<-r.done
	}
	s.pipe.Drain(shutdownCtx)
	for _, r := range held {
		s.letGo(shutdownCtx, r, "shutdown")
	}
	s.pipe.Close()
	return nil
}

// cycle renews this process's leases of stream, lists its shards and
// takes or asks for shards to balance.
func (s *Source) cycle(ctx context.Context, stream string, t *schema.Table) {
	// Renew first: a stream that cannot be listed must not cost the leases.
	s.renew(ctx, stream)
	shards, err := s.listShards(ctx, stream)
	if err != nil {
		if ctx.Err() == nil {
			s.m.errors.WithLabelValues(stream, "list_shards").Inc()
			s.logger.Warn("list shards failed; will retry", "stream", stream, "err", err)
		}
		return
	}
	listed := map[string]bool{}
	for _, sh := range shards {
		listed[aws.ToString(sh.ShardId)] = true
	}
	now := time.Now()
	views := make([]shardView, 0, len(shards))
	byID := map[string]types.Shard{}
	versions := map[string]string{}
	for _, sh := range shards {
		id := aws.ToString(sh.ShardId)
		byID[id] = sh
		v := shardView{ID: id, Parents: parentsOf(sh, listed)}
		l, version, found, err := s.leases.get(ctx, lake.KinesisLeaseKey(t.Name, stream, id))
		if err != nil {
			if ctx.Err() == nil {
				s.m.errors.WithLabelValues(stream, "lease").Inc()
				s.logger.Warn("reading a lease failed; will retry", "stream", stream, "shard", id, "err", err)
			}
			return
		}
		v.Lease, v.Leased, versions[id] = l, found, version
		views = append(views, v)
	}
	take, ask := balance(s.cfg.Owner, now, views)
	for _, id := range take {
		s.take(ctx, t, stream, byID[id], parentsOf(byID[id], listed), versions[id])
	}
	if ask != "" {
		s.askHandoff(ctx, t, stream, ask, versions[ask])
	}
}

func parentsOf(sh types.Shard, listed map[string]bool) []string {
	var out []string
	for _, p := range []*string{sh.ParentShardId, sh.AdjacentParentShardId} {
		if id := aws.ToString(p); id != "" && listed[id] {
			out = append(out, id)
		}
	}
	return out
}

// listShards returns every shard of stream the server lists (open ones and
// closed ones still within retention), following NextToken. kinesalite
// answers every shard on the first page and no token; a server that
// repeated a page would not add shards twice.
func (s *Source) listShards(ctx context.Context, stream string) ([]types.Shard, error) {
	in := &kinesis.ListShardsInput{StreamName: aws.String(stream)}
	seen := map[string]bool{}
	var out []types.Shard
	for page := 0; page < 10_000; page++ {
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := s.api.ListShards(callCtx, in)
		cancel()
		if err != nil {
			return nil, err
		}
		for _, sh := range res.Shards {
			if id := aws.ToString(sh.ShardId); !seen[id] {
				seen[id] = true
				out = append(out, sh)
			}
		}
		if aws.ToString(res.NextToken) == "" {
			return out, nil
		}
		in = &kinesis.ListShardsInput{NextToken: res.NextToken}
	}
	return nil, fmt.Errorf("list shards of %s: more than 10000 pages", stream)
}

// renew extends this process's leases of stream, and lets go of those it
// lost, finished or was asked to hand over.
func (s *Source) renew(ctx context.Context, stream string) {
	s.mu.Lock()
	var mine []*reader
	for sk, r := range s.readers {
		if sk.stream == stream {
			mine = append(mine, r)
		}
	}
	s.mu.Unlock()
	for _, r := range mine {
		key := lake.KinesisLeaseKey(r.table.Name, stream, r.sk.shard)
		l, version, found, err := s.leases.get(ctx, key)
		now := time.Now()
		switch {
		case err != nil:
			s.m.errors.WithLabelValues(stream, "lease").Inc()
			if !now.Before(r.lease.Expires) {
				s.logger.Warn("lease could not be renewed before it expired; stopping the shard", "shard", r.sk.shard, "err", err)
				s.drop(ctx, r, false)
			}
		case !found || l.Owner != s.cfg.Owner || l.Counter != r.lease.Counter:
			s.m.leaseMoves.WithLabelValues(stream, r.sk.shard).Inc()
			s.logger.Warn("lease taken by another process; stopping the shard", "shard", r.sk.shard, "owner", l.Owner, "counter", l.Counter)
			s.drop(ctx, r, false)
		case r.ended.Load():
			s.drop(ctx, r, false)
			l.Owner, l.Finished, l.Handoff = "", true, ""
			if err := s.leases.put(ctx, key, l, version); err != nil {
				s.logger.Warn("marking a finished shard's lease failed; the next owner finds the chain ended", "shard", r.sk.shard, "err", err)
			}
		case l.Handoff != "":
			s.logger.Info("handing a shard over", "shard", r.sk.shard, "to", l.Handoff)
			s.drop(ctx, r, true)
			l.Owner = ""
			if err := s.leases.put(ctx, key, l, version); err != nil {
				s.logger.Warn("freeing a handed-over lease failed; it frees itself when it expires", "shard", r.sk.shard, "err", err)
			}
		default:
			l.Expires = now.Add(s.cfg.LeaseDuration)
			if err := s.leases.put(ctx, key, l, version); err != nil {
				if ctx.Err() == nil {
					s.m.errors.WithLabelValues(stream, "lease").Inc()
					s.logger.Warn("lease renewal failed; will retry", "shard", r.sk.shard, "err", err)
				}
				continue
			}
			r.lease = l
		}
	}
}

// take writes this process into a free or expired lease and starts reading
// the shard.
func (s *Source) take(ctx context.Context, t *schema.Table, stream string, sh types.Shard, parents []string, version string) {
	id := aws.ToString(sh.ShardId)
	s.mu.Lock()
	_, running := s.readers[shardKey{stream, id}]
	s.mu.Unlock()
	if running {
		// Our own lease, expired while a renewal failed: the reader
		// still runs, and the next renewal finds out whether the lease
		// is still ours. Never two readers of one shard in a process.
		return
	}
	key := lake.KinesisLeaseKey(t.Name, stream, id)
	old, v, found, err := s.leases.get(ctx, key)
	if err != nil || v != version {
		return // changed since the plan: the next cycle looks again
	}
	l := Lease{Stream: stream, Shard: id, Owner: s.cfg.Owner, Counter: old.Counter + 1,
		Expires: time.Now().Add(s.cfg.LeaseDuration), Parents: parents, Finished: old.Finished}
	if !found {
		version = ""
	}
	if err := s.leases.put(ctx, key, l, version); err != nil {
		if !lostRace(err) {
			s.m.errors.WithLabelValues(stream, "lease").Inc()
			s.logger.Warn("taking a lease failed", "shard", id, "err", err)
		}
		return
	}
	if old.Owner != "" && old.Owner != s.cfg.Owner {
		s.m.leaseMoves.WithLabelValues(stream, id).Inc()
	}
	s.logger.Info("shard lease taken", "stream", stream, "shard", id, "counter", l.Counter, "previous_owner", old.Owner)
	rctx, cancel := context.WithCancel(ctx)
	r := &reader{
		key:     ingest.PartitionKey{Table: t.Name, Source: SourceName(stream), Partition: id},
		sk:      shardKey{stream, id},
		table:   t,
		shard:   sh,
		parents: parents,
		lease:   l,
		cancel:  cancel,
		done:    make(chan struct{}),
		rewind:  make(chan lake.End, 1),
	}
	s.mu.Lock()
	s.readers[r.sk] = r
	s.mu.Unlock()
	go func() {
		defer close(r.done)
		s.read(rctx, r)
	}()
}

// askHandoff asks the owner of shard to let go of it for this process.
func (s *Source) askHandoff(ctx context.Context, t *schema.Table, stream, shard, version string) {
	key := lake.KinesisLeaseKey(t.Name, stream, shard)
	l, v, found, err := s.leases.get(ctx, key)
	if err != nil || !found || v != version || l.Handoff != "" {
		return
	}
	l.Handoff = s.cfg.Owner
	if err := s.leases.put(ctx, key, l, v); err == nil {
		s.logger.Info("asked for a shard to balance", "stream", stream, "shard", shard, "owner", l.Owner)
	}
}

// drop stops reading a shard and hands its partition back to the
// pipeline: with flush, what it holds is committed first (a hand-off);
// without, dropped (the lease is lost: the next owner reads it again).
func (s *Source) drop(ctx context.Context, r *reader, flush bool) {
	r.cancel()
	<-r.done
	s.pipe.Release(ctx, []ingest.PartitionKey{r.key}, flush)
	s.mu.Lock()
	delete(s.readers, r.sk)
	s.mu.Unlock()
}

// letGo frees a lease at shutdown, after the pipeline drained.
func (s *Source) letGo(ctx context.Context, r *reader, why string) {
	key := lake.KinesisLeaseKey(r.table.Name, r.sk.stream, r.sk.shard)
	l, version, found, err := s.leases.get(ctx, key)
	if err != nil || !found || l.Owner != s.cfg.Owner || l.Counter != r.lease.Counter {
		return
	}
	l.Owner, l.Handoff = "", ""
	if r.ended.Load() {
		l.Finished = true
	}
	if err := s.leases.put(ctx, key, l, version); err != nil {
		s.logger.Warn("freeing a lease failed; it frees itself when it expires", "shard", r.sk.shard, "why", why, "err", err)
	}
}

// Rewind is called by the pipeline after a failed flush; the shard's reader
// moves its position before its next call.
func (s *Source) Rewind(key ingest.PartitionKey, end lake.End) {
	stream, ok := strings.CutPrefix(key.Source, "kinesis:")
	if !ok {
		return
	}
	s.mu.Lock()
	r := s.readers[shardKey{stream, key.Partition}]
	s.mu.Unlock()
	if r == nil {
		return
	}
	select {
	case <-r.rewind:
	default:
	}
	r.rewind <- end
}

// Committed is a hint the lake already holds: nothing to do.
func (s *Source) Committed(ingest.PartitionKey, lake.Position) {}

// sleep waits d or until ctx is done, and says whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// read is one shard's loop: wait for its parents' chains to end, open its
// chain, then GetRecords from the chain's end until the shard ends or ctx
// is done. Every error is retried from the last position read.
func (s *Source) read(ctx context.Context, r *reader) {
	stream, shard := r.sk.stream, r.sk.shard
	log := s.logger.With("stream", stream, "shard", shard)
	meta := r.table.MapsMetadata() // hand over partition keys only to a table that maps them
	if !s.waitParents(ctx, r) {
		return
	}
	base := aws.ToString(r.shard.SequenceNumberRange.StartingSequenceNumber)
	end, ok := s.openChain(ctx, r, base, log)
	if !ok {
		return
	}
	next := end.Next
	log.Info("reading shard", "from_position", next, "link", end.Seq, "parents", r.parents)

	p := &shardPoll{interval: s.cfg.PollInterval, nextCall: time.Now()}
	records := s.m.records.WithLabelValues(stream, shard)
	behind := s.m.behind.WithLabelValues(stream, shard)
	calls := s.m.calls.WithLabelValues(stream, shard)
	for ctx.Err() == nil {
		select {
		case e := <-r.rewind:
			if e.Ended {
				// Another owner (this one's successor) closed the chain.
				r.ended.Store(true)
				return
			}
			next, p.iter = e.Next, ""
			if err := s.pipe.Resume(ctx, r.key, e); err != nil {
				return
			}
			log.Info("shard rewound to its chain end", "position", next, "link", e.Seq)
		default:
		}
		if p.iter == "" {
			var err error
			p.iter, err = s.iterator(ctx, r, base, next)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.m.errors.WithLabelValues(stream, "get_shard_iterator").Inc()
				log.Warn("GetShardIterator failed; will retry", "position", next, "err", err)
				if !p.backoff(ctx) {
					return
				}
				continue
			}
		}
		if !sleep(ctx, time.Until(p.nextCall)) {
			return
		}
		callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		out, err := s.api.GetRecords(callCtx, &kinesis.GetRecordsInput{ShardIterator: aws.String(p.iter), Limit: aws.Int32(s.cfg.MaxRecords)})
		cancel()
		calls.Inc()
		p.nextCall = time.Now().Add(p.interval)
		if err != nil {
			if ctx.Err() != nil || !s.getRecordsFailed(ctx, r, p, err, next, log) {
				return
			}
			continue
		}
		p.succeeded(s.cfg.PollInterval)
		lag := int64(aws.ToInt64(out.MillisBehindLatest))
		behind.Set(float64(lag))
		recs, bytes, bad := s.records(out.Records, base, next, meta)
		if bad != nil {
			s.m.errors.WithLabelValues(stream, "sequence_number").Inc()
			log.Error("a record's sequence number has no position; will retry", "err", bad)
			p.iter = ""
			if !p.backoff(ctx) {
				return
			}
			continue
		}
		// Kinesis allows 2 MB per second per shard: a large answer buys
		// a longer pause before the next call.
		if d := time.Duration(float64(bytes) / (2 << 20) * float64(time.Second)); time.Now().Add(d).After(p.nextCall) {
			p.nextCall = time.Now().Add(d)
		}
		if len(recs) > 0 {
			// Deliver takes the slice over: read it before.
			n, last := len(recs), recs[len(recs)-1].Pos
			if err := s.pipe.Deliver(ctx, r.key, recs, lag); err != nil {
				return
			}
			records.Add(float64(n))
			next = last.Succ()
		}
		p.iter = aws.ToString(out.NextShardIterator)
		if p.iter == "" {
			if s.finish(ctx, r, log, &next) {
				return
			}
		}
	}
}

// shardPoll paces one shard's GetRecords calls.
type shardPoll struct {
	iter     string        // the shard iterator; "": get one at the last position read
	interval time.Duration // between calls; longer while throttled
	nextCall time.Time
	failures int // in a row, for the backoff
}

// maxThrottledInterval is the longest pause between calls while a shard is
// throttled.
const maxThrottledInterval = 10 * time.Second

// throttled doubles the pause before the next call (up to
// maxThrottledInterval): Kinesis throttles a shard read more than five
// times a second or past 2 MB a second, so the reader backs off.
func (p *shardPoll) throttled(now time.Time) {
	p.interval = min(2*p.interval, maxThrottledInterval)
	p.nextCall = now.Add(p.interval)
}

// succeeded halves the pause after a call that was answered, down to
// pollInterval: a reader slowed to 10 s is back at full pace after six
// answered calls. Recovering by a quarter instead took thirteen, and under
// a steady share of throttled calls (the fault suite answers 20% of them so)
// the pause then drifted up and stayed for a minute or more at several
// seconds, with the shard's records waiting.
func (p *shardPoll) succeeded(pollInterval time.Duration) {
	p.failures = 0
	p.interval = max(pollInterval, p.interval/2)
}

// backoff waits longer after each failure in a row, up to 5 seconds; it is
// false when ctx is done first.
func (p *shardPoll) backoff(ctx context.Context) bool {
	p.failures++
	return sleep(ctx, min(time.Duration(p.failures)*250*time.Millisecond, 5*time.Second))
}

// getRecordsFailed handles a failed GetRecords call at position next: a
// throttled one keeps its iterator and slows the polling, an expired
// iterator is renewed, any other error is retried from the last position
// read after a backoff. It is false when ctx is done during the backoff.
func (s *Source) getRecordsFailed(ctx context.Context, r *reader, p *shardPoll, err error, next lake.Position, log *slog.Logger) bool {
	var pte *types.ProvisionedThroughputExceededException
	var kte *types.KMSThrottlingException
	var eie *types.ExpiredIteratorException
	switch {
	case errors.As(err, &pte), errors.As(err, &kte):
		// Keep the iterator; slow down until calls succeed again.
		s.m.throttles.WithLabelValues(r.sk.stream, r.sk.shard).Inc()
		p.throttled(time.Now())
	case errors.As(err, &eie):
		p.iter = "" // a new one from the last position read
	default:
		s.m.errors.WithLabelValues(r.sk.stream, "get_records").Inc()
		log.Warn("GetRecords failed; will retry from the last position read", "position", next, "err", err)
		p.iter = ""
		return p.backoff(ctx)
	}
	return true
}

// waitParents waits until the chains of r's parents have ended: a child
// shard is read only after them. It is false when ctx is done first.
func (s *Source) waitParents(ctx context.Context, r *reader) bool {
	for _, p := range r.parents {
		for ctx.Err() == nil {
			end, found, err := s.commits.Resume(ctx, r.table.Name, r.key.Source, p)
			if err == nil && found && end.Ended {
				break
			}
			if !sleep(ctx, s.cfg.LeaseRenew/2) {
				return false
			}
		}
	}
	return true
}

// openChain opens the shard's chain, retrying until it opens, and returns
// its end; base is the shard's first sequence number. It is false when
// there is nothing to read: the chain has ended, or ctx is done.
func (s *Source) openChain(ctx context.Context, r *reader, base string, log *slog.Logger) (lake.End, bool) {
	var end lake.End
	for attempt := 0; ; attempt++ {
		var err error
		end, err = s.pipe.Open(ctx, r.table, r.key, s.genesis(r, base))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return end, false
		}
		s.m.errors.WithLabelValues(r.sk.stream, "open").Inc()
		log.Warn("opening the shard's chain failed; will retry", "err", err)
		if !sleep(ctx, min(time.Duration(attempt+1)*time.Second, 10*time.Second)) {
			return end, false
		}
	}
	if end.Ended {
		log.Info("shard's chain has ended: nothing to read")
		r.ended.Store(true)
		return end, false
	}
	if end.SourceID != base {
		// The stream was deleted and created again under the same name: the
		// shard is new and its sequence numbers start over.
		reason := fmt.Sprintf("shard starts at sequence number %s, its chain's at %s: stream re-created", base, end.SourceID)
		if err := s.pipe.Restart(ctx, r.key, base, lake.PositionOf(0), reason); err != nil {
			return end, false
		}
		end = lake.End{Seq: end.Seq + 1, Next: lake.PositionOf(0), SourceID: base, Genesis: true}
	}
	return end, true
}

// records turns a GetRecords answer into the records from next on, in a
// pipeline buffer, and counts their bytes; meta hands over partition keys.
// The error is a sequence number with no position.
func (s *Source) records(in []types.Record, base string, next lake.Position, meta bool) ([]ingest.Record, int, error) {
	var bytes int
	var recs []ingest.Record
	if len(in) > 0 {
		recs = s.pipe.Buffer(len(in))[:0]
	}
	for _, rec := range in {
		pos, err := positionOf(base, aws.ToString(rec.SequenceNumber))
		if err != nil {
			return recs, bytes, err
		}
		if pos.Less(next) {
			continue // read before (an iterator that starts early)
		}
		bytes += len(rec.Data)
		r := ingest.Record{Value: rec.Data, Pos: pos, Time: aws.ToTime(rec.ApproximateArrivalTimestamp)}
		if meta && rec.PartitionKey != nil {
			r.Key = []byte(*rec.PartitionKey)
		}
		recs = append(recs, r)
	}
	return recs, bytes, nil
}

// finish records that the shard was read to its end and waits until the
// end link is committed. It returns true when the chain has ended (or ctx
// is done), false when a rewind came first: the caller reads again from
// *next.
func (s *Source) finish(ctx context.Context, r *reader, log *slog.Logger, next *lake.Position) bool {
	reason := fmt.Sprintf("shard %s closed (split or merge) and read to its end", r.sk.shard)
	if err := s.pipe.End(ctx, r.key, reason); err != nil {
		return true
	}
	for ctx.Err() == nil {
		select {
		case e := <-r.rewind:
			if e.Ended {
				r.ended.Store(true)
				return true
			}
			*next = e.Next
			if err := s.pipe.Resume(ctx, r.key, e); err != nil {
				return true
			}
			return false
		case <-time.After(200 * time.Millisecond):
		}
		end, found, err := s.commits.Resume(ctx, r.table.Name, r.key.Source, r.sk.shard)
		if err == nil && found && end.Ended {
			log.Info("shard read to its end and committed")
			r.ended.Store(true)
			return true
		}
	}
	return true
}

// iterator returns a shard iterator for the records from position next
// on: after the record before it, or, for a chain with no record yet, the
// start its genesis says.
func (s *Source) iterator(ctx context.Context, r *reader, base string, next lake.Position) (string, error) {
	in := &kinesis.GetShardIteratorInput{StreamName: aws.String(r.sk.stream), ShardId: aws.String(r.sk.shard)}
	if next == lake.PositionOf(0) {
		in.ShardIteratorType = types.ShardIteratorTypeTrimHorizon
		if at, ok := s.latestSince(ctx, r); ok {
			in.ShardIteratorType = types.ShardIteratorTypeAtTimestamp
			in.Timestamp = aws.Time(at)
		}
	} else {
		// After the record before next (next is not 0 here).
		hi, lo := next.Uint128()
		lo, borrow := bits.Sub64(lo, 1, 0)
		after, err := sequenceAt(base, lake.Uint128Position(hi-borrow, lo))
		if err != nil {
			return "", err
		}
		in.ShardIteratorType = types.ShardIteratorTypeAfterSequenceNumber
		in.StartingSequenceNumber = aws.String(after)
	}
	callCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := s.api.GetShardIterator(callCtx, in)
	if err != nil {
		return "", err
	}
	return aws.ToString(out.ShardIterator), nil
}

const latestReason = "start_position latest at "

// latestSince returns when the chain's genesis pinned "latest", if it did.
func (s *Source) latestSince(ctx context.Context, r *reader) (time.Time, bool) {
	if s.cfg.StartPosition != "latest" {
		return time.Time{}, false
	}
	chain, err := s.commits.Chain(ctx, r.table.Name, r.key.Source, r.sk.shard)
	if err != nil || len(chain.Records) == 0 {
		return time.Time{}, false
	}
	g := chain.Records[0]
	at, ok := strings.CutPrefix(g.Reason, latestReason)
	if g.Kind != lake.LinkGenesis || !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	return t, err == nil
}

// genesis says where a shard with no chain starts: position 0, its
// starting sequence number (the chain's source incarnation), read from
// the trim horizon, or for start_position latest, from the time the chain
// was created. A shard with parents starts at the trim horizon: the
// parents' records continue in it.
func (s *Source) genesis(r *reader, base string) func(context.Context) (lake.Genesis, error) {
	return func(context.Context) (lake.Genesis, error) {
		if _, err := parseSeq(base); err != nil {
			return lake.Genesis{}, err
		}
		reason := "start_position trim_horizon"
		if s.cfg.StartPosition == "latest" && len(r.parents) == 0 {
			reason = latestReason + time.Now().UTC().Format(time.RFC3339Nano)
		}
		return lake.Genesis{At: lake.PositionOf(0), SourceID: base, Reason: reason}, nil
	}
}
