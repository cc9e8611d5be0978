package app

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

// prepareDevActions writes the sample rules to <data-dir>/rules.yaml unless
// the file exists (edit it: it is kept), and binds the printing webhook
// receiver's port. Without that port the rules still run (receiver nil);
// their deliveries fail and are retried.
func prepareDevActions(dataDir string, out io.Writer, logger *slog.Logger) (rulesFile string, receiver *devReceiver, err error) {
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
		return rulesFile, nil, nil
	}
	srv := &http.Server{Handler: ops.NewPrintingReceiver(out, devWebhookSecret), ReadHeaderTimeout: 5 * time.Second}
	return rulesFile, &devReceiver{srv: srv, ln: ln}, nil
}

// devReceiver prints the webhooks the sample rules deliver.
type devReceiver struct {
	srv *http.Server
	ln  net.Listener
}

// Run serves until ctx is done, then gives requests in flight two seconds.
// A receiver that fails only costs dev its printed webhooks: the error is
// not returned, so dev keeps running.
func (r *devReceiver) Run(ctx context.Context) error {
	served := make(chan struct{})
	go func() { defer close(served); _ = r.srv.Serve(r.ln) }()
	<-ctx.Done()
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = r.srv.Shutdown(sctx)
	<-served
	return nil
}

// Close releases the port of a receiver that never ran.
func (r *devReceiver) Close() { _ = r.ln.Close() }
