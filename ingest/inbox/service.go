package inbox

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"

	"github.com/go-co-op/gocron/v2"
)

// Run makes a pass every cfg.Interval (a gocron job that never overlaps
// itself) and whenever Notify is called, until ctx ends. Passes of several
// processes may overlap: the ledger's claims share the files out.
func (s *Source) Run(ctx context.Context) error {
	sched, err := gocron.NewScheduler()
	if err != nil {
		return fmt.Errorf("batch: scheduler: %w", err)
	}
	// Passes never overlap in one process: a notification that arrives
	// during a pass is kept (the channel holds one) and runs the next.
	var passMu sync.Mutex
	pass := func(ctx context.Context) {
		passMu.Lock()
		defer passMu.Unlock()
		st, err := s.Pass(ctx)
		if err != nil && ctx.Err() == nil {
			s.logger.Error("batch: pass failed", "err", err)
			return
		}
		if st.Claimed+st.Refused > 0 {
			s.logger.Info("batch: pass", "claimed", st.Claimed, "committed", st.Committed, "failed", st.Failed,
				"quarantined", st.Quarantined, "refused", st.Refused, "splits", st.Splits, "records", st.Records)
		}
	}
	_, err = sched.NewJob(gocron.DurationJob(s.cfg.Interval),
		gocron.NewTask(pass),
		gocron.WithName("batch-pass"),
		gocron.WithSingletonMode(gocron.LimitModeReschedule),
		gocron.WithStartAt(gocron.WithStartImmediately()),
		gocron.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("batch: schedule: %w", err)
	}
	sched.Start()
	defer func() { _ = sched.Shutdown() }()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-s.notify:
			pass(ctx) // files arrived (an event)
		}
	}
}

// Notify asks Run for a pass soon (files arrived). It never blocks.
func (s *Source) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// EventsHandler accepts bucket event notifications (the S3 / MinIO event
// JSON: {"Records":[{"eventName":"s3:ObjectCreated:Put","s3":{"object":
// {"key":"..."}}}]}) with Authorization: Bearer <token>. Keys under an
// inbox prefix trigger a pass; the ledger deduplicates, so an event for a
// file already done (or sent twice) costs one listing.
func (s *Source) EventsHandler(token string, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "POST bucket event notifications here", http.StatusMethodNotAllowed)
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if token == "" || !ok || subtle.ConstantTimeCompare([]byte(got), []byte(token)) != 1 {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		var ev struct {
			Records []struct {
				EventName string `json:"eventName"`
				S3        struct {
					Object struct {
						Key string `json:"key"`
					} `json:"object"`
				} `json:"s3"`
			} `json:"Records"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&ev); err != nil {
			http.Error(w, "not an S3 event notification: "+err.Error(), http.StatusBadRequest)
			return
		}
		matched := 0
		for _, rec := range ev.Records {
			if !strings.HasPrefix(rec.EventName, "s3:ObjectCreated:") && !strings.HasPrefix(rec.EventName, "ObjectCreated:") {
				continue
			}
			key, err := url.QueryUnescape(rec.S3.Object.Key) // S3 sends keys URL-encoded
			if err != nil {
				key = rec.S3.Object.Key
			}
			for _, in := range s.inboxes {
				if strings.Contains(key, in.table.Inbox.Prefix) && !Ignored(key) {
					matched++
				}
			}
		}
		if matched > 0 {
			s.Notify()
		}
		logger.Debug("batch: event notification", "records", len(ev.Records), "inbox_files", matched)
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, "{\"records\":%d,\"inbox_files\":%d}\n", len(ev.Records), matched)
	})
}
