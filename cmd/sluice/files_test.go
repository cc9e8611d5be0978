package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// filesLake is testLake (a compacted hour: two committed objects replaced
// by one, and an orphan of a failed flush) plus a dead-letter object on
// another partition and an orphan dead-letter object.
func filesLake(t *testing.T) (root string, live, deadLetters []lake.LiveObject, notLive []string) {
	t.Helper()
	ctx := context.Background()
	root, _ = testLake(t)
	b, err := objstore.NewLocal(root)
	if err != nil {
		t.Fatal(err)
	}
	log := lake.NewCommitLog(b)
	dl := []byte(`{"table":"events","reason":"undecodable","error":"not JSON","value":"{"}` + "\n")
	dlKey := lake.DeadLetterRoot + "events/dt=2026-01-02/hour=03/kafka-events-1-0.jsonl"
	put := func(key string, data []byte) {
		if err := b.Put(ctx, key, bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
	}
	put(dlKey, dl)
	put(lake.DeadLetterRoot+"events/dt=2026-01-02/hour=03/kafka-events-1-1-orphan.jsonl", dl)
	end, err := log.Open(ctx, "events", "kafka:events", "1", "w1", func(context.Context) (lake.Genesis, error) {
		return lake.Genesis{At: lake.PositionOf(0), Reason: "test"}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := log.Commit(ctx, lake.CommitRecord{Table: "events", Source: "kafka:events", Partition: "1", Seq: end.Seq, Kind: lake.LinkData,
		First: end.Next, Next: end.Next.Succ(), DeadLetters: 1, Writer: "w1",
		Objects: []lake.CommittedObject{{Key: dlKey, Kind: lake.KindDeadLetter, Rows: 1, Size: int64(len(dl)), Checksum: lake.Checksum(dl)}}}); err != nil {
		t.Fatal(err)
	}

	if live, err = log.LiveObjects(ctx, "events"); err != nil {
		t.Fatal(err)
	}
	if deadLetters, err = log.LiveDeadLetters(ctx, "events"); err != nil {
		t.Fatal(err)
	}
	// Every object under the table's prefixes that is not live: what a
	// glob reads too much.
	for _, dir := range []string{"events", filepath.FromSlash(lake.DeadLetterRoot + "events")} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			key := filepath.ToSlash(rel)
			if !slices.ContainsFunc(append(slices.Clone(live), deadLetters...), func(o lake.LiveObject) bool { return o.Key == key }) {
				notLive = append(notLive, key)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(live) != 1 || len(deadLetters) != 1 || len(notLive) != 4 {
		t.Fatalf("fixture: %d live, %d dead letters, %d not live; want 1, 1 and 4 (2 replaced, 2 orphans)", len(live), len(deadLetters), len(notLive))
	}
	return root, live, deadLetters, notLive
}

func localPaths(root string, objs []lake.LiveObject) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = filepath.Join(root, filepath.FromSlash(o.Key))
	}
	return out
}

// `sluice files` lists exactly the committed set (lake.CommitLog's
// LiveObjects and LiveDeadLetters): not the objects a compaction replaced,
// not the orphans of failed flushes, whichever way the lake is named and
// whatever the format.
func TestFilesListsExactlyTheCommittedSet(t *testing.T) {
	root, live, deadLetters, notLive := filesLake(t)
	cfgPath := filepath.Join(t.TempDir(), "sluice.yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, "store: {local_dir: %q}\n", root), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []lake.LiveObject
	}{
		{"lake directory", []string{"events", "--lake", root}, live},
		{"config", []string{"events", "--config", cfgPath}, live},
		{"dead letters", []string{"events", "--lake", root, "--kind", "deadletter"}, deadLetters},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := localPaths(root, tc.want)

			code, out, stderr := runCmd(t, "files", append(tc.args, "--format", "list")...)
			if code != exitOK {
				t.Fatalf("list: exit %d: %s", code, stderr)
			}
			if got := strings.Fields(out); !slices.Equal(got, want) {
				t.Errorf("list:\n got %q\nwant %q (LiveObjects)", got, want)
			}

			code, out, stderr = runCmd(t, "files", append(tc.args, "--format", "json")...)
			if code != exitOK {
				t.Fatalf("json: exit %d: %s", code, stderr)
			}
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != len(tc.want) {
				t.Fatalf("json: %d lines, want %d:\n%s", len(lines), len(tc.want), out)
			}
			for i, line := range lines {
				var f struct {
					URL, Key, Kind, Checksum string
					Rows, Size               int64
				}
				if err := json.Unmarshal([]byte(line), &f); err != nil {
					t.Fatal(err)
				}
				o := tc.want[i]
				if f.URL != want[i] || f.Key != o.Key || f.Kind != o.Kind || f.Rows != o.Rows || f.Size != o.Size || f.Checksum != o.Checksum || f.Checksum == "" {
					t.Errorf("json line %d = %+v, want %+v at %s", i, f, o.CommittedObject, want[i])
				}
			}

			code, out, stderr = runCmd(t, "files", append(tc.args, "--format", "duckdb")...)
			if code != exitOK {
				t.Fatalf("duckdb: exit %d: %s", code, stderr)
			}
			for _, p := range want {
				if !strings.Contains(out, "'"+p+"'") {
					t.Errorf("duckdb: %s is not read:\n%s", p, out)
				}
			}
			for _, key := range notLive {
				if strings.Contains(out, key) {
					t.Errorf("duckdb: reads %s, which is not committed:\n%s", key, out)
				}
			}
			view, reader := `VIEW "events" AS SELECT * FROM read_parquet([`, "union_by_name = true"
			if tc.want[0].Kind == lake.KindDeadLetter {
				view, reader = `VIEW "events_deadletter" AS SELECT * FROM read_json([`, "format = 'newline_delimited'"
			}
			if !strings.Contains(out, "CREATE OR REPLACE "+view) || !strings.Contains(out, reader) {
				t.Errorf("duckdb: want %q and %q in\n%s", view, reader, out)
			}
		})
	}
}

