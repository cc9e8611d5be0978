package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/internal/kafkabroker"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// Ctrl-C of `sluice dev` stops the demo producer first and lets the
// ingester commit everything the broker holds: afterwards every partition's
// commit chain ends exactly at the broker's end offset (nothing acknowledged
// is left for the next start).
func TestDevCtrlCCommitsToBrokerEnd(t *testing.T) {
	bin := testkit.SluiceBinary(t)
	dir := t.TempDir()
	cs := testkit.NewProcs(t, dir)
	dataDir := filepath.Join(dir, "sluice-data")
	dev, _, err := cs.Start("dev", bin, false, "dev", "--data-dir", dataDir,
		"--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rate", "5000", "--flush-interval", "1s")
	if err != nil {
		t.Fatal(err)
	}
	lakeDir := filepath.Join(dataDir, "lake")
	committed := func() int64 {
		b, err := objstore.NewLocal(lakeDir)
		if err != nil {
			return 0
		}
		recs, err := lake.NewCommitLog(b).Records(context.Background(), "events")
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, r := range recs {
			n += r.Records + r.DeadLetters
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for committed() == 0 {
		if !dev.Alive() || time.Now().After(deadline) {
			t.Fatal("sluice dev committed nothing within 60s")
		}
		time.Sleep(200 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond) // mid-stream: records in flight and buffered
	code, err := dev.Stop(syscall.SIGINT, 60*time.Second)
	if err != nil || code != 0 {
		t.Fatalf("sluice dev did not stop cleanly on Ctrl-C: exit %d, %v", code, err)
	}

	ends := brokerEndOffsets(t, filepath.Join(dataDir, "kafka"), "events")
	b, err := objstore.NewLocal(lakeDir)
	if err != nil {
		t.Fatal(err)
	}
	chains, err := lake.NewCommitLog(b).Chains(context.Background(), "events")
	if err != nil {
		t.Fatal(err)
	}
	chainEnds := map[string]int64{}
	for _, ch := range chains {
		if ch.Source != "kafka:events" {
			continue
		}
		if end, ok := ch.End(); ok {
			next, ok := end.Next.Int64()
			if !ok {
				t.Fatalf("partition %s: chain ends at %s, not a Kafka offset", ch.Partition, end.Next)
			}
			chainEnds[ch.Partition] = next
		}
	}
	var total int64
	for p, end := range ends {
		total += end
		if chainEnds[p] != end {
			t.Errorf("partition %s: commit chain ends at %d, the broker's end offset is %d (%d records not committed at exit)", p, chainEnds[p], end, end-chainEnds[p])
		}
	}
	if total == 0 {
		t.Fatal("the broker holds no records")
	}
	if !t.Failed() {
		t.Logf("%d records in %d partitions, all committed at exit", total, len(ends))
	}
}

// brokerEndOffsets starts a broker on a stopped broker's data directory and
// returns the end offset of every partition of topic.
func brokerEndOffsets(t *testing.T, dataDir, topic string) map[string]int64 {
	t.Helper()
	br := kafkatest.StartBroker(t, kafkabroker.Config{DataDir: dataDir})
	defer br.Close() // before the caller goes on with the data directory
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	listed, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends := map[string]int64{}
	listed.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			t.Fatalf("end offset of %s/%d: %v", o.Topic, o.Partition, o.Err)
		}
		ends[strconv.Itoa(int(o.Partition))] = o.Offset
	})
	if len(ends) == 0 {
		t.Fatalf("topic %s has no partitions", topic)
	}
	return ends
}

// The demo producer's late events never predate its start: the first
// summaries of `sluice dev` are of minutes it ran in, not of earlier ones
// holding nothing but late events. It still produces late events.
func TestDemoProducerNothingBeforeStart(t *testing.T) {
	br := kafkatest.StartBroker(t, kafkabroker.Config{Topics: map[string]int32{"events": 2}})
	const lateBy = 300 * time.Millisecond
	start := time.Now().Truncate(time.Microsecond)
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := app.RunDemoProducer(ctx, br.Addr(), "events", 3000, lateBy); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(br.Addr()), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends := map[int32]int64{}
	adm, err := kadm.NewClient(cl).ListEndOffsets(context.Background(), "events")
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	adm.Each(func(o kadm.ListedOffset) { ends[o.Partition] = o.Offset; want += o.Offset })
	var n, late, before int64
	pollCtx, stop := context.WithTimeout(context.Background(), 30*time.Second)
	defer stop()
	for n < want && pollCtx.Err() == nil {
		cl.PollFetches(pollCtx).EachRecord(func(r *kgo.Record) {
			n++
			var ev struct {
				TS time.Time `json:"ts"`
			}
			if err := json.Unmarshal(r.Value, &ev); err != nil {
				t.Fatalf("record %d/%d: %v", r.Partition, r.Offset, err)
			}
			if ev.TS.Before(start) {
				before++
			}
			if ev.TS.Before(r.Timestamp.Add(-10 * time.Millisecond)) {
				late++
			}
		})
	}
	if n < want || n < 1000 {
		t.Fatalf("read %d records of %d", n, want)
	}
	if before > 0 {
		t.Errorf("%d of %d events have an event time before the producer started", before, n)
	}
	if late == 0 {
		t.Errorf("no late event among %d: the demo should still show late data", n)
	}
	t.Logf("%d events, %d late, %d before the start", n, late, before)
}
