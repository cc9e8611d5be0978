package web_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest/httpin"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/schema"
	"github.com/sluicehq/sluice/web"
	"github.com/sluicehq/sluice/web/auth"
)

// Events posted for a Kafka-fed table are produced to its topic (acks=all)
// before the 200; refused records are not; a retry with the same
// Idempotency-Key is answered without producing again. The check reads
// the topic with a consumer.
func TestHTTPIngestIntoKafka(t *testing.T) {
	c := kafkatest.NewCluster(t, "events", 2)
	prod, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prod.Close)
	b := memLocal(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ws, err := web.New(ctx, web.Config{}, schema.SampleTables(), b, slog.New(slog.DiscardHandler), prometheus.NewRegistry(), nil)
	if err != nil {
		t.Fatal(err)
	}
	ws.SetProducer(httpin.KafkaProducer{Client: prod})
	mux := http.NewServeMux()
	ws.Mount(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	ks, _ := auth.NewKeyStore(b)
	_, key, err := ks.Create(ctx, "k", auth.Scopes{"append:events"}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(event("k-1") + "\n{broken\n" + event("k-2") + "\n")
	var first httpin.Response
	for i := range 3 {
		req, _ := http.NewRequest("POST", srv.URL+"/v1/tables/events/events", bytesReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Idempotency-Key", "once")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var r httpin.Response
		_ = json.NewDecoder(res.Body).Decode(&r)
		res.Body.Close()
		if res.StatusCode != 200 || r.Accepted != 2 || r.Refused != 1 || !r.Durable || r.Replayed != (i > 0) {
			t.Fatalf("attempt %d: %d %+v", i, res.StatusCode, r)
		}
		first = r
	}
	_ = first

	cons, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumeTopics("events"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Close()
	got := map[string]int{}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cons.PollFetches(pctx)
		pcancel()
		fs.EachRecord(func(r *kgo.Record) {
			var e struct {
				EventID string `json:"event_id"`
			}
			_ = json.Unmarshal(r.Value, &e)
			got[e.EventID]++
		})
	}
	if len(got) != 2 || got["k-1"] != 1 || got["k-2"] != 1 {
		t.Fatalf("topic holds %v, want k-1 and k-2 once each", got)
	}
}
