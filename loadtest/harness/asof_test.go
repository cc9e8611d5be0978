package harness

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/ingesttest"
	"github.com/sluicehq/sluice/objstore/objstoretest"
)

// Which windows the verifier counts as closed depends on the clock it is
// judged at, not only on the commit log: the aggregator caps its
// watermark at its clock minus the allowed lateness, and a run's last
// events (and its end-of-run markers) lie near or past the clock. So a
// verification that reads the clock later than the moment the summaries
// were seen caught up finds windows the aggregator could not have closed
// yet; Run judges the summaries as of that moment (Env.SummariesAsOf).
func TestClosedWindowsFollowTheClockTheyAreJudgedAt(t *testing.T) {
	tbl := testkit.SampleTable(t)
	raw := objstoretest.NewLocal(t)
	f := ingesttest.NewFeeder(t, raw, tbl, 2)
	now := time.Now().UTC().Truncate(time.Minute)
	for i := range 240 { // one event a second per partition, the last 2 minutes ahead of the clock
		ts := now.Add(-2*time.Minute + time.Duration(i)*time.Second)
		for p := range 2 {
			f.Append(p, fmt.Appendf(nil, `{"ts":%q,"event_id":"e%d-%d","user_id":"u1","event_type":"click","country":"DE","device":"mobile","amount":1,"latency_ms":5,"ok":true}`,
				ts.Format(time.RFC3339Nano), p, i))
		}
	}
	f.Commit()
	env := Env{Table: tbl, Raw: raw, Summaries: objstoretest.NewLocal(t), IdleTimeout: time.Hour}
	closedAt := func(clock time.Time) int {
		in, ok, err := loadSummaryInputs(context.Background(), env, env.IdleTimeout, clock)
		if err != nil || !ok {
			t.Fatalf("summary inputs as of %s: ok %v, %v", clock, ok, err)
		}
		_, closed, err := staleWindows(context.Background(), env, in)
		if err != nil {
			t.Fatal(err)
		}
		return closed
	}
	early, late := closedAt(now), closedAt(now.Add(3*time.Minute))
	if early == 0 || late <= early {
		t.Fatalf("closed windows as of the clock: %d, as of 3 minutes later: %d; want some, then more", early, late)
	}
}
