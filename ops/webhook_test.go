package ops

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

const (
	secretOld = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	secretNew = "whsec_c2x1aWNlLXRlc3QtbmV3LXNlY3JldC0xMjM0"
)

// receiver is a webhook endpoint that checks every delivery's signature
// with the secret it knows and answers what answer says.
type receiver struct {
	t      *testing.T
	secret string
	answer atomic.Value // func(n int) (status int, delay time.Duration)

	mu    sync.Mutex
	calls []delivery
	srv   *httptest.Server
}

type delivery struct {
	id   string
	at   time.Time
	body string
}

func newReceiver(t *testing.T, secret string) *receiver {
	r := &receiver{t: t, secret: secret}
	r.setAnswer(func(int) (int, time.Duration) { return 204, 0 })
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) setAnswer(f func(n int) (int, time.Duration)) { r.answer.Store(f) }

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if err := Verify(r.secret, req.Header, body, time.Now(), 5*time.Minute); err != nil {
		r.t.Errorf("receiver: %v", err)
		w.WriteHeader(400)
		return
	}
	r.mu.Lock()
	r.calls = append(r.calls, delivery{id: req.Header.Get(HeaderID), at: time.Now(), body: string(body)})
	n := len(r.calls)
	r.mu.Unlock()
	status, delay := r.answer.Load().(func(int) (int, time.Duration))(n)
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-req.Context().Done():
			return
		}
	}
	w.WriteHeader(status)
}

func (r *receiver) seen() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.calls...)
}

