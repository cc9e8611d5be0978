package lake_test

import (
	"log/slog"
	"testing"
	"time"

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
	// A local file's modification time has (near) nanosecond resolution;
	// 400 ms steps leave the test's own steps (milliseconds, tens under
	// the race detector on a loaded machine) far inside the 800 ms grace.
	laketest.SweepTest(t, objstoretest.NewLocal(t), objstoretest.NewLocal(t), 400*time.Millisecond)
}

func TestSweepS3(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	// S3's Last-Modified has one-second resolution.
	laketest.SweepTest(t, objstoretest.NewS3(t, logger), objstoretest.NewS3(t, logger), time.Second)
}
