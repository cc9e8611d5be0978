package aggregate_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A committed object whose bytes are not what its record vouches for (same
// size, one byte changed: a store that answers wrongly, a bad disk, an
// overwrite) is refused by the aggregator with an error naming it, never
// folded into a summary; the windows it feeds are skipped and counted, and
// the rest of the table is summarised all the same.
func TestAggregatorRefusesAnObjectThatDoesNotMatchItsRecord(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw, summaries := objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	ctx := context.Background()
	base := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	f := newFeeder(t, raw, 1)
	f.add(2000, base, base.Add(50*time.Minute))
	f.Commit()
	live, err := lake.NewCommitLog(raw).LiveObjects(ctx, tbl.Name)
	if err != nil || len(live) == 0 {
		t.Fatalf("live objects: %v, %v", live, err)
	}
	victim := live[0]
	path := filepath.Join(raw.Dir(), filepath.FromSlash(victim.Key))
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 0xff // same size, other bytes
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	svc := newService(t, raw, summaries, "a", prometheus.NewRegistry())
	// The watermark needs a later event to close the windows.
	f.add(200, base.Add(2*time.Hour), base.Add(2*time.Hour+10*time.Minute))
	f.Commit()
	_, err = svc.RunOnce(ctx, tbl)
	if !errors.Is(err, lake.ErrObjectMismatch) || !errors.Is(err, aggregate.ErrBadObject) || !strings.Contains(err.Error(), victim.Key) {
		t.Fatalf("run over a tampered object: err = %v, want ErrObjectMismatch naming %s", err, victim.Key)
	}
	objs := listObjects(t, summaries, tbl.Name+"/")
	for key := range objs {
		if strings.Contains(key, "dt=2026-02-01/hour=10") || strings.Contains(key, "/1h/") || strings.Contains(key, "/1d/") {
			t.Errorf("%s was written, though it is built from the tampered object's hour", key)
		}
	}
	if _, ok := objs[tbl.Name+"/1m/dt=2026-02-01/hour=12.parquet"]; !ok {
		t.Errorf("the hour without bad data was not summarised: %v", keys(objs))
	}

	// The run cursor moved on, but the skipped hours are looked at again
	// by every run, and summarised once the object is repaired.
	if _, err = svc.RunOnce(ctx, tbl); !errors.Is(err, aggregate.ErrBadObject) {
		t.Fatalf("second run over the tampered object: err = %v, want ErrBadObject", err)
	}
	data[len(data)/2] ^= 0xff
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err = svc.RunOnce(ctx, tbl); err != nil {
		t.Fatalf("run after the repair: %v", err)
	}
	objs = listObjects(t, summaries, tbl.Name+"/")
	for _, key := range []string{"/1m/dt=2026-02-01/hour=10.parquet", "/1h/dt=2026-02-01/day.parquet"} {
		if _, ok := objs[tbl.Name+key]; !ok {
			t.Errorf("%s was not written after the repair: %v", key, keys(objs))
		}
	}
	checkAgainstRaw(t, tbl, raw, summaries, nil)
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
