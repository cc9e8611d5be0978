package main

import (
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
)

func newOpsCmd(g *globals) *cobra.Command {
	var o app.OpsOptions
	cmd := &cobra.Command{
		Use:   "ops --config sluice.yaml",
		Short: "Evaluate the rules of rules_file and deliver their actions (webhooks, Kafka records)",
		Long: `Runs the operations-automation service: event rules on every committed
record, window rules on every closed window of a rollup, each firing
logged once in the action log (_sluice/actions/ in the lake) before it is
delivered, under an id that stays the same on every retry. Any number may
run: a lease per table lets one work on it at a time.
With --once it evaluates every table once, makes the due deliveries, and exits.`,
		Example: `  sluice ops --config sluice.yaml`,
		Args:    usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.Ops(cmd.Context(), g.console(), o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	f.BoolVar(&o.Once, "once", false, "evaluate every table once, deliver what is due, then exit")
	return cmd
}

func newActionsCmd(g *globals) *cobra.Command {
	var o app.ActionsOptions
	cmd := &cobra.Command{
		Use:   "actions",
		Short: "List, show and redeliver the firings in the action log",
		Example: `  sluice actions list --config sluice.yaml --status dead
  sluice actions show --config sluice.yaml fir_0123abcd...
  sluice actions redeliver --config sluice.yaml fir_0123abcd...`,
		Args: usageArgs(cobra.NoArgs),
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&o.ConfigPath, "config", "c", "", "path to sluice.yaml")
	pf.BoolVar(&o.JSON, "json", false, "print JSON")
	list := &cobra.Command{
		Use:   "list --config sluice.yaml",
		Short: "List firings, oldest first (--status dead: the dead letters)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.ListActions(cmd.Context(), g.console(), o)
		},
	}
	lf := list.Flags()
	lf.StringVar(&o.Table, "table", "", "only this table")
	lf.StringVar(&o.Rule, "rule", "", "only this rule (with --table)")
	lf.StringVar(&o.Status, "status", "", "only this status: pending, delivered or dead")
	show := &cobra.Command{
		Use:   "show --config sluice.yaml <firing id>",
		Short: "Print one firing: its log entry and the payload delivered",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return app.ShowAction(cmd.Context(), g.console(), o, args[0])
		},
	}
	redeliver := &cobra.Command{
		Use:   "redeliver --config sluice.yaml <firing id>...",
		Short: "Send firings again now under their ids (dead letters, or ones a receiver lost) and record the outcome",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return app.Redeliver(cmd.Context(), g.console(), o, args)
		},
	}
	cmd.AddCommand(list, show, redeliver)
	return cmd
}