// hookRules is a rules file with one webhook (signing with both secrets:
// a rotation in progress) and one event rule.
func hookRules(t *testing.T, url string, attempts int, span, timeout time.Duration) *RuleSet {
	t.Helper()
	y := fmt.Sprintf(`
webhooks:
  - name: hook
    url: %s
    secrets: [%q, %q]
    timeout: %s
    retry: {attempts: %d, span: %s}
rules:
  - name: big
    table: events
    when: amount > 50
    action: {webhook: hook}
`, url, secretOld, secretNew, timeout, attempts, span)
	rs, err := ParseRules([]byte(y), "test.yaml", schema.SampleTables(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

func newTestService(t *testing.T, rs *RuleSet, b objstore.ConditionalBucket, summaries objstore.BucketReader, reg prometheus.Registerer) *Service {
	t.Helper()
	svc, err := NewService(Config{Interval: 50 * time.Millisecond, Lease: 2 * time.Second, Start: StartBeginning, Rescan: time.Hour},
		rs, schema.SampleTables(), b, summaries, "test", slog.New(slog.DiscardHandler), NewMetrics(reg))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

func testEntry(id string) *Entry {
	return &Entry{ID: id, Table: "events", Rule: "big", RuleVersion: "v", State: StateFired, Position: "p/0/" + id,
		Target: "webhook:hook", Payload: []byte(`{"id":"` + id + `"}`), CreatedAt: time.Now(), Status: StatusPending}
}

// deliverUntil runs delivery rounds until every id is no longer pending.
func deliverUntil(t *testing.T, svc *Service, ids ...string) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if err := svc.deliverDue(ctx, "events"); err != nil {
			t.Fatal(err)
		}
		done := true
		for _, id := range ids {
			e, _, err := svc.log.Get(ctx, "events", "big", id)
			if err != nil {
				t.Fatal(err)
			}
			done = done && e.Status != StatusPending
		}
		if done {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("still pending after 10s: %v", ids)
}

// A receiver that is slow, then fails: retries with backoff under the same
// id, the last failure goes to the dead letters, which are listed and
// redelivered (same id) once the receiver recovers. The receiver verifies
// each signature with the new secret only: the rotation's second signature.
func TestWebhookRetriesDeadLetterRedeliver(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, secretNew)
	rcv.setAnswer(func(n int) (int, time.Duration) {
		if n == 1 {
			return 204, 2 * time.Second // slower than the timeout: a failed attempt
		}
		return 500, 0
	})
	reg := prometheus.NewRegistry()
	b := objstoretest.NewLocal(t)
	svc := newTestService(t, hookRules(t, rcv.srv.URL, 4, 700*time.Millisecond, 200*time.Millisecond), b, nil, reg)
	ctx := context.Background()
	if err := svc.record(ctx, testEntry("fir_a")); err != nil {
		t.Fatal(err)
	}
	deliverUntil(t, svc, "fir_a")
	calls := rcv.seen()
	if len(calls) != 4 {
		t.Fatalf("%d attempts, want 4", len(calls))
	}
	for i, c := range calls {
		if c.id != "fir_a" {
			t.Fatalf("attempt %d has id %s", i, c.id)
		}
		if i > 1 && c.at.Sub(calls[i-1].at) < 40*time.Millisecond {
			t.Fatalf("attempt %d came %s after the one before: no backoff", i, c.at.Sub(calls[i-1].at))
		}
	}
	dead, err := svc.log.List(ctx, Filter{Status: StatusDead})
	if err != nil || len(dead) != 1 || dead[0].ID != "fir_a" || dead[0].Attempts != 4 {
		t.Fatalf("dead letters %+v, %v", dead, err)
	}
	if got := testutil.ToFloat64(svc.m.deadLetters.WithLabelValues("events")); got != 1 {
		t.Fatalf("dead letters metric %v", got)
	}
	if got := testutil.ToFloat64(svc.m.deliveries.WithLabelValues("events", "webhook", "retry")); got != 3 {
		t.Fatalf("retries metric %v", got)
	}

	rcv.setAnswer(func(int) (int, time.Duration) { return 200, 0 })
	e, err := Redeliver(ctx, svc.d, svc.log, "fir_a")
	if err != nil || e.Status != StatusDelivered {
		t.Fatalf("redeliver: %+v %v", e, err)
	}
	if calls := rcv.seen(); len(calls) != 5 || calls[4].id != "fir_a" || calls[4].body != `{"id":"fir_a"}` {
		t.Fatalf("redelivery: %+v", calls)
	}
	if dead, _ := svc.log.List(ctx, Filter{Status: StatusDead}); len(dead) != 0 {
		t.Fatalf("still dead after redelivery: %+v", dead)
	}
}

// 410 Gone turns the endpoint off: the firing is a dead letter, later
// firings are dead-lettered without a call, and a redelivery that succeeds
// turns it on again.
func TestWebhookGoneDisablesEndpoint(t *testing.T) {
	rcv := newReceiver(t, secretOld)
	rcv.setAnswer(func(int) (int, time.Duration) { return 410, 0 })
	b := objstoretest.NewLocal(t)
	svc := newTestService(t, hookRules(t, rcv.srv.URL, 5, time.Second, time.Second), b, nil, prometheus.NewRegistry())
	ctx := context.Background()
	if err := svc.record(ctx, testEntry("fir_1")); err != nil {
		t.Fatal(err)
	}
	deliverUntil(t, svc, "fir_1")
	if err := svc.record(ctx, testEntry("fir_2")); err != nil {
		t.Fatal(err)
	}
	deliverUntil(t, svc, "fir_2")
	if n := len(rcv.seen()); n != 1 {
		t.Fatalf("%d calls, want 1 (the endpoint is off after 410)", n)
	}
	if off, _ := svc.log.Disabled(ctx, "hook"); !off {
		t.Fatal("endpoint not turned off")
	}
	for _, id := range []string{"fir_1", "fir_2"} {
		e, _, _ := svc.log.Get(ctx, "events", "big", id)
		if e.Status != StatusDead {
			t.Fatalf("%s: %s", id, e.Status)
		}
	}
	rcv.setAnswer(func(int) (int, time.Duration) { return 200, 0 })
	if e, err := Redeliver(ctx, svc.d, svc.log, "fir_2"); err != nil || e.Status != StatusDelivered {
		t.Fatalf("redeliver: %+v %v", e, err)
	}
	if off, _ := svc.log.Disabled(ctx, "hook"); off {
		t.Fatal("endpoint still off after a successful redelivery")
	}
}

// A firing logged twice (a crash between log and send, or two evaluators)
// is one entry, delivered under its one id.
func TestRecordOnce(t *testing.T) {
	rcv := newReceiver(t, secretOld)
	b := objstoretest.NewLocal(t)
	svc := newTestService(t, hookRules(t, rcv.srv.URL, 3, time.Second, time.Second), b, nil, prometheus.NewRegistry())
	ctx := context.Background()
	for range 3 {
		if err := svc.record(ctx, testEntry("fir_x")); err != nil {
			t.Fatal(err)
		}
	}
	deliverUntil(t, svc, "fir_x")
	if err := svc.record(ctx, testEntry("fir_x")); err != nil {
		t.Fatal(err)
	}
	deliverUntil(t, svc, "fir_x")
	all, _ := svc.log.List(ctx, Filter{})
	if len(all) != 1 || len(rcv.seen()) != 1 {
		t.Fatalf("%d entries, %d deliveries; want 1 and 1", len(all), len(rcv.seen()))
	}
}
