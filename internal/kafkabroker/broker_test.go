package kafkabroker

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func startBroker(t *testing.T, cfg Config) *Broker {
	t.Helper()
	b, err := Start(cfg, discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func newClient(t *testing.T, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(addr),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RetryTimeout(10 * time.Second),
	}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// produce sends n records "k<i>"/"v<i>" to topic and waits for all acks.
func produce(t *testing.T, cl *kgo.Client, topic string, from, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rs := make([]*kgo.Record, 0, n)
	for i := from; i < from+n; i++ {
		rs = append(rs, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "v%d", i)})
	}
	if err := cl.ProduceSync(ctx, rs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// consumeAll reads topic from the start until want records arrived or the
// deadline passed, and returns value -> count, checking per-partition order.
func consumeAll(t *testing.T, addr, topic string, want int) map[string]int {
	t.Helper()
	cl := newClient(t, addr, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(200*time.Millisecond))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(map[string]int)
	lastOffset := make(map[int32]int64)
	n := 0
	for n < want {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d of %d records before the deadline", n, want)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if last, ok := lastOffset[r.Partition]; ok && r.Offset != last+1 {
				t.Errorf("partition %d: offset %d after %d", r.Partition, r.Offset, last)
			}
			lastOffset[r.Partition] = r.Offset
			got[string(r.Value)]++
			n++
		})
	}
	return got
}

func checkAll(t *testing.T, got map[string]int, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d distinct values, want %d", len(got), n)
	}
	for i := range n {
		v := fmt.Sprintf("v%d", i)
		if got[v] != 1 {
			t.Fatalf("value %s seen %d times, want 1", v, got[v])
		}
	}
}

func TestRestartOnSameDataDirKeepsRecords(t *testing.T) {
	tests := []struct {
		name string
		sync bool
	}{
		{name: "page cache writes", sync: false},
		{name: "sync writes", sync: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := Config{Addr: "127.0.0.1:0", DataDir: dir, SyncWrites: tc.sync, Topics: map[string]int32{"events": 4}}

			b1, err := Start(cfg, discard())
			if err != nil {
				t.Fatal(err)
			}
			cl := newClient(t, b1.Addr())
			produce(t, cl, "events", 0, 500)
			produce(t, cl, "events", 500, 500)
			cl.Close()
			b1.Close()

			b2 := startBroker(t, cfg)
			if n := len(b2.Cluster().PartitionInfos("events")); n != 4 {
				t.Fatalf("after restart: %d partitions, want 4", n)
			}
			checkAll(t, consumeAll(t, b2.Addr(), "events", 1000), 1000)

			// The restarted broker keeps appending after the old data.
			cl2 := newClient(t, b2.Addr())
			produce(t, cl2, "events", 1000, 100)
			checkAll(t, consumeAll(t, b2.Addr(), "events", 1100), 1100)
		})
	}
}

