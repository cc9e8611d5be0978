package schema

import (
	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/internal/buildinfo"
)

// CreatedBy is the Parquet footer's created_by for every object Sluice
// writes, in the usual "<app> version <version> (build <build>)" form, from
// the binary's build info (see buildinfo.Info), which every build has, go run
// and go test included.
func CreatedBy() parquet.WriterOption {
	i := buildinfo.Get()
	// parquet-go writes "<app> version <version>(build <build>)".
	return parquet.CreatedBy("sluice", i.Version+" ", i.Build())
}
