package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sluicehq/sluice/internal/kafkabroker"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// TestIngestKafkaSASLFromConfig runs `sluice ingest` (in process) against a
// broker that requires SCRAM: the password comes from the environment
// through sluice.yaml, the records are committed, and the password appears
// nowhere in the debug log.
func TestIngestKafkaSASLFromConfig(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a broker and the ingester")
	}
	const user, password = "sluice-ingest", "pw-4b1d9e-not-in-logs"
	b := kafkatest.StartBroker(t, kafkabroker.Config{Topics: map[string]int32{"events": 2},
		SASLUsers: []kafkabroker.SASLUser{{Mechanism: kafkabroker.SASLScramSHA512, User: user, Password: password}}})
	t.Setenv("SLUICE_TEST_KAFKA_PASSWORD", password)

	dir := t.TempDir()
	lakeDir := filepath.Join(dir, "lake")
	cfgPath := filepath.Join(dir, "sluice.yaml")
	body := fmt.Sprintf(`kafka:
  brokers: [%q]
  group: secure
  session_timeout: 6s
  rebalance_timeout: 2s
  sasl:
    mechanism: SCRAM-SHA-512
    username: %s
    password: ${SLUICE_TEST_KAFKA_PASSWORD}
store: {local_dir: %q}
http: {addr: "127.0.0.1:0"}
ingest: {flush_interval: 200ms}
`, b.Addr(), user, lakeDir)
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(b.Addr()), kgo.DefaultProduceTopic("events"),
		kgo.SASL(scram.Auth{User: user, Pass: password}.AsSha512Mechanism()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const n = 300
	for i := range n {
		v := fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d","user_id":"u","event_type":"click","amount":1,"latency_ms":1,"ok":true}`,
			time.Now().UTC().Format(time.RFC3339Nano), i)
		cl.Produce(context.Background(), &kgo.Record{Value: v}, nil)
	}
	if err := cl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr lockedBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--log-level", "debug", "ingest", "--config", cfgPath}, &stdout, &stderr)
	}()
	deadline := time.Now().Add(30 * time.Second)
	var got int64
	for time.Now().Before(deadline) && got < n {
		time.Sleep(100 * time.Millisecond)
		got = 0
		if lb, err := objstore.NewLocal(lakeDir); err == nil {
			recs, _ := lake.NewCommitLog(lb).Records(context.Background(), "events")
			for _, r := range recs {
				got += r.Records
			}
		}
		select {
		case code := <-done:
			t.Fatalf("ingest exited with %d before committing:\n%s", code, stderr.String())
		default:
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Fatalf("ingest exit code %d:\n%s", code, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("ingest did not stop within 60s")
	}
	if got != n {
		t.Fatalf("committed %d of %d records", got, n)
	}
	if out := stdout.String() + stderr.String(); strings.Contains(out, password) {
		t.Fatal("the SASL password appears in the output")
	}
}

// lockedBuffer is a bytes.Buffer safe for the logger's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
