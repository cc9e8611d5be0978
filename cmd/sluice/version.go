package main

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/buildinfo"
)

// buildVersion describes this binary: its version (set at link time, or
// the module's from the Go toolchain), the VCS revision if stamped, the Go
// version and the platform. Parquet objects name the same version
// (schema.CreatedBy).
func buildVersion() string {
	i := buildinfo.Get()
	s := "sluice " + i.Version
	if i.Revision != "" {
		s += " (" + i.Revision + ")"
	}
	return s + " " + i.GoVersion + " " + runtime.GOOS + "/" + runtime.GOARCH
}

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(g.stdout, buildVersion())
			return err
		},
	}
}
