package schema

import (
	"runtime"
	"runtime/debug"
	"sync"

	"github.com/parquet-go/parquet-go"
)

// createdBy is computed once: build info does not change while a process runs.
var createdBy = sync.OnceValue(func() createdByParts {
	bi, _ := debug.ReadBuildInfo()
	return formatCreatedBy(bi)
})

// CreatedBy is the Parquet footer's created_by for every object Sluice
// writes, in the usual "<app> version <version> (build <build>)" form.
// Version and build come from the module's build info, which every build has
// (go run and go test included): the main module's version, "(devel)" when
// the toolchain stamped none, and the VCS revision, or the Go version when
// the build was not stamped from a checkout.
func CreatedBy() parquet.WriterOption {
	s := createdBy()
	return parquet.CreatedBy("sluice", s.version+" ", s.build)
}

// CreatedByString is what CreatedBy writes, for tests and tools.
func CreatedByString() string {
	s := createdBy()
	return "sluice version " + s.version + " (build " + s.build + ")"
}

type createdByParts struct{ version, build string }

func formatCreatedBy(bi *debug.BuildInfo) createdByParts {
	p := createdByParts{version: "(devel)", build: runtime.Version()}
	if bi == nil {
		return p
	}
	if v := bi.Main.Version; v != "" {
		p.version = v
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		}
	}
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		p.build = rev + dirty
	}
	return p
}
