package httpin

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// Producer writes a Kafka-fed table's records to its topic: Produce
// returns once the broker has acknowledged every one of them.
type Producer interface {
	Produce(ctx context.Context, topic string, values [][]byte) error
}

// KafkaProducer produces with franz-go. The client must keep its defaults
// of acks=all (kgo.AllISRAcks) and idempotent writes: a 200 then means
// every in-sync replica has the records.
type KafkaProducer struct{ Client *kgo.Client }

// Produce sends values and waits for all their acknowledgements.
func (p KafkaProducer) Produce(ctx context.Context, topic string, values [][]byte) error {
	recs := make([]*kgo.Record, len(values))
	for i, v := range values {
		recs[i] = &kgo.Record{Topic: topic, Value: v}
	}
	if err := p.Client.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", topic, err)
	}
	return nil
}

// AddKafkaTables lets the handler take events for Kafka-fed tables: their
// accepted records are produced to the table's topic, and the answer is
// 200 once the broker acknowledged them all. With an Idempotency-Key, a
// retry after a 200 is answered from the lake and not produced again; a
// retry after a lost answer may produce the records twice (Kafka offers no
// conditional write to tie the claim to).
func (h *Handler) AddKafkaTables(tables []*schema.Table, p Producer) {
	for _, t := range tables {
		if t.SourceKind() != schema.SourceKafka || h.src.Table(t.Name) != nil {
			continue
		}
		h.kafka[t.Name] = t
		h.decs[t.Name] = newDecoderPool(t)
	}
	h.producer = p
}

// produce is ServeHTTP for a Kafka-fed table.
func (h *Handler) produce(ctx context.Context, t *schema.Table, idem, caller string, resp Response, accepted [][]byte) (int, Response, error) {
	key := claimKey(t.Name, caller, idem)
	bodyHash := recordsHash(accepted, resp.Refused)
	if idem != "" {
		c, _, ok, err := h.store.load(ctx, key)
		if err != nil {
			return 503, resp, err
		}
		if ok {
			if c.BodyHash != bodyHash {
				return 422, resp, fmt.Errorf("Idempotency-Key was used for a request with other records")
			}
			if c.Done {
				resp.Replayed, resp.Durable = true, true
				return 200, resp, nil
			}
		}
	}
	if len(accepted) > 0 {
		if err := h.producer.Produce(ctx, t.Topic, accepted); err != nil {
			return 503, resp, err
		}
	}
	resp.Durable = true
	if idem != "" {
		stored, _ := json.Marshal(resp)
		err := h.store.put(ctx, key, claim{Table: t.Name, Created: h.store.now().UTC(), BodyHash: bodyHash, Response: stored, Done: true}, "")
		if err != nil && !objstore.IsExists(err) {
			h.logger.Warn("idempotency claim not stored after produce", "table", t.Name, "err", err)
		}
	}
	return 200, resp, nil
}
