package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/internal/app"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/loadtest/harness"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// TestLoadtest is the load test CI runs: 20 s at 5,000 events/s against the
// embedded stack (ingester and aggregator in this process), with late
// events and malformed records of every kind; it fails if the verifier
// finds anything lost, duplicated, misfiled or summarised other than the
// generators' truth. Event time is pinned to start at 22:59:45 UTC of a
// past day, so the run crosses an hour boundary and the end-of-run markers
// close its 1h and 1d windows too; late events reach 3 minutes back, past
// the allowed lateness of 30 s, so closed windows are recomputed. Then it
// plants faults in the stores and checks that the verifier names each.
func TestLoadtest(t *testing.T) {
	dur, rate := 20*time.Second, 5000.0
	if testing.Short() {
		dur = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	logger := slog.New(slog.DiscardHandler)
	dir := t.TempDir()
	st, err := app.StartStack(ctx, logger, app.StackOptions{DataDir: dir, KafkaAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Partitions: 4, FlushEvery: time.Second, AggInterval: 2 * time.Second, Group: "loadtest"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stackCtx, stopStack := context.WithCancel(ctx)
	stackDone := make(chan error, 1)
	go func() { stackDone <- st.Run(stackCtx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopStack()
			if err := <-stackDone; err != nil {
				t.Errorf("embedded stack: %v", err)
			}
		}
	}
	defer stop()

	raw, err := objstore.NewLocal(st.LakeDir)
	if err != nil {
		t.Fatal(err)
	}
	sums, err := objstore.NewLocal(st.SummaryDir)
	if err != nil {
		t.Fatal(err)
	}
	env := harness.Env{Mode: "test", Table: st.Events, Raw: raw, Summaries: sums, IdleTimeout: st.Config.Aggregate.IdleTimeout,
		ConsumerLag: harness.GatherLag(st.Registry), Aggregator: harness.GatherAggregator(st.Registry, st.Events.Name),
		ProcPID: os.Getpid(), ProcLabel: "test process", Logger: logger}
	lateness := st.Events.Rollup.AllowedLateness
	cfg := harness.Config{Brokers: []string{st.BrokerAddr()}, Rate: rate, Duration: dur, Seed: 7,
		Start:     time.Date(2026, 1, 1, 22, 59, 45, 0, time.UTC),
		LateShare: 0.02, LateBy: 6 * lateness, NullShare: 0.02, BadShare: 0.002,
		DrainTimeout: time.Minute, CatchUpTimeout: 90 * time.Second}
	rep, err := harness.Run(ctx, cfg, env)
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	rep.Text(&text)
	t.Log(text.String())
	if !rep.OK() {
		t.Fatalf("load test failed:\n%s", text.String())
	}
	// The verdict rests on real volume and real checks, not on empty sets.
	// Half the target: the producer paces by the clock, and on a loaded CI
	// machine it falls behind; volume, not the rate, is what this checks.
	if min := int64(0.5 * rate * dur.Seconds()); rep.Produced.Good+rep.Produced.Bad < min {
		t.Errorf("produced %d records, want at least %d", rep.Produced.Good+rep.Produced.Bad, min)
	}
	if rep.Raw.CommittedRows != rep.Produced.Good || rep.Raw.CommittedDeadLetters != rep.Produced.Bad {
		t.Errorf("committed %d rows and %d dead letters, produced %d good and %d malformed",
			rep.Raw.CommittedRows, rep.Raw.CommittedDeadLetters, rep.Produced.Good, rep.Produced.Bad)
	}
	// Every acknowledgement reached the truth and the latency histogram
	// (each producer hands them on in batches, the last when it flushes).
	if n := rep.Produced.Good + rep.Produced.Bad; rep.AckLatencyMS.Count != n {
		t.Errorf("%d ack latencies, the truth holds %d records", rep.AckLatencyMS.Count, n)
	}
	if rep.DeadLetters.Checked != rep.Produced.Bad {
		t.Errorf("checked the reason of %d dead letters, produced %d malformed", rep.DeadLetters.Checked, rep.Produced.Bad)
	}
	if !testing.Short() {
		for _, r := range harness.BadKinds {
			if rep.DeadLetters.ByReason[string(r)] == 0 {
				t.Errorf("no dead letter with reason %s", r)
			}
		}
	}
	if rep.Summaries == nil || len(rep.Summaries.Windows) != len(st.Events.Rollup.Windows) {
		t.Fatalf("summaries not checked: %+v", rep.Summaries)
	}
	// Every window size was checked against the truth, the hour on both
	// sides of 23:00 (not in the short run) and the day; only the windows
	// of the end-of-run markers themselves stay open.
	for _, wc := range rep.Summaries.Windows {
		want := 1
		if wc.Window == "1h" && !testing.Short() {
			want = 2
		}
		if wc.Verified < want || wc.Groups == 0 || wc.Open > 1 {
			t.Errorf("%s windows: %d verified (want at least %d), %d groups, %d left open", wc.Window, wc.Verified, want, wc.Groups, wc.Open)
		}
	}
	// The late path ran: events later than the allowed lateness made the
	// aggregator recompute closed windows, and none came too late.
	if rep.Produced.LateBeyondLateness == 0 {
		t.Error("no event was later than the allowed lateness")
	}
	if a := rep.Aggregator; a == nil || a.Recomputed == 0 || a.TooLateRecords != 0 {
		t.Errorf("aggregator %+v: want recomputed windows and no too-late records", a)
	}
	if rep.CommitLatencyMS.Count == 0 || rep.Process == nil || rep.Process.PeakRSSBytes == 0 || len(rep.Series) == 0 {
		t.Errorf("missing measurements: latency samples %d, process %+v, %d samples", rep.CommitLatencyMS.Count, rep.Process, len(rep.Series))
	}
	for name, write := range map[string]func(io.Writer) error{"json": rep.JSON, "html": rep.HTML} {
		var buf bytes.Buffer
		if err := write(&buf); err != nil || buf.Len() == 0 {
			t.Errorf("%s report: %v (%d bytes)", name, err, buf.Len())
		}
	}

	// Planted faults: the aggregator must not repair them behind our back.
	stop()
	testPlantedFaults(t, ctx, cfg, env, rep.Truth, st.LakeDir, st.SummaryDir)
}

func testPlantedFaults(t *testing.T, ctx context.Context, cfg harness.Config, env harness.Env, truth *harness.Truth, lakeDir, summaryDir string) {
	recs, err := lake.NewCommitLog(env.Raw).Records(ctx, env.Table.Name)
	if err != nil {
		t.Fatal(err)
	}
	var rec lake.CommitRecord
	var obj lake.CommittedObject
	for _, r := range recs {
		for _, o := range r.Objects {
			if o.Kind == lake.KindRaw && o.Rows > 0 && obj.Key == "" {
				rec, obj = r, o
			}
		}
	}
	if obj.Key == "" {
		t.Fatal("no committed raw object")
	}
	objPath := filepath.Join(lakeDir, filepath.FromSlash(obj.Key))
	recPath := filepath.Join(lakeDir, filepath.FromSlash(lake.RecordKey(rec)))

	cases := []struct {
		name  string
		plant func(t *testing.T) (undo func())
		check func(v harness.Verification) bool
		want  string // named in the verifier's failures
	}{
		{
			name: "deleted raw object",
			plant: func(t *testing.T) func() {
				data := readFile(t, objPath)
				if err := os.Remove(objPath); err != nil {
					t.Fatal(err)
				}
				return func() { writeFile(t, objPath, data) }
			},
			check: func(v harness.Verification) bool { return v.Raw.Lost == obj.Rows },
			want:  "lost",
		},
		{
			name: "duplicated raw object",
			plant: func(t *testing.T) func() {
				data, recData := readFile(t, objPath), readFile(t, recPath)
				dup := obj
				dup.Key = strings.TrimSuffix(obj.Key, ".parquet") + "-copy.parquet"
				dupPath := filepath.Join(lakeDir, filepath.FromSlash(dup.Key))
				writeFile(t, dupPath, data)
				r := rec
				r.Objects = append(append([]lake.CommittedObject(nil), rec.Objects...), dup)
				r.Records += dup.Rows
				js, err := json.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				writeFile(t, recPath, js)
				return func() {
					writeFile(t, recPath, recData)
					if err := os.Remove(dupPath); err != nil {
						t.Fatal(err)
					}
				}
			},
			check: func(v harness.Verification) bool { return v.Raw.Duplicated == obj.Rows },
			want:  "duplicated",
		},
		{
			name: "altered summary",
			plant: func(t *testing.T) func() {
				key := firstSummaryUnit(t, summaryDir, env.Table)
				path := filepath.Join(summaryDir, filepath.FromSlash(key))
				data := readFile(t, path)
				sum, err := aggregate.ReadSummary(bytes.NewReader(data), int64(len(data)), env.Table)
				if err != nil {
					t.Fatal(err)
				}
				f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
				if err != nil {
					t.Fatal(err)
				}
				meta, _ := f.Lookup("sluice.windows")
				sum.Rows[0].N++ // one event more in one group
				var buf bytes.Buffer
				if err := aggregate.WriteSummary(&buf, env.Table, sum, map[string]string{"sluice.windows": meta}); err != nil {
					t.Fatal(err)
				}
				writeFile(t, path, buf.Bytes())
				return func() { writeFile(t, path, data) }
			},
			check: func(v harness.Verification) bool { return v.Summaries != nil && v.Summaries.Windows[0].Failed == 1 },
			want:  "__rows",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			undo := tc.plant(t)
			v, err := harness.Verify(ctx, cfg, env, truth)
			undo()
			if err != nil {
				t.Fatal(err)
			}
			all := strings.Join(v.Failures, "\n")
			if v.OK() || !tc.check(v) || !strings.Contains(all, tc.want) {
				t.Fatalf("verifier did not report the %s (want %q named):\n%s\nraw: %+v", tc.name, tc.want, all, v.Raw)
			}
			t.Logf("verifier found:\n%s", all)
		})
	}
	// With every fault undone the same stores verify again: the failures
	// above came from the faults.
	v, err := harness.Verify(ctx, cfg, env, truth)
	if err != nil || !v.OK() {
		t.Fatalf("after undoing the faults: %v %v", err, v.Failures)
	}
}

// firstSummaryUnit returns the key of a 1m summary object holding a
// verified window.
func firstSummaryUnit(t *testing.T, dir string, table *schema.Table) string {
	t.Helper()
	var keys []string
	root := filepath.Join(dir, table.Name, aggregate.WindowName(table.Rollup.Windows[0]))
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".parquet") {
			rel, _ := filepath.Rel(dir, p)
			keys = append(keys, filepath.ToSlash(rel))
		}
		return err
	})
	if err != nil || len(keys) == 0 {
		t.Fatalf("no 1m summary under %s: %v", root, err)
	}
	return keys[0]
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t *testing.T, p string, data []byte) {
	t.Helper()
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestLoadtestCommand runs the subcommand as a user would, briefly, and
// checks its exit code and report files; bad command lines exit 2.
func TestLoadtestCommand(t *testing.T) {
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	cases := []struct {
		name string
		args []string
		code int
	}{
		{"neither mode", []string{"loadtest", "--duration", "1s"}, exitUsage},
		{"both modes", []string{"loadtest", "--embedded", "--config", "x.yaml"}, exitUsage},
		{"bad share", []string{"loadtest", "--embedded", "--bad-share", "2"}, exitUsage},
		{"bad zipf", []string{"loadtest", "--embedded", "--zipf", "1"}, exitUsage},
		{"late past the horizon", []string{"loadtest", "--embedded", "--duration", "1s", "--late-by", "3h", "--data-dir", filepath.Join(dir, "late")}, exitUsage},
		{"embedded run", []string{"loadtest", "--embedded", "--duration", "3s", "--rate", "2000", "--quiet",
			"--flush-interval", "1s", "--aggregate-interval", "1s", "--report-json", jsonPath, "--report-html", htmlPath}, exitOK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			if code := run(ctx, append(tc.args, "--log-level", "error"), &stdout, &stderr); code != tc.code {
				t.Fatalf("exit code %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tc.code, stdout.String(), stderr.String())
			}
		})
	}
	var rep harness.Report
	if err := json.Unmarshal(readFile(t, jsonPath), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Verdict != "OK" || rep.Produced.Good == 0 || rep.Raw.CommittedRows != rep.Produced.Good {
		t.Fatalf("report: verdict %s, produced %d, committed %d", rep.Verdict, rep.Produced.Good, rep.Raw.CommittedRows)
	}
	html := string(readFile(t, htmlPath))
	for _, want := range []string{"<svg", "Throughput", "verified"} {
		if !strings.Contains(html, want) {
			t.Errorf("HTML report lacks %q", want)
		}
	}
	if strings.Contains(html, "<script") || strings.Contains(html, "src=") || strings.Contains(html, "<link") {
		t.Error("HTML report must be self-contained")
	}
}
