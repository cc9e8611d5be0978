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

	"github.com/sluicehq/sluice/lake"
)

// A committed object whose bytes are not what its record vouches for (same
// size, one byte changed: a store that answers wrongly, a bad disk, an
// overwrite) is refused by the aggregator with an error naming it, never
// folded into a summary.
func TestAggregatorRefusesAnObjectThatDoesNotMatchItsRecord(t *testing.T) {
	tbl := sampleTable(t)
	raw, summaries := newLocal(t), newLocal(t)
	ctx := context.Background()
	base := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	f := newFeeder(t, raw, 1)
	f.add(2000, base, base.Add(50*time.Minute))
	f.commit()
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
	f.add(10, base.Add(2*time.Hour), base.Add(2*time.Hour+time.Minute))
	f.commit()
	_, err = svc.RunOnce(ctx, tbl)
	if !errors.Is(err, lake.ErrObjectMismatch) || !strings.Contains(err.Error(), victim.Key) {
		t.Fatalf("run over a tampered object: err = %v, want ErrObjectMismatch naming %s", err, victim.Key)
	}
	if objs := listObjects(t, summaries, tbl.Name+"/"); len(objs) != 0 {
		t.Errorf("summaries were written from a tampered object: %d objects", len(objs))
	}
}
