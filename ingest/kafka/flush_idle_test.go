package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// dataLinks counts the commit links of table that hold records.
func dataLinks(t *testing.T, b objstore.Bucket, table string) int {
	t.Helper()
	recs, err := lake.NewCommitLog(b).Records(context.Background(), table)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Records+r.DeadLetters > 0 {
			n++
		}
	}
	return n
}

// A burst followed by silence is committed flush_idle after its last
// record, not flush_interval after its first: with an interval of an hour,
// only the idle flush can commit it within the test's wait.
func TestIdlePartitionFlushesBeforeItsInterval(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 4)
	b := objstoretest.NewLocal(t)
	want := produce(t, c.ListenAddrs(), 2000, 0, time.Now().UTC().Add(-time.Hour))
	wcfg := ingest.WriterConfig{FlushRecords: 1_000_000, FlushInterval: time.Hour, FlushIdle: 300 * time.Millisecond}
	src := startSource(t, c.ListenAddrs(), "g", b, wcfg, newProcMetrics(prometheus.NewRegistry()))
	waitCommitted(t, b, "events", 2000, 30*time.Second)
	src.stop(t)
	checkExactlyOnce(t, want, readCommitted(t, b, "events"))
}

// Records that keep arriving more often than flush_idle are one object:
// the idle flush waits for the silence after the last of them.
func TestTrickleDoesNotFlushPerRecord(t *testing.T) {
	c := kafkatest.NewCluster(t, testTopic, 1)
	b := objstoretest.NewLocal(t)
	wcfg := ingest.WriterConfig{FlushRecords: 1_000_000, FlushInterval: time.Hour, FlushIdle: 1500 * time.Millisecond}
	src := startSource(t, c.ListenAddrs(), "g", b, wcfg, newProcMetrics(prometheus.NewRegistry()))
	defer src.stop(t)

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 20
	start := time.Now().UTC().Add(-time.Hour)
	for i := range n {
		rec := &kgo.Record{Topic: testTopic, Value: goodEvent(i, start.Add(time.Duration(i)*time.Second))}
		if err := cl.ProduceSync(context.Background(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitCommitted(t, b, "events", n, 30*time.Second)
	if got := dataLinks(t, b, "events"); got != 1 {
		t.Errorf("%d records 100 ms apart made %d objects with flush_idle 1.5s, want 1", n, got)
	}
}

func TestNegativeFlushIdleIsRefused(t *testing.T) {
	err := ingest.WriterConfig{FlushIdle: -time.Second}.WithDefaults().Validate()
	if err == nil {
		t.Fatal("flush_idle -1s accepted")
	}
}
