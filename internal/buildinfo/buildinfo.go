package buildinfo

import (
	"runtime"
	"runtime/debug"
	"sync"
)

// version is set at link time, e.g. by the image build:
//
//	go build -ldflags "-X github.com/sluicehq/sluice/internal/buildinfo.version=v1.2.3"
var version string

// Info is what is known about the build.
type Info struct {
	// Version is the link-time version, else the main module's version as
	// the Go toolchain stamped it (go install at a tag, or a pseudo-version
	// from the checkout), else "(devel)".
	Version string
	// Revision is the VCS revision (12 hex digits, "+dirty" if the tree was
	// modified); empty when the build was not stamped from a checkout (go
	// run, -buildvcs=false, a build without .git).
	Revision string
	// GoVersion is the toolchain that built the binary.
	GoVersion string
}

// Build is the revision when known, else the Go version.
func (i Info) Build() string {
	if i.Revision != "" {
		return i.Revision
	}
	return i.GoVersion
}

// get reads the build info once: it does not change while a process runs.
var get = sync.OnceValue(func() Info {
	bi, _ := debug.ReadBuildInfo()
	return from(version, bi)
})

// Get describes this binary.
func Get() Info { return get() }

func from(linked string, bi *debug.BuildInfo) Info {
	i := Info{Version: "(devel)", GoVersion: runtime.Version()}
	if bi != nil {
		if v := bi.Main.Version; v != "" {
			i.Version = v
		}
		var dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				i.Revision = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if len(i.Revision) > 12 {
			i.Revision = i.Revision[:12]
		}
		if i.Revision != "" {
			i.Revision += dirty
		}
	}
	if linked != "" {
		i.Version = linked
	}
	return i
}
