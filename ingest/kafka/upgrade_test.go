package kafka

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// testdata/v1lake was written by the previous release's writer (commit
// records of version 1, keyed by first offset): two partitions of the
// events table, offsets [0, 120) each in three links, one malformed record
// per link. The new binary must read it and extend it: its chains go on
// where the old ones end, and nothing committed before is ingested again.
func TestLakeOfThePreviousVersionIsReadAndExtended(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/v1lake")); err != nil {
		t.Fatal(err)
	}
	b, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, part := range []string{"0", "1"} {
		for off := range 120 {
			if off%40 != 39 {
				want[fmt.Sprintf("v1-%s-%d", part, off)] = true
			}
		}
	}
	checkIDs(t, want, committedIDs(t, b)) // the old lake reads as it was written

	c := kafkatest.NewCluster(t, testTopic, 2)
	// Offsets [0, 120) of each partition are the ones the old chains hold.
	produceIDs(t, c.ListenAddrs(), testTopic, "already-ingested", 240)
	want = union(want, produceIDs(t, c.ListenAddrs(), testTopic, "after-upgrade", 300))
	src := startSource(t, c.ListenAddrs(), "g", b, ingest.WriterConfig{FlushRecords: 50, FlushInterval: 50 * time.Millisecond}, newProcMetrics(prometheus.NewRegistry()))
	waitIDs(t, b, want, 30*time.Second)
	src.stop(t)
	checkIDs(t, want, committedIDs(t, b))

	for _, p := range []string{"0", "1"} {
		chain := chainOf(t, b, p)
		if len(chain.Anomalies) > 0 {
			t.Errorf("partition %s: anomalies %+v", p, chain.Anomalies)
		}
		if len(chain.Records) < 5 {
			t.Fatalf("partition %s: %d links, want 3 old, a genesis and new data", p, len(chain.Records))
		}
		g := chain.Records[3]
		if chain.Records[0].Version != 1 || chain.Records[2].Version != 1 || g.Kind != lake.LinkGenesis || g.Seq != 3 || g.First != lake.PositionOf(120) {
			t.Errorf("partition %s: links 0-3 = %+v", p, chain.Records[:4])
		}
		for i, r := range chain.Records {
			if r.Seq != int64(i) {
				t.Errorf("partition %s: link %d numbered %d", p, i, r.Seq)
			}
		}
	}
}