// --output writes the file whole; bad command lines are usage errors; a
// misspelt table is an error naming the tables there are, not an empty
// list; a table with nothing to read gives DuckDB no empty view.
func TestFilesOutputAndErrors(t *testing.T) {
	root, live, _, _ := filesLake(t)
	out := filepath.Join(t.TempDir(), "events.sql")
	if code, stdout, stderr := runCmd(t, "files", "events", "--lake", root, "--format", "duckdb", "--output", out); code != exitOK || stdout != "" {
		t.Fatalf("exit %d, stdout %q: %s", code, stdout, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), localPaths(root, live)[0]) || !strings.HasSuffix(string(data), ");\n") {
		t.Errorf("%s:\n%s", out, data)
	}

	noDeadLetters, _ := testLake(t)
	for _, tc := range []struct {
		name string
		args []string
		code int
		err  string
	}{
		{"no lake", []string{"events"}, exitUsage, "exactly one of --config and --lake"},
		{"two lakes", []string{"events", "--lake", root, "--config", "x.yaml"}, exitUsage, "exactly one of --config and --lake"},
		{"bad format", []string{"events", "--lake", root, "--format", "csv"}, exitUsage, `--format "csv"`},
		{"bad kind", []string{"events", "--lake", root, "--kind", "summary"}, exitUsage, `--kind "summary"`},
		{"reserved table name", []string{"_sluice", "--lake", root}, exitUsage, `table "_sluice"`},
		{"not a lake", []string{"events", "--lake", t.TempDir()}, exitRuntime, "is not a lake"},
		{"unknown table", []string{"event", "--lake", root}, exitRuntime, "table event: no commit records in this lake (tables with commit records: [events])"},
		{"nothing for duckdb", []string{"events", "--lake", noDeadLetters, "--kind", "deadletter", "--format", "duckdb"}, exitRuntime,
			"table events has no committed deadletter objects yet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCmd(t, "files", tc.args...)
			if code != tc.code || !strings.Contains(stderr, tc.err) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, stderr, tc.code, tc.err)
			}
		})
	}
}

// Over S3 (a real server: scripts/versitygw.sh start && . .testenv/versitygw.env)
// the list holds s3:// URLs of the committed set, and the DuckDB script
// sets the endpoint but never the credentials.
func TestFilesS3(t *testing.T) {
	cfg := objstoretest.S3Config(t)
	cfg.Prefix = "lakes/one"
	root, live, _, notLive := filesLake(t)
	b := objstoretest.OpenS3(t, cfg, slog.New(slog.DiscardHandler))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	uploadDir(t, ctx, b, root)
	cfgPath := filepath.Join(t.TempDir(), "sluice.yaml")
	yaml := fmt.Sprintf("store:\n  s3: {endpoint: %q, bucket: %q, prefix: lakes/one, access_key: %q, secret_key: %q, insecure: true, path_style: true, region: us-east-1}\n",
		cfg.Endpoint, cfg.Bucket, cfg.AccessKey, cfg.SecretKey)
	if err := os.WriteFile(cfgPath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runCmd(t, "files", "events", "--config", cfgPath)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	want := []string{"s3://" + cfg.Bucket + "/lakes/one/" + live[0].Key}
	if got := strings.Fields(out); !slices.Equal(got, want) {
		t.Errorf("list %q, want %q", got, want)
	}
	code, out, stderr = runCmd(t, "files", "events", "--config", cfgPath, "--format", "duckdb")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, s := range []string{"LOAD httpfs;", "SET s3_endpoint = '" + cfg.Endpoint + "';", "SET s3_url_style = 'path';", "SET s3_use_ssl = false;", "'" + want[0] + "'"} {
		if !strings.Contains(out, s) {
			t.Errorf("duckdb script lacks %q:\n%s", s, out)
		}
	}
	for _, s := range append([]string{cfg.SecretKey, cfg.AccessKey}, notLive...) {
		if strings.Contains(out, s) {
			t.Errorf("duckdb script holds %q:\n%s", s, out)
		}
	}
}
