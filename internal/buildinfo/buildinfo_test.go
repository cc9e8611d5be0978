package buildinfo

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFrom(t *testing.T) {
	stamped := &debug.BuildInfo{
		Main: debug.Module{Version: "v0.0.0-20261130051854-d40c420aa2b1+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs.revision", Value: "d40c420aa2b1c3d4e5f60718293a4b5c6d7e8f90"}, {Key: "vcs.modified", Value: "true"},
		},
	}
	for _, tc := range []struct {
		name   string
		linked string
		bi     *debug.BuildInfo
		want   Info
	}{
		{"no build info", "", nil, Info{"(devel)", "", runtime.Version()}},
		{"go run: no version, no VCS", "", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Info{"(devel)", "", runtime.Version()}},
		{"go build in a checkout", "", stamped, Info{"v0.0.0-20261130051854-d40c420aa2b1+dirty", "d40c420aa2b1+dirty", runtime.Version()}},
		{"go install at a tag", "", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, Info{"v1.2.3", "", runtime.Version()}},
		{"image build: link-time version, no .git", "v1.2.3", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, Info{"v1.2.3", "", runtime.Version()}},
		{"link-time version wins", "v2.0.0", stamped, Info{"v2.0.0", "d40c420aa2b1+dirty", runtime.Version()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := from(tc.linked, tc.bi); got != tc.want {
				t.Errorf("from = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	if got := (Info{Revision: "abc", GoVersion: "go1"}).Build(); got != "abc" {
		t.Errorf("Build = %q, want the revision", got)
	}
	if got := (Info{GoVersion: "go1"}).Build(); got != "go1" {
		t.Errorf("Build = %q, want the Go version", got)
	}
}
