package batch_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/batch"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/loadtest/gen"
	"github.com/sluicehq/sluice/loadtest/oracle"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// inboxEvents is the sample table fed by an inbox instead of Kafka.
func inboxEvents(t testing.TB) *schema.Table {
	c := testkit.SampleTable(t)
	c.Kafka, c.Topic = nil, ""
	c.Inbox = &schema.InboxSource{Prefix: "incoming/events/", Format: "jsonl", Compression: "auto"}
	return c
}

// genFile writes n generated events as a JSON lines file (gzip if zip)
// and adds them to truth; it returns the events' times.
func genFile(t testing.TB, b objstore.Bucket, key string, cfg gen.Config, n int, zip bool, truth *gen.Truth) []time.Time {
	g, err := gen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var raw bytes.Buffer
	var times []time.Time
	var buf []byte
	for range n {
		value, _, ev := g.Next(buf[:0])
		buf = value
		raw.Write(value)
		raw.WriteByte('\n')
		truth.Add(&ev)
		times = append(times, ev.TS)
	}
	data := raw.Bytes()
	if zip {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(data)
		zw.Close()
		data = z.Bytes()
	}
	if err := b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	return times
}

func pass(t testing.TB, lakeB, inboxB objstore.Bucket, tbl *schema.Table) inbox.Stats {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	reg := prometheus.NewRegistry()
	w, err := ingest.NewWriter(ingest.WriterConfig{}, lakeB, logger, ingest.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	src, err := inbox.NewSource(inbox.Config{Lease: 10 * time.Second}, []*schema.Table{tbl}, lakeB,
		func(string) (objstore.Bucket, error) { return inboxB, nil }, w, logger, inbox.NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	st, err := src.Pass(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// checkSummaries compares every closed window of every size with the truth.
func checkSummaries(t *testing.T, tbl *schema.Table, summaries objstore.Bucket, truth *gen.Truth, until int64) {
	t.Helper()
	cols, err := oracle.ColumnsFor(tbl)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range tbl.Rollup.Windows {
		rows := oracle.Rows{}
		err := summaries.Iter(t.Context(), tbl.Name+"/"+aggregate.WindowName(w)+"/", func(a objstore.ObjectAttrs) error {
			if !strings.HasSuffix(a.Key, ".parquet") {
				return nil
			}
			rc, err := summaries.Get(t.Context(), a.Key)
			if err != nil {
				return err
			}
			defer rc.Close()
			var data bytes.Buffer
			data.ReadFrom(rc)
			return cols.Read(rows, a.Key, data.Bytes())
		})
		if err != nil {
			t.Fatal(err)
		}
		res := cols.Check(truth, w, rows, until)
		for _, f := range res.Failures {
			t.Error(f)
		}
		if res.Checked == 0 {
			t.Errorf("no %s window checked", aggregate.WindowName(w))
		}
	}
}

// A file whose events are older than what the aggregator summarised
// recomputes exactly the windows its events fall in, and the summaries
// stay equal to the exact truth.
func TestOldFileRecomputesItsWindows(t *testing.T) {
	tbl := inboxEvents(t)
	lakeB, inboxB, sumB := objstoretest.NewLocal(t), objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	truth, err := gen.NewTruth(tbl.Rollup.Windows...)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 14, 21, 30, 0, 0, time.UTC)
	const perFile = 800
	var newest time.Time
	for i := range 6 {
		cfg := gen.Config{Seed: int64(i + 1), Start: start.Add(time.Duration(i) * 30 * time.Minute), EventsPerSecond: perFile / 1800.0, Users: 500}
		name := "incoming/events/2026/f" + string(rune('a'+i)) + ".jsonl"
		if i%2 == 0 {
			name += ".gz"
		}
		for _, ts := range genFile(t, inboxB, name, cfg, perFile, i%2 == 0, truth) {
			if ts.After(newest) {
				newest = ts
			}
		}
	}
	if st := pass(t, lakeB, inboxB, tbl); st.Committed != 6 {
		t.Fatalf("batch pass: %+v", st)
	}
	svc, err := aggregate.NewService(aggregate.Config{}.WithDefaults(), lakeB, sumB, []*schema.Table{tbl}, "test", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := svc.RunOnce(t.Context(), tbl)
	if err != nil {
		t.Fatal(err)
	}
	wm := newest.Add(time.Microsecond - tbl.Rollup.AllowedLateness).UnixMicro()
	if st.Watermark.UnixMicro() != wm || st.Computed == 0 {
		t.Fatalf("first run: %+v; want the watermark at the newest event time (%s) minus the lateness", st, newest)
	}
	checkSummaries(t, tbl, sumB, truth, wm)

	// A file with old events: 40 to 37 minutes behind the watermark.
	old := gen.Config{Seed: 99, Start: time.UnixMicro(wm).Add(-40 * time.Minute), EventsPerSecond: 1, Users: 500}
	times := genFile(t, inboxB, "incoming/events/2025/old.jsonl", old, 180, false, truth)
	if st := pass(t, lakeB, inboxB, tbl); st.Committed != 1 {
		t.Fatalf("batch pass of the old file: %+v", st)
	}
	touched := 0
	for _, w := range tbl.Rollup.Windows {
		starts := map[int64]bool{}
		for _, ts := range times {
			s := ts.Truncate(w).UnixMicro()
			if s+w.Microseconds() <= wm {
				starts[s] = true
			}
		}
		touched += len(starts)
	}
	st, err = svc.RunOnce(t.Context(), tbl)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("after the old file: %+v; windows it touches: %d", st, touched)
	if touched == 0 {
		t.Fatal("the old file touches no closed window: the test proves nothing")
	}
	if st.Recomputed != touched || st.Computed != 0 || st.TooLate != 0 || st.Watermark.UnixMicro() != wm {
		t.Errorf("after the old file: %+v; want exactly the %d windows it touches recomputed, the watermark unmoved", st, touched)
	}
	checkSummaries(t, tbl, sumB, truth, wm)
}

// `sluice batch run`'s map/reduce over gzip JSON lines gives summaries
// equal to the generators' exact truth, and a run stopped half way resumes
// without mapping its finished splits again.
func TestRunMatchesTruthAndResumes(t *testing.T) {
	tbl := inboxEvents(t)
	inB, stateB, sumB := objstoretest.NewLocal(t), objstoretest.NewLocal(t), objstoretest.NewLocal(t)
	truth, err := gen.NewTruth(tbl.Rollup.Windows...)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 3, 14, 21, 30, 0, 0, time.UTC)
	for i := range 6 {
		cfg := gen.Config{Seed: int64(i + 10), Start: start.Add(time.Duration(i) * 20 * time.Minute), EventsPerSecond: 600 / 1200.0, Users: 800, LateShare: 0.05, LateBy: time.Hour}
		genFile(t, inB, fmt.Sprintf("drop/2026/part-%02d.jsonl.gz", i), cfg, 600, true, truth)
	}
	// One plain file cut into several splits.
	genFile(t, inB, "drop/2026/big.jsonl", gen.Config{Seed: 77, Start: start, EventsPerSecond: 2, Users: 800}, 2000, false, truth)
	opts := batch.Options{Table: tbl, Input: inB, Prefix: "drop/", State: stateB, Summaries: sumB, SplitBytes: 64 << 10, Parallel: 2}

	// Stop the first run after three splits.
	ctx, cancel := context.WithCancel(t.Context())
	first := opts
	first.Parallel = 1
	first.Progress = func(p batch.Progress) {
		if p.SplitsDone >= 3 {
			cancel()
		}
	}
	if _, err := batch.Run(ctx, first); err == nil {
		t.Fatal("the stopped run reported success")
	}
	st, err := batch.Run(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("resumed run: %+v", st)
	if st.SplitsSkipped < 3 || st.SplitsSkipped == st.Splits || st.Splits < 10 {
		t.Errorf("resumed run: %+v; want at least the 3 finished splits skipped, and the rest mapped", st)
	}
	checkSummaries(t, tbl, sumB, truth, math.MaxInt64)
}
