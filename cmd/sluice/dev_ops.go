package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/ops"
)

// devWebhookAddr is where the sample rules' webhook points.
const devWebhookAddr = "127.0.0.1:8099"

// devWebhookSecret is the sample rules' secret (dev only), as they spell it.
const devWebhookSecret = "${SLUICE_DEV_WEBHOOK_SECRET:-whsec_c2x1aWNlLWRldi1yZWNlaXZlci1zZWNyZXQ=}"

// startDevActions writes the sample rules to <data-dir>/rules.yaml unless
// the file exists (edit it: it is kept), and starts the printing webhook
// receiver. Without the receiver's port the rules still run; their
// deliveries fail and are retried.
func startDevActions(dataDir string, out io.Writer, logger *slog.Logger) (rulesFile string, stop func(), err error) {
	rulesFile = filepath.Join(dataDir, "rules.yaml")
	if err := os.MkdirAll(dataDir, 0o755); err != nil {
		return "", nil, fmt.Errorf("create data dir: %w", err)
	}
	if _, err := os.Stat(rulesFile); errors.Is(err, os.ErrNotExist) {
		if err := os.WriteFile(rulesFile, ops.SampleRules(), 0o644); err != nil {
			return "", nil, fmt.Errorf("write sample rules: %w", err)
		}
	}
	ln, err := net.Listen("tcp", devWebhookAddr)
	if err != nil {
		logger.Warn("dev webhook receiver not started; deliveries will be retried", "addr", devWebhookAddr, "err", err)
		return rulesFile, func() {}, nil
	}
	srv := &http.Server{Handler: ops.NewPrintingReceiver(out, devWebhookSecret), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return rulesFile, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}
