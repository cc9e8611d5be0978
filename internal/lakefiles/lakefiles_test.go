package lakefiles

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

func TestWriteDuckDB(t *testing.T) {
	s3 := objstore.S3Config{Endpoint: "minio:9000", Bucket: "lake", Prefix: "/one/", Region: "eu-west-1", PathStyle: true, Insecure: true,
		AccessKey: "AKIA-SECRET-ID", SecretKey: "very-secret"}
	for _, tc := range []struct {
		name    string
		urls    []string
		d       DuckDB
		want    []string // substrings, in order
		notWant []string
		err     string
	}{
		{
			name: "local parquet",
			urls: []string{"/data/lake/events/a.parquet", "/data/lake/events/b.parquet"},
			d:    DuckDB{View: "events", Kind: lake.KindRaw},
			want: []string{`CREATE OR REPLACE VIEW "events" AS SELECT * FROM read_parquet([`,
				"  '/data/lake/events/a.parquet',\n  '/data/lake/events/b.parquet'\n",
				"], union_by_name = true, hive_partitioning = false);\n"},
			notWant: []string{"httpfs"},
		},
		{
			name: "quotes",
			urls: []string{"/data/o'brien/x.parquet"},
			d:    DuckDB{View: `we"ird`, Kind: lake.KindRaw},
			want: []string{`VIEW "we""ird" AS`, `'/data/o''brien/x.parquet'`},
		},
		{
			name: "dead letters",
			urls: []string{"/data/lake/_deadletter/events/a.jsonl"},
			d:    DuckDB{View: "events_deadletter", Kind: lake.KindDeadLetter},
			want: []string{`read_json([`, "format = 'newline_delimited'"},
		},
		{
			name: "s3 settings, never credentials",
			urls: []string{S3Locator(s3)("events/a.parquet")},
			d:    DuckDB{View: "events", Kind: lake.KindRaw, S3: &s3},
			want: []string{"INSTALL httpfs;\nLOAD httpfs;\n", "SET s3_endpoint = 'minio:9000';", "SET s3_region = 'eu-west-1';",
				"SET s3_url_style = 'path';", "SET s3_use_ssl = false;", "'s3://lake/one/events/a.parquet'"},
			notWant: []string{"AKIA-SECRET-ID", "very-secret"},
		},
		{name: "glob character", urls: []string{"/data/lake/events/a*.parquet"}, d: DuckDB{View: "events", Kind: lake.KindRaw}, err: "glob character"},
		{name: "nothing", d: DuckDB{View: "events", Kind: lake.KindRaw}, err: ErrNothingToRead.Error()},
		{name: "bad kind", urls: []string{"/x"}, d: DuckDB{View: "events", Kind: "summary"}, err: `kind "summary"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := make([]File, len(tc.urls))
			for i, u := range tc.urls {
				files[i] = File{URL: u}
			}
			var b strings.Builder
			err := WriteDuckDB(&b, files, tc.d)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				if b.Len() != 0 {
					t.Errorf("wrote %q before failing", b.String())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out, rest := b.String(), b.String()
			for _, w := range tc.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("want %q (in order) in\n%s", w, out)
				}
				rest = rest[i+len(w):]
			}
			for _, w := range tc.notWant {
				if strings.Contains(out, w) {
					t.Errorf("%q in\n%s", w, out)
				}
			}
		})
	}
	if !errors.Is(WriteDuckDB(&strings.Builder{}, nil, DuckDB{View: "v", Kind: lake.KindRaw}), ErrNothingToRead) {
		t.Error("an empty list does not wrap ErrNothingToRead")
	}
}
