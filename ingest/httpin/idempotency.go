package httpin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// The lake holds one claim per (table, caller, Idempotency-Key), under
// lake.IdempotencyRoot. A claim is created conditionally before the
// request's records get into the log, and names the positions they were
// given, so a retry can read the chain and tell exactly which of them are committed: all (answer from the
// claim), none or a prefix (queue the rest again under a new span). The
// lake, not the server's memory, decides; so a retry after a crash neither
// loses nor doubles records.

// DefaultIdempotencyTTL is how long a key deduplicates retries.
const DefaultIdempotencyTTL = 24 * time.Hour

// claim is the stored state of one Idempotency-Key.
type claim struct {
	Table    string    `json:"table"`
	Created  time.Time `json:"created"`
	BodyHash string    `json:"body_hash"` // sha256 of the decoded records, to refuse a key reused for other data
	// Spans hold the accepted records in order: the first Next-First of
	// them in Spans[0], and so on. Earlier spans are committed; the last
	// one may not be.
	Spans    []Span          `json:"spans"`
	Response json.RawMessage `json:"response"` // what the first answer said, per record
	Done     bool            `json:"done"`     // all spans are known to be committed
}

func (c claim) accepted() uint64 {
	var n uint64
	for _, s := range c.Spans {
		n += s.Next - s.First
	}
	return n
}

// idempotencyStore keeps claims in the lake's bucket.
type idempotencyStore struct {
	b       objstore.ConditionalBucket
	commits *lake.CommitLog
	ttl     time.Duration
	now     func() time.Time
}

func claimKey(table, caller, key string) string {
	h := sha256.Sum256([]byte(table + "\x00" + caller + "\x00" + key))
	return lake.IdempotencyClaimKey(table, hex.EncodeToString(h[:]))
}

// load returns the live claim under key, its version, and whether there is
// one (an expired claim counts as none, but its version is returned so it
// can be replaced).
func (st *idempotencyStore) load(ctx context.Context, key string) (claim, string, bool, error) {
	data, ver, err := st.b.GetVersion(ctx, key)
	if objstore.IsNotExist(err) {
		return claim{}, "", false, nil
	}
	if err != nil {
		return claim{}, "", false, fmt.Errorf("read idempotency claim: %w", err)
	}
	var c claim
	if err := json.Unmarshal(data, &c); err != nil {
		// A claim we cannot read is treated as expired: refusing the key
		// forever would be worse than one possible duplicate.
		return claim{}, ver, false, nil
	}
	if st.now().Sub(c.Created) > st.ttl {
		return claim{}, ver, false, nil
	}
	return c, ver, true, nil
}

// put creates (version "") or replaces the claim; errExists/objstore.ErrChanged
// mean another request got there first.
func (st *idempotencyStore) put(ctx context.Context, key string, c claim, version string) error {
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	if version == "" {
		return st.b.PutIfAbsent(ctx, key, data)
	}
	return st.b.PutIfMatch(ctx, key, data, version)
}

// committedIn returns how many positions of span are committed: the chain
// of its partition holds its incarnation's data links densely, so that is
// how far they reach past span.First.
func (st *idempotencyStore) committedIn(ctx context.Context, table string, span Span) (uint64, error) {
	ch, err := st.commits.Chain(ctx, table, SourceName(table), span.Partition)
	if err != nil {
		return 0, fmt.Errorf("read chain: %w", err)
	}
	var sid string
	var reach uint64
	seen := false
	for _, r := range ch.Records {
		if r.Kind == lake.LinkGenesis || r.Kind == lake.LinkReset {
			sid = r.SourceID
			continue
		}
		if sid != span.SourceID || r.Kind != lake.LinkData {
			continue
		}
		n, ok := r.Next.Int64()
		if ok && uint64(n) > reach {
			reach, seen = uint64(n), true
		}
	}
	if !seen || reach <= span.First {
		return 0, nil
	}
	return min(reach, span.Next) - span.First, nil
}

var errClaimBusy = errors.New("a request with this Idempotency-Key is in progress")

// SweepClaims deletes claims older than the TTL (by the store's
// modification time, plus an hour of slack for clock skew), so the
// idempotency area does not grow without bound. It returns how many it
// deleted.
func (h *Handler) SweepClaims(ctx context.Context) (int, error) {
	cutoff := h.store.now().Add(-h.store.ttl - time.Hour)
	var old []string
	err := h.store.b.Iter(ctx, lake.IdempotencyRoot, func(a objstore.ObjectAttrs) error {
		if a.LastModified.Before(cutoff) {
			old = append(old, a.Key)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("list idempotency claims: %w", err)
	}
	for i, k := range old {
		if err := h.store.b.Delete(ctx, k); err != nil {
			return i, fmt.Errorf("delete idempotency claim %s: %w", k, err)
		}
	}
	return len(old), nil
}
