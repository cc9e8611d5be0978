package app

import (
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

// newInbox prepares the batch source over <data-dir>/inbox.
func (s *Stack) newInbox() error {
	dir := filepath.Join(s.opts.DataDir, "inbox")
	if err := os.MkdirAll(filepath.Join(dir, devInboxPrefix), 0o755); err != nil {
		return fmt.Errorf("create inbox dir: %w", err)
	}
	store, err := objstore.NewLocal(dir)
	if err != nil {
		return err
	}
	lakeB, err := objstore.NewLocal(s.LakeDir)
	if err != nil {
		return err
	}
	t := *s.Events
	t.Kafka, t.Topic = nil, ""
	t.Inbox = &schema.InboxSource{Prefix: devInboxPrefix, Format: "jsonl", Compression: "auto"}
	s.batch, err = inbox.NewSource(inbox.Config{Interval: 2 * time.Second, Lease: 30 * time.Second, ReconcileEvery: time.Minute, Settle: time.Second},
		[]*schema.Table{&t}, lakeB, func(string) (objstore.Bucket, error) { return store, nil }, s.writer, s.logger, inbox.NewMetrics(s.Registry))
	return err
}
