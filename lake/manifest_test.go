package lake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/lake/laketest"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// LinksSince returns exactly the links after the marks, finds partitions
// the marks do not know, stops at a missing link, and costs one listing per
// partition and one read per new link.
func TestLinksSince(t *testing.T) {
	ctx := t.Context()
	b := laketest.NewCountingBucket(objstoretest.NewLocal(t))
	l := lake.NewCommitLog(b)
	compFixture(t, b, l, []string{"0", "1", "2"}, 5)
	chains, err := l.Chains(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	marks := lake.MarkChains(chains)
	if len(marks) != 3 || marks[1].Seq != 5 || !marks[1].HasData {
		t.Fatalf("marks %+v", marks)
	}
	// Two new links on partition 1, none on 0 and 2, a new partition 3 with
	// a genesis and one link, and on partition 2 a link beyond a gap.
	commit := func(p string, seq int64) {
		t.Helper()
		key := fmt.Sprintf("%snew-%s-%d.parquet", lake.RawHourPrefix("t", compHour), p, seq)
		put(t, b, key, []byte("raw"))
		rec := lake.CommitRecord{Table: "t", Source: "kafka:e", Partition: p, Seq: seq, Kind: lake.LinkData,
			First: lake.PositionOf((seq - 1) * 10), Next: lake.PositionOf(seq * 10), Records: 10, Writer: "w1",
			Objects: []lake.CommittedObject{{Key: key, Kind: lake.KindRaw, Rows: 10, Size: 3, Checksum: lake.Checksum([]byte("raw")),
				MinEventTimeMicros: compHour.UnixMicro(), MaxEventTimeMicros: compHour.Add(time.Minute).UnixMicro()}}}
		if err := l.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	commit("1", 6)
	commit("1", 7)
	if _, err := l.Open(ctx, "t", "kafka:e", "3", "w1", func(context.Context) (lake.Genesis, error) { return lake.Genesis{}, nil }); err != nil {
		t.Fatal(err)
	}
	commit("3", 1)
	gap := lake.CommitRecord{Table: "t", Source: "kafka:e", Partition: "2", Seq: 7, Kind: lake.LinkGap, Version: lake.CommitRecordVersion,
		First: lake.PositionOf(60), Next: lake.PositionOf(70), Writer: "w1", Objects: []lake.CommittedObject{}}
	data, _ := json.Marshal(gap)
	if err := b.PutIfAbsent(ctx, lake.RecordKey(gap), data); err != nil {
		t.Fatal(err)
	}

	b.Counts()
	fresh, err := lake.NewCommitLog(b).LinksSince(ctx, "t", marks) // a new process: nothing cached
	if err != nil {
		t.Fatal(err)
	}
	calls := b.Counts()
	var got []string
	for _, c := range fresh {
		for _, r := range c.Records {
			got = append(got, fmt.Sprintf("%s/%d", r.Partition, r.Seq))
		}
	}
	if want := []string{"1/6", "1/7", "3/0", "3/1"}; !slices.Equal(got, want) {
		t.Fatalf("new links %v, want %v", got, want)
	}
	// 0, 1, 2: one listing each, plus the first; 3 is read whole (one
	// listing, three reads: its move marker and two links) and one
	// listing ends the walk. Reads: the new links of 1 and the chain of 3.
	if calls["list"] > 6 || calls["get"] != 5 {
		t.Errorf("calls %v, want at most 6 listings and 5 reads", calls)
	}

	// Marks moved over the new links see nothing more.
	for _, c := range fresh {
		i := slices.IndexFunc(marks, func(m lake.ChainMark) bool { return m.Partition == c.Partition })
		if i < 0 {
			marks = append(marks, lake.ChainMark{Source: c.Source, Partition: c.Partition, Seq: -1})
			i = len(marks) - 1
		}
		for _, r := range c.Records {
			marks[i].Advance(r)
		}
	}
	again, err := l.LinksSince(ctx, "t", marks)
	if err != nil || len(again) != 0 {
		t.Fatalf("after moving the marks: %+v, %v", again, err)
	}
}

// Hour manifests are unions: adding links twice, or from several writers at
// once, keeps each object once and loses none; the live objects of an hour
// are its inputs with the hour's compaction records applied.
func TestHourManifests(t *testing.T) {
	ctx := t.Context()
	b := objstoretest.NewLocal(t)
	l := lake.NewCommitLog(b)
	compFixture(t, b, l, []string{"0", "1", "2", "3"}, 3)
	chains, err := l.Chains(ctx, "t")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, len(chains)*2)
	for i, c := range chains {
		for j := range 2 { // each partition's links added twice, all at once
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[2*i+j] = lake.NewCommitLog(b).AddToHourManifests(ctx, "t", c.Records)
			}()
		}
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	m, found, err := l.HourManifest(ctx, "t", compHour)
	if err != nil || !found {
		t.Fatalf("manifest: found %t, %v", found, err)
	}
	if len(m.Inputs) != 12 {
		t.Fatalf("manifest holds %d inputs, want 12 (4 partitions x 3 links)", len(m.Inputs))
	}
	want, _, _ := liveKeys(t, l)
	got, err := l.HourLiveObjects(ctx, m, time.Time{})
	if err != nil || len(got) != len(want) {
		t.Fatalf("live from the manifest: %d objects, want %d (%v)", len(got), len(want), err)
	}

	// Compact three objects: the manifest's live view follows.
	var keys []string
	for _, o := range want[:3] {
		keys = append(keys, o.Key)
	}
	if _, err := l.CommitCompaction(ctx, compaction(t, b, want, keys...)); err != nil {
		t.Fatal(err)
	}
	want, _, _ = liveKeys(t, l)
	got, err = lake.NewCommitLog(b).HourLiveObjects(ctx, m, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	key := func(o lake.LiveObject) string { return o.Key }
	if !slices.Equal(mapSlice(got, key), mapSlice(want, key)) {
		t.Fatalf("live from the manifest after compaction:\n%v\nwant\n%v", mapSlice(got, key), mapSlice(want, key))
	}
	// Retired hours have no live objects.
	if got, err := l.HourLiveObjects(ctx, m, compHour.Add(time.Hour)); err != nil || len(got) != 0 {
		t.Fatalf("retired hour: %d live objects, %v", len(got), err)
	}
}

func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, len(in))
	for i, v := range in {
		out[i] = f(v)
	}
	return out
}

// A chain younger than its first checkpoint resumes from its genesis by
// listing link names and reading the first and last link, not every link.
func TestResumeYoungChain(t *testing.T) {
	ctx := t.Context()
	b := laketest.NewCountingBucket(objstoretest.NewLocal(t))
	compFixture(t, b, lake.NewCommitLog(b), []string{"0"}, 300)
	b.Counts()
	end, found, err := lake.NewCommitLog(b).Resume(ctx, "t", "kafka:e", "0")
	calls := b.Counts()
	if err != nil || !found || end.Seq != 301 || end.Next != lake.PositionOf(3000) || !end.Genesis {
		t.Fatalf("resume: %+v %t %v", end, found, err)
	}
	if calls["list"]+calls["get"] > 4 {
		t.Errorf("resume of a 301-link chain without checkpoint: calls %v, want at most 4", calls)
	}
}
