package main

import (
	"context"
	"log/slog"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/web"
)

// mountDevWeb puts the web tier (query API, dashboard) on dev's listener
// and returns the dashboard's URL with a read-only token in its fragment.
func mountDevWeb(ctx context.Context, s *devStack, logger *slog.Logger) (string, error) {
	raw, err := objstore.NewLocal(s.lakeDir)
	if err != nil {
		return "", err
	}
	sums, err := objstore.NewLocal(s.summaryDir)
	if err != nil {
		return "", err
	}
	ws, err := web.New(ctx, s.cfg.Web, s.cfg.tables, raw, logger, s.reg, s.metrics.writers())
	if err != nil {
		return "", err
	}
	ws.SetSummaries(sums)
	ws.Mount(s.srv)
	tok, err := ws.DevToken(ctx)
	if err != nil {
		return "", err
	}
	return "http://" + s.srv.Addr() + "/#token=" + tok, nil
}
