package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"text/tabwriter"
	"time"

	"github.com/sluicehq/sluice/internal/config"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/client"
	"github.com/sluicehq/sluice/ops"
)

var errNoRules = errors.New("rules_file is not set: sluice ops needs rules (see ops/rules/sample.yaml)")

// OpsOptions are the flags of `sluice ops`.
type OpsOptions struct {
	ConfigPath string
	Once       bool
}

// Ops runs the operations-automation service and its HTTP endpoint until
// ctx is done, or (Once) evaluates every table once.
func Ops(ctx context.Context, c Console, o OpsOptions) error {
	cfg, err := LoadRequiredConfig(o.ConfigPath)
	if err != nil {
		return err
	}
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	svc, err := newOpsService(ctx, cfg, c.Logger, newProcMetrics(reg))
	if err != nil {
		return err
	}
	defer svc.Close()
	if o.Once {
		seen := map[string]bool{}
		var errs []error
		for _, r := range cfg.Rules.Rules {
			if !seen[r.Table] {
				seen[r.Table] = true
				errs = append(errs, svc.EvaluateOnce(ctx, r.Table))
			}
		}
		return errors.Join(errs...)
	}
	srv, err := listenHTTP(cfg.HTTP.Addr, reg, nil, c.Logger)
	if err != nil {
		return err
	}
	c.Logger.Info("ops starting", "rules", len(cfg.Rules.Rules), "interval", cfg.Ops.Interval, "http", srv.Addr())
	g := newGroup(ctx)
	g.add(ctx, svc.Run)
	g.add(ctx, srv.Run)
	return g.run()
}

// newOpsService opens the stores and builds the service.
func newOpsService(ctx context.Context, cfg *config.File, logger *slog.Logger, pm *procMetrics) (*ops.Service, error) {
	if cfg.Rules == nil {
		return nil, errNoRules
	}
	lakeB, err := openConditional(ctx, cfg, logger, pm)
	if err != nil {
		return nil, err
	}
	var summaries objstore.BucketReader
	if cfg.SummaryStore != nil {
		if summaries, err = client.NewBucket(ctx, "summary", *cfg.SummaryStore, logger, pm.stores()); err != nil {
			return nil, err
		}
	}
	return ops.NewService(cfg.Ops, cfg.Rules, cfg.Tables, lakeB, summaries, processOwner(), logger, ops.NewMetrics(pm.registerer()))
}

// openConditional opens the raw store, which the action log replaces
// objects in conditionally.
func openConditional(ctx context.Context, cfg *config.File, logger *slog.Logger, pm *procMetrics) (objstore.ConditionalBucket, error) {
	raw, err := client.NewBucket(ctx, "raw", cfg.Store, logger, pm.stores())
	if err != nil {
		return nil, err
	}
	cb, ok := raw.(objstore.ConditionalBucket)
	if !ok {
		return nil, fmt.Errorf("store %s cannot replace objects conditionally", raw.Name())
	}
	return cb, nil
}

// ActionsOptions are the flags of `sluice actions`.
type ActionsOptions struct {
	ConfigPath          string
	Table, Rule, Status string
	JSON                bool
}

// openActionLog opens the action log in the configured lake.
func openActionLog(ctx context.Context, c Console, o ActionsOptions) (*config.File, *ops.ActionLog, error) {
	cfg, err := LoadRequiredConfig(o.ConfigPath)
	if err != nil {
		return nil, nil, err
	}
	cb, err := openConditional(ctx, cfg, c.Logger, nil)
	if err != nil {
		return nil, nil, err
	}
	return cfg, ops.NewActionLog(cb), nil
}

// ListActions prints the firings, oldest first, as a table or JSON lines.
func ListActions(ctx context.Context, c Console, o ActionsOptions) error {
	_, log, err := openActionLog(ctx, c, o)
	if err != nil {
		return err
	}
	entries, err := log.List(ctx, ops.Filter{Table: o.Table, Rule: o.Rule, Status: o.Status})
	if err != nil {
		return err
	}
	if o.JSON {
		enc := json.NewEncoder(c.Stdout)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
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
}

// ShowAction prints one firing's log entry.
func ShowAction(ctx context.Context, c Console, o ActionsOptions, id string) error {
	_, log, err := openActionLog(ctx, c, o)
	if err != nil {
		return err
	}
	e, _, err := log.Find(ctx, id)
	if err != nil {
		return err
	}
	out, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintln(c.Stdout, string(out))
	return nil
}

// Redeliver sends the firings ids again now and records the outcomes.
func Redeliver(ctx context.Context, c Console, o ActionsOptions, ids []string) error {
	cfg, log, err := openActionLog(ctx, c, o)
	if err != nil {
		return err
	}
	if cfg.Rules == nil {
		return errNoRules
	}
	d := ops.NewDeliverer(log, cfg.Rules, c.Logger, nil)
	defer d.Close()
	var errs []error
	for _, id := range ids {
		e, err := ops.Redeliver(ctx, d, log, id)
		if e != nil {
			fmt.Fprintf(c.Stdout, "%s: %s (attempt %d)\n", id, e.Status, e.Attempts)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
