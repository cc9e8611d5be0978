package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// The dev stack's inbox: files dropped into <data-dir>/inbox/events/ are
// ingested into the events table by the batch source (a pass every 2s),
// next to what Kafka brings, and summarised with it.

const devInboxPrefix = "events/"

// startInbox prepares the batch source over <data-dir>/inbox.
func (s *devStack) startInbox() error {
	dir := filepath.Join(s.opts.dataDir, "inbox")
	if err := os.MkdirAll(filepath.Join(dir, devInboxPrefix), 0o755); err != nil {
		return fmt.Errorf("create inbox dir: %w", err)
	}
	store, err := objstore.NewLocal(dir)
	if err != nil {
		return err
	}
	lakeB, err := objstore.NewLocal(s.lakeDir)
	if err != nil {
		return err
	}
	t := *s.events
	t.Kafka, t.Topic = nil, ""
	t.Inbox = &schema.InboxSource{Prefix: devInboxPrefix, Format: "jsonl", Compression: "auto"}
	s.batch, err = inbox.NewSource(inbox.Config{Interval: 2 * time.Second, Lease: 30 * time.Second, ReconcileEvery: time.Minute, Settle: time.Second},
		[]*schema.Table{&t}, lakeB, func(string) (objstore.Bucket, error) { return store, nil }, s.writer, s.logger, inbox.NewMetrics(s.reg))
	return err
}

// runInbox runs the batch source until ctx is done; the channel yields its
// error once it has stopped (and released its pipeline).
func (s *devStack) runInbox(ctx context.Context) <-chan error {
	done := make(chan error, 1)
	go func() {
		err := s.batch.Run(ctx)
		s.batch.Close()
		done <- err
	}()
	return done
}
