package objstore

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
)

// ErrNoConditionalWrites is wrapped by CheckConditionalWrites' error when
// the store accepted a write it had to refuse: it ignores If-None-Match (or
// If-Match), so two writers racing for one commit record, lease or summary
// would both "win".
var ErrNoConditionalWrites = errors.New("store does not honour conditional writes")

// ProbePrefix is where CheckConditionalWrites puts its probe objects.
const ProbePrefix = "_sluice/probe/"

// CheckConditionalWrites proves that b honours conditional writes before a
// process trusts it with commit records, leases or summaries: it creates a
// fresh probe key twice with PutIfAbsent (the second must fail with
// ErrExists), and on a ConditionalBucket replaces it once with the version
// read and once more with that now stale version (which must fail with
// ErrChanged). The probe object is deleted afterwards. A store that lets a
// conditional write through that it must refuse is refused with an error
// wrapping ErrNoConditionalWrites and naming the store.
func CheckConditionalWrites(ctx context.Context, b Bucket) (err error) {
	var nonce [12]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("probe %s: %w", b.Name(), err)
	}
	key := ProbePrefix + hex.EncodeToString(nonce[:])
	first := []byte("sluice conditional-write probe: first create " + key)
	defer func() {
		if derr := b.Delete(context.WithoutCancel(ctx), key); derr != nil && err == nil {
			err = fmt.Errorf("probe %s: remove probe object: %w", b.Name(), derr)
		}
	}()
	if err := b.PutIfAbsent(ctx, key, first); err != nil && !(IsExists(err) && holds(ctx, b, key, first)) {
		// ErrExists with our own bytes: a retried attempt of ours landed.
		return fmt.Errorf("probe %s: conditional create of %s: %w", b.Name(), key, err)
	}
	err = b.PutIfAbsent(ctx, key, []byte("sluice conditional-write probe: second create, must be refused"))
	switch {
	case err == nil:
		return fmt.Errorf("%w: %s let a second conditional create (If-None-Match: *) of %s replace the first; "+
			"two writers of one commit record or lease would both win, so Sluice refuses to use it",
			ErrNoConditionalWrites, b.Name(), key)
	case !IsExists(err):
		return fmt.Errorf("probe %s: second conditional create of %s: %w", b.Name(), key, err)
	}
	cb, ok := b.(ConditionalBucket)
	if !ok {
		return nil
	}
	_, v1, err := cb.GetVersion(ctx, key)
	if err != nil {
		return fmt.Errorf("probe %s: read %s: %w", b.Name(), key, err)
	}
	second := []byte("sluice conditional-write probe: replace of the version read " + key)
	if err := cb.PutIfMatch(ctx, key, second, v1); err != nil && !(IsChanged(err) && holds(ctx, b, key, second)) {
		return fmt.Errorf("probe %s: conditional replace (If-Match) of %s: %w", b.Name(), key, err)
	}
	err = cb.PutIfMatch(ctx, key, []byte("sluice conditional-write probe: stale replace, must be refused"), v1)
	switch {
	case err == nil:
		return fmt.Errorf("%w: %s let a conditional replace (If-Match) of %s with a stale version through; "+
			"a stalled aggregator could overwrite newer summaries, so Sluice refuses to use it",
			ErrNoConditionalWrites, b.Name(), key)
	case !IsChanged(err):
		return fmt.Errorf("probe %s: stale conditional replace of %s: %w", b.Name(), key, err)
	}
	return nil
}

// holds reports whether the object at key is exactly data.
func holds(ctx context.Context, b BucketReader, key string, data []byte) bool {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return false
	}
	defer rc.Close()
	got, err := io.ReadAll(rc)
	return err == nil && bytes.Equal(got, data)
}
