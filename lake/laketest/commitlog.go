package laketest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
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
	pos := lake.PositionOf

	// link builds link seq of [first, next) with one raw object (written to
	// the bucket, as a flush would) and optionally a dead-letter object.
	hour := time.Date(2024, 5, 1, 13, 0, 0, 0, time.UTC)
	link := func(t *testing.T, table, source, part string, seq, first, next int64, writer string, dead bool) lake.CommitRecord {
		t.Helper()
		raw := lake.RawObjectKey(table, hour, fmt.Sprintf("%s-%s-%d-%s", sanitize(source), sanitize(part), seq, writer))
		body := []byte("parquet bytes " + writer)
		objstoretest.Put(t, b, raw, body)
		rec := lake.CommitRecord{
			Table: table, Source: source, Partition: part, Seq: seq, Kind: lake.LinkData,
			First: pos(first), Next: pos(next), SourceID: "topic-1",
			Records: next - first, Writer: writer,
			Objects: []lake.CommittedObject{{Key: raw, Kind: lake.KindRaw, Rows: next - first, Size: int64(len(body)), Checksum: lake.Checksum(body)}},
		}
		if dead {
			dl := lake.DeadLetterKey(table, hour, fmt.Sprintf("%s-%d", sanitize(part), seq))
			objstoretest.Put(t, b, dl, []byte("{}\n"))
			rec.Objects[0].Rows--
			rec.Records--
			rec.DeadLetters = 1
			rec.Objects = append(rec.Objects, lake.CommittedObject{Key: dl, Kind: lake.KindDeadLetter, Rows: 1, Size: 3, Checksum: lake.Checksum([]byte("{}\n"))})
		}
		return rec
	}
	// open writes the partition's genesis at position at, of source
	// incarnation "topic-1".
	open := func(t *testing.T, l *lake.CommitLog, table, source, part string, at int64) lake.End {
		t.Helper()
		end, err := l.Open(ctx, table, source, part, "w", func(context.Context) (lake.Genesis, error) {
			return lake.Genesis{At: pos(at), SourceID: "topic-1", Reason: "test"}, nil
		})
		if err != nil {
			t.Fatalf("open %s/%s: %v", table, part, err)
		}
		return end
	}

	t.Run("chain and resume", func(t *testing.T) {
		log := lake.NewCommitLog(b)
		if _, found, err := log.Resume(ctx, "cl_chain", src, "0"); err != nil || found {
			t.Fatalf("resume of an empty partition = found %v, %v; want not found", found, err)
		}
		if end := open(t, log, "cl_chain", src, "0", 100); end != (lake.End{Seq: 1, Next: pos(100), SourceID: "topic-1", Genesis: true}) {
			t.Fatalf("open = %+v, want link 1 at 100", end)
		}
		bounds := []int64{100, 110, 125, 140}
		for i := range len(bounds) - 1 {
			if err := log.Commit(ctx, link(t, "cl_chain", src, "0", int64(i+1), bounds[i], bounds[i+1], "w1", i == 1)); err != nil {
				t.Fatalf("commit %d: %v", i, err)
			}
		}
		// A fresh log reads the bucket, not the first one's memory.
		fresh := lake.NewCommitLog(b)
		end, found, err := fresh.Resume(ctx, "cl_chain", src, "0")
		if err != nil || !found || end != (lake.End{Seq: 4, Next: pos(140), SourceID: "topic-1", Genesis: true}) {
			t.Fatalf("resume = %+v, %v, %v; want link 4 at 140", end, found, err)
		}
		// Opening again reads the genesis; the start is never resolved twice.
		again, err := fresh.Open(ctx, "cl_chain", src, "0", "w2", func(context.Context) (lake.Genesis, error) {
			t.Error("resolve called for a partition that has a genesis")
			return lake.Genesis{}, errors.New("no")
		})
		if err != nil || again != end {
			t.Errorf("open again = %+v, %v; want %+v", again, err, end)
		}
		recs, err := fresh.Records(ctx, "cl_chain")
		if err != nil {
			t.Fatal(err)
		}
		if got := firstPositions(recs); !slices.Equal(got, []string{"genesis@100", "100", "110", "125"}) {
			t.Errorf("links = %v, want [genesis@100 100 110 125]", got)
		}
		if recs[2].DeadLetters != 1 || recs[2].Version != lake.CommitRecordVersion || recs[2].CommittedAt.IsZero() {
			t.Errorf("link 2 = %+v, want 1 dead letter, version and time filled in", recs[2])
		}
	})

	t.Run("conflicting writers", func(t *testing.T) {
		a, c := lake.NewCommitLog(b), lake.NewCommitLog(b)
		open(t, a, "cl_conflict", src, "0", 0)
		if err := a.Commit(ctx, link(t, "cl_conflict", src, "0", 1, 0, 10, "a", false)); err != nil {
			t.Fatal(err)
		}
		// Both resume at link 2 and both try to commit it.
		for _, l := range []*lake.CommitLog{a, c} {
			if end, _, err := l.Resume(ctx, "cl_conflict", src, "0"); err != nil || end.Seq != 2 || end.Next != pos(10) {
				t.Fatalf("resume = %+v, %v; want link 2 at 10", end, err)
			}
		}
		if err := a.Commit(ctx, link(t, "cl_conflict", src, "0", 2, 10, 20, "a", false)); err != nil {
			t.Fatalf("first writer: %v", err)
		}
		err := c.Commit(ctx, link(t, "cl_conflict", src, "0", 2, 10, 25, "c", false))
		if !errors.Is(err, lake.ErrCommitConflict) || !errors.Is(err, objstore.ErrExists) {
			t.Fatalf("second writer: err = %v, want ErrCommitConflict and ErrExists", err)
		}
		// The loser carrying on from its own end is refused too.
		if err := c.Commit(ctx, link(t, "cl_conflict", src, "0", 3, 25, 30, "c", false)); !errors.Is(err, lake.ErrCommitConflict) {
			t.Fatalf("loser continuing: err = %v, want ErrCommitConflict", err)
		}
		if end, _, _ := c.Resume(ctx, "cl_conflict", src, "0"); end.Seq != 3 || end.Next != pos(20) {
			t.Errorf("after the conflict resume = %+v, want link 3 at 20", end)
		}
	})

	// Every writer reads the chain end before any of them commits, so the
	// pre-check cannot refuse the losers: only the conditional create can.
	t.Run("commit race has one winner", func(t *testing.T) {
		const writers = 8
		open(t, lake.NewCommitLog(b), "cl_race", src, "1", 0)
		if err := lake.NewCommitLog(b).Commit(ctx, link(t, "cl_race", src, "1", 1, 0, 5, "base", false)); err != nil {
			t.Fatal(err)
		}
		recs := make([]lake.CommitRecord, writers)
		logs := make([]*lake.CommitLog, writers)
		for w := range writers {
			recs[w] = link(t, "cl_race", src, "1", 2, 5, int64(10+w), fmt.Sprintf("w%d", w), false)
			logs[w] = lake.NewCommitLog(b)
		}
		errs := make([]error, writers)
		var read, wg sync.WaitGroup
		read.Add(writers)
		start := make(chan struct{})
		for w := range writers {
			wg.Go(func() {
				_, _, err := logs[w].Resume(ctx, "cl_race", src, "1")
				read.Done()
				if err != nil {
					errs[w] = err
					return
				}
				<-start
				errs[w] = logs[w].Commit(ctx, recs[w])
			})
		}
		read.Wait()
		close(start)
		wg.Wait()
		winners, lostRaces := 0, 0
		var winnerNext lake.Position
		for w, err := range errs {
			switch {
			case err == nil:
				winners++
				winnerNext = recs[w].Next
			case errors.Is(err, lake.ErrCommitConflict) && errors.Is(err, objstore.ErrExists):
				lostRaces++
			default:
				t.Errorf("writer %d: %v, want ErrCommitConflict from the conditional create", w, err)
			}
		}
		if winners != 1 || lostRaces != writers-1 {
			t.Fatalf("%d winners and %d lost races, want 1 and %d", winners, lostRaces, writers-1)
		}
		if end, _, _ := lake.NewCommitLog(b).Resume(ctx, "cl_race", src, "1"); end.Next != winnerNext {
			t.Errorf("resume = %+v, want the winner's %s", end, winnerNext)
		}
	})

	// Writers that find a partition empty at different positions (one
	// resolved latest, one earliest): one genesis, and all of them resume at it.
	t.Run("genesis race has one winner", func(t *testing.T) {
		const writers = 6
		ends := make([]lake.End, writers)
		errs := make([]error, writers)
		var read, wg sync.WaitGroup
		read.Add(writers)
		start := make(chan struct{})
		for w := range writers {
			wg.Go(func() {
				l := lake.NewCommitLog(b)
				ends[w], errs[w] = l.Open(ctx, "cl_genesis", src, "0", fmt.Sprintf("w%d", w), func(context.Context) (lake.Genesis, error) {
					read.Done()
					<-start
					return lake.Genesis{At: pos(int64(1000 * w)), SourceID: "topic-1"}, nil
				})
			})
		}
		read.Wait()
		close(start)
		wg.Wait()
		for w := range writers {
			if errs[w] != nil || ends[w] != ends[0] {
				t.Errorf("writer %d: open = %+v, %v; want everyone at %+v", w, ends[w], errs[w], ends[0])
			}
		}
		// The genesis is the chain's first bucketed link: the move marker
		// at its flat key comes first (see lake/moved.go).
		want := []string{lake.MovedMarkerKey("cl_genesis", src, "0", 0), lake.LinkKey("cl_genesis", src, "0", 0)}
		if keys := objstoretest.ListKeys(t, b, lake.PartitionCommitPrefix("cl_genesis", src, "0")); !slices.Equal(keys, want) {
			t.Errorf("commit keys = %q, want one genesis (and its move marker) %q", keys, want)
		}
	})

	t.Run("re-committing the same record is a no-op", func(t *testing.T) {
		l := lake.NewCommitLog(b)
		open(t, l, "cl_idem", src, "0", 0)
		rec := link(t, "cl_idem", src, "0", 1, 0, 10, "w", false)
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
			t.Errorf("another writer's record at the same link: err = %v, want ErrCommitConflict", err)
		}
	})

	t.Run("a link must be the next one", func(t *testing.T) {
		l := lake.NewCommitLog(b)
		if err := l.Commit(ctx, link(t, "cl_next", src, "0", 0, 0, 10, "w", false)); !errors.Is(err, lake.ErrCommitConflict) {
			t.Errorf("data link on an empty chain: err = %v, want ErrCommitConflict", err)
		}
		open(t, l, "cl_next", src, "0", 0)
		if err := l.Commit(ctx, link(t, "cl_next", src, "0", 1, 0, 10, "w", false)); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			rec  lake.CommitRecord
		}{
			{"past the end", link(t, "cl_next", src, "0", 2, 11, 20, "w", false)},
			{"before the end", link(t, "cl_next", src, "0", 2, 5, 20, "w", false)},
			{"skips a number", link(t, "cl_next", src, "0", 3, 10, 20, "w", false)},
			{"another incarnation", func() lake.CommitRecord {
				r := link(t, "cl_next", src, "0", 2, 10, 20, "w", false)
				r.SourceID = "topic-2"
				return r
			}()},
		} {
			err := lake.NewCommitLog(b).Commit(ctx, tc.rec)
			if !errors.Is(err, lake.ErrCommitConflict) || errors.Is(err, objstore.ErrExists) {
				t.Errorf("%s: err = %v, want ErrCommitConflict without ErrExists", tc.name, err)
			}
		}
		want := []string{lake.MovedMarkerKey("cl_next", src, "0", 0), lake.LinkKey("cl_next", src, "0", 0), lake.LinkKey("cl_next", src, "0", 1)}
		if keys := objstoretest.ListKeys(t, b, lake.CommitPrefix("cl_next")); !slices.Equal(keys, want) {
			t.Errorf("commit keys = %q, want the genesis and the first link (after the move marker) %q", keys, want)
		}
	})

	t.Run("gaps and resets are links", func(t *testing.T) {
		const table = "cl_gaps"
		l := lake.NewCommitLog(b)
		open(t, l, table, src, "0", 0)
		steps := []lake.CommitRecord{
			link(t, table, src, "0", 1, 0, 10, "w", false),
			{Table: table, Source: src, Partition: "0", Seq: 2, Kind: lake.LinkGap, First: pos(10), Next: pos(500), SourceID: "topic-1", Reason: "retention"},
			link(t, table, src, "0", 3, 500, 510, "w", false),
			{Table: table, Source: src, Partition: "0", Seq: 4, Kind: lake.LinkReset, First: pos(0), Next: pos(0), SourceID: "topic-2", Reason: "topic re-created"},
			func() lake.CommitRecord {
				r := link(t, table, src, "0", 5, 0, 7, "w", false)
				r.SourceID = "topic-2"
				return r
			}(),
		}
		for _, r := range steps {
			if err := l.Commit(ctx, r); err != nil {
				t.Fatalf("link %d (%s): %v", r.Seq, r.Kind, err)
			}
		}
		chain, err := lake.NewCommitLog(b).Chain(ctx, table, src, "0")
		if err != nil {
			t.Fatal(err)
		}
		if len(chain.Records) != 6 || len(chain.Anomalies) != 0 {
			t.Fatalf("chain = %d links, anomalies %+v; want 6 and none", len(chain.Records), chain.Anomalies)
		}
		gaps := chain.Gaps()
		if len(gaps) != 1 || gaps[0].First.Distance(gaps[0].Next) != 490 {
			t.Errorf("gaps = %+v, want one of 490 positions", gaps)
		}
		if end, _ := chain.End(); end != (lake.End{Seq: 6, Next: pos(7), SourceID: "topic-2", Genesis: true}) {
			t.Errorf("end = %+v, want link 6 at 7 of topic-2", end)
		}
	})

	// A chain written by version 1 (keyed by first offset) is read, numbered
	// and continued by a genesis at its end; a version-1 record an older
	// binary writes after that is left off the chain.
	t.Run("version-1 chain is continued", func(t *testing.T) {
		const table = "cl_v1"
		putV1 := func(first, next int64, writer string) {
			r := link(t, table, src, "0", 0, first, next, writer, false)
			r.Version, r.Seq, r.Kind, r.First, r.Next, r.SourceID = 1, 0, "", lake.Position{}, lake.Position{}, ""
			r.FirstOffset, r.NextOffset = first, next
			r.Objects[0].Checksum = ""
			r.CommittedAt = time.Now().UTC()
			data, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.PutIfAbsent(ctx, lake.CommitKey(table, src, "0", first), data); err != nil {
				t.Fatal(err)
			}
		}
		putV1(0, 10, "old")
		putV1(10, 25, "old")
		l := lake.NewCommitLog(b)
		if end := open(t, l, table, src, "0", 999); end.Seq != 3 || end.Next != pos(25) || end.SourceID != "topic-1" {
			t.Fatalf("open = %+v, want link 3 at 25 (the genesis continues the old chain)", end)
		}
		if err := l.Commit(ctx, link(t, table, src, "0", 3, 25, 30, "new", false)); err != nil {
			t.Fatal(err)
		}
		putV1(25, 40, "old binary after the upgrade")
		chain, err := lake.NewCommitLog(b).Chain(ctx, table, src, "0")
		if err != nil {
			t.Fatal(err)
		}
		if got := firstPositions(chain.Records); !slices.Equal(got, []string{"0", "10", "genesis@25", "25"}) {
			t.Errorf("links = %v, want [0 10 genesis@25 25]", got)
		}
		for i, r := range chain.Records {
			if r.Seq != int64(i) {
				t.Errorf("link %d has number %d", i, r.Seq)
			}
		}
		if len(chain.Anomalies) != 1 {
			t.Errorf("anomalies = %+v, want the late version-1 record", chain.Anomalies)
		}
	})

	t.Run("invalid records are refused", func(t *testing.T) {
		l := lake.NewCommitLog(b)
		open(t, l, "cl_invalid", src, "0", 0)
		good := link(t, "cl_invalid", src, "0", 1, 0, 10, "w", false)
		for _, tc := range []struct {
			name   string
			mutate func(*lake.CommitRecord)
		}{
			{"empty table", func(r *lake.CommitRecord) { r.Table = "" }},
			{"table with slash", func(r *lake.CommitRecord) { r.Table = "a/b" }},
			{"reserved table", func(r *lake.CommitRecord) { r.Table = "_sluice" }},
			{"source with slash", func(r *lake.CommitRecord) { r.Source = "kafka/x" }},
			{"dot-dot partition", func(r *lake.CommitRecord) { r.Partition = ".." }},
			{"empty range", func(r *lake.CommitRecord) { r.Next = r.First }},
			{"backwards range", func(r *lake.CommitRecord) { r.First = pos(20) }},
			{"negative link", func(r *lake.CommitRecord) { r.Seq = -1 }},
			{"unknown kind", func(r *lake.CommitRecord) { r.Kind = "maybe" }},
			{"gap with objects", func(r *lake.CommitRecord) { r.Kind = lake.LinkGap }},
			{"version 1", func(r *lake.CommitRecord) { r.Version = 1 }},
			{"future version", func(r *lake.CommitRecord) { r.Version = 99 }},
			{"object without key", func(r *lake.CommitRecord) { r.Objects[0].Key = "" }},
			{"object without checksum", func(r *lake.CommitRecord) { r.Objects[0].Checksum = "" }},
			{"object of another table", func(r *lake.CommitRecord) { r.Objects[0].Key = "other/dt=2024-05-01/hour=13/x.parquet" }},
			{"unknown object kind", func(r *lake.CommitRecord) { r.Objects[0].Kind = "summary" }},
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
		want := []string{lake.MovedMarkerKey("cl_invalid", src, "0", 0), lake.LinkKey("cl_invalid", src, "0", 0)}
		if keys := objstoretest.ListKeys(t, b, lake.CommitPrefix("cl_invalid")); !slices.Equal(keys, want) {
			t.Errorf("invalid records were written: %q, want only %q", keys, want)
		}
	})

	t.Run("garbage and off-chain records are ignored", func(t *testing.T) {
		const table, part = "cl_garbage", "2"
		l := lake.NewCommitLog(b)
		open(t, l, table, src, part, 10)
		for i, r := range [][2]int64{{10, 20}, {20, 30}, {30, 40}} {
			if err := l.Commit(ctx, link(t, table, src, part, int64(i+1), r[0], r[1], "w", false)); err != nil {
				t.Fatal(err)
			}
		}
		prefix := lake.PartitionCommitPrefix(table, src, part)
		raw := func(seq, first, next int64, key string) {
			rec := link(t, table, src, part, seq, first, next, "zombie", false)
			rec.Version = lake.CommitRecordVersion
			data, err := json.Marshal(rec)
			if err != nil {
				t.Fatal(err)
			}
			if key == "" {
				key = lake.LinkKey(table, src, part, seq)
			}
			if err := b.PutIfAbsent(ctx, key, data); err != nil {
				t.Fatal(err)
			}
		}
		objstoretest.Put(t, b, prefix+"seq-00000000000000000050.json", []byte("{not json"))
		objstoretest.Put(t, b, prefix+"README.txt", []byte("hello"))
		raw(7, 60, 70, "")                                     // beyond a missing link
		raw(4, 40, 45, prefix+"seq-00000000000000000041.json") // content of another key
		objstoretest.Put(t, b, lake.PartitionCommitPrefix(table, src, part+"/nested")+"seq-00000000000000000040.json",
			[]byte("{}")) // another partition ("2/nested"), not garbage of "2"

		fresh := lake.NewCommitLog(b)
		chain, err := fresh.Chain(ctx, table, src, part)
		if err != nil {
			t.Fatal(err)
		}
		if end, ok := chain.End(); !ok || end.Seq != 4 || end.Next != pos(40) {
			t.Errorf("chain end = %+v, %v; want link 4 at 40", end, ok)
		}
		if got := firstPositions(chain.Records); !slices.Equal(got, []string{"genesis@10", "10", "20", "30"}) {
			t.Errorf("links = %v, want [genesis@10 10 20 30]", got)
		}
		if len(chain.Anomalies) != 4 {
			t.Errorf("anomalies = %+v, want 4 (bad json, bad name, beyond a missing link, wrong key)", chain.Anomalies)
		}
		// The chain goes on past the garbage.
		if err := fresh.Commit(ctx, link(t, table, src, part, 4, 40, 50, "w", false)); err != nil {
			t.Errorf("commit after garbage: %v", err)
		}
	})

	// Resuming a long chain costs a few calls from the newest checkpoint,
	// and agrees with reading the whole chain, also when a link after the
	// checkpoint is missing or a checkpoint lies.
	t.Run("resume from the newest checkpoint", func(t *testing.T) {
		const table = "cl_ckpt"
		l := lake.NewCommitLog(b).WithCheckpointEvery(10)
		open(t, l, table, src, "0", 0)
		for seq := int64(1); seq < 35; seq++ {
			if err := l.Commit(ctx, link(t, table, src, "0", seq, seq*10-10, seq*10, "w", false)); err != nil {
				t.Fatal(err)
			}
		}
		var ckpts []string
		for _, k := range objstoretest.ListKeys(t, b, lake.PartitionCommitPrefix(table, src, "0")) {
			if strings.HasPrefix(path.Base(k), "ckpt-") {
				ckpts = append(ckpts, k)
			}
		}
		want := []string{lake.CheckpointKey(table, src, "0", 30), lake.CheckpointKey(table, src, "0", 20), lake.CheckpointKey(table, src, "0", 10)}
		if !slices.Equal(ckpts, want) {
			t.Fatalf("checkpoints %q, want 3 (at links 10, 20, 30, newest first) %q", ckpts, want)
		}
		agree := func(t *testing.T, want lake.End) {
			t.Helper()
			h := objstoretest.NewHookBucket(b)
			end, found, err := lake.NewCommitLog(h).Resume(ctx, table, src, "0")
			if err != nil || !found || end != want {
				t.Fatalf("resume = %+v, %v, %v; want %+v", end, found, err, want)
			}
			chain, err := lake.NewCommitLog(b).Chain(ctx, table, src, "0")
			if err != nil {
				t.Fatal(err)
			}
			if full, _ := chain.End(); full != end {
				t.Fatalf("resume %+v, the whole chain ends at %+v", end, full)
			}
			for _, a := range chain.Anomalies {
				if strings.Contains(a.Key, "ckpt-") {
					t.Errorf("a checkpoint is reported as a broken link: %+v", a)
				}
			}
		}
		h := objstoretest.NewHookBucket(b)
		end, _, err := lake.NewCommitLog(h).Resume(ctx, table, src, "0")
		if err != nil || end.Seq != 35 || end.Next != pos(340) {
			t.Fatalf("resume = %+v, %v; want link 35 at 340", end, err)
		}
		if calls := h.Count("iter") + h.Count("get"); calls > 4 {
			t.Errorf("resume made %d list and get calls, want at most 4", calls)
		}
		agree(t, end)
		// A chain that ends right at a checkpoint: the checkpoint and the
		// link it names are read, nothing more.
		for seq := int64(35); seq <= 39; seq++ {
			if err := l.Commit(ctx, link(t, table, src, "0", seq, seq*10-10, seq*10, "w", false)); err != nil {
				t.Fatal(err)
			}
		}
		h = objstoretest.NewHookBucket(b)
		if end, _, err = lake.NewCommitLog(h).Resume(ctx, table, src, "0"); err != nil || end.Seq != 40 {
			t.Fatalf("resume at a checkpoint = %+v, %v; want link 40", end, err)
		}
		if calls := h.Count("iter") + h.Count("get"); calls > 4 {
			t.Errorf("resume at a checkpoint made %d list and get calls, want at most 4", calls)
		}
		agree(t, end)
		// A missing link after the checkpoint ends the chain before it.
		for seq := int64(40); seq <= 44; seq++ {
			if err := l.Commit(ctx, link(t, table, src, "0", seq, seq*10-10, seq*10, "w", false)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Delete(ctx, lake.LinkKey(table, src, "0", 43)); err != nil {
			t.Fatal(err)
		}
		end = lake.End{Seq: 43, Next: pos(420), SourceID: "topic-1", Genesis: true}
		agree(t, end)
		// A lying checkpoint (content of another link) is not trusted.
		lie := lake.Checkpoint{Version: 1, Table: table, Source: src, Partition: "0", End: lake.End{Seq: 12, Next: pos(999), Genesis: true}}
		data, _ := json.Marshal(lie)
		if err := b.PutIfAbsent(ctx, lake.CheckpointKey(table, src, "0", 45), data); err != nil {
			t.Fatal(err)
		}
		agree(t, end)
		// Nor is one that agrees with its key but names links never written.
		lie = lake.Checkpoint{Version: 1, Table: table, Source: src, Partition: "0", End: lake.End{Seq: 50, Next: pos(999), Genesis: true}}
		data, _ = json.Marshal(lie)
		if err := b.PutIfAbsent(ctx, lake.CheckpointKey(table, src, "0", 50), data); err != nil {
			t.Fatal(err)
		}
		agree(t, end)
	})

	t.Run("records of many partitions, tables", func(t *testing.T) {
		const table = "cl_multi"
		l := lake.NewCommitLog(b)
		type part struct{ source, partition string }
		// Committed in scrambled order; Records sorts.
		for _, p := range []part{{"kafka:b", "0"}, {"kafka:a", "10"}, {"kafka:a", "1"}, {"inbox:drop", "in/2024/f.jsonl"}} {
			open(t, l, table, p.source, p.partition, 0)
			for i, r := range [][2]int64{{0, 3}, {3, 7}} {
				if err := l.Commit(ctx, link(t, table, p.source, p.partition, int64(i+1), r[0], r[1], "w", false)); err != nil {
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
			got = append(got, fmt.Sprintf("%s|%s|%d", r.Source, r.Partition, r.Seq))
		}
		want := []string{
			"inbox:drop|in/2024/f.jsonl|0", "inbox:drop|in/2024/f.jsonl|1", "inbox:drop|in/2024/f.jsonl|2",
			"kafka:a|1|0", "kafka:a|1|1", "kafka:a|1|2", "kafka:a|10|0", "kafka:a|10|1", "kafka:a|10|2",
			"kafka:b|0|0", "kafka:b|0|1", "kafka:b|0|2",
		}
		if !slices.Equal(got, want) {
			t.Errorf("records =\n %q\nwant\n %q", got, want)
		}
		if end, _, _ := l.Resume(ctx, table, "kafka:a", "1"); end.Next != pos(7) {
			t.Errorf("resume kafka:a/1 = %+v, want 7", end)
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
		open(t, l, table, src, "0", 0)
		committed := link(t, table, src, "0", 1, 0, 10, "w", true)
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

// firstPositions names each link by where it starts ("genesis@N" for a genesis).
func firstPositions(recs []lake.CommitRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.First.String()
		if r.Kind == lake.LinkGenesis {
			out[i] = "genesis@" + out[i]
		}
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
