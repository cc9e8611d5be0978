package lake_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"

	"golang.org/x/sync/errgroup"
)

// TestYearLongChain builds ONE partition with a literal year of links (two a
// minute: 1,051,200) and measures what resuming it costs a new process:
// LIST and GET calls, and time. Off unless asked for:
//
//	SLUICE_YEAR_CHAIN=1051200 SLUICE_YEAR_CHAIN_DIR=/tmp/year go test -count=1 -timeout 60m -run TestYearLongChain -v ./lake
//	SLUICE_YEAR_CHAIN=100000 SLUICE_YEAR_CHAIN_S3=1 go test ...   # on the S3 server of the test environment
//	SLUICE_YEAR_CHAIN_EXTEND=1000 ...   # first commit 1,000 more links through the CommitLog
//
// The genesis is committed by the CommitLog; the links after it (data links
// naming no objects) and a checkpoint every DefaultCheckpointEvery links are
// written straight to the store under the keys and in the JSON the
// CommitLog writes, in parallel, so that a year builds in minutes rather
// than the days a commit at a time would take. A directory lake is built
// once and reused by later runs (and by another version of the code).
func TestYearLongChain(t *testing.T) {
	v := os.Getenv("SLUICE_YEAR_CHAIN")
	if v == "" {
		t.Skip("set SLUICE_YEAR_CHAIN=<links> (a year: 1051200) to build and measure a year-long chain")
	}
	links, err := strconv.ParseInt(v, 10, 64)
	if err != nil || links < 2 {
		t.Fatalf("SLUICE_YEAR_CHAIN=%q: want a number of links, at least 2", v)
	}
	ctx := context.Background()
	var store objstore.Bucket
	var write func(key string, data []byte) error
	dir := os.Getenv("SLUICE_YEAR_CHAIN_DIR")
	switch {
	case os.Getenv("SLUICE_YEAR_CHAIN_S3") != "":
		store = objstoretest.NewS3(t, slog.New(slog.DiscardHandler))
		write = func(key string, data []byte) error { return store.PutIfAbsent(ctx, key, data) }
	default:
		if dir == "" {
			dir = t.TempDir()
		}
		local, err := objstore.NewLocal(dir)
		if err != nil {
			t.Fatal(err)
		}
		store = local
		var made sync.Map // directories already created
		write = func(key string, data []byte) error {
			path := filepath.Join(dir, filepath.FromSlash(key))
			parent := filepath.Dir(path)
			if _, ok := made.Load(parent); !ok {
				if err := os.MkdirAll(parent, 0o755); err != nil {
					return err
				}
				made.Store(parent, true)
			}
			return os.WriteFile(path, data, 0o644)
		}
	}
	const table, source, partition = "year", "kafka:events", "0"
	builtMark := filepath.Join(dir, fmt.Sprintf("built-%d", links))
	if _, err := os.Stat(builtMark); dir != "" && err == nil {
		t.Logf("reusing the chain of %d links in %s", links, dir)
	} else {
		start := time.Now()
		buildYearChain(t, ctx, store, write, table, source, partition, links)
		t.Logf("built a chain of %d links in %s", links, time.Since(start).Round(time.Second))
		if dir != "" {
			if err := os.WriteFile(builtMark, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if v := os.Getenv("SLUICE_YEAR_CHAIN_EXTEND"); v != "" {
		// Links committed by this binary on a chain another built (a lake
		// written before link buckets, resumed after the upgrade).
		more, err := strconv.ParseInt(v, 10, 64)
		if err != nil || more < 1 {
			t.Fatalf("SLUICE_YEAR_CHAIN_EXTEND=%q: want a number of links", v)
		}
		start := time.Now()
		l := lake.NewCommitLog(store)
		end, found, err := l.Resume(ctx, table, source, partition)
		if err != nil || !found {
			t.Fatalf("resume before extending: %+v, %v, %v", end, found, err)
		}
		for seq := end.Seq; seq < end.Seq+more; seq++ {
			if err := l.Commit(ctx, yearLink(table, source, partition, seq)); err != nil {
				t.Fatal(err)
			}
		}
		links = end.Seq + more
		t.Logf("committed links %d to %d in %s", end.Seq, links-1, time.Since(start).Round(time.Millisecond))
	}
	var best time.Duration
	for round := range 3 {
		h := objstoretest.NewHookBucket(store)
		l := lake.NewCommitLog(h) // a new process: nothing cached
		start := time.Now()
		end, found, err := l.Resume(ctx, table, source, partition)
		took := time.Since(start)
		if err != nil || !found || end.Seq != links || !end.Genesis {
			t.Fatalf("resume: end %+v, found %v, %v; want the end after link %d", end, found, err, links-1)
		}
		calls := h.Count("iter") + h.Count("get")
		t.Logf("resume %d: %d calls (%d LIST, %d GET), %s", round+1, calls, h.Count("iter"), h.Count("get"), took.Round(time.Millisecond))
		if calls >= 10 {
			t.Errorf("resume took %d calls, aim: under 10", calls)
		}
		if round == 0 || took < best {
			best = took
		}
	}
	if best > time.Second {
		t.Errorf("resume took at best %s, aim: under 1 s", best)
	}
}

// buildYearChain writes a genesis (through the CommitLog) and links 1 to
// links-1 after it, with their checkpoints, through write.
func buildYearChain(t *testing.T, ctx context.Context, store objstore.Bucket, write func(string, []byte) error, table, source, partition string, links int64) {
	t.Helper()
	l := lake.NewCommitLog(store)
	if _, err := l.Open(ctx, table, source, partition, "builder", func(context.Context) (lake.Genesis, error) {
		return lake.Genesis{At: lake.PositionOf(0), SourceID: "topic-id"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	every := int64(lake.DefaultCheckpointEvery)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	const batch = 2000
	for from := int64(1); from < links; from += batch {
		g.Go(func() error {
			for seq := from; seq < min(from+batch, links); seq++ {
				if err := gctx.Err(); err != nil {
					return err
				}
				rec := yearLink(table, source, partition, seq)
				data, err := json.Marshal(rec)
				if err != nil {
					return err
				}
				if err := write(lake.LinkKey(table, source, partition, seq), data); err != nil {
					return err
				}
				if next := seq + 1; next%every == 0 {
					data, err := json.Marshal(lake.Checkpoint{Version: 1, Table: table, Source: source, Partition: partition,
						End: lake.End{Seq: next, Next: rec.Next, SourceID: "topic-id", Genesis: true}, Writer: "builder", WrittenAt: rec.CommittedAt})
					if err != nil {
						return err
					}
					if err := write(lake.CheckpointKey(table, source, partition, next), data); err != nil {
						return err
					}
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
}

// yearLink is link seq of the synthetic chain: a data link of 100 positions
// naming no objects, committed 30 s after the one before.
func yearLink(table, source, partition string, seq int64) lake.CommitRecord {
	return lake.CommitRecord{Version: lake.CommitRecordVersion, Table: table, Source: source, Partition: partition,
		Seq: seq, Kind: lake.LinkData, First: lake.PositionOf((seq - 1) * 100), Next: lake.PositionOf(seq * 100),
		SourceID: "topic-id", Objects: []lake.CommittedObject{}, Writer: "builder",
		CommittedAt: time.Date(2025, 11, 30, 0, 0, 0, 0, time.UTC).Add(time.Duration(seq) * 30 * time.Second)}
}

// Resuming walks the link directories after the newest checkpoint one by
// one, and must stop exactly where the chain stops: several directories on
// (the checkpoints after the first are missing: their writes failed), at
// the end of a directory (the next one is empty), and just past one. One
// chain is built and cut shorter from its end, case by case.
func TestResumeAcrossLinkBuckets(t *testing.T) {
	const table, source, partition = "buckets", "kafka:events", "0"
	ctx := context.Background()
	dir := t.TempDir()
	store, err := objstore.NewLocal(dir)
	if err != nil {
		t.Fatal(err)
	}
	links := int64(2*lake.LinkBucketSize + 5)
	// Written as files, as the local store lays them out: a conditional
	// put syncs each, seconds for 8,000 links.
	buildYearChain(t, ctx, store, func(key string, data []byte) error {
		path := filepath.Join(dir, filepath.FromSlash(key))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return err
		}
		return os.WriteFile(path, data, 0o644)
	}, table, source, partition, links)
	every := int64(lake.DefaultCheckpointEvery)
	for n := 2 * every; n < links; n += every {
		if err := store.Delete(ctx, lake.CheckpointKey(table, source, partition, n)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		name  string
		links int64
	}{
		{"two directories past the checkpoint", links},
		{"ends a directory two past the checkpoint", 2 * lake.LinkBucketSize},
		{"one into the next directory", lake.LinkBucketSize + 1},
		{"ends a directory", lake.LinkBucketSize},
	} {
		for ; links > c.links; links-- {
			if err := store.Delete(ctx, lake.LinkKey(table, source, partition, links-1)); err != nil {
				t.Fatal(err)
			}
		}
		end, found, err := lake.NewCommitLog(store).Resume(ctx, table, source, partition)
		if err != nil || !found || end.Seq != c.links || end.Next != lake.PositionOf((c.links-1)*100) || !end.Genesis {
			t.Fatalf("%s: resume: end %+v, found %v, %v; want the end after link %d", c.name, end, found, err, c.links-1)
		}
	}
}