func TestTopics(t *testing.T) {
	tests := []struct {
		name       string
		cfg        Config
		topic      string
		wantParts  int  // 0: topic must not exist
		produceErr bool // producing to topic must fail
	}{
		{name: "configured topic", cfg: Config{Topics: map[string]int32{"events": 8}}, topic: "events", wantParts: 8},
		{name: "configured with default partitions", cfg: Config{Topics: map[string]int32{"events": 0}, DefaultPartitions: 3}, topic: "events", wantParts: 3},
		{name: "auto create", cfg: Config{AutoCreateTopics: true, DefaultPartitions: 2}, topic: "fresh", wantParts: 2},
		{name: "no auto create", cfg: Config{}, topic: "fresh", produceErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Addr = "127.0.0.1:0"
			b := startBroker(t, tc.cfg)
			cl := newClient(t, b.Addr(), kgo.AllowAutoTopicCreation(), kgo.RecordDeliveryTimeout(2*time.Second))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := cl.ProduceSync(ctx, &kgo.Record{Topic: tc.topic, Value: []byte("x")}).FirstErr()
			if tc.produceErr {
				if err == nil {
					t.Fatal("produce to a missing topic succeeded")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			adm := kadm.NewClient(cl)
			td, err := adm.ListTopics(ctx, tc.topic)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(td[tc.topic].Partitions); got != tc.wantParts {
				t.Fatalf("%d partitions, want %d", got, tc.wantParts)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // substring; empty: valid
	}{
		{name: "zero value", cfg: Config{}},
		{name: "ipv6 loopback", cfg: Config{Addr: "[::1]:0"}},
		{name: "localhost", cfg: Config{Addr: "localhost:0"}},
		{name: "all interfaces", cfg: Config{Addr: "0.0.0.0:9092"}, wantErr: "loopback"},
		{name: "public ip", cfg: Config{Addr: "8.8.8.8:9092"}, wantErr: "loopback"},
		{name: "hostname", cfg: Config{Addr: "kafka:9092"}, wantErr: "loopback"},
		{name: "no port", cfg: Config{Addr: "127.0.0.1"}, wantErr: "missing port"},
		{name: "bad port", cfg: Config{Addr: "127.0.0.1:99999"}, wantErr: "bad port"},
		{name: "sync without dir", cfg: Config{SyncWrites: true}, wantErr: "data dir"},
		{name: "negative default partitions", cfg: Config{DefaultPartitions: -1}, wantErr: ">= 0"},
		{name: "bad topic name", cfg: Config{Topics: map[string]int32{"a/b": 1}}, wantErr: "only ASCII"},
		{name: "empty topic name", cfg: Config{Topics: map[string]int32{"": 1}}, wantErr: "not allowed"},
		{name: "bad sasl mechanism", cfg: Config{SASLUsers: []SASLUser{{Mechanism: "MD5", User: "u"}}}, wantErr: "unknown mechanism"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tc.wantErr)
			}
			if _, err := Start(tc.cfg, discard()); err == nil {
				t.Fatal("Start accepted an invalid config")
			}
		})
	}
}

func TestListensOnLoopbackOnly(t *testing.T) {
	b := startBroker(t, Config{Addr: "127.0.0.1:0"})
	host, _, err := net.SplitHostPort(b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if host != "127.0.0.1" {
		t.Fatalf("listening on %s", b.Addr())
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if b, err := Start(Config{Addr: ln.Addr().String()}, discard()); err == nil {
		b.Close()
		t.Fatal("Start on a taken port succeeded")
	}
}

func TestSASL(t *testing.T) {
	b := startBroker(t, Config{
		Addr:      "127.0.0.1:0",
		Topics:    map[string]int32{"events": 1},
		SASLUsers: []SASLUser{{Mechanism: SASLScramSHA256, User: "sluice", Password: "s3cret"}},
	})
	tests := []struct {
		name    string
		pass    string
		wantErr bool
	}{
		{name: "right password", pass: "s3cret"},
		{name: "wrong password", pass: "nope", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cl := newClient(t, b.Addr(),
				kgo.SASL(scram.Auth{User: "sluice", Pass: tc.pass}.AsSha256Mechanism()),
				kgo.RecordDeliveryTimeout(3*time.Second), kgo.RetryTimeout(3*time.Second))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := cl.ProduceSync(ctx, &kgo.Record{Topic: "events", Value: []byte("x")}).FirstErr()
			if (err != nil) != tc.wantErr {
				t.Fatalf("produce error %v, want error: %v", err, tc.wantErr)
			}
		})
	}
}

func TestTLS(t *testing.T) {
	cert := testkit.NewCert(t)
	serverCfg, pool := cert.ServerConfig(), cert.Pool
	b := startBroker(t, Config{Addr: "127.0.0.1:0", Topics: map[string]int32{"events": 1}, TLS: serverCfg})
	cl := newClient(t, b.Addr(), kgo.DialTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}))
	produce(t, cl, "events", 0, 10)
	// A plaintext client must not get through.
	plain := newClient(t, b.Addr(), kgo.RecordDeliveryTimeout(2*time.Second), kgo.RetryTimeout(2*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := plain.ProduceSync(ctx, &kgo.Record{Topic: "events", Value: []byte("x")}).FirstErr(); err == nil {
		t.Fatal("plaintext produce to a TLS broker succeeded")
	}
}
