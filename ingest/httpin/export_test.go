package httpin

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

// WriteClaim stores a pending Idempotency-Key claim as a server that died
// would have left it, for tests of what a retry makes of it.
func WriteClaim(ctx context.Context, b objstore.Bucket, table, key string, accepted [][]byte, spans []Span) error {
	resp, _ := json.Marshal(Response{Table: table, Received: len(accepted), Accepted: len(accepted)})
	c := claim{Table: table, Created: time.Now().UTC(), BodyHash: recordsHash(accepted, 0), Spans: spans, Response: resp}
	data, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return b.PutIfAbsent(ctx, claimKey(table, "", key), data)
}

// SetNow replaces the handler's clock.
func (h *Handler) SetNow(now func() time.Time) { h.store.now = now }
