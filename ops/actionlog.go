package ops

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// Delivery statuses of a log entry.
const (
	StatusPending   = "pending"   // logged, not yet delivered (or waiting for a retry)
	StatusDelivered = "delivered" // the endpoint answered 2xx / the broker acknowledged
	StatusDead      = "dead"      // the last retry failed, or the endpoint answered 410: a dead letter
)

// Firing states.
const (
	StateFired    = "fired"    // an event rule matched a record
	StateFiring   = "firing"   // a window rule's condition held for `for` windows
	StateResolved = "resolved" // a firing window rule's condition cleared
	StateStalled  = "stalled"  // the watermark has not advanced for stalled_after
)

// Entry is one firing in the action log. It is created conditionally
// before anything is sent; its delivery fields are then replaced with a
// compare-and-swap on the version read.
type Entry struct {
	ID          string            `json:"id"`
	Table       string            `json:"table"`
	Rule        string            `json:"rule"`
	RuleVersion string            `json:"rule_version"`
	State       string            `json:"state"`
	Group       map[string]any    `json:"group,omitempty"`
	Position    string            `json:"position,omitempty"` // event rules: source/partition/offset
	WindowStart *time.Time        `json:"window_start,omitempty"`
	WindowEnd   *time.Time        `json:"window_end,omitempty"`
	Target      string            `json:"target"` // webhook:<name> or kafka:<name>
	Payload     json.RawMessage   `json:"payload"`
	CreatedAt   time.Time         `json:"created_at"`
	Status      string            `json:"status"`
	Attempts    int               `json:"attempts"`
	NextAttempt time.Time         `json:"next_attempt,omitempty"`
	LastError   string            `json:"last_error,omitempty"`
	DeliveredAt *time.Time        `json:"delivered_at,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
}

// FiringID is the id of a firing: a hash of the rule, its version, the
// group, where it happened (a record's position or a window's start) and
// the state. The same firing always gets the same id, on every evaluator
// and after every restart; it is the webhook-id and the Kafka key.
func FiringID(rule, version, group, where, state string) string {
	h := sha256.New()
	for _, s := range []string{rule, version, group, where, state} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return "fir_" + hex.EncodeToString(h.Sum(nil))[:32]
}

// ActionLog reads and writes the action log in a bucket.
type ActionLog struct{ b objstore.ConditionalBucket }

// NewActionLog returns the log kept in b.
func NewActionLog(b objstore.ConditionalBucket) *ActionLog { return &ActionLog{b: b} }

// The log keeps one entry per firing (lake.ActionKey) and, while it is
// neither delivered nor dead-lettered, a marker (lake.PendingActionKey), so
// that a new evaluator finds what is left to send by listing names instead
// of reading the log.

// Create writes e unless an entry with its id exists. created is false
// when it existed: the firing was logged before (by this process before a
// crash, or by another evaluator), and nothing new must be logged.
//
// The pending marker is written first: a crash before the entry leaves a
// marker without an entry (the firing is evaluated again, as its cursor or
// rule state did not move, and logged then), never an entry without one.
func (l *ActionLog) Create(ctx context.Context, e *Entry) (created bool, err error) {
	data, err := json.Marshal(e)
	if err != nil {
		return false, err
	}
	if e.Status == StatusPending {
		if err := l.b.PutIfAbsent(ctx, lake.PendingActionKey(e.Table, e.Rule, e.ID), nil); err != nil && !objstore.IsExists(err) {
			return false, fmt.Errorf("log firing %s: %w", e.ID, err)
		}
	}
	if err := l.b.PutIfAbsent(ctx, lake.ActionKey(e.Table, e.Rule, e.ID), data); err != nil {
		if objstore.IsExists(err) {
			return false, nil
		}
		return false, fmt.Errorf("log firing %s: %w", e.ID, err)
	}
	return true, nil
}

// Get reads an entry and its version.
func (l *ActionLog) Get(ctx context.Context, table, rule, id string) (*Entry, string, error) {
	data, ver, err := l.b.GetVersion(ctx, lake.ActionKey(table, rule, id))
	if err != nil {
		return nil, "", fmt.Errorf("read firing %s: %w", id, err)
	}
	var e Entry
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, "", fmt.Errorf("read firing %s: %w", id, err)
	}
	return &e, ver, nil
}

// Update replaces the entry if it is still at version; it fails with
// objstore.ErrChanged if another process updated it meanwhile.
func (l *ActionLog) Update(ctx context.Context, e *Entry, version string) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	key := lake.ActionKey(e.Table, e.Rule, e.ID)
	if e.Status == StatusPending {
		// A redelivery put back to pending: mark it again first.
		if err := l.b.PutIfAbsent(ctx, lake.PendingActionKey(e.Table, e.Rule, e.ID), nil); err != nil && !objstore.IsExists(err) {
			return fmt.Errorf("record delivery of %s: %w", e.ID, err)
		}
	}
	if err := l.b.PutIfMatch(ctx, key, data, version); err != nil {
		return fmt.Errorf("record delivery of %s: %w", e.ID, err)
	}
	if e.Status != StatusPending {
		// Best effort: a marker left behind is dropped by the next scan
		// that finds its entry no longer pending.
		_ = l.b.Delete(ctx, lake.PendingActionKey(e.Table, e.Rule, e.ID))
	}
	return nil
}

// PendingRef names a firing that has a pending marker.
type PendingRef struct{ Table, Rule, ID string }

// Pending lists the firings of table marked pending (by names only).
func (l *ActionLog) Pending(ctx context.Context, table string) ([]PendingRef, error) {
	prefix := lake.PendingActionsPrefix(table)
	var out []PendingRef
	err := l.b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		rule, id, ok := strings.Cut(strings.TrimPrefix(a.Key, prefix), "/")
		if ok {
			out = append(out, PendingRef{Table: table, Rule: rule, ID: id})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list pending firings %s: %w", prefix, err)
	}
	return out, nil
}

// DropPending removes a marker whose entry is missing or no longer pending.
func (l *ActionLog) DropPending(ctx context.Context, r PendingRef) error {
	return l.b.Delete(ctx, lake.PendingActionKey(r.Table, r.Rule, r.ID))
}

// Filter selects entries in List; zero fields select everything.
type Filter struct {
	Table, Rule, Status string
}

// List reads the entries under the filter's table and rule, oldest first.
func (l *ActionLog) List(ctx context.Context, f Filter) ([]*Entry, error) {
	prefix := lake.ActionsPrefix(f.Table, f.Rule)
	var keys []string
	if err := l.b.Iter(ctx, prefix, func(a objstore.ObjectAttrs) error {
		if strings.HasSuffix(a.Key, ".json") {
			keys = append(keys, a.Key)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("list action log %s: %w", prefix, err)
	}
	var out []*Entry
	for _, k := range keys {
		data, _, err := l.b.GetVersion(ctx, k)
		if objstore.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		var e Entry
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("read %s: %w", k, err)
		}
		if (f.Rule != "" && e.Rule != f.Rule) || (f.Status != "" && e.Status != f.Status) {
			continue
		}
		out = append(out, &e)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Find reads the entry with id wherever it is (ids are unique over the log).
func (l *ActionLog) Find(ctx context.Context, id string) (*Entry, string, error) {
	var key string
	err := l.b.Iter(ctx, lake.ActionsRoot, func(a objstore.ObjectAttrs) error {
		if strings.HasSuffix(a.Key, "/"+id+".json") {
			key = a.Key
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if key == "" {
		return nil, "", fmt.Errorf("firing %s: %w", id, objstore.ErrNotExist)
	}
	parts := strings.Split(strings.TrimPrefix(key, lake.ActionsRoot), "/")
	if len(parts) != 3 {
		return nil, "", fmt.Errorf("firing %s: unexpected key %s", id, key)
	}
	return l.Get(ctx, parts[0], parts[1], id)
}

// endpointState is what the log keeps about a webhook endpoint: whether a
// 410 Gone turned it off.
type endpointState struct {
	Disabled bool      `json:"disabled"`
	Reason   string    `json:"reason,omitempty"`
	At       time.Time `json:"at"`
}

// Disabled reports whether the webhook was turned off by a 410.
func (l *ActionLog) Disabled(ctx context.Context, name string) (bool, error) {
	data, _, err := l.b.GetVersion(ctx, lake.OpsEndpointKey(name))
	if objstore.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	var st endpointState
	if err := json.Unmarshal(data, &st); err != nil {
		return false, err
	}
	return st.Disabled, nil
}

// SetDisabled turns the webhook off (410 Gone) or on again (a redelivery
// that succeeded).
func (l *ActionLog) SetDisabled(ctx context.Context, name string, disabled bool, reason string, now time.Time) error {
	body, err := json.Marshal(endpointState{Disabled: disabled, Reason: reason, At: now})
	if err != nil {
		return err
	}
	key := lake.OpsEndpointKey(name)
	for range 5 {
		_, ver, err := l.b.GetVersion(ctx, key)
		switch {
		case objstore.IsNotExist(err):
			err = l.b.PutIfAbsent(ctx, key, body)
		case err == nil:
			err = l.b.PutIfMatch(ctx, key, body, ver)
		}
		if err == nil {
			return nil
		}
		if !objstore.IsExists(err) && !errors.Is(err, objstore.ErrChanged) {
			return fmt.Errorf("endpoint %s: %w", name, err)
		}
	}
	return fmt.Errorf("endpoint %s: too many concurrent updates", name)
}
