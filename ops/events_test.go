package ops

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// positionsOf reads the action log: the position of every entry, and
// fails on a position logged twice.
func positionsOf(t *testing.T, svc *Service) map[string]*Entry {
	t.Helper()
	all, err := svc.log.List(context.Background(), Filter{Table: "events", Rule: "big"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*Entry{}
	for _, e := range all {
		if out[e.Position] != nil {
			t.Fatalf("position %s logged twice: %s and %s", e.Position, out[e.Position].ID, e.ID)
		}
		out[e.Position] = e
	}
	return out
}

// checkDeliveries: every delivery carries the id of a log entry, the id
// matches the position in its body, and every entry was delivered.
func checkDeliveries(t *testing.T, logged map[string]*Entry, calls []delivery) {
	t.Helper()
	byID := map[string]*Entry{}
	for _, e := range logged {
		byID[e.ID] = e
	}
	got := map[string]bool{}
	for _, c := range calls {
		e := byID[c.id]
		if e == nil {
			t.Fatalf("delivery with id %s, which is not in the log", c.id)
		}
		var p struct {
			Data struct {
				ID, Position string
			}
		}
		if err := json.Unmarshal([]byte(c.body), &p); err != nil || p.Data.ID != c.id || p.Data.Position != e.Position {
			t.Fatalf("delivery %s: body %s (%v)", c.id, c.body, err)
		}
		got[c.id] = true
	}
	for _, e := range logged {
		if !got[e.ID] {
			t.Fatalf("logged firing %s (%s) never delivered: %+v", e.ID, e.Position, *e)
		}
	}
}

func checkAgainstProducer(t *testing.T, want map[string]bool, logged map[string]*Entry) {
	t.Helper()
	for p := range want {
		if logged[p] == nil {
			t.Fatalf("matching record %s has no log entry", p)
		}
	}
	for p := range logged {
		if !want[p] {
			t.Fatalf("log entry for %s, which does not match", p)
		}
	}
}

// Event rules: every committed record that matches is logged once and
// delivered; evaluating again logs nothing new.
func TestEventRuleExactlyOnce(t *testing.T) {
	t.Parallel()
	eventRuleExactlyOnce(t, objstoretest.NewLocal(t), 60)
}

// The same on a real S3 server: conditional creates, cursors and reads of
// committed objects through S3.
func TestEventRuleExactlyOnceS3(t *testing.T) {
	t.Parallel()
	eventRuleExactlyOnce(t, objstoretest.NewS3(t, slog.New(slog.DiscardHandler)), 30)
}

// eventRuleExactlyOnce commits 4 rounds of about 1.25·perRound events.
func eventRuleExactlyOnce(t *testing.T, b objstore.ConditionalBucket, perRound int) {
	rcv := newReceiver(t, secretOld)
	f := newFeeder(t, b, 3)
	svc := newTestService(t, hookRules(t, rcv.srv.URL, 3, time.Second, time.Second), b, nil, prometheus.NewRegistry())
	ctx := context.Background()
	now := time.Now()
	for round := range 4 {
		f.random(perRound, now.Add(-time.Hour), now)
		f.Commit()
		if round%2 == 0 {
			f.random(perRound/2, now.Add(-time.Hour), now)
			f.Commit()
		}
		if err := svc.EvaluateOnce(ctx, "events"); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.EvaluateOnce(ctx, "events"); err != nil {
		t.Fatal(err)
	}
	logged := positionsOf(t, svc)
	checkAgainstProducer(t, f.big, logged)
	checkDeliveries(t, logged, rcv.seen())
	if len(rcv.seen()) != len(logged) {
		t.Fatalf("%d deliveries of %d firings", len(rcv.seen()), len(logged))
	}
	if len(f.big) < perRound {
		t.Fatalf("only %d matching records: the test proves little", len(f.big))
	}
}

// Two evaluators at once on the same lake: with leases (Run) and without
// (both evaluate the same links at the same time): no record logged twice,
// none missing, every delivery under the one id of its record.
func TestTwoEvaluatorsAtOnce(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, secretOld)
	b := objstoretest.NewLocal(t)
	f := newFeeder(t, b, 2)
	rs := hookRules(t, rcv.srv.URL, 3, time.Second, time.Second)
	a := newTestService(t, rs, b, nil, prometheus.NewRegistry())
	c := newTestService(t, rs, b, nil, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	now := time.Now()
	var wg sync.WaitGroup
	// Without leases: both evaluate every round, racing on cursors and ids.
	for range 5 {
		f.random(40, now.Add(-time.Hour), now)
		f.Commit()
		for _, s := range []*Service{a, c} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = s.EvaluateOnce(ctx, "events") // a lost cursor race is an error; the next round goes on
			}()
		}
		wg.Wait()
	}
	// With leases: Run on both; one holds the table at a time.
	for _, s := range []*Service{a, c} {
		wg.Add(1)
		go func() { defer wg.Done(); _ = s.Run(ctx) }()
	}
	for range 3 {
		f.random(40, now.Add(-time.Hour), now)
		f.Commit()
		time.Sleep(200 * time.Millisecond)
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		logged := positionsOf(t, a)
		if len(logged) == len(f.big) && len(distinct(rcv.seen())) == len(logged) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	logged := positionsOf(t, a)
	checkAgainstProducer(t, f.big, logged)
	checkDeliveries(t, logged, rcv.seen())
}

func distinct(calls []delivery) map[string]bool {
	out := map[string]bool{}
	for _, c := range calls {
		out[c.id] = true
	}
	return out
}
