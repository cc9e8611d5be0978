package batch_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// A run stopped half way and resumed writes the very summaries (byte for
// byte) that one uninterrupted run writes: the partials the resumed run
// reads back from the state store merge exactly like the ones it keeps in
// memory after mapping them, and the splits of the stopped run are not
// mapped again.
func TestResumedRunWritesTheSameSummaries(t *testing.T) {
	tbl := inboxEvents(t)
	inB := objstoretest.NewLocal(t)
	truth, err := gen.NewTruth(tbl.Rollup.Windows...)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 14, 21, 30, 0, 0, time.UTC)
	for i := range 5 {
		// Overlapping event times, so partials of different splits share groups.
		cfg := gen.Config{Seed: int64(i + 30), Start: start.Add(time.Duration(i) * 10 * time.Minute), EventsPerSecond: 1, Users: 300, LateShare: 0.05, LateBy: 30 * time.Minute}
		genFile(t, inB, fmt.Sprintf("drop/part-%02d.jsonl.gz", i), cfg, 1500, true, truth)
	}
	genFile(t, inB, "drop/big.jsonl", gen.Config{Seed: 78, Start: start, EventsPerSecond: 3, Users: 300}, 3000, false, truth)
	opts := batch.Options{Table: tbl, Input: inB, Prefix: "drop/", SplitBytes: 64 << 10, Parallel: 2}

	whole := opts
	whole.State, whole.Summaries = objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	wst, err := batch.Run(t.Context(), whole)
	if err != nil {
		t.Fatal(err)
	}

	resumed := opts
	resumed.State, resumed.Summaries = objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	ctx, cancel := context.WithCancel(t.Context())
	first := resumed
	first.Parallel = 1
	first.Progress = func(p batch.Progress) {
		if p.SplitsDone >= 4 {
			cancel()
		}
	}
	if _, err := batch.Run(ctx, first); err == nil {
		t.Fatal("the stopped run reported success")
	}
	rst, err := batch.Run(t.Context(), resumed)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("whole run %+v; resumed run %+v", wst, rst)
	if rst.SplitsSkipped < 4 || rst.SplitsSkipped == rst.Splits || rst.Records == 0 || rst.Records >= wst.Records {
		t.Errorf("resumed run: %+v; want the 4 finished splits skipped and the rest mapped", rst)
	}
	if rst.Objects != wst.Objects || rst.Windows != wst.Windows {
		t.Errorf("resumed run wrote %d objects of %d windows, the whole run %d of %d", rst.Objects, rst.Windows, wst.Objects, wst.Windows)
	}
	want, got := objects(t, whole.Summaries), objects(t, resumed.Summaries)
	if len(want) == 0 || len(want) != len(got) {
		t.Fatalf("whole run wrote %d summary objects, resumed run %d", len(want), len(got))
	}
	for k, b := range want {
		if !bytes.Equal(b, got[k]) {
			t.Errorf("%s differs between the whole and the resumed run", k)
		}
	}
}

func objects(t *testing.T, b objstore.Bucket) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := b.Iter(t.Context(), "", func(a objstore.ObjectAttrs) error {
		rc, err := b.Get(t.Context(), a.Key)
		if err != nil {
			return err
		}
		defer rc.Close()
		var buf bytes.Buffer
		if _, err := buf.ReadFrom(rc); err != nil {
			return err
		}
		out[a.Key] = buf.Bytes()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// A run killed (SIGKILL, in a process of its own) after some splits is
// resumed: the splits whose partials it wrote are not mapped again, and
// the summaries are byte for byte those of an uninterrupted run, and the
// exact truth.
func TestKilledRunResumes(t *testing.T) {
	if dir := os.Getenv("SLUICE_BATCH_KILL_CHILD"); dir != "" {
		in, _ := objstore.NewLocal(filepath.Join(dir, "in"))
		state, _ := objstore.NewLocal(filepath.Join(dir, "state"))
		sum, _ := objstore.NewLocal(filepath.Join(dir, "sum"))
		opts := killOptions(t, in)
		opts.State, opts.Summaries, opts.Parallel = state, sum, 1
		// Slow enough for the parent to kill it between splits or in one.
		opts.Progress = func(batch.Progress) { time.Sleep(50 * time.Millisecond) }
		batch.Run(t.Context(), opts)
		return
	}
	dir := t.TempDir()
	in, err := objstore.NewLocal(filepath.Join(dir, "in"))
	if err != nil {
		t.Fatal(err)
	}
	tbl := inboxEvents(t)
	truth, err := gen.NewTruth(tbl.Rollup.Windows...)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 14, 21, 30, 0, 0, time.UTC)
	for i := range 4 {
		cfg := gen.Config{Seed: int64(i + 50), Start: start.Add(time.Duration(i) * 15 * time.Minute), EventsPerSecond: 2, Users: 300, LateShare: 0.05, LateBy: 20 * time.Minute}
		genFile(t, in, fmt.Sprintf("drop/part-%02d.jsonl.gz", i), cfg, 1500, true, truth)
	}
	genFile(t, in, "drop/big.jsonl", gen.Config{Seed: 79, Start: start, EventsPerSecond: 4, Users: 300}, 6000, false, truth)

	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledRunResumes$")
	cmd.Env = append(os.Environ(), "SLUICE_BATCH_KILL_CHILD="+dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	partials := func() int {
		n := 0
		filepath.WalkDir(filepath.Join(dir, "state"), func(p string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".partial") {
				n++
			}
			return nil
		})
		return n
	}
	deadline := time.Now().Add(time.Minute)
	for partials() < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	done := partials()
	if done < 3 {
		t.Fatalf("the run wrote %d partials in a minute", done)
	}

	state, err := objstore.NewLocal(filepath.Join(dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	resumed := killOptions(t, in)
	resumed.State, resumed.Summaries = state, objstoretest.NewLocal(t)
	rst, err := batch.Run(t.Context(), resumed)
	if err != nil {
		t.Fatal(err)
	}
	whole := killOptions(t, in)
	whole.State, whole.Summaries = objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	wst, err := batch.Run(t.Context(), whole)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("killed after %d partials; resumed run %+v; whole run %+v", done, rst, wst)
	if rst.SplitsSkipped != done || rst.SplitsSkipped == rst.Splits || rst.Records >= wst.Records {
		t.Errorf("resumed run: %+v; want the %d splits with partials skipped and only the rest mapped", rst, done)
	}
	want, got := objects(t, whole.Summaries), objects(t, resumed.Summaries)
	if len(want) == 0 || len(want) != len(got) {
		t.Fatalf("whole run wrote %d summary objects, resumed run %d", len(want), len(got))
	}
	for k, b := range want {
		if !bytes.Equal(b, got[k]) {
			t.Errorf("%s differs between the whole and the resumed run", k)
		}
	}
	checkSummaries(t, tbl, resumed.Summaries, truth, math.MaxInt64)
}

func killOptions(t *testing.T, in objstore.Bucket) batch.Options {
	return batch.Options{Table: inboxEvents(t), Input: in, Prefix: "drop/", SplitBytes: 32 << 10, Parallel: 2}
}
