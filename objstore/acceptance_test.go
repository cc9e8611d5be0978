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
	sm := objstore.NewMetrics(reg)
	decorated := objstore.NewInstrumented(objstore.NewRetrying(b, objstore.DefaultRetryPolicy(), slog.New(slog.DiscardHandler), sm), sm, "lake")
	objstoretest.AcceptanceTest(t, decorated, objstoretest.AcceptanceOptions{LargeObjectSize: 6 << 20})
}

func TestConditionalLocal(t *testing.T) {
	objstoretest.ConditionalTest(t, objstoretest.NewLocal(t))
}

func TestConditionalS3(t *testing.T) {
	objstoretest.ConditionalTest(t, objstoretest.NewS3(t, slog.New(slog.DiscardHandler)))
}

func TestConditionalS3Decorated(t *testing.T) {
	b := objstoretest.NewS3(t, slog.New(slog.DiscardHandler))
	reg := prometheus.NewRegistry()
	sm := objstore.NewMetrics(reg)
	objstoretest.ConditionalTest(t, objstore.NewInstrumented(objstore.NewRetrying(b, objstore.DefaultRetryPolicy(), slog.New(slog.DiscardHandler), sm), sm, "lake"))
}
