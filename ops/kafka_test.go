package ops

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// The Kafka action: event-rule firings become records keyed by their
// firing id, with the payload as value; evaluating again produces nothing
// new.
func TestKafkaAction(t *testing.T) {
	cluster := kafkatest.NewCluster(t, "alerts", 1)
	y := `
kafka_topics: [{name: alerts, topic: alerts}]
rules:
  - {name: big, table: events, when: amount > 50, action: {kafka: alerts, body: '{"amount": amount}'}}
`
	rs, err := ParseRules([]byte(y), "k.yaml", schema.SampleTables(), cluster.ListenAddrs())
	if err != nil {
		t.Fatal(err)
	}
	b := objstoretest.NewLocal(t)
	f := newFeeder(t, b, 2)
	now := time.Now()
	f.random(60, now.Add(-time.Hour), now)
	f.Commit()
	svc := newTestService(t, rs, b, nil, prometheus.NewRegistry())
	ctx := context.Background()
	for range 2 {
		if err := svc.EvaluateOnce(ctx, "events"); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := svc.log.List(ctx, Filter{Table: "events", Rule: "big"})
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]*Entry{}
	for _, e := range entries {
		if e.Status != StatusDelivered {
			t.Fatalf("%s: %s %s", e.ID, e.Status, e.LastError)
		}
		byID[e.ID] = e
	}
	if len(byID) != len(f.big) || len(byID) == 0 {
		t.Fatalf("%d entries for %d matching records", len(byID), len(f.big))
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.ConsumeTopics("alerts"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := map[string]bool{}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for len(got) < len(byID) && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(r *kgo.Record) {
			id := string(r.Key)
			e := byID[id]
			if e == nil {
				t.Errorf("record keyed %s, not a logged firing", id)
				return
			}
			if got[id] {
				t.Errorf("firing %s produced twice", id)
			}
			got[id] = true
			if want := fmt.Sprintf(`"id":%q`, id); !strings.Contains(string(r.Value), want) {
				t.Errorf("record %s: value %s", id, r.Value)
			}
		})
	}
	if len(got) != len(byID) {
		t.Fatalf("%d records for %d firings", len(got), len(byID))
	}
}
