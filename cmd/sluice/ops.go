package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/ops"
)

var errNoRules = errors.New("rules_file is not set: sluice ops needs rules (see ops/rules/sample.yaml)")

type opsOptions struct {
	configPath string
	once       bool
}

func newOpsCmd(g *globals) *cobra.Command {
	var o opsOptions
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
			cfg, err := loadRequiredConfig(o.configPath)
			if err != nil {
				return err
			}
			return runOps(cmd.Context(), g, cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.configPath, "config", "c", "", "path to sluice.yaml")
	f.BoolVar(&o.once, "once", false, "evaluate every table once, deliver what is due, then exit")
	return cmd
}

// newOpsService opens the stores and builds the service.
func newOpsService(ctx context.Context, cfg *fileConfig, logger *slog.Logger, pm *procMetrics) (*ops.Service, error) {
	if cfg.rules == nil {
		return nil, errNoRules
	}
	raw, err := openNamedBucket(ctx, "raw", cfg.Store, logger, pm)
	if err != nil {
		return nil, err
	}
	lakeB, ok := raw.(objstore.ConditionalBucket)
	if !ok {
		return nil, fmt.Errorf("store %s cannot replace objects conditionally", raw.Name())
	}
	var summaries objstore.BucketReader
	if cfg.SummaryStore != nil {
		if summaries, err = openNamedBucket(ctx, "summary", *cfg.SummaryStore, logger, pm); err != nil {
			return nil, err
		}
	}
	host, _ := os.Hostname()
	return ops.NewService(cfg.Ops, cfg.rules, cfg.tables, lakeB, summaries, fmt.Sprintf("%s/%d", host, os.Getpid()), logger, ops.NewMetrics(pm.registerer()))
}

func runOps(ctx context.Context, g *globals, cfg *fileConfig, o opsOptions) error {
	reg := prometheus.NewRegistry()
	if err := httpserver.RegisterRuntimeCollectors(reg); err != nil {
		return err
	}
	svc, err := newOpsService(ctx, cfg, g.Logger(), newProcMetrics(reg))
	if err != nil {
		return err
	}
	defer svc.Close()
	if o.once {
		seen := map[string]bool{}
		var errs []error
		for _, r := range cfg.rules.Rules {
			if !seen[r.Table] {
				seen[r.Table] = true
				errs = append(errs, svc.EvaluateOnce(ctx, r.Table))
			}
		}
		return errors.Join(errs...)
	}
	logger := g.Logger()
	srv := httpserver.New(cfg.HTTP.Addr, reg, logger)
	if err := srv.Listen(); err != nil {
		return err
	}
	logger.Info("ops starting", "rules", len(cfg.rules.Rules), "interval", cfg.Ops.Interval, "http", srv.Addr())
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	httpDone := make(chan error, 1)
	go func() { httpDone <- srv.Run(httpCtx) }()
	runErr := svc.Run(ctx)
	stopHTTP()
	return errors.Join(runErr, <-httpDone)
}

type actionsOptions struct {
	configPath          string
	table, rule, status string
	asJSON              bool
}

func newActionsCmd(g *globals) *cobra.Command {
	var o actionsOptions
	cmd := &cobra.Command{
		Use:   "actions",
		Short: "List, show and redeliver the firings in the action log",
		Example: `  sluice actions list --config sluice.yaml --status dead
  sluice actions show --config sluice.yaml fir_0123abcd...
  sluice actions redeliver --config sluice.yaml fir_0123abcd...`,
		Args: usageArgs(cobra.NoArgs),
	}
	pf := cmd.PersistentFlags()
	pf.StringVarP(&o.configPath, "config", "c", "", "path to sluice.yaml")
	pf.BoolVar(&o.asJSON, "json", false, "print JSON")
	open := func(cmd *cobra.Command) (*fileConfig, *ops.ActionLog, objstore.ConditionalBucket, error) {
		cfg, err := loadRequiredConfig(o.configPath)
		if err != nil {
			return nil, nil, nil, err
		}
		raw, err := openNamedBucket(cmd.Context(), "raw", cfg.Store, g.Logger(), nil)
		if err != nil {
			return nil, nil, nil, err
		}
		cb, ok := raw.(objstore.ConditionalBucket)
		if !ok {
			return nil, nil, nil, fmt.Errorf("store %s cannot replace objects conditionally", raw.Name())
		}
		return cfg, ops.NewActionLog(cb), cb, nil
	}
	list := &cobra.Command{
		Use:   "list --config sluice.yaml",
		Short: "List firings, oldest first (--status dead: the dead letters)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, log, _, err := open(cmd)
			if err != nil {
				return err
			}
			entries, err := log.List(cmd.Context(), ops.Filter{Table: o.table, Rule: o.rule, Status: o.status})
			if err != nil {
				return err
			}
			if o.asJSON {
				enc := json.NewEncoder(g.stdout)
				for _, e := range entries {
					if err := enc.Encode(e); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTABLE\tRULE\tSTATE\tWHERE\tSTATUS\tATTEMPTS\tCREATED")
			for _, e := range entries {
				where := e.Position
				if e.WindowStart != nil {
					where = e.WindowStart.Format(time.RFC3339)
					if len(e.Group) > 0 {
						g, _ := json.Marshal(e.Group)
						where += " " + string(g)
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\n", e.ID, e.Table, e.Rule, e.State, where, e.Status, e.Attempts, e.CreatedAt.Format(time.RFC3339))
			}
			return tw.Flush()
		},
	}
	lf := list.Flags()
	lf.StringVar(&o.table, "table", "", "only this table")
	lf.StringVar(&o.rule, "rule", "", "only this rule (with --table)")
	lf.StringVar(&o.status, "status", "", "only this status: pending, delivered or dead")
	show := &cobra.Command{
		Use:   "show --config sluice.yaml <firing id>",
		Short: "Print one firing: its log entry and the payload delivered",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, log, _, err := open(cmd)
			if err != nil {
				return err
			}
			e, _, err := log.Find(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out, err := json.MarshalIndent(e, "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(g.stdout, string(out))
			return nil
		},
	}
	redeliver := &cobra.Command{
		Use:   "redeliver --config sluice.yaml <firing id>...",
		Short: "Send firings again now under their ids (dead letters, or ones a receiver lost) and record the outcome",
		Args:  usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, log, _, err := open(cmd)
			if err != nil {
				return err
			}
			if cfg.rules == nil {
				return errNoRules
			}
			d := ops.NewDeliverer(log, cfg.rules, g.Logger(), nil)
			defer d.Close()
			var errs []error
			for _, id := range args {
				e, err := ops.Redeliver(cmd.Context(), d, log, id)
				if e != nil {
					fmt.Fprintf(g.stdout, "%s: %s (attempt %d)\n", id, e.Status, e.Attempts)
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", id, err))
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.AddCommand(list, show, redeliver)
	return cmd
}
