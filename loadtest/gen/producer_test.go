package gen

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/kafkabroker"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
)

func startBroker(t *testing.T, topics map[string]int32) string {
	t.Helper()
	return kafkatest.StartBroker(t, kafkabroker.Config{Topics: topics}).Addr()
}

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func TestProducerSendsExactlyTheGeneratedEvents(t *testing.T) {
	addr := startBroker(t, map[string]int32{"events": 4})
	cfg := Config{Seed: 42, Users: 500}
	const n = 5000

	var mu sync.Mutex
	var progress []ProducerStats
	acks := make(map[int32]int)
	p, err := NewProducer(newClient(t, addr), mustNew(t, cfg), ProducerConfig{
		Topic:       "events",
		Events:      n,
		MaxInFlight: 100,
		Progress:    func(s ProducerStats) { mu.Lock(); progress = append(progress, s); mu.Unlock() },
		OnAck: func(r *kgo.Record, err error) {
			if err == nil {
				mu.Lock()
				acks[r.Partition]++
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st, err := p.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Produced != n || st.Acked != n || st.Failed != 0 {
		t.Fatalf("stats %+v, want %d produced and acked", st, n)
	}
	if len(progress) == 0 || progress[len(progress)-1] != st {
		t.Fatalf("final progress report %v does not match %+v", progress, st)
	}
	total := 0
	for _, c := range acks {
		total += c
	}
	if total != n || len(acks) != 4 {
		t.Fatalf("acks by partition %v", acks)
	}

	// Consume back and compare with a regenerated stream.
	want := make(map[string]string, n) // value -> key
	regen := mustNew(t, cfg)
	var wantBytes int64
	for range n {
		v, k, _ := regen.Next(nil)
		want[string(v)] = string(k)
		wantBytes += int64(len(v))
	}
	if st.AckedBytes != wantBytes {
		t.Fatalf("acked bytes %d, want %d", st.AckedBytes, wantBytes)
	}
	cons := newClient(t, addr, kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	got := 0
	for got < n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d", got, n)
		}
		fs.EachRecord(func(r *kgo.Record) {
			k, ok := want[string(r.Value)]
			if !ok {
				t.Fatalf("unexpected or duplicate value %s", r.Value)
			}
			if k != string(r.Key) {
				t.Fatalf("key %q, want %q", r.Key, k)
			}
			delete(want, string(r.Value))
			got++
		})
	}
}

func TestProducerRate(t *testing.T) {
	addr := startBroker(t, map[string]int32{"events": 2})
	tests := []struct {
		name     string
		events   int64
		rate     float64
		min, max time.Duration
	}{
		{name: "1000 at 2000/s", events: 1000, rate: 2000, min: 400 * time.Millisecond, max: 3 * time.Second},
		{name: "50 at 100/s", events: 50, rate: 100, min: 400 * time.Millisecond, max: 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewProducer(newClient(t, addr), mustNew(t, Config{Seed: 1}), ProducerConfig{Topic: "events", Events: tc.events, Rate: tc.rate})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			st, err := p.Run(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if st.Acked != tc.events {
				t.Fatalf("acked %d, want %d", st.Acked, tc.events)
			}
			if st.Elapsed < tc.min || st.Elapsed > tc.max {
				t.Fatalf("took %v, want between %v and %v", st.Elapsed, tc.min, tc.max)
			}
		})
	}
}

func TestProducerUntilCancelled(t *testing.T) {
	addr := startBroker(t, map[string]int32{"events": 2})
	p, err := NewProducer(newClient(t, addr), mustNew(t, Config{Seed: 1}), ProducerConfig{Topic: "events", Rate: 1000})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	st, err := p.Run(ctx)
	if err != nil {
		t.Fatalf("run until cancelled: %v", err)
	}
	if st.Acked < 200 || st.Acked > 800 || st.Produced != st.Acked+st.Failed || st.Failed != 0 {
		t.Fatalf("stats %+v after 0.5s at 1000/s", st)
	}
}

func TestProducerStopsOnDeliveryError(t *testing.T) {
	addr := startBroker(t, nil) // no topics, no auto-creation
	cl := newClient(t, addr, kgo.RecordDeliveryTimeout(time.Second))
	p, err := NewProducer(cl, mustNew(t, Config{Seed: 1}), ProducerConfig{Topic: "missing", Events: 1_000_000, MaxInFlight: 64})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := p.Run(ctx)
	if err == nil {
		t.Fatal("producing to a missing topic succeeded")
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("run hit the test deadline instead of stopping on the error: %v", err)
	}
	if st.Failed == 0 || st.Acked != 0 || st.Produced > 64+st.Failed || st.Produced != st.Failed {
		t.Fatalf("stats %+v", st)
	}
}

func TestNewProducerRejectsBadConfig(t *testing.T) {
	g := mustNew(t, Config{})
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	tests := []struct {
		name string
		cfg  ProducerConfig
	}{
		{name: "no topic", cfg: ProducerConfig{}},
		{name: "negative events", cfg: ProducerConfig{Topic: "t", Events: -1}},
		{name: "negative rate", cfg: ProducerConfig{Topic: "t", Rate: -1}},
		{name: "negative in flight", cfg: ProducerConfig{Topic: "t", MaxInFlight: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewProducer(cl, g, tc.cfg); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestTokenBucket(t *testing.T) {
	tests := []struct {
		name    string
		rate    float64
		burst   int
		advance time.Duration // between takes
		takes   int
		wantOK  int // takes that found a token
	}{
		{name: "burst then empty", rate: 10, burst: 5, advance: 0, takes: 8, wantOK: 5},
		{name: "refill keeps pace", rate: 10, burst: 1, advance: 100 * time.Millisecond, takes: 20, wantOK: 20},
		{name: "half pace", rate: 10, burst: 1, advance: 50 * time.Millisecond, takes: 20, wantOK: 10},
		{name: "refill capped at burst", rate: 1000, burst: 3, advance: time.Hour, takes: 1, wantOK: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := time.Unix(0, 0)
			b := newTokenBucket(tc.rate, tc.burst, func() time.Time { return now })
			ok := 0
			for range tc.takes {
				if d := b.take(); d == 0 {
					ok++
				} else if d < 0 || d > time.Duration(float64(time.Second)/tc.rate)+time.Millisecond {
					t.Fatalf("wait %v out of range", d)
				}
				now = now.Add(tc.advance)
			}
			if ok != tc.wantOK {
				t.Fatalf("%d takes found a token, want %d", ok, tc.wantOK)
			}
			if b.tokens > float64(tc.burst) {
				t.Fatalf("bucket holds %v tokens, more than burst %d", b.tokens, tc.burst)
			}
		})
	}
}

// BenchmarkProducer measures end-to-end produce throughput into an in-process
// broker (acks=all, idempotent, default linger): one op is one event.
func BenchmarkProducer(b *testing.B) {
	br := kafkatest.StartBroker(b, kafkabroker.Config{Topics: map[string]int32{"events": 8}})
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	g, err := New(Config{Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	p, err := NewProducer(cl, g, ProducerConfig{Topic: "events", Events: int64(b.N)})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	st, err := p.Run(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(st.Acked)/b.Elapsed().Seconds(), "events/s")
	b.SetBytes(st.AckedBytes / int64(max(b.N, 1)))
}
