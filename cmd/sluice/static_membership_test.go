package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// With kafka.instance_id, an ingester killed with SIGKILL and restarted
// under the same id gets its partitions back at once; without it the group
// waits out the dead member's session (45 s by default).
func TestStaticMembershipRestartAfterKill(t *testing.T) {
	bin := testkit.SluiceBinary(t)
	dir := t.TempDir()
	cs := testkit.NewProcs(t, dir)
	_, addr, err := cs.Start("broker", bin, true, "broker", "--addr", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "kafka"), "--topic", "events:4")
	if err != nil {
		t.Fatal(err)
	}
	lakeDir := filepath.Join(dir, "lake")
	cfg := filepath.Join(dir, "sluice.yaml")
	body := fmt.Sprintf("kafka: {brokers: [%q], group: static, instance_id: ingest-0}\nstore: {local_dir: %q}\nhttp: {addr: \"127.0.0.1:0\"}\ningest: {flush_interval: 200ms}\n", addr, lakeDir)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic("events"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	produce := func(n int) {
		for i := range n {
			v := fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d","user_id":"u","event_type":"click","amount":1,"latency_ms":1,"ok":true}`, time.Now().UTC().Format(time.RFC3339Nano), i)
			if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: v}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}
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
			n += r.Records
		}
		return n
	}
	waitFor := func(want int64, within time.Duration) time.Duration {
		start := time.Now()
		for time.Since(start) < within {
			if committed() >= want {
				return time.Since(start)
			}
			time.Sleep(100 * time.Millisecond)
		}
		cs.PrintTails(20)
		t.Fatalf("only %d of %d records committed within %s", committed(), want, within)
		return 0
	}

	first, _, err := cs.Start("ingest-1", bin, false, "ingest", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	produce(200)
	waitFor(200, 30*time.Second)
	if _, err := first.Stop(syscall.SIGKILL, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	produce(200)
	second, _, err := cs.Start("ingest-2", bin, false, "ingest", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	took := waitFor(400, 15*time.Second)
	t.Logf("restarted member committed new records %s after its start", took.Round(10*time.Millisecond))
	if code, err := second.Stop(syscall.SIGTERM, 30*time.Second); err != nil || code != 0 {
		t.Fatalf("graceful stop: exit %d, %v", code, err)
	}
}
