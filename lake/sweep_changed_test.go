package lake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A sweep with a cursor deletes an old orphan, but not while a link after
// the cursor does not continue its chain (a link beyond a gap may name it
// and be repaired); committed objects stay throughout.
func TestSweepChangedHoldsOrphansWhileAChainIsBroken(t *testing.T) {
	ctx := context.Background()
	raw := objstoretest.NewLocal(t)
	const table, src = "swc", "kafka:events"
	hour := time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC)
	l := lake.NewCommitLog(raw)
	if _, err := l.Open(ctx, table, src, "0", "w", func(context.Context) (lake.Genesis, error) {
		return lake.Genesis{SourceID: "topic-1"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	var committed []string
	link := func(seq int64) lake.CommitRecord {
		body := fmt.Appendf(nil, "parquet %d", seq)
		key := fmt.Sprintf("%s0-%d.parquet", lake.RawHourPrefix(table, hour), seq)
		objstoretest.Put(t, raw, key, body)
		return lake.CommitRecord{Table: table, Source: src, Partition: "0", Seq: seq, Kind: lake.LinkData,
			First: lake.PositionOf((seq - 1) * 10), Next: lake.PositionOf(seq * 10), SourceID: "topic-1", Records: 10, Writer: "w",
			Objects: []lake.CommittedObject{{Key: key, Kind: lake.KindRaw, Rows: 10, Size: int64(len(body)), Checksum: lake.Checksum(body),
				MinEventTimeMicros: hour.UnixMicro(), MaxEventTimeMicros: hour.UnixMicro()}}}
	}
	for seq := int64(1); seq <= 2; seq++ {
		rec := link(seq)
		if err := l.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		committed = append(committed, rec.Objects[0].Key)
	}
	exists := func(key string) bool {
		_, err := raw.Attributes(ctx, key)
		if err != nil && !objstore.IsNotExist(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	sweeps := 0
	sweep := func() lake.SweepReport {
		t.Helper()
		sweeps++
		s, err := lake.NewSweeper(lake.SweepConfig{Grace: time.Hour}, raw, nil, "t", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		s.WithClock(func() time.Time { return time.Now().Add(time.Duration(2*sweeps) * time.Hour) })
		rep, err := s.Sweep(ctx, table, lake.TableRetention{}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	sweep() // the first: the whole table, and the cursor

	// A link beyond a gap (seq 4 with no 3), written by hand as a broken
	// repair would, and an orphan it names.
	stray := link(4)
	stray.Version, stray.CommittedAt = lake.CommitRecordVersion, time.Now().UTC()
	data, err := json.Marshal(stray)
	if err != nil {
		t.Fatal(err)
	}
	objstoretest.Put(t, raw, lake.LinkKey(table, src, "0", 4), data)
	orphan := lake.RawHourPrefix(table, hour) + "killed-flush.parquet"
	objstoretest.Put(t, raw, orphan, []byte("left behind"))

	for range 3 {
		if rep := sweep(); len(rep.Items) != 0 {
			t.Fatalf("a sweep deleted %v while a link after the cursor does not continue its chain", rep.Items)
		}
	}
	if !exists(orphan) || !exists(stray.Objects[0].Key) {
		t.Fatal("an object was deleted while the chain is broken")
	}

	// The stray link removed, the orphans go (the slow pass lists the hour).
	if err := raw.Delete(ctx, lake.LinkKey(table, src, "0", 4)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		sweep()
	}
	if exists(orphan) || exists(stray.Objects[0].Key) {
		t.Error("the orphans are still there after the chain was repaired")
	}
	for _, k := range committed {
		if !exists(k) {
			t.Errorf("the committed %s was deleted", k)
		}
	}
}
