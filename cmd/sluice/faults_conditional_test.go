package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/faultproxy"
	"github.com/sluicehq/sluice/internal/kafkabroker"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// `sluice ingest` and `sluice aggregate` refuse to start on an S3 server
// that ignores conditional writes, naming the store; on one that honours
// them they start.
func TestRefuseStoreWithoutConditionalWrites(t *testing.T) {
	faultNoConditionalWrites(t, testkit.SluiceBinary(t), &faultTable{})
}

// faultNoConditionalWrites: the fault proxy plays an S3 server without
// conditional writes (If-None-Match and If-Match dropped). Every process
// that writes the lake or summaries must refuse to start with an error
// naming the store; with the proxy honest again, the same config works.
func faultNoConditionalWrites(t *testing.T, bin string, table *faultTable) {
	store, proxy := proxiedS3Store(t)
	cfg := objstoretest.S3Config(t)
	dir := t.TempDir()
	// A real broker, so that ingest gets past its Kafka check to the store.
	broker := kafkatest.StartBroker(t, kafkabroker.Config{DataDir: filepath.Join(dir, "kafka"),
		Topics: map[string]int32{testkit.SampleTable(t).Topic: 1}})
	config := filepath.Join(dir, "sluice.yaml")
	body := fmt.Sprintf(`kafka: {brokers: [%q]}
store:
%ssummary_store:
%s    prefix: summaries/
http: {addr: "127.0.0.1:0"}
aggregate: {interval: 500ms, lease: 4s, compact_every: -1s}
`, broker.Addr(), store.yaml, store.yaml)
	if err := os.WriteFile(config, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cs := testkit.NewProcs(t, dir)
	run := func(name string, args ...string) (code int, log string) {
		t.Helper()
		c, _, err := cs.Start(name, bin, false, args...)
		if err != nil {
			t.Fatal(err)
		}
		code, err = c.Stop(0, 30*time.Second) // signal 0: only wait for the exit
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		data, err := os.ReadFile(c.LogPath)
		if err != nil {
			t.Fatal(err)
		}
		return code, string(data)
	}

	proxy.IgnoreConditionalWrites(&faultproxy.Credentials{AccessKey: cfg.AccessKey, SecretKey: cfg.SecretKey, Region: cfg.Region})
	refused := 0
	for _, cmd := range [][]string{{"ingest"}, {"aggregate"}, {"aggregate", "--once"}} {
		name := strings.Join(cmd, "-") + "-no-conditional"
		code, log := run(name, append(cmd, "--config", config)...)
		switch {
		case code == 0:
			t.Errorf("sluice %s started on a store without conditional writes", strings.Join(cmd, " "))
		case !strings.Contains(log, "does not honour conditional writes") || !strings.Contains(log, proxy.Addr()):
			t.Errorf("sluice %s exited %d without naming the missing conditional writes and the store %s:\n%s",
				strings.Join(cmd, " "), code, proxy.Addr(), log)
		default:
			refused++
		}
	}
	stripped := proxy.Stats().Unconditional
	if stripped == 0 {
		t.Error("the proxy stripped no condition: the scenario proved nothing")
	}

	// The control: the same config on an honest server.
	proxy.IgnoreConditionalWrites(nil)
	if code, log := run("aggregate-once-conditional", "aggregate", "--once", "--config", config); code != 0 {
		t.Errorf("sluice aggregate --once on a store that honours conditional writes exited %d:\n%s", code, log)
	}
	row := faultRow{scenario: "s3 without conditional writes", faults: fmt.Sprintf("If-None-Match/If-Match dropped (%d writes); %d of 3 commands refused to start", stripped, refused),
		wrong: "-", verdict: "ok"}
	if t.Failed() {
		row.verdict = "FAILED"
	}
	table.add(row)
}
