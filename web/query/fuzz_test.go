package query

import (
	"encoding/json"
	"net/url"
	"testing"
	"time"

	"github.com/sluicehq/sluice/schema"
)

// FuzzQueryParams: any query string is refused with ErrBadRequest or
// planned; a plan's buckets are ordered, non-empty, start before to and
// fall on the stored window it reads.
func FuzzQueryParams(f *testing.F) {
	t := schema.SampleTables()[0]
	for _, s := range []string{
		"table=events&window=1d&tz=Europe/Berlin&from=2026-03-28&to=2026-03-31",
		"table=events&window=1h&from=2026-11-01T00:00:00-04:00&to=2026-11-02&tz=America/New_York&group_by=country&order_by=events&order=desc&limit=3",
		"table=events&window=15m&from=2026-01-01&to=2026-01-02&filter=country:DE|null&measures=events,latency&fill=zero",
		"table=events&window=30s&from=2026-01-01&to=2026-01-02",
		"table=events&window=7d&from=2020-01-01&to=2026-01-01&tz=Asia/Kolkata",
	} {
		f.Add(s)
	}
	f.Fuzz(func(tt *testing.T, raw string) {
		v, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := ParseValues(v)
		if err != nil {
			return
		}
		req.Table = t.Name
		p, err := NewPlan(t, req)
		if err != nil {
			return
		}
		if len(p.Buckets) == 0 {
			tt.Fatal("a plan without buckets")
		}
		s := p.Source.Microseconds()
		for i, b := range p.Buckets {
			if b.End <= b.Start || b.Start%s != 0 || b.End%s != 0 {
				tt.Fatalf("bucket %d [%d, %d) with source %s", i, b.Start, b.End, p.Source)
			}
			if i > 0 && b.Start < p.Buckets[i-1].End {
				tt.Fatalf("bucket %d overlaps the one before", i)
			}
			if !time.UnixMicro(b.Start).Before(req.To) {
				tt.Fatalf("bucket %d starts at or after to", i)
			}
		}
	})
}

// FuzzJSONString: the hand-written string encoder agrees with
// encoding/json on every input.
func FuzzJSONString(f *testing.F) {
	for _, s := range []string{"", "plain", "quo\"te", "back\\slash", "\x00\x1f", "<&>", "\u2028", "\xff\xfe", "ünï"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	})
}
