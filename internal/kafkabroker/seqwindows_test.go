package kafkabroker

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// rawProducer speaks the idempotent produce protocol by hand, so a test
// can resend a batch exactly as a client retries it after losing the
// acknowledgement.
type rawProducer struct {
	pid   int64
	epoch int16
}

func initProducer(t *testing.T, cl *kgo.Client) rawProducer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrInitProducerIDRequest()
	req.TransactionTimeoutMillis = 60000
	resp, err := req.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		t.Fatalf("init producer id: %v", err)
	}
	return rawProducer{pid: resp.ProducerID, epoch: resp.ProducerEpoch}
}

// batch encodes values as one RecordBatch starting at sequence firstSeq.
func (p rawProducer) batch(firstSeq int32, values ...string) []byte {
	var recs []byte
	for i, v := range values {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte(v)}
		r.Length = int32(len(r.AppendTo(nil)) - 1) // small records: a one-byte length
		recs = r.AppendTo(recs)
	}
	now := time.Now().UnixMilli()
	b := kmsg.RecordBatch{
		PartitionLeaderEpoch: -1,
		Magic:                2,
		LastOffsetDelta:      int32(len(values) - 1),
		FirstTimestamp:       now,
		MaxTimestamp:         now,
		ProducerID:           p.pid,
		ProducerEpoch:        p.epoch,
		FirstSequence:        firstSeq,
		NumRecords:           int32(len(values)),
		Records:              recs,
	}
	raw := b.AppendTo(nil)
	binary.BigEndian.PutUint32(raw[8:12], uint32(len(raw)-12))
	binary.BigEndian.PutUint32(raw[17:21], crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return raw
}

// produce sends one batch to partition 0 of topic and returns the offset
// the broker reports for it and the error code.
func (p rawProducer) produce(t *testing.T, b *Broker, cl *kgo.Client, topic string, batch []byte) (int64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rt.TopicID = b.Cluster().TopicInfo(topic).TopicID // produce v13+ names topics by id
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		t.Fatalf("produce: %v", err)
	}
	part := resp.Topics[0].Partitions[0]
	return part.BaseOffset, kerr.ErrorForCode(part.ErrorCode)
}

// TestRetryAcrossACrashIsNotAppendedTwice kills the broker (by copying its
// data dir while it runs, which is what kill -9 leaves on disk) between
// appending a batch and the client seeing the acknowledgement. The client's
// retry on the restarted broker must get the original offset back, as from
// Apache Kafka, instead of being appended a second time.
func TestRetryAcrossACrashIsNotAppendedTwice(t *testing.T) {
	for _, tc := range []struct {
		name string
		// cleanRestartFirst restarts the broker cleanly after the first
		// batch, so the crashed broker's seq_windows.json is stale rather
		// than the empty one written at creation.
		cleanRestartFirst bool
	}{
		{name: "windows file from creation"},
		{name: "windows file from an earlier clean close", cleanRestartFirst: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const topic = "events"
			dir := t.TempDir()
			cfg := Config{Addr: "127.0.0.1:0", DataDir: filepath.Join(dir, "live"), Topics: map[string]int32{topic: 1}}
			b := startBroker(t, cfg)
			cl := newClient(t, b.Addr())
			p := initProducer(t, cl)

			if off, err := p.produce(t, b, cl, topic, p.batch(0, "v0", "v1", "v2")); err != nil || off != 0 {
				t.Fatalf("first batch: offset %d, %v", off, err)
			}
			if tc.cleanRestartFirst {
				cl.Close()
				b.Close()
				b = startBroker(t, cfg)
				cl = newClient(t, b.Addr())
			}
			retried := p.batch(3, "v3", "v4")
			if off, err := p.produce(t, b, cl, topic, retried); err != nil || off != 3 {
				t.Fatalf("second batch: offset %d, %v", off, err)
			}

			crashed := filepath.Join(dir, "crashed")
			if err := os.CopyFS(crashed, os.DirFS(cfg.DataDir)); err != nil {
				t.Fatal(err)
			}
			cl.Close()
			b.Close()

			cfg.DataDir = crashed
			b = startBroker(t, cfg)
			cl = newClient(t, b.Addr())
			if off, err := p.produce(t, b, cl, topic, retried); err != nil || off != 3 {
				t.Fatalf("retry of the second batch after the crash: offset %d, %v; want the original offset 3", off, err)
			}
			if off, err := p.produce(t, b, cl, topic, p.batch(5, "v5")); err != nil || off != 5 {
				t.Fatalf("next batch: offset %d, %v; want 5", off, err)
			}
			if _, err := p.produce(t, b, cl, topic, p.batch(9, "gap")); err != kerr.OutOfOrderSequenceNumber {
				t.Fatalf("batch after a sequence gap: %v, want %v", err, kerr.OutOfOrderSequenceNumber)
			}
			checkAll(t, consumeAll(t, b.Addr(), topic, 6), 6)
			// Nothing after v5: a duplicate would have been appended there.
			if hw := b.Cluster().PartitionInfo(topic, 0).HighWatermark; hw != 6 {
				t.Fatalf("high watermark %d, want 6", hw)
			}
		})
	}
}

// TestRebuildKeepsWindowsOfProducersGoneFromTheLog checks that a window
// whose batches are no longer in any segment (retention deleted them) is
// carried over from the old file as it was.
func TestRebuildKeepsWindowsOfProducersGoneFromTheLog(t *testing.T) {
	dir := t.TempDir()
	old := `{"version":1,"windows":[{"pid":77,"topic":"gone","partition":2,"entries":[{"first_seq":0,"next_seq":4,"offset":10}],"count":1,"at":1,"epoch":3,"seen":true,"next_seq":4}]}`
	for name, body := range map[string]string{"meta.json": `{"version":1}`, seqWindowsFile: old} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n, err := rebuildSequenceWindows(dir)
	if err != nil || n != 0 {
		t.Fatalf("rebuild: %d windows, %v", n, err)
	}
	got, err := os.ReadFile(filepath.Join(dir, seqWindowsFile))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"version":1,"windows":[%s]}`, old[len(`{"version":1,"windows":[`):len(old)-2]); string(got) != want {
		t.Fatalf("rewritten file:\n%s\nwant\n%s", got, want)
	}
}
