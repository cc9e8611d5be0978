package sink_test

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/sink"
	"github.com/sluicehq/sluice/sink/sinktest"
)

func TestAcceptanceLocal(t *testing.T) {
	sinktest.AcceptanceTest(t, sinktest.NewLocal(t), sinktest.AcceptanceOptions{LargeObjectSize: 3 << 20})
}

func TestAcceptanceS3(t *testing.T) {
	// Larger than the test bucket's part size (5 MiB), so Put goes multipart.
	sinktest.AcceptanceTest(t, sinktest.NewS3(t, slog.New(slog.DiscardHandler)), sinktest.AcceptanceOptions{LargeObjectSize: 11 << 20})
}

// The decorators must keep the contract: run the suite through both, on S3
// where errors and retries are real.
func TestAcceptanceS3Decorated(t *testing.T) {
	b := sinktest.NewS3(t, slog.New(slog.DiscardHandler))
	reg := prometheus.NewRegistry()
	decorated := sink.NewInstrumented(sink.NewRetrying(b, sink.DefaultRetryPolicy(), slog.New(slog.DiscardHandler), reg), reg, "lake")
	sinktest.AcceptanceTest(t, decorated, sinktest.AcceptanceOptions{LargeObjectSize: 6 << 20})
}

func TestCommitLogLocal(t *testing.T) {
	sinktest.CommitLogTest(t, sinktest.NewLocal(t))
}

func TestCommitLogS3(t *testing.T) {
	sinktest.CommitLogTest(t, sinktest.NewS3(t, slog.New(slog.DiscardHandler)))
}

func TestConditionalLocal(t *testing.T) {
	sinktest.ConditionalTest(t, sinktest.NewLocal(t))
}

func TestConditionalS3(t *testing.T) {
	sinktest.ConditionalTest(t, sinktest.NewS3(t, slog.New(slog.DiscardHandler)))
}

func TestConditionalS3Decorated(t *testing.T) {
	b := sinktest.NewS3(t, slog.New(slog.DiscardHandler))
	reg := prometheus.NewRegistry()
	sinktest.ConditionalTest(t, sink.NewInstrumented(sink.NewRetrying(b, sink.DefaultRetryPolicy(), slog.New(slog.DiscardHandler), reg), reg, "lake"))
}
