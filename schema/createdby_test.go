package schema

import (
	"bytes"
	"regexp"
	"testing"

	"github.com/apache/arrow/go/v15/parquet/file"
	"github.com/sluicehq/sluice/internal/buildinfo"
)

// createdByForm is the Parquet convention: an application, a non-empty
// version and a non-empty build.
var createdByForm = regexp.MustCompile(`^sluice version \S+ \(build [^ ()]+\)$`)

// wantCreatedBy is what CreatedBy must write, from the build info.
func wantCreatedBy() string {
	i := buildinfo.Get()
	return "sluice version " + i.Version + " (build " + i.Build() + ")"
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
	if got != wantCreatedBy() || !createdByForm.MatchString(got) {
		t.Errorf("created_by = %q, want %q in the form %s", got, wantCreatedBy(), createdByForm)
	}
}
