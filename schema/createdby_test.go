package schema

import (
	"bytes"
	"regexp"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/apache/arrow/go/v15/parquet/file"
)

// createdByForm is the Parquet convention: an application, a non-empty
// version and a non-empty build.
var createdByForm = regexp.MustCompile(`^sluice version \S+ \(build [^ ()]+\)$`)

func TestFormatCreatedBy(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		want createdByParts
	}{
		{"no build info", nil, createdByParts{"(devel)", runtime.Version()}},
		{"go run: no version, no VCS", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			createdByParts{"(devel)", runtime.Version()}},
		{"go build in a checkout", &debug.BuildInfo{
			Main: debug.Module{Version: "v0.0.0-20261130051854-d40c420aa2b1+dirty"},
			Settings: []debug.BuildSetting{
				{Key: "vcs.revision", Value: "d40c420aa2b1c3d4e5f60718293a4b5c6d7e8f90"}, {Key: "vcs.modified", Value: "true"},
			}}, createdByParts{"v0.0.0-20261130051854-d40c420aa2b1+dirty", "d40c420aa2b1+dirty"}},
		{"go install at a tag", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, createdByParts{"v1.2.3", runtime.Version()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := formatCreatedBy(tc.bi); got != tc.want {
				t.Errorf("formatCreatedBy = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Every raw object's footer names the version and build of the binary that
// wrote it, also in go run and go test builds (no link-time version).
func TestWriteParquetCreatedBy(t *testing.T) {
	tbl, rec := benchRecord(t, 10)
	defer rec.Release()
	var buf bytes.Buffer
	if _, err := WriteParquet(&buf, tbl, rec, nil, WriterOptions{}); err != nil {
		t.Fatal(err)
	}
	pr, err := file.NewParquetReader(bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	got := pr.MetaData().GetCreatedBy()
	if got != CreatedByString() || !createdByForm.MatchString(got) {
		t.Errorf("created_by = %q, want %q in the form %s", got, CreatedByString(), createdByForm)
	}
}
