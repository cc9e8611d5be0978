package lake_test

import (
	"log/slog"
	"testing"

	"github.com/sluicehq/sluice/lake/laketest"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// The commit-log contract on the local store and on a real S3 server.
func TestCommitLogLocal(t *testing.T) {
	laketest.CommitLogTest(t, objstoretest.NewLocal(t))
}

func TestCommitLogS3(t *testing.T) {
	laketest.CommitLogTest(t, objstoretest.NewS3(t, slog.New(slog.DiscardHandler)))
}

// The sweeper on the local store and on a real S3 server.
func TestSweepLocal(t *testing.T) {
	laketest.SweepTest(t, objstoretest.NewLocal(t), objstoretest.NewLocal(t))
}

func TestSweepS3(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	laketest.SweepTest(t, objstoretest.NewS3(t, logger), objstoretest.NewS3(t, logger))
}
