package lake_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// TestCheckpointAgeMetrics follows the published checkpoint age (links
// after the newest checkpoint, the largest over the partitions) through
// commits, a checkpoint write that fails, the one after it, and a resume by
// a fresh process.
func TestCheckpointAgeMetrics(t *testing.T) {
	ctx := t.Context()
	local := objstoretest.NewLocal(t)
	b := objstoretest.NewHookBucket(local)
	const table, src = "ck", "kafka:ck"
	reg := prometheus.NewRegistry()
	l := lake.NewCommitLog(b).WithCheckpointEvery(5).WithMetrics(lake.NewCheckpointMetrics(reg))

	ends := map[string]int64{}
	open := func(part string) {
		t.Helper()
		if _, err := l.Open(ctx, table, src, part, "w", func(context.Context) (lake.Genesis, error) {
			return lake.Genesis{At: lake.PositionOf(0), SourceID: "topic-1", Reason: "test"}, nil
		}); err != nil {
			t.Fatal(err)
		}
		ends[part] = 1
	}
	commit := func(part string, n int) {
		t.Helper()
		for range n {
			seq := ends[part]
			key := fmt.Sprintf("%s/dt=2024-05-01/hour=13/%s-%d.parquet", table, part, seq)
			body := []byte("parquet " + key)
			objstoretest.Put(t, local, key, body)
			rec := lake.CommitRecord{Table: table, Source: src, Partition: part, Seq: seq, Kind: lake.LinkData,
				First: lake.PositionOf(10 * (seq - 1)), Next: lake.PositionOf(10 * seq), SourceID: "topic-1", Records: 10, Writer: "w",
				Objects: []lake.CommittedObject{{Key: key, Kind: lake.KindRaw, Rows: 10, Size: int64(len(body)), Checksum: lake.Checksum(body)}}}
			if err := l.Commit(ctx, rec); err != nil {
				t.Fatal(err)
			}
			ends[part]++
		}
	}
	expect := func(reg *prometheus.Registry, age, ok, failed float64) {
		t.Helper()
		got := gathered(t, reg)
		want := map[string]float64{
			"sluice_lake_checkpoint_age_links{table=ck}":                  age,
			"sluice_lake_checkpoint_writes_total{outcome=ok,table=ck}":    ok,
			"sluice_lake_checkpoint_writes_total{outcome=error,table=ck}": failed,
		}
		for k, v := range want {
			if g, found := got[k]; !found || g != v {
				t.Errorf("%s = %v (found %v), want %v", k, g, found, v)
			}
		}
	}

	open("0")
	commit("0", 3) // links 0..3: the chain's next link is 4, no checkpoint yet
	expect(reg, 4, 0, 0)
	commit("0", 1) // link 4: a checkpoint at 5
	expect(reg, 0, 1, 0)
	commit("0", 2) // links 5, 6
	open("1")
	commit("1", 2) // partition 1: links 0..2, no checkpoint: 3 links
	expect(reg, 3, 1, 0)

	// The checkpoint at link 10 cannot be written: partition 0 ages past
	// the interval.
	b.Before = func(op, key string) error {
		if op == "put_if_absent" && strings.Contains(key, "/ckpt-") {
			return errors.New("injected: checkpoint write refused")
		}
		return nil
	}
	commit("0", 5) // links 7..11: the chain's next is 12, its checkpoint still at 5
	expect(reg, 7, 1, 1)
	b.Before = nil
	commit("0", 3) // links 12..14: a checkpoint at 15; partition 1 holds the maximum
	expect(reg, 3, 2, 1)

	// A fresh process resumes: from the checkpoint (partition 0) or the
	// whole chain (partition 1).
	reg2 := prometheus.NewRegistry()
	fresh := lake.NewCommitLog(local).WithCheckpointEvery(5).WithMetrics(lake.NewCheckpointMetrics(reg2))
	if end, found, err := fresh.Resume(ctx, table, src, "0"); err != nil || !found || end.Seq != 15 {
		t.Fatalf("resume 0 = %+v, %v, %v", end, found, err)
	}
	expect(reg2, 0, 0, 0)
	if end, found, err := fresh.Resume(ctx, table, src, "1"); err != nil || !found || end.Seq != 3 {
		t.Fatalf("resume 1 = %+v, %v, %v", end, found, err)
	}
	expect(reg2, 3, 0, 0)
}

// gathered returns every sample of reg as name{label=value,...} (labels
// sorted, as Gather returns them) to its value.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, lp := range m.GetLabel() {
				ls = append(ls, lp.GetName()+"="+lp.GetValue())
			}
			v := m.GetGauge().GetValue()
			if m.Counter != nil {
				v = m.GetCounter().GetValue()
			}
			out[mf.GetName()+"{"+strings.Join(ls, ",")+"}"] = v
		}
	}
	return out
}
