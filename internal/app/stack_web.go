package app

import (
	"context"
	"log/slog"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/web"
)

// mountDevWeb puts the web tier (query API, dashboard) on dev's listener
// and returns the dashboard's URL with a read-only token in its fragment.
func mountDevWeb(ctx context.Context, s *Stack, logger *slog.Logger) (string, error) {
	raw, err := objstore.NewLocal(s.LakeDir)
	if err != nil {
		return "", err
	}
	sums, err := objstore.NewLocal(s.SummaryDir)
	if err != nil {
		return "", err
	}
	ws, err := web.New(ctx, s.Config.Web, s.Config.Tables, raw, logger, s.Registry, s.metrics.writers())
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
