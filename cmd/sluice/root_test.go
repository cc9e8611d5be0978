package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/internal/app"
)

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string // substring
	}{
		{name: "version", args: []string{"version"}, wantCode: exitOK, wantStdout: "sluice "},
		{name: "version with json logs", args: []string{"--log-format", "json", "version"}, wantCode: exitOK, wantStdout: "sluice "},
		{name: "help", args: []string{"--help"}, wantCode: exitOK, wantStdout: "Usage:"},
		{name: "no subcommand", args: nil, wantCode: exitUsage},
		{name: "unknown subcommand", args: []string{"frobnicate"}, wantCode: exitUsage},
		{name: "unknown flag", args: []string{"version", "--nope"}, wantCode: exitUsage},
		{name: "extra argument", args: []string{"version", "extra"}, wantCode: exitUsage},
		{name: "bad log level", args: []string{"--log-level", "loud", "version"}, wantCode: exitUsage},
		{name: "bad log format", args: []string{"--log-format", "xml", "version"}, wantCode: exitUsage},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, &stdout, &stderr)
			if code != tc.wantCode {
				t.Fatalf("exit code %d, want %d; stderr:\n%s", code, tc.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantStdout) {
				t.Fatalf("stdout %q does not contain %q", stdout.String(), tc.wantStdout)
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	tests := []struct {
		name          string
		level, format string
		wantErr       bool
		debugEnabled  bool
	}{
		{name: "defaults", level: "", format: "", debugEnabled: false},
		{name: "debug text", level: "debug", format: "text", debugEnabled: true},
		{name: "error json", level: "ERROR", format: "json", debugEnabled: false},
		{name: "bad level", level: "trace", format: "text", wantErr: true},
		{name: "bad format", level: "info", format: "logfmt", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			l, err := app.NewLogger(&buf, tc.level, tc.format)
			if tc.wantErr {
				if err == nil {
					t.Fatal("want error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := l.Enabled(context.Background(), -4); got != tc.debugEnabled {
				t.Fatalf("debug enabled = %v, want %v", got, tc.debugEnabled)
			}
		})
	}
}

// `sluice --help` lists dev with every part it runs (its long help names
// them one per line).
func TestHelpDescribesDev(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"--help"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	var devLine string
	for _, l := range strings.Split(stdout.String(), "\n") {
		if f := strings.Fields(l); len(f) > 0 && f[0] == "dev" {
			devLine = l
		}
	}
	for _, part := range []string{"broker", "demo producer", "ingester", "aggregator"} {
		if !strings.Contains(devLine, part) {
			t.Errorf("sluice --help: dev line %q does not name the %s", devLine, part)
		}
	}
}
