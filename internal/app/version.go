package app

import (
	"fmt"
	"runtime"

	"github.com/sluicehq/sluice/internal/buildinfo"
)

// Version prints what describes this binary: its version (set at link
// time, or the module's from the Go toolchain), the VCS revision if
// stamped, the Go version and the platform. Parquet objects name the same
// version (schema.CreatedBy).
func Version(c Console) error {
	i := buildinfo.Get()
	s := "sluice " + i.Version
	if i.Revision != "" {
		s += " (" + i.Revision + ")"
	}
	_, err := fmt.Fprintln(c.Stdout, s+" "+i.GoVersion+" "+runtime.GOOS+"/"+runtime.GOARCH)
	return err
}
