package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"runtime/trace"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
)

// Exit codes of the binary.
const (
	exitOK      = 0
	exitRuntime = 1 // the command ran and failed
	exitUsage   = 2 // the command line was wrong; nothing ran
)

// globals carries what every subcommand needs from the root: the output
// streams and the logger built from the global flags. Subcommand
// constructors take it instead of reaching for package-level state.
type globals struct {
	stdout io.Writer
	stderr io.Writer

	logLevel   string
	logFormat  string
	cpuProfile string
	traceFile  string

	// logger is set by the root's PersistentPreRunE, before any RunE runs.
	logger *slog.Logger
}

// Logger returns the logger configured by --log-level and --log-format.
func (g *globals) Logger() *slog.Logger {
	if g.logger == nil {
		// Only reachable from code that runs before flag parsing; keep it
		// usable rather than nil.
		return slog.New(slog.NewTextHandler(g.stderr, nil))
	}
	return g.logger
}

// console is where a command writes, for the app package.
func (g *globals) console() app.Console {
	return app.Console{Stdout: g.stdout, Stderr: g.stderr, Logger: g.Logger()}
}

// newRootCmd builds the whole command tree. Each subcommand lives in its own
// file as newXxxCmd(g *globals) *cobra.Command.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	cmd := &cobra.Command{
		Use:   "sluice",
		Short: "Drain event streams into Parquet objects in S3-compatible storage, exactly once",
		// Errors are printed once, by run, which also picks the exit code.
		SilenceErrors: true,
		SilenceUsage:  true,
		// A non-nil Args makes cobra hand unknown subcommands to RunE instead
		// of failing with an untyped error, so they exit with exitUsage.
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return app.Usagef("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			_ = cmd.Help()
			return app.Usagef("a subcommand is required")
		},
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			l, err := app.NewLogger(g.stderr, g.logLevel, g.logFormat)
			if err != nil {
				return err
			}
			g.logger = l
			if g.cpuProfile != "" {
				f, err := os.Create(g.cpuProfile)
				if err != nil {
					return err
				}
				if err := pprof.StartCPUProfile(f); err != nil {
					return err
				}
			}
			if g.traceFile != "" {
				f, err := os.Create(g.traceFile)
				if err != nil {
					return err
				}
				if err := trace.Start(f); err != nil {
					return err
				}
			}
			return nil
		},
		PersistentPostRun: func(*cobra.Command, []string) {
			if g.cpuProfile != "" {
				pprof.StopCPUProfile()
			}
			if g.traceFile != "" {
				trace.Stop()
			}
		},
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	// Inherited by every subcommand: a bad flag anywhere exits with exitUsage.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return app.UsageError{Err: err} })
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug|info|warn|error")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text|json")
	pf.StringVar(&g.cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run to this file (for pprof)")
	pf.StringVar(&g.traceFile, "trace", "", "write an execution trace of the whole run to this file (for go tool trace)")
	_ = pf.MarkHidden("trace")

	// Subcommands, one constructor per file. Add new ones to this line.
	cmd.AddCommand(newVersionCmd(g), newDevCmd(g), newIngestCmd(g), newAggregateCmd(g), newBenchCmd(g), newBrokerCmd(g), newInspectCmd(g), newLoadtestCmd(g), newSweepCmd(g), newFilesCmd(g), newOpsCmd(g), newActionsCmd(g), newBatchCmd(g), newServeCmd(g), newKeysCmd(g))
	return cmd
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintln(stderr, "sluice:", err)
	if errors.As(err, new(app.UsageError)) {
		fmt.Fprintln(stderr, "Run 'sluice --help' for usage.")
		return exitUsage
	}
	return exitRuntime
}

// usageArgs wraps a cobra positional-argument validator so that its errors
// are usage errors (exit code 2).
func usageArgs(v cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := v(cmd, args); err != nil {
			return app.UsageError{Err: err}
		}
		return nil
	}
}
