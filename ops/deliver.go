package ops

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Deliverer makes delivery attempts of logged firings and records each
// outcome in the entry. It is safe for concurrent use.
type Deliverer struct {
	log    *ActionLog
	hooks  map[string]*Webhook
	topics map[string]*KafkaTopic
	client *http.Client
	logger *slog.Logger
	m      *Metrics
	now    func() time.Time

	mu    sync.Mutex
	kafka map[string]*kgo.Client
}

// NewDeliverer returns a deliverer for the targets of rs. m may be nil.
func NewDeliverer(log *ActionLog, rs *RuleSet, logger *slog.Logger, m *Metrics) *Deliverer {
	d := &Deliverer{log: log, hooks: map[string]*Webhook{}, topics: map[string]*KafkaTopic{},
		client: &http.Client{}, logger: logger, m: m, now: time.Now, kafka: map[string]*kgo.Client{}}
	for _, w := range rs.Webhooks {
		d.hooks[w.Name] = w
	}
	for _, k := range rs.Topics {
		d.topics[k.Name] = k
	}
	return d
}

// Close closes the Kafka clients.
func (d *Deliverer) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, c := range d.kafka {
		c.Close()
	}
	d.kafka = map[string]*kgo.Client{}
}

// Backoff is how long to wait after the n-th failed attempt (1-based) of a
// policy: doubling steps that add up to the span, ±20% jitter so that many
// firings failing together do not retry together.
func Backoff(p RetryPolicy, n int, rnd func() float64) time.Duration {
	if p.Attempts <= 1 {
		return 0
	}
	steps := float64(int64(1)<<(p.Attempts-1) - 1)
	base := float64(p.Span) / steps
	d := base * float64(int64(1)<<(n-1))
	return time.Duration(d * (0.8 + 0.4*rnd()))
}

// errGone says the endpoint answered 410 Gone.
var errGone = errors.New("410 Gone: the endpoint asked not to be called again")

// Attempt makes one attempt at delivering e, which is at version ver in
// the log, and records the outcome. force (a redelivery asked for by an
// operator) also calls a webhook that a 410 turned off, and turns it on
// again if the attempt succeeds. It returns the entry as recorded.
func (d *Deliverer) Attempt(ctx context.Context, e *Entry, ver string, force bool) (*Entry, error) {
	kind, name, _ := strings.Cut(e.Target, ":")
	start := d.now()
	policy, err, stop := d.send(ctx, e, kind, name, force)
	if stop != nil {
		return e, stop
	}
	if ctx.Err() != nil {
		return e, ctx.Err() // shutting down: not an attempt
	}
	n := *e
	n.Attempts++
	now := d.now()
	outcome := "delivered"
	switch {
	case err == nil:
		n.Status, n.LastError, n.DeliveredAt, n.NextAttempt = StatusDelivered, "", &now, time.Time{}
	case errors.Is(err, errGone):
		outcome = "gone"
		n.Status, n.LastError, n.NextAttempt = StatusDead, err.Error(), time.Time{}
		if serr := d.log.SetDisabled(ctx, name, true, "410 Gone on "+e.ID, now); serr != nil {
			d.logger.Warn("turning webhook off", "webhook", name, "err", serr)
		}
	case n.Attempts >= policy.Attempts || force:
		outcome = "failed"
		n.Status, n.LastError, n.NextAttempt = StatusDead, err.Error(), time.Time{}
	default:
		outcome = "retry"
		n.Status, n.LastError = StatusPending, err.Error()
		n.NextAttempt = now.Add(Backoff(policy, n.Attempts, rand.Float64))
	}
	if d.m != nil {
		d.m.deliveries.WithLabelValues(e.Table, kind, outcome).Inc()
		d.m.latency.WithLabelValues(kind).Observe(now.Sub(start).Seconds())
		if n.Status == StatusDead {
			d.m.deadLetters.WithLabelValues(e.Table).Inc()
		}
	}
	if n.Status == StatusDead {
		d.logger.Error("firing dead-lettered", "id", e.ID, "rule", e.Rule, "target", e.Target, "attempts", n.Attempts, "err", err)
	} else if err != nil {
		d.logger.Warn("delivery failed; will retry", "id", e.ID, "target", e.Target, "attempt", n.Attempts, "next", n.NextAttempt, "err", err)
	}
	if uerr := d.log.Update(ctx, &n, ver); uerr != nil {
		return e, uerr
	}
	return &n, err
}

// send calls e's target (kind:name) once and returns the outcome and the
// retry policy that applies to it; stop ends the attempt before any call
// (the log could not say whether the webhook is turned off).
func (d *Deliverer) send(ctx context.Context, e *Entry, kind, name string, force bool) (policy RetryPolicy, err, stop error) {
	switch kind {
	case "webhook":
		w := d.hooks[name]
		if w == nil {
			err = fmt.Errorf("no webhook named %q in the rules file", name)
			policy = RetryPolicy{Attempts: DefaultAttempts, Span: DefaultRetrySpan}
			break
		}
		policy = w.Retry
		off, derr := d.log.Disabled(ctx, name)
		if derr != nil {
			return policy, nil, derr
		}
		if off && !force {
			err = fmt.Errorf("webhook %s is turned off (it answered 410 Gone)", name)
			policy = RetryPolicy{Attempts: 1}
			break
		}
		err = d.post(ctx, w, e)
		if err == nil && off {
			if serr := d.log.SetDisabled(ctx, name, false, "redelivered "+e.ID, d.now()); serr != nil {
				d.logger.Warn("turning webhook on again", "webhook", name, "err", serr)
			}
		}
	case "kafka":
		k := d.topics[name]
		if k == nil {
			err = fmt.Errorf("no kafka topic named %q in the rules file", name)
		} else {
			err = d.produce(ctx, k, e)
		}
		policy = RetryPolicy{Attempts: DefaultAttempts, Span: DefaultRetrySpan}
	default:
		err = fmt.Errorf("unknown target %q", e.Target)
		policy = RetryPolicy{Attempts: 1}
	}
	return policy, err, nil
}

func (d *Deliverer) post(ctx context.Context, w *Webhook, e *Entry) error {
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(e.Payload))
	if err != nil {
		return err
	}
	ts := d.now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(HeaderID, e.ID)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	req.Header.Set(HeaderSignature, signatures(w.keys, e.ID, ts, e.Payload))
	resp, err := d.client.Do(req)
	if err != nil {
		return fmt.Errorf("post to %s: %w", w.Name, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	switch {
	case resp.StatusCode == http.StatusGone:
		return errGone
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		return fmt.Errorf("post to %s: status %d", w.Name, resp.StatusCode)
	}
	return nil
}

func (d *Deliverer) produce(ctx context.Context, k *KafkaTopic, e *Entry) error {
	d.mu.Lock()
	c := d.kafka[k.Name]
	if c == nil {
		var err error
		c, err = kgo.NewClient(kgo.SeedBrokers(k.Brokers...), kgo.DefaultProduceTopic(k.Topic),
			kgo.RecordDeliveryTimeout(30*time.Second), kgo.RequiredAcks(kgo.AllISRAcks()))
		if err != nil {
			d.mu.Unlock()
			return fmt.Errorf("kafka %s: %w", k.Name, err)
		}
		d.kafka[k.Name] = c
	}
	d.mu.Unlock()
	rec := &kgo.Record{Key: []byte(e.ID), Value: e.Payload, Headers: []kgo.RecordHeader{
		{Key: HeaderID, Value: []byte(e.ID)}, {Key: "sluice-rule", Value: []byte(e.Rule)}}}
	if err := c.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", k.Topic, err)
	}
	return nil
}
