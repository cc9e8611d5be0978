package laketest

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// CommitLogTest checks the commit log on b. It uses tables named "cl_*" and
// nothing else, so b may hold other data.
func CommitLogTest(t *testing.T, b objstore.Bucket) {
	ctx := t.Context()
	const src = "kafka:events"

	// link builds a record of [first, next) with one raw object (written to
	// the bucket, as a flush would) and optionally a dead-letter object.
	link := func(t *testing.T, table, source, part string, first, next int64, writer string, dead bool) lake.CommitRecord {
		t.Helper()
		raw := fmt.Sprintf("%s/dt=2024-05-01/hour=13/%s-%s-%d-%s.parquet", table, sanitize(source), sanitize(part), first, writer)
		objstoretest.Put(t, b, raw, []byte("parquet bytes"))
		rec := lake.CommitRecord{
			Table: table, Source: source, Partition: part, FirstOffset: first, NextOffset: next,
			Records: next - first, Writer: writer,
			Objects: []lake.CommittedObject{{Key: raw, Kind: lake.KindRaw, Rows: next - first, Size: 13}},
		}
		if dead {
			dl := fmt.Sprintf("%s%s/dt=2024-05-01/hour=13/%s-%d.jsonl", lake.DeadLetterRoot, table, sanitize(part), first)
			objstoretest.Put(t, b, dl, []byte("{}\n"))
			rec.Objects[0].Rows--
			rec.Records--
			rec.DeadLetters = 1
			rec.Objects = append(rec.Objects, lake.CommittedObject{Key: dl, Kind: lake.KindDeadLetter, Rows: 1, Size: 3})
		}
		return rec
	}

	t.Run("chain and resume", func(t *testing.T) {
		log := lake.NewCommitLog(b)
		if _, found, err := log.Resume(ctx, "cl_chain", src, "0"); err != nil || found {
			t.Fatalf("resume of an empty partition = found %v, %v; want not found", found, err)
		}
		bounds := []int64{100, 110, 125, 140}
		for i := range len(bounds) - 1 {
			if err := log.Commit(ctx, link(t, "cl_chain", src, "0", bounds[i], bounds[i+1], "w1", i == 1)); err != nil {
				t.Fatalf("commit %d: %v", i, err)
			}
		}
		// A fresh log reads the bucket, not the first one's memory.
		fresh := lake.NewCommitLog(b)
		next, found, err := fresh.Resume(ctx, "cl_chain", src, "0")
		if err != nil || !found || next != 140 {
			t.Fatalf("resume = %d, %v, %v; want 140, true", next, found, err)
		}
		recs, err := fresh.Records(ctx, "cl_chain")
		if err != nil {
			t.Fatal(err)
		}
		if got := firstOffsets(recs); !slices.Equal(got, []int64{100, 110, 125}) {
			t.Errorf("records start at %v, want [100 110 125]", got)
		}
		if recs[1].DeadLetters != 1 || recs[1].Version != lake.CommitRecordVersion || recs[1].CommittedAt.IsZero() {
			t.Errorf("record 1 = %+v, want 1 dead letter, version and time filled in", recs[1])
		}
	})

	t.Run("conflicting writers", func(t *testing.T) {
		a, c := lake.NewCommitLog(b), lake.NewCommitLog(b)
		if err := a.Commit(ctx, link(t, "cl_conflict", src, "0", 0, 10, "a", false)); err != nil {
			t.Fatal(err)
		}
		// Both resume at 10 and both try to commit the next link.
		for _, l := range []*lake.CommitLog{a, c} {
			if next, _, err := l.Resume(ctx, "cl_conflict", src, "0"); err != nil || next != 10 {
				t.Fatalf("resume = %d, %v; want 10", next, err)
			}
		}
		if err := a.Commit(ctx, link(t, "cl_conflict", src, "0", 10, 20, "a", false)); err != nil {
			t.Fatalf("first writer: %v", err)
		}
		err := c.Commit(ctx, link(t, "cl_conflict", src, "0", 10, 25, "c", false))
		if !errors.Is(err, lake.ErrCommitConflict) || !errors.Is(err, objstore.ErrExists) {
			t.Fatalf("second writer: err = %v, want ErrCommitConflict and ErrExists", err)
		}
		// The loser carrying on from its own end is refused too.
		if err := c.Commit(ctx, link(t, "cl_conflict", src, "0", 25, 30, "c", false)); !errors.Is(err, lake.ErrCommitConflict) {
			t.Fatalf("loser continuing: err = %v, want ErrCommitConflict", err)
		}
		if next, _, _ := c.Resume(ctx, "cl_conflict", src, "0"); next != 20 {
			t.Errorf("after the conflict resume = %d, want 20", next)
		}
	})

	t.Run("commit race has one winner", func(t *testing.T) {
		const writers = 8
		base := lake.NewCommitLog(b)
		if err := base.Commit(ctx, link(t, "cl_race", src, "1", 0, 5, "base", false)); err != nil {
			t.Fatal(err)
		}
		recs := make([]lake.CommitRecord, writers)
		for w := range writers {
			recs[w] = link(t, "cl_race", src, "1", 5, int64(10+w), fmt.Sprintf("w%d", w), false)
		}
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() { errs[w] = lake.NewCommitLog(b).Commit(ctx, recs[w]) })
		}
		wg.Wait()
		winners := 0
		winnerNext := int64(-1)
		for w, err := range errs {
			switch {
			case err == nil:
				winners++
				winnerNext = recs[w].NextOffset
			case !errors.Is(err, lake.ErrCommitConflict):
				t.Errorf("writer %d: %v, want ErrCommitConflict", w, err)
			}
		}
		if winners != 1 {
			t.Fatalf("%d winners, want 1", winners)
		}
		if next, _, _ := lake.NewCommitLog(b).Resume(ctx, "cl_race", src, "1"); next != winnerNext {
			t.Errorf("resume = %d, want the winner's %d", next, winnerNext)
		}
	})

	t.Run("re-committing the same record is a no-op", func(t *testing.T) {
		l := lake.NewCommitLog(b)
		rec := link(t, "cl_idem", src, "0", 0, 10, "w", false)
		rec.CommittedAt = time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC)
		if err := l.Commit(ctx, rec); err != nil {
			t.Fatal(err)
		}
		again := rec
		again.CommittedAt = again.CommittedAt.Add(time.Minute) // a retry stamps a new time
		for _, l := range []*lake.CommitLog{l, lake.NewCommitLog(b)} {
			if err := l.Commit(ctx, again); err != nil {
				t.Errorf("same record again: %v", err)
			}
		}
		other := rec
		other.Writer = "someone else"
		if err := lake.NewCommitLog(b).Commit(ctx, other); !errors.Is(err, lake.ErrCommitConflict) {
			t.Errorf("another writer's record at the same offset: err = %v, want ErrCommitConflict", err)
		}
	})

	t.Run("a record must start at the chain end", func(t *testing.T) {
		l := lake.NewCommitLog(b)
		if err := l.Commit(ctx, link(t, "cl_gap", src, "0", 0, 10, "w", false)); err != nil {
			t.Fatal(err)
		}
		for _, first := range []int64{11, 5} {
			err := lake.NewCommitLog(b).Commit(ctx, link(t, "cl_gap", src, "0", first, first+10, "w", false))
			if !errors.Is(err, lake.ErrCommitConflict) || errors.Is(err, objstore.ErrExists) {
				t.Errorf("commit at %d: err = %v, want ErrCommitConflict without ErrExists", first, err)
			}
		}
		if keys := objstoretest.ListKeys(t, b, lake.CommitPrefix("cl_gap")); len(keys) != 1 {
			t.Errorf("commit keys = %q, want only the first record", keys)
		}
	})

	t.Run("invalid records are refused", func(t *testing.T) {
		l := lake.NewCommitLog(b)
		good := link(t, "cl_invalid", src, "0", 0, 10, "w", false)
		for _, tc := range []struct {
			name   string
			mutate func(*lake.CommitRecord)
		}{
			{"empty table", func(r *lake.CommitRecord) { r.Table = "" }},
			{"table with slash", func(r *lake.CommitRecord) { r.Table = "a/b" }},
			{"reserved table", func(r *lake.CommitRecord) { r.Table = "_sluice" }},
			{"source with slash", func(r *lake.CommitRecord) { r.Source = "kafka/x" }},
			{"dot-dot partition", func(r *lake.CommitRecord) { r.Partition = ".." }},
			{"empty range", func(r *lake.CommitRecord) { r.NextOffset = r.FirstOffset }},
			{"negative offset", func(r *lake.CommitRecord) { r.FirstOffset = -5 }},
			{"future version", func(r *lake.CommitRecord) { r.Version = 99 }},
			{"object without key", func(r *lake.CommitRecord) { r.Objects[0].Key = "" }},
			{"object of another table", func(r *lake.CommitRecord) { r.Objects[0].Key = "other/dt=2024-05-01/hour=13/x.parquet" }},
			{"unknown kind", func(r *lake.CommitRecord) { r.Objects[0].Kind = "summary" }},
			{"row count mismatch", func(r *lake.CommitRecord) { r.Records++ }},
			{"object twice", func(r *lake.CommitRecord) { r.Objects = append(r.Objects, r.Objects[0]); r.Records *= 2 }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rec := good
				rec.Objects = slices.Clone(good.Objects)
				tc.mutate(&rec)
				if err := l.Commit(ctx, rec); !errors.Is(err, lake.ErrInvalidCommit) {
					t.Errorf("err = %v, want ErrInvalidCommit", err)
				}
			})
		}
		if keys := objstoretest.ListKeys(t, b, lake.CommitPrefix("cl_invalid")); len(keys) != 0 {
			t.Errorf("invalid records were written: %q", keys)
		}
	})

	t.Run("garbage and off-chain records are ignored", func(t *testing.T) {
		const table, part = "cl_garbage", "2"
		l := lake.NewCommitLog(b)
		for _, r := range [][2]int64{{10, 20}, {20, 30}, {30, 40}} {
			if err := l.Commit(ctx, link(t, table, src, part, r[0], r[1], "w", false)); err != nil {
				t.Fatal(err)
			}
		}
		prefix := lake.PartitionCommitPrefix(table, src, part)
		raw := func(first, next int64, key string) []byte {
			rec := link(t, table, src, part, first, next, "zombie", false)
			rec.Version = lake.CommitRecordVersion
			data, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if key == "" {
				key = lake.CommitKey(table, src, part, first)
			}
			if err := b.PutIfAbsent(ctx, key, data); err != nil {
				t.Fatal(err)
			}
			return data
		}
		objstoretest.Put(t, b, prefix+"00000000000000000050.json", []byte("{not json"))
		objstoretest.Put(t, b, prefix+"README.txt", []byte("hello"))
		raw(15, 35, "")                                 // overlaps the chain (a zombie writer)
		raw(60, 70, "")                                 // beyond a gap
		raw(40, 45, prefix+"00000000000000000041.json") // content of another key
		objstoretest.Put(t, b, lake.PartitionCommitPrefix(table, src, part+"/nested")+"00000000000000000040.json",
			[]byte("{}")) // another partition ("2/nested"), not garbage of "2"

		fresh := lake.NewCommitLog(b)
		chain, err := fresh.Chain(ctx, table, src, part)
		if err != nil {
			t.Fatal(err)
		}
		if end, ok := chain.End(); !ok || end != 40 {
			t.Errorf("chain end = %d, %v; want 40", end, ok)
		}
		if got := firstOffsets(chain.Records); !slices.Equal(got, []int64{10, 20, 30}) {
			t.Errorf("chain starts at %v, want [10 20 30]", got)
		}
		if len(chain.Anomalies) != 5 {
			t.Errorf("anomalies = %+v, want 5 (bad json, bad name, overlap, gap, wrong key)", chain.Anomalies)
		}
		if next, found, err := fresh.Resume(ctx, table, src, part); err != nil || !found || next != 40 {
			t.Errorf("resume = %d, %v, %v; want 40", next, found, err)
		}
		recs, err := fresh.Records(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		if got := firstOffsets(recs); !slices.Equal(got, []int64{10, 20, 30}) {
			t.Errorf("records start at %v, want [10 20 30]", got)
		}
		// The chain goes on past the garbage.
		if err := fresh.Commit(ctx, link(t, table, src, part, 40, 50, "w", false)); err != nil {
			t.Errorf("commit after garbage: %v", err)
		}
	})

	t.Run("records of many partitions, tables", func(t *testing.T) {
		const table = "cl_multi"
		l := lake.NewCommitLog(b)
		type part struct{ source, partition string }
		// Committed in scrambled order; Records sorts.
		for _, p := range []part{{"kafka:b", "0"}, {"kafka:a", "10"}, {"kafka:a", "1"}, {"inbox:drop", "in/2024/f.jsonl"}} {
			for _, r := range [][2]int64{{0, 3}, {3, 7}} {
				if err := l.Commit(ctx, link(t, table, p.source, p.partition, r[0], r[1], "w", false)); err != nil {
					t.Fatal(err)
				}
			}
		}
		recs, err := lake.NewCommitLog(b).Records(ctx, table)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range recs {
			got = append(got, fmt.Sprintf("%s|%s|%d", r.Source, r.Partition, r.FirstOffset))
		}
		want := []string{
			"inbox:drop|in/2024/f.jsonl|0", "inbox:drop|in/2024/f.jsonl|3",
			"kafka:a|1|0", "kafka:a|1|3", "kafka:a|10|0", "kafka:a|10|3",
			"kafka:b|0|0", "kafka:b|0|3",
		}
		if !slices.Equal(got, want) {
			t.Errorf("records =\n %q\nwant\n %q", got, want)
		}
		if next, _, _ := l.Resume(ctx, table, "kafka:a", "1"); next != 7 {
			t.Errorf("resume kafka:a/1 = %d, want 7", next)
		}
		tables, err := l.Tables(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"cl_chain", "cl_multi", "cl_race"} {
			if !slices.Contains(tables, want) {
				t.Errorf("tables %q lack %s", tables, want)
			}
		}
		if !slices.IsSorted(tables) || len(slices.Compact(slices.Clone(tables))) != len(tables) {
			t.Errorf("tables %q are not sorted and unique", tables)
		}
	})

	t.Run("orphans", func(t *testing.T) {
		const table = "cl_orphans"
		l := lake.NewCommitLog(b)
		committed := link(t, table, src, "0", 0, 10, "w", true)
		if err := l.Commit(ctx, committed); err != nil {
			t.Fatal(err)
		}
		orphanRaw := table + "/dt=2024-05-01/hour=14/crashed-flush.parquet"
		orphanDL := lake.DeadLetterRoot + table + "/dt=2024-05-01/hour=14/crashed-flush.jsonl"
		neighbour := table + "x/dt=2024-05-01/hour=14/other-table.parquet"
		for _, k := range []string{orphanRaw, orphanDL, neighbour} {
			objstoretest.Put(t, b, k, []byte("left behind"))
		}
		// Modification times on S3 have one-second resolution.
		time.Sleep(1100 * time.Millisecond)

		if o, err := l.Orphans(ctx, table, time.Hour); err != nil || len(o) != 0 {
			t.Errorf("orphans within the grace period = %v, %v; want none (in-flight flushes are safe)", o, err)
		}
		orphans, err := l.Orphans(ctx, table, 0)
		if err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, o := range orphans {
			keys = append(keys, o.Key)
		}
		want := []string{orphanRaw, orphanDL}
		if !slices.Equal(keys, want) {
			t.Errorf("orphans = %q, want %q", keys, want)
		}
		n, err := l.DeleteOrphans(ctx, table, 0)
		if err != nil || n != 2 {
			t.Fatalf("delete orphans = %d, %v; want 2", n, err)
		}
		for _, k := range want {
			if _, err := b.Attributes(ctx, k); !objstore.IsNotExist(err) {
				t.Errorf("orphan %s still there: %v", k, err)
			}
		}
		for _, o := range committed.Objects {
			if _, err := b.Attributes(ctx, o.Key); err != nil {
				t.Errorf("committed object %s: %v", o.Key, err)
			}
		}
		if _, err := b.Attributes(ctx, neighbour); err != nil {
			t.Errorf("another table's object was touched: %v", err)
		}
		if _, err := l.Orphans(ctx, "_sluice", 0); err == nil {
			t.Error("orphans of a reserved name: want an error")
		}
	})
}

func firstOffsets(recs []lake.CommitRecord) []int64 {
	out := make([]int64, len(recs))
	for i, r := range recs {
		out[i] = r.FirstOffset
	}
	return out
}

// sanitize makes a source or partition usable inside an object name.
func sanitize(s string) string {
	out := []byte(s)
	for i, c := range out {
		if c == '/' || c == ':' {
			out[i] = '_'
		}
	}
	return string(out)
}
