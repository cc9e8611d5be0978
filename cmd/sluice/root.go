package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

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
	// con.Logger is replaced by the one the flags configure in the root's
	// PersistentPreRunE, before any RunE runs.
	con       app.Console
	logLevel  string
	logFormat string
	profile   app.Profile
}

// newRootCmd builds the whole command tree. Each subcommand is built by a
// newXxxCmd(g *globals) *cobra.Command.
func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{con: app.Console{Stdout: stdout, Stderr: stderr, Logger: slog.New(slog.NewTextHandler(stderr, nil))}}
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
			l, err := app.NewLogger(stderr, g.logLevel, g.logFormat)
			if err != nil {
				return err
			}
			g.con.Logger = l
			return g.profile.Start()
		},
		PersistentPostRun: func(*cobra.Command, []string) { g.profile.Stop() },
	}
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	// Inherited by every subcommand: a bad flag anywhere exits with exitUsage.
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return app.UsageError{Err: err} })
	pf := cmd.PersistentFlags()
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: debug|info|warn|error")
	pf.StringVar(&g.logFormat, "log-format", "text", "log format: text|json")
	pf.StringVar(&g.profile.CPU, "cpuprofile", "", "write a CPU profile of the whole run to this file (for pprof)")
	pf.StringVar(&g.profile.Mem, "memprofile", "", "write an allocation profile of the whole run to this file when it ends (for pprof)")
	pf.StringVar(&g.profile.Trace, "trace", "", "write an execution trace of the whole run to this file (for go tool trace)")
	_ = pf.MarkHidden("trace")

	// Subcommands, one constructor each. Add new ones to this line.
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

func newVersionCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version of this binary",
		Args:  usageArgs(cobra.NoArgs),
		RunE:  func(*cobra.Command, []string) error { return app.Version(g.con) },
	}
}
