package kinesis_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/kinesis"
	"github.com/sluicehq/sluice/ingest/kinesis/kinesistest"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testConfig polls and renews fast, so hand-offs and expiries take a
// second, not half a minute.
func testConfig(endpoint, owner string) kinesis.Config {
	return kinesis.Config{Endpoint: endpoint, Region: kinesistest.Region, AccessKeyID: kinesistest.AccessKey,
		SecretAccessKey: kinesistest.SecretKey, PollInterval: 200 * time.Millisecond,
		LeaseDuration: 1500 * time.Millisecond, LeaseRenew: 300 * time.Millisecond, Owner: owner}
}

func testTable(t *testing.T, table, stream string) *schema.Table {
	t.Helper()
	tables, err := schema.Parse(kinesistest.TableYAML(table, stream), "test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return tables[0]
}

type running struct {
	cancel context.CancelFunc
	done   chan error
	w      *ingest.Writer
	reg    *prometheus.Registry
}

func start(t *testing.T, cfg kinesis.Config, table *schema.Table, b objstore.Bucket) *running {
	t.Helper()
	reg := prometheus.NewRegistry()
	w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 500, FlushInterval: 200 * time.Millisecond}, b, testLogger(), ingest.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	src, err := kinesis.NewSource(t.Context(), cfg, []*schema.Table{table}, w, b, testLogger(), kinesis.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cancel: cancel, done: make(chan error, 1), w: w, reg: reg}
	go func() { r.done <- src.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("source: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("source did not stop")
	}
	r.w.Close()
}

func waitRows(t *testing.T, b objstore.Bucket, table string, want int, timeout time.Duration) kinesistest.Committed {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		c := kinesistest.ReadCommitted(t, b, table)
		if c.Count() >= want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s only %d of %d rows committed", timeout, c.Count(), want)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Records put before, during and after a split and a merge, read by one
// process and then another, are committed exactly once each; closed shards
// end with an end link and no child is committed before its parents ended.
func TestKinesisSourceExactlyOnceAcrossReshardingAndRestart(t *testing.T) {
	endpoint := kinesistest.Endpoint(t)
	kc := kinesistest.NewClient(endpoint)
	stream := kinesistest.StreamName("basic")
	kinesistest.CreateStream(t, kc, stream, 2)
	b := objstoretest.NewLocal(t)
	table := testTable(t, "kt", stream)
	p := kinesistest.NewProduced()
	ctx := t.Context()
	if err := kinesistest.Put(ctx, kc, stream, p, "a", 0, 2000, 50); err != nil {
		t.Fatal(err)
	}
	first := start(t, testConfig(endpoint, "one"), table, b)
	waitRows(t, b, "kt", 2000, 30*time.Second)

	open := kinesistest.OpenShards(t, kc, stream)
	kinesistest.Split(t, kc, stream, aws.ToString(open[0].ShardId))
	if err := kinesistest.Put(ctx, kc, stream, p, "b", 0, 1500, 50); err != nil {
		t.Fatal(err)
	}
	waitRows(t, b, "kt", 3500, 30*time.Second)
	if n := sumMetric(t, first.reg, "sluice_kinesis_records_total"); n < 3500 {
		t.Errorf("records metric = %v, want at least the 3500 committed", n)
	}
	first.stop(t)

	// A second process resumes from the chains; a merge happens while it reads.
	second := start(t, testConfig(endpoint, "two"), table, b)
	if err := kinesistest.Put(ctx, kc, stream, p, "c", 0, 1000, 50); err != nil {
		t.Fatal(err)
	}
	open = kinesistest.OpenShards(t, kc, stream)
	kinesistest.Merge(t, kc, stream, aws.ToString(open[1].ShardId), aws.ToString(open[2].ShardId))
	if err := kinesistest.Put(ctx, kc, stream, p, "d", 0, 1000, 50); err != nil {
		t.Fatal(err)
	}
	got := waitRows(t, b, "kt", len(p.Shard), 60*time.Second)
	time.Sleep(time.Second) // let any duplicate show up
	second.stop(t)
	got = kinesistest.ReadCommitted(t, b, "kt")
	for _, problem := range kinesistest.Check(p, got) {
		t.Error(problem)
	}
	for _, problem := range kinesistest.CheckResharding(kinesistest.AllShards(t, kc, stream), got) {
		t.Error(problem)
	}
	for _, problem := range kinesistest.CheckKeyOrder(p, got) {
		t.Error(problem)
	}
	if len(got.Chains) != 5 {
		t.Errorf("%d chains, want 5 (2 shards, 2 children of a split, 1 of a merge)", len(got.Chains))
	}
}

// sumMetric adds up every series of a counter or gauge.
func sumMetric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return sum
}

// Two processes share a stream's shards through leases on the real S3
// server (conditional writes there), then one leaves gracefully and the
// other takes its shards: every record exactly once, both processes read.
func TestKinesisSourcesShareShards(t *testing.T) {
	endpoint := kinesistest.Endpoint(t)
	kc := kinesistest.NewClient(endpoint)
	stream := kinesistest.StreamName("share")
	kinesistest.CreateStream(t, kc, stream, 4)
	b := objstoretest.NewS3(t, testLogger())
	table := testTable(t, "ks", stream)
	p := kinesistest.NewProduced()
	ctx := t.Context()
	one := start(t, testConfig(endpoint, "one"), table, b)
	two := start(t, testConfig(endpoint, "two"), table, b)
	if err := kinesistest.Put(ctx, kc, stream, p, "a", 0, 4000, 100); err != nil {
		t.Fatal(err)
	}
	waitRows(t, b, "ks", 4000, 30*time.Second)
	// Balanced: each holds two shards, so each read records.
	deadline := time.Now().Add(20 * time.Second)
	for sumMetric(t, one.reg, "sluice_kinesis_records_total") == 0 || sumMetric(t, two.reg, "sluice_kinesis_records_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("records read: one %v, two %v; want both to read", sumMetric(t, one.reg, "sluice_kinesis_records_total"), sumMetric(t, two.reg, "sluice_kinesis_records_total"))
		}
		if err := kinesistest.Put(ctx, kc, stream, p, "w", len(p.Shard), 200, 100); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	one.stop(t)
	if err := kinesistest.Put(ctx, kc, stream, p, "b", 0, 2000, 100); err != nil {
		t.Fatal(err)
	}
	got := waitRows(t, b, "ks", len(p.Shard), 30*time.Second)
	time.Sleep(time.Second)
	two.stop(t)
	got = kinesistest.ReadCommitted(t, b, "ks")
	for _, problem := range kinesistest.Check(p, got) {
		t.Error(problem)
	}
}
