package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/internal/inspect"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// inspectRow is a raw-table-like row: event time, nullable string, metadata.
type inspectRow struct {
	TS        time.Time `parquet:"ts,timestamp(microsecond)"`
	EventID   string    `parquet:"event_id"`
	Country   *string   `parquet:"country,optional"`
	Amount    float64   `parquet:"amount"`
	LatencyMS int64     `parquet:"latency_ms"`
	OK        bool      `parquet:"ok"`
	Tags      []string  `parquet:"tags,list"`
	Source    string    `parquet:"_source"`
	Offset    int64     `parquet:"_offset"`
}

// writeParquet writes n rows with event times start, start+1s, ... in
// row groups of rowGroup rows and returns the file's path.
func writeParquet(t *testing.T, path string, start time.Time, n, rowGroup int, opts ...parquet.WriterOption) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := parquet.NewGenericWriter[inspectRow](f, append([]parquet.WriterOption{
		parquet.Compression(&parquet.Zstd),
		parquet.KeyValueMetadata("sluice.source", "kafka:events"),
	}, opts...)...)
	de := "DE"
	for i := range n {
		r := inspectRow{
			// Reverse order inside the file: min/max must not be first/last.
			TS:        start.Add(time.Duration(n-1-i) * time.Second).Add(123456 * time.Microsecond),
			EventID:   fmt.Sprintf("id-%04d", i),
			Amount:    float64(i) / 4,
			LatencyMS: int64(i),
			OK:        i%7 != 0,
			Source:    "kafka:events",
			Offset:    int64(i),
		}
		if i%3 == 0 {
			r.Country = &de
			r.Tags = []string{"a", "b"}
		}
		if _, err := w.Write([]inspectRow{r}); err != nil {
			t.Fatal(err)
		}
		if (i+1)%rowGroup == 0 {
			if err := w.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

// runCmd runs `sluice command args...` in process, for up to 30s, and
// returns the exit code, stdout and stderr.
func runCmd(t *testing.T, command string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, append([]string{command}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// decodeLines decodes one JSON object per line of out.
func decodeLines(t *testing.T, out string) []map[string]any {
	t.Helper()
	var res []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		res = append(res, m)
	}
	return res
}

// Reports as decoded by a consumer of --format json: rows as plain objects.
type parquetReportJSON struct {
	inspect.ParquetReport
	Sample []map[string]any `json:"sample"`
}

type summaryReportJSON struct {
	inspect.SummaryReport
	Sample []map[string]any `json:"sample"`
}

var t0 = time.Date(2026, 1, 2, 3, 0, 0, 0, time.UTC)

func TestInspectParquetFile(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		opts     []parquet.WriterOption
		rows     int
		rowGroup int
		wantFrom string
	}{
		{name: "statistics", rows: 100, rowGroup: 30, wantFrom: "statistics"},
		{name: "no statistics for ts", rows: 100, rowGroup: 30, opts: []parquet.WriterOption{parquet.SkipPageBounds("ts")}, wantFrom: "scan"},
		{name: "one row", rows: 1, rowGroup: 10, wantFrom: "statistics"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "_")+".parquet")
			writeParquet(t, path, t0, tc.rows, tc.rowGroup, tc.opts...)
			code, out, stderr := runCmd(t, "inspect", "--format", "json", "-n", "3", path)
			if code != exitOK {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			reps := decodeLines(t, out)
			if len(reps) != 1 {
				t.Fatalf("%d reports, want 1", len(reps))
			}
			var rep parquetReportJSON
			if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rep); err != nil {
				t.Fatal(err)
			}
			fi, _ := os.Stat(path)
			wantGroups := (tc.rows + tc.rowGroup - 1) / tc.rowGroup
			if rep.Rows != int64(tc.rows) || rep.RowGroups != wantGroups || rep.Size != fi.Size() {
				t.Fatalf("rows %d groups %d size %d; want %d %d %d", rep.Rows, rep.RowGroups, rep.Size, tc.rows, wantGroups, fi.Size())
			}
			if len(rep.Compression) != 1 || rep.Compression[0] != "ZSTD" {
				t.Fatalf("compression %v", rep.Compression)
			}
			if rep.Metadata["sluice.source"] != "kafka:events" {
				t.Fatalf("metadata %v", rep.Metadata)
			}
			wantCols := map[string][3]string{
				"ts":                {"INT64", "TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)", "REQUIRED"},
				"event_id":          {"BYTE_ARRAY", "STRING", "REQUIRED"},
				"country":           {"BYTE_ARRAY", "STRING", "OPTIONAL"},
				"amount":            {"DOUBLE", "", "REQUIRED"},
				"tags.list.element": {"BYTE_ARRAY", "STRING", "REQUIRED"},
				"_offset":           {"INT64", "INT(64,true)", "REQUIRED"},
			}
			seen := 0
			for _, c := range rep.Columns {
				if w, ok := wantCols[c.Name]; ok {
					seen++
					if got := [3]string{c.Physical, c.Logical, c.Repetition}; got != w {
						t.Errorf("column %s: %v, want %v", c.Name, got, w)
					}
				}
			}
			if seen != len(wantCols) {
				t.Fatalf("columns %+v", rep.Columns)
			}
			et := rep.EventTime
			wantMin := t0.Add(123456 * time.Microsecond)
			wantMax := wantMin.Add(time.Duration(tc.rows-1) * time.Second)
			if et == nil || et.Column != "ts" || !et.Min.Equal(wantMin) || !et.Max.Equal(wantMax) || et.From != tc.wantFrom {
				t.Fatalf("event time %+v, want ts %v..%v from %s", et, wantMin, wantMax, tc.wantFrom)
			}
			sample := reps[0]["sample"].([]any)
			if len(sample) != min(3, tc.rows) {
				t.Fatalf("%d sample rows", len(sample))
			}
			first := sample[0].(map[string]any)
			if first["event_id"] != "id-0000" || first["country"] != "DE" || first["_offset"] != float64(0) ||
				first["ts"] != wantMax.Format(time.RFC3339Nano) {
				t.Fatalf("first row %v", first)
			}
			if tc.rows > 1 {
				if second := sample[1].(map[string]any); second["country"] != nil {
					t.Fatalf("second row country %v, want null", second["country"])
				}
			}
		})
	}
}

func TestInspectTableFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.parquet")
	writeParquet(t, path, t0, 10, 10)
	code, out, stderr := runCmd(t, "inspect", "-n", "2", path)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"rows", "10", "ZSTD", "TIMESTAMP(isAdjustedToUTC=true,unit=MICROS)", "2026-01-02T03:00:00.123456Z", "id-0001", "NULL"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "id-0002") {
		t.Errorf("printed more than 2 rows:\n%s", out)
	}
}

// writeLake lays out raw objects, a commit record and dead letters like the
// ingest writer does.
func writeLake(t *testing.T, root string) {
	t.Helper()
	writeParquet(t, filepath.Join(root, "events/dt=2026-01-02/hour=03/a.parquet"), t0, 50, 20)
	writeParquet(t, filepath.Join(root, "events/dt=2026-01-02/hour=04/b.parquet"), t0.Add(time.Hour), 30, 20)
	writeParquet(t, filepath.Join(root, "events/dt=2026-01-01/hour=23/c.parquet"), t0.Add(-4*time.Hour), 20, 20, parquet.Compression(&parquet.Snappy))
	dl := filepath.Join(root, "_deadletter/events/dt=2026-01-02/hour=03/x.jsonl")
	if err := os.MkdirAll(filepath.Dir(dl), 0o755); err != nil {
		t.Fatal(err)
	}
	lines := `{"source":"kafka:events","partition":"3","offset":150,"reason":"missing_field","field":"ts","value":"{\"a\":1}"}
{"source":"kafka:events","partition":"3","offset":151,"reason":"bad_json","value_b64":"/w=="}
not json
{"source":"kafka:events","partition":"3","offset":152,"reason":"missing_field","field":"user_id","value":"{}"}
`
	if err := os.WriteFile(dl, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	// object describes a file of the fixture as its commit record names it.
	object := func(key, kind string, rows int64, from time.Time, span time.Duration) lake.CommittedObject {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(key)))
		if err != nil {
			t.Fatal(err)
		}
		o := lake.CommittedObject{Key: key, Kind: kind, Rows: rows, Size: int64(len(data)), Checksum: lake.Checksum(data)}
		if kind == lake.KindRaw {
			o.MinEventTimeMicros, o.MaxEventTimeMicros = from.UnixMicro(), from.Add(span).UnixMicro()
		}
		return o
	}
	// A chain as the writer leaves it: the genesis pins the start at 100,
	// link 1 holds [100, 200) and names every object, so that they are all
	// in the committed set.
	genesis := lake.CommitRecord{
		Version: lake.CommitRecordVersion, Table: "events", Source: "kafka:events", Partition: "3",
		Seq: 0, Kind: lake.LinkGenesis, First: lake.PositionOf(100), Next: lake.PositionOf(100), Writer: "test",
		CommittedAt: t0, Objects: []lake.CommittedObject{},
	}
	rec := lake.CommitRecord{
		Version: lake.CommitRecordVersion, Table: "events", Source: "kafka:events", Partition: "3",
		Seq: 1, Kind: lake.LinkData, First: lake.PositionOf(100), Next: lake.PositionOf(200), Records: 100, DeadLetters: 4, Writer: "test",
		CommittedAt: t0,
		Objects: []lake.CommittedObject{
			object("events/dt=2026-01-02/hour=03/a.parquet", lake.KindRaw, 50, t0, time.Minute),
			object("events/dt=2026-01-02/hour=04/b.parquet", lake.KindRaw, 30, t0.Add(time.Hour), time.Minute),
			object("events/dt=2026-01-01/hour=23/c.parquet", lake.KindRaw, 20, t0.Add(-4*time.Hour), time.Minute),
			object("_deadletter/events/dt=2026-01-02/hour=03/x.jsonl", lake.KindDeadLetter, 4, time.Time{}, 0),
		},
	}
	for _, r := range []lake.CommitRecord{genesis, rec} {
		data, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		ck := filepath.Join(root, lake.RecordKey(r))
		if err := os.MkdirAll(filepath.Dir(ck), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ck, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestInspectDirectory(t *testing.T) {
	root := t.TempDir()
	writeLake(t, root)

	t.Run("one report per object", func(t *testing.T) {
		code, out, stderr := runCmd(t, "inspect", "--format", "json", "-n", "1", root)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		reps := decodeLines(t, out)
		if len(reps) != 6 {
			t.Fatalf("%d reports, want 6:\n%s", len(reps), out)
		}
		byObj := map[string]map[string]any{}
		for _, r := range reps {
			byObj[r["object"].(string)] = r
		}
		commit := byObj[lake.LinkKey("events", "kafka:events", "3", 1)]["commit"].(map[string]any)
		if commit["first"] != "100" || commit["next"] != "200" || commit["seq"] != float64(1) {
			t.Fatalf("commit %v", commit)
		}
		dl := byObj["_deadletter/events/dt=2026-01-02/hour=03/x.jsonl"]
		if dl["lines"] != float64(4) || dl["invalid_lines"] != float64(1) {
			t.Fatalf("dead letters %v", dl)
		}
		if reasons := dl["reasons"].(map[string]any); reasons["missing_field"] != float64(2) || reasons["bad_json"] != float64(1) {
			t.Fatalf("reasons %v", reasons)
		}
		if byObj["events/dt=2026-01-02/hour=04/b.parquet"]["rows"] != float64(30) {
			t.Fatalf("b.parquet %v", byObj["events/dt=2026-01-02/hour=04/b.parquet"])
		}
	})

	t.Run("summary", func(t *testing.T) {
		code, out, stderr := runCmd(t, "inspect", "--format", "json", "--summary", "-n", "4", root)
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		var s summaryReportJSON
		if err := json.Unmarshal([]byte(out), &s); err != nil {
			t.Fatal(err)
		}
		wantMin := t0.Add(-4 * time.Hour).Add(123456 * time.Microsecond)
		wantMax := t0.Add(time.Hour).Add(29*time.Second + 123456*time.Microsecond)
		if s.Objects != 3 || s.Rows != 100 || s.RowGroups != 3+2+1 || s.CommitRecords != 2 || s.DeadLetterFiles != 1 ||
			len(s.Schemas) != 1 || s.Schemas[0].Objects != 3 || len(s.Compression) != 2 {
			t.Fatalf("summary %+v", s)
		}
		if s.EventTime == nil || !s.EventTime.Min.Equal(wantMin) || !s.EventTime.Max.Equal(wantMax) {
			t.Fatalf("event time %+v, want %v..%v", s.EventTime, wantMin, wantMax)
		}
		if n := len(s.Sample); n != 4 {
			t.Fatalf("%d sample rows, want 4", n)
		}
	})

	t.Run("summary table", func(t *testing.T) {
		code, out, stderr := runCmd(t, "inspect", "--summary", "-n", "0", filepath.Join(root, "events"))
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{"parquet objects  3", "rows             100", "SNAPPY, ZSTD"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("commit record as table", func(t *testing.T) {
		code, out, stderr := runCmd(t, "inspect", filepath.Join(root, lake.LinkKey("events", "kafka:events", "3", 1)))
		if code != exitOK {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		for _, want := range []string{"[100, 200)", "kafka:events partition 3", "events/dt=2026-01-02/hour=03/a.parquet"} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%s", want, out)
			}
		}
	})
}

func TestInspectErrors(t *testing.T) {
	root := t.TempDir()
	writeParquet(t, filepath.Join(root, "good.parquet"), t0, 5, 5)
	if err := os.WriteFile(filepath.Join(root, "bad.parquet"), []byte("PAR1 this is not parquet"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "notes.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "broken.json"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()

	tests := []struct {
		name     string
		args     []string
		wantCode int
		check    func(t *testing.T, out string)
	}{
		{name: "corrupt object among good ones", args: []string{"--format", "json", root}, wantCode: exitRuntime, check: func(t *testing.T, out string) {
			reps := decodeLines(t, out)
			errs := 0
			for _, r := range reps {
				if r["error"] != nil {
					errs++
				} else if r["object"] != "good.parquet" {
					t.Errorf("unexpected report %v", r)
				}
			}
			if len(reps) != 3 || errs != 2 {
				t.Errorf("reports %v", reps)
			}
		}},
		{name: "missing path", args: []string{filepath.Join(root, "nope")}, wantCode: exitRuntime},
		{name: "empty directory", args: []string{empty}, wantCode: exitRuntime},
		{name: "unknown file type", args: []string{filepath.Join(root, "notes.txt")}, wantCode: exitRuntime},
		{name: "unknown event time column", args: []string{"--event-time-column", "nope", filepath.Join(root, "good.parquet")}, wantCode: exitRuntime},
		{name: "negative rows", args: []string{"-n", "-1", root}, wantCode: exitUsage},
		{name: "bad format", args: []string{"--format", "xml", root}, wantCode: exitUsage},
		{name: "no path", args: nil, wantCode: exitUsage},
		{name: "s3 without bucket", args: []string{"s3://"}, wantCode: exitUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := runCmd(t, "inspect", tc.args...)
			if code != tc.wantCode {
				t.Fatalf("exit %d, want %d; stdout:\n%s\nstderr:\n%s", code, tc.wantCode, out, stderr)
			}
			if tc.check != nil {
				tc.check(t, out)
			}
		})
	}
}

// TestInspectS3 runs against a real S3 server when one is configured
// (scripts/versitygw.sh start && . .testenv/versitygw.env).
func TestInspectS3(t *testing.T) {
	cfg := objstoretest.S3Config(t)
	b := objstoretest.OpenS3(t, cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	local := t.TempDir()
	writeLake(t, local)
	uploadDir(t, ctx, b, local)
	s3Args := []string{"--s3-endpoint", cfg.Endpoint, "--s3-insecure", "--s3-path-style", "--s3-region", "us-east-1",
		"--s3-access-key", cfg.AccessKey, "--s3-secret-key", cfg.SecretKey}

	code, out, stderr := runCmd(t, "inspect", append(s3Args, "--format", "json", "--summary", "s3://"+cfg.Bucket+"/events/")...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var s summaryReportJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err)
	}
	if s.Objects != 3 || s.Rows != 100 {
		t.Fatalf("summary %+v", s)
	}

	code, out, stderr = runCmd(t, "inspect", append(s3Args, "--format", "json", "-n", "2", "s3://"+cfg.Bucket+"/events/dt=2026-01-02/hour=04/b.parquet")...)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var rep parquetReportJSON
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Rows != 30 || len(rep.Sample) != 2 || rep.EventTime == nil {
		t.Fatalf("report %+v", rep)
	}
}
