package lake

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/sluicehq/sluice/objstore"
)

// The aggregator's run cursor, the compactor's and the sweeper's cursors
// are JSON objects under RunCursorsRoot, each replaced only over the
// version its writer read: a writer that stalled while another moved the
// cursor on loses, and the newer cursor stands.

// ReadCursor reads the cursor at key into a value of type T. found is false
// when there is none, or when it cannot be used (not JSON of T, or usable
// says no: another format version or table); version is then still what a
// new cursor must replace, so a caller that reads the whole table instead
// writes over the unusable one.
func ReadCursor[T any](ctx context.Context, b objstore.ConditionalBucket, key string, usable func(*T) bool) (cur T, version string, found bool, err error) {
	data, version, err := b.GetVersion(ctx, key)
	if objstore.IsNotExist(err) {
		return cur, "", false, nil
	}
	if err != nil {
		return cur, "", false, fmt.Errorf("read cursor %s: %w", key, err)
	}
	if err := json.Unmarshal(data, &cur); err != nil || !usable(&cur) {
		var zero T
		return zero, version, false, nil
	}
	return cur, version, true, nil
}

// WriteCursor stores cur at key over version ("" when there was none).
// lost is true when another writer replaced it since it was read: cur is
// not stored, and the other writer's cursor stands.
func WriteCursor(ctx context.Context, b objstore.ConditionalBucket, key string, cur any, version string) (lost bool, err error) {
	data, err := json.Marshal(cur)
	if err != nil {
		return false, err
	}
	if version == "" {
		err = b.PutIfAbsent(ctx, key, data)
	} else {
		err = b.PutIfMatch(ctx, key, data, version)
	}
	if objstore.IsExists(err) || objstore.IsChanged(err) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("write cursor %s: %w", key, err)
	}
	return false, nil
}
