package objstore_test

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

func TestAcceptanceLocal(t *testing.T) {
	objstoretest.AcceptanceTest(t, objstoretest.NewLocal(t), objstoretest.AcceptanceOptions{LargeObjectSize: 3 << 20})
}

func TestAcceptanceS3(t *testing.T) {
	// Larger than the test bucket's part size (5 MiB), so Put goes multipart.
	objstoretest.AcceptanceTest(t, objstoretest.NewS3(t, slog.New(slog.DiscardHandler)), objstoretest.AcceptanceOptions{LargeObjectSize: 11 << 20})
}

// The decorators must keep the contract: run the suite through both, on S3
// where errors and retries are real.
func TestAcceptanceS3Decorated(t *testing.T) {
	b := objstoretest.NewS3(t, slog.New(slog.DiscardHandler))
	reg := prometheus.NewRegistry()
	decorated := objstore.NewInstrumented(objstore.NewRetrying(b, objstore.DefaultRetryPolicy(), slog.New(slog.DiscardHandler), reg), reg, "lake")
	objstoretest.AcceptanceTest(t, decorated, objstoretest.AcceptanceOptions{LargeObjectSize: 6 << 20})
}
