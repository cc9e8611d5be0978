package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow/go/v15/arrow"
	"github.com/apache/arrow/go/v15/arrow/array"
	"github.com/apache/arrow/go/v15/arrow/ipc"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/web"
)

// truthEvent is one event as the test generated it: the independent truth
// the query answers are checked against.
type truthEvent struct {
	ts      time.Time
	id      string
	etype   string
	country *string
	amount  float64
	latency int64
	user    string
}

func (e truthEvent) json() string {
	c := "null"
	if e.country != nil {
		c = strconv.Quote(*e.country)
	}
	return fmt.Sprintf(`{"ts":%q,"event_id":%q,"user_id":%q,"event_type":%q,"country":%s,"amount":%s,"latency_ms":%d,"ok":true}`,
		e.ts.UTC().Format(time.RFC3339Nano), e.id, e.user, e.etype, c, strconv.FormatFloat(e.amount, 'f', -1, 64), e.latency)
}

// genDays makes events over [from, to), one every 5-55 minutes between
// 21:00 and 07:00 local time, skipping
// one whole local hour (to be zero-filled).
func genDays(rng *rand.Rand, prefix string, from, to, skipFrom time.Time) []truthEvent {
	countries := []string{"DE", "FR", "US"}
	var out []truthEvent
	for ts := from; ts.Before(to); ts = ts.Add(time.Duration(5+rng.IntN(50))*time.Minute + time.Duration(rng.IntN(59))*time.Second) {
		if !ts.Before(skipFrom) && ts.Before(skipFrom.Add(time.Hour)) {
			continue
		}
		// Only the hours around local midnight and the DST switch: fewer
		// summary objects keep the fixture fast under -race.
		if h := ts.In(from.Location()).Hour(); h >= 7 && h < 21 {
			continue
		}
		e := truthEvent{ts: ts, id: fmt.Sprintf("%s-%d", prefix, len(out)), etype: []string{"click", "view", "buy"}[rng.IntN(3)],
			amount: float64(rng.IntN(100000)) / 100, latency: int64(1 + rng.IntN(2000)), user: fmt.Sprintf("u%d", rng.IntN(60))}
		if i := rng.IntN(4); i < 3 {
			e.country = &countries[i]
		}
		out = append(out, e)
	}
	return out
}

// queryFixture ingests the events over HTTP, aggregates them with the real
// aggregator and serves queries over the summaries.
type queryFixture struct {
	ts     *testServer
	events []truthEvent
	reader string // a read:events key
}

func newQueryFixture(t *testing.T) *queryFixture {
	t.Helper()
	raw := memLocal(t)
	sums := memLocal(t)
	rng := rand.New(rand.NewPCG(1, 2))
	berlin, _ := time.LoadLocation("Europe/Berlin")
	ny, _ := time.LoadLocation("America/New_York")
	var events []truthEvent
	// Berlin's spring-forward day (23 h) with the days around it, and New
	// York's fall-back day (25 h).
	events = append(events, genDays(rng, "ber", time.Date(2026, 3, 28, 0, 0, 0, 0, berlin), time.Date(2026, 3, 31, 0, 0, 0, 0, berlin), time.Date(2026, 3, 29, 5, 0, 0, 0, berlin))...)
	events = append(events, genDays(rng, "ny", time.Date(2026, 10, 31, 0, 0, 0, 0, ny), time.Date(2026, 11, 3, 0, 0, 0, 0, ny), time.Date(2026, 11, 1, 1, 0, 0, 0, ny))...)
	// Recent events move the watermark past both, and past the first of
	// them: the dashboard's last hour has a summarised event.
	now := time.Now().Truncate(time.Second)
	events = append(events, truthEvent{ts: now.Add(-20 * time.Minute), id: "recent-1", etype: "click", amount: 1, latency: 1, user: "u0"},
		truthEvent{ts: now.Add(-2 * time.Minute), id: "recent-2", etype: "view", amount: 2, latency: 2, user: "u1"})

	ts := startServer(t, raw, web.Config{}, func(s *web.Server) { s.SetSummaries(sums) })
	appender := ts.newKey(t, 1000, 1000, "append:events")
	began := time.Now()
	// One request per local day, so each raw object covers one day.
	for i := 0; i < len(events); {
		j := i
		day := events[i].ts.UTC().Format(time.DateOnly)
		var body bytes.Buffer
		for ; j < len(events) && events[j].ts.UTC().Format(time.DateOnly) == day; j++ {
			body.WriteString(events[j].json() + "\n")
		}
		code, _, raw := do(t, "POST", ts.URL+"/v1/tables/events/events", appender, body.Bytes())
		if code != 200 {
			t.Fatalf("ingest: %d %.300s", code, raw)
		}
		i = j
	}
	t.Logf("ingested in %s", time.Since(began))
	svc, err := aggregate.NewService(aggregate.Config{}, raw, sums, httpTables(t), "test", slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RunOnce(context.Background(), httpTables(t)[0]); err != nil {
		t.Fatal(err)
	}
	return &queryFixture{ts: ts, events: events, reader: ts.newKey(t, 1000, 1000, "read:events")}
}

// queryJSON runs a query and decodes the JSON answer.
type jsonAnswer struct {
	Meta struct {
		Columns  []struct{ Name, Type string }
		Complete bool
		Source   string `json:"source_window"`
		Rows     int
	}
	Rows   []map[string]any
	Status string
}

func (f *queryFixture) query(t *testing.T, params string) (int, jsonAnswer, []byte) {
	t.Helper()
	code, _, raw := do(t, "GET", f.ts.URL+"/v1/query?"+params, f.reader, nil)
	var a jsonAnswer
	if code == 200 {
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
	}
	return code, a, raw
}

// expected computes a bucket's measures from the truth.
type expected struct {
	count    int64
	sum      *big.Float
	min, max float64
	lat      []float64
	users    map[string]bool
}

func truthOf(events []truthEvent, start, end time.Time, keep func(truthEvent) bool) *expected {
	x := &expected{sum: new(big.Float).SetPrec(2000), min: math.Inf(1), max: math.Inf(-1), users: map[string]bool{}}
	for _, e := range events {
		if e.ts.Before(start) || !e.ts.Before(end) || (keep != nil && !keep(e)) {
			continue
		}
		x.count++
		x.sum.Add(x.sum, big.NewFloat(e.amount))
		x.min, x.max = min(x.min, e.amount), max(x.max, e.amount)
		x.lat = append(x.lat, float64(e.latency))
		x.users[e.user] = true
	}
	sort.Float64s(x.lat)
	return x
}

// check compares one answer row with the truth: counts, sums, min, max and
// avg exactly; quantiles within the sketch's relative accuracy of the
// exact ranks around q; distinct within three standard errors.
func (x *expected) check(t *testing.T, where string, row map[string]any) {
	t.Helper()
	num := func(k string) float64 {
		v, ok := row[k].(float64)
		if !ok {
			t.Fatalf("%s: %s is %v", where, k, row[k])
		}
		return v
	}
	if got := num("events"); int64(got) != x.count {
		t.Fatalf("%s: events %v, want %d", where, got, x.count)
	}
	if x.count == 0 {
		if row["amount_sum"] != 0.0 || row["amount_min"] != nil || row["amount_avg"] != nil || row["latency_p50"] != nil {
			t.Fatalf("%s: zero-filled row %v", where, row)
		}
		return
	}
	sum, _ := x.sum.Float64()
	if got := num("amount_sum"); got != sum {
		t.Fatalf("%s: amount_sum %v, want %v", where, got, sum)
	}
	if num("amount_min") != x.min || num("amount_max") != x.max {
		t.Fatalf("%s: min/max %v/%v, want %v/%v", where, row["amount_min"], row["amount_max"], x.min, x.max)
	}
	if got, want := num("amount_avg"), sum/float64(x.count); math.Abs(got-want) > 1e-9*math.Abs(want) {
		t.Fatalf("%s: amount_avg %v, want %v", where, got, want)
	}
	for _, q := range []struct {
		col string
		q   float64
	}{{"latency_p50", 0.5}, {"latency_p90", 0.9}, {"latency_p99", 0.99}} {
		r := q.q * float64(len(x.lat)-1)
		lo, hi := x.lat[int(math.Floor(r))], x.lat[int(math.Ceil(r))]
		if got := num(q.col); got < lo*(1-0.0101) || got > hi*(1+0.0101) {
			t.Fatalf("%s: %s %v, want within 1%% of [%v, %v]", where, q.col, got, lo, hi)
		}
	}
	sigma := 1.04 / math.Sqrt(math.Pow(2, 14))
	if got, want := num("users"), float64(len(x.users)); math.Abs(got-want) > 3*sigma*want+0.5 {
		t.Fatalf("%s: users %v, want %v", where, got, want)
	}
}

// TestQuery shares one fixture (ingest, aggregate) among its cases.
func TestQuery(t *testing.T) {
	start := time.Now()
	f := newQueryFixture(t)
	t.Logf("fixture: %d events ingested and aggregated in %s", len(f.events), time.Since(start))
	t.Run("AgainstTruth", func(t *testing.T) { testQueryAgainstTruth(t, f) })
	t.Run("TopNAndFilters", func(t *testing.T) { testQueryTopNAndFilters(t, f) })
	t.Run("Refusals", func(t *testing.T) { testQueryRefusals(t, f) })
	t.Run("PostEqualsGet", func(t *testing.T) {
		get := "table=events&window=1d&tz=America/New_York&from=2026-10-31&to=2026-11-03&group_by=country&filter=country:DE|null&order_by=events&order=desc&limit=1&fill=zero"
		body := `{"table":"events","window":"1d","tz":"America/New_York","from":"2026-10-31","to":"2026-11-03","group_by":["country"],"filters":{"country":["DE","null"]},"order_by":"events","order":"desc","limit":1,"fill":"zero"}`
		_, _, want := do(t, "GET", f.ts.URL+"/v1/query?"+get, f.reader, nil)
		code, _, got := do(t, "POST", f.ts.URL+"/v1/query", f.reader, []byte(body))
		if code != 200 || string(got) != string(want) {
			t.Fatalf("POST %d:\n%s\nGET:\n%s", code, got, want)
		}
	})
	t.Run("IncompleteRange", func(t *testing.T) {
		// A range reaching past the watermark is not complete: its last
		// windows may still get data.
		now := time.Now().UTC().Truncate(time.Minute)
		q := url.Values{"table": {"events"}, "window": {"1m"}, "from": {now.Add(-30 * time.Minute).Format(time.RFC3339)}, "to": {now.Add(30 * time.Minute).Format(time.RFC3339)}}
		code, a, raw := f.query(t, q.Encode())
		if code != 200 || a.Meta.Complete {
			t.Fatalf("%d complete=%v: %.300s", code, a.Meta.Complete, raw)
		}
	})
	t.Run("Formats", func(t *testing.T) { testQueryFormats(t, f) })
	t.Run("TruncatedStreamIsNoticed", func(t *testing.T) { testQueryTruncatedStreamIsNoticed(t, f) })
	t.Run("Browser", func(t *testing.T) { testBrowser(t, f) })
}

func testQueryAgainstTruth(t *testing.T, f *queryFixture) {
	berlin, _ := time.LoadLocation("Europe/Berlin")
	ny, _ := time.LoadLocation("America/New_York")
	for _, c := range []struct {
		name      string
		loc       *time.Location
		from, to  time.Time
		dstDay    time.Time
		dstLength time.Duration
	}{
		{"Berlin spring forward", berlin, time.Date(2026, 3, 28, 0, 0, 0, 0, berlin), time.Date(2026, 3, 31, 0, 0, 0, 0, berlin), time.Date(2026, 3, 29, 0, 0, 0, 0, berlin), 23 * time.Hour},
		{"New York fall back", ny, time.Date(2026, 10, 31, 0, 0, 0, 0, ny), time.Date(2026, 11, 3, 0, 0, 0, 0, ny), time.Date(2026, 11, 1, 0, 0, 0, 0, ny), 25 * time.Hour},
	} {
		t.Run(c.name, func(t *testing.T) {
			q := url.Values{"table": {"events"}, "window": {"1d"}, "tz": {c.loc.String()},
				"from": {c.from.Format(time.DateOnly)}, "to": {c.to.Format(time.DateOnly)}}
			code, a, raw := f.query(t, q.Encode())
			if code != 200 || len(a.Rows) != 3 || a.Status != "ok" || !a.Meta.Complete || a.Meta.Source != "1h" {
				t.Fatalf("%d %.500s", code, raw)
			}
			for _, row := range a.Rows {
				start, _ := time.Parse(time.RFC3339, row["start"].(string))
				end, _ := time.Parse(time.RFC3339, row["end"].(string))
				if start.Equal(c.dstDay) && end.Sub(start) != c.dstLength {
					t.Fatalf("DST day %s is %s long, want %s", start, end.Sub(start), c.dstLength)
				}
				truthOf(f.events, start, end, nil).check(t, row["start"].(string), row)
			}
			// Hourly on the DST day, zero-filled: 23 or 25 rows, the
			// skipped hour present with zero events.
			q.Set("window", "1h")
			q.Set("from", c.dstDay.Format(time.DateOnly))
			q.Set("to", c.dstDay.AddDate(0, 0, 1).Format(time.DateOnly))
			q.Set("fill", "zero")
			code, a, raw = f.query(t, q.Encode())
			if code != 200 || len(a.Rows) != int(c.dstLength/time.Hour) {
				t.Fatalf("hourly: %d, %d rows, want %d: %.300s", code, len(a.Rows), c.dstLength/time.Hour, raw)
			}
			zeros := 0
			for _, row := range a.Rows {
				start, _ := time.Parse(time.RFC3339, row["start"].(string))
				end, _ := time.Parse(time.RFC3339, row["end"].(string))
				x := truthOf(f.events, start, end, nil)
				if x.count == 0 {
					zeros++
				}
				x.check(t, row["start"].(string), row)
			}
			if zeros == 0 {
				t.Fatal("no zero-filled hour")
			}
		})
	}
}

// Exact top-N per bucket by a measure, grouped and filtered; compared with
// a ranking of the truth.
func testQueryTopNAndFilters(t *testing.T, f *queryFixture) {
	from, to := time.Date(2026, 3, 28, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC)
	q := url.Values{"table": {"events"}, "window": {"1d"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)},
		"group_by": {"event_type,country"}, "order_by": {"amount_sum"}, "order": {"desc"}, "limit": {"2"}, "filter": {"country:DE|FR|null"}}
	code, a, raw := f.query(t, q.Encode())
	if code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	type grp struct {
		etype, country string
		sum            float64
	}
	byDay := map[string][]map[string]any{}
	for _, row := range a.Rows {
		byDay[row["start"].(string)] = append(byDay[row["start"].(string)], row)
	}
	if len(byDay) != 3 {
		t.Fatalf("%d days", len(byDay))
	}
	for day, rows := range byDay {
		start, _ := time.Parse(time.RFC3339, day)
		sums := map[[2]string]*big.Float{}
		for _, e := range f.events {
			if e.ts.Before(start) || !e.ts.Before(start.Add(24*time.Hour)) || (e.country != nil && *e.country == "US") {
				continue
			}
			c := "null"
			if e.country != nil {
				c = *e.country
			}
			k := [2]string{e.etype, c}
			if sums[k] == nil {
				sums[k] = new(big.Float).SetPrec(2000)
			}
			sums[k].Add(sums[k], big.NewFloat(e.amount))
		}
		var all []grp
		for k, s := range sums {
			v, _ := s.Float64()
			all = append(all, grp{k[0], k[1], v})
		}
		slices.SortFunc(all, func(a, b grp) int {
			if a.sum != b.sum {
				if a.sum > b.sum {
					return -1
				}
				return 1
			}
			return strings.Compare(a.etype+a.country, b.etype+b.country)
		})
		if len(rows) != 2 {
			t.Fatalf("%s: %d rows, want 2", day, len(rows))
		}
		for i, row := range rows {
			c := "null"
			if row["country"] != nil {
				c = row["country"].(string)
			}
			if row["event_type"] != all[i].etype || c != all[i].country || row["amount_sum"] != all[i].sum {
				t.Fatalf("%s rank %d: got %v/%v %v, want %+v", day, i, row["event_type"], row["country"], row["amount_sum"], all[i])
			}
		}
	}
	// A token's fixed filter narrows every query made with it.
	tok := mintToken(t, f.ts.URL, f.reader, `{"scopes":["read:events"],"filters":{"country":"FR"}}`)
	q = url.Values{"table": {"events"}, "window": {"1d"}, "from": {from.Format(time.RFC3339)}, "to": {to.Format(time.RFC3339)}, "group_by": {"country"}}
	code, _, raw = do(t, "GET", f.ts.URL+"/v1/query?"+q.Encode(), tok, nil)
	var ta jsonAnswer
	_ = json.Unmarshal(raw, &ta)
	if code != 200 || len(ta.Rows) != 3 {
		t.Fatalf("token query: %d %.300s", code, raw)
	}
	for _, row := range ta.Rows {
		if row["country"] != "FR" {
			t.Fatalf("token filter ignored: %v", row)
		}
	}
}

func testQueryRefusals(t *testing.T, f *queryFixture) {
	for _, c := range []struct{ params, want string }{
		{"table=events&window=30s&from=2026-03-28&to=2026-03-29", "finer than the finest stored window 1m"},
		{"table=events&window=7m&from=2026-03-28&to=2026-03-29", "does not divide a day"},
		{"table=events&window=1h&from=2026-03-29&to=2026-03-28", "from must be before to"},
		{"table=events&window=1h&from=2026-03-28&to=2026-03-29&tz=Mars/Olympus", "IANA"},
		{"table=events&window=1h&from=2026-03-28&to=2026-03-29&group_by=ok", "not a dimension"},
		{"table=events&window=1h&from=2026-03-28&to=2026-03-29&measures=nope", "not all are measures"},
		{"table=events&window=1h&from=2026-03-28&to=2026-03-29&bogus=1", "unknown parameter"},
		{"table=events&window=1h&from=2026-03-28&to=2026-03-29&format=xml", "format"},
	} {
		code, _, raw := f.query(t, c.params)
		if code != 400 || !strings.Contains(string(raw), c.want) {
			t.Errorf("%s: %d %s, want 400 with %q", c.params, code, raw, c.want)
		}
	}
	req, _ := http.NewRequest("GET", f.ts.URL+"/v1/query?table=events&window=1h&from=2026-03-28&to=2026-03-29", nil)
	req.Header.Set("Authorization", "Bearer "+f.reader)
	req.Header.Set("Accept", "image/png")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 406 {
		t.Errorf("Accept image/png: %d", res.StatusCode)
	}
}

// The same query in every format, each read back by its own client
// library, gives the same table.
func testQueryFormats(t *testing.T, f *queryFixture) {
	params := "table=events&window=1d&tz=Europe/Berlin&from=2026-03-28&to=2026-03-31&group_by=country&measures=events,amount_sum,amount_avg"
	fetch := func(accept string) *http.Response {
		req, _ := http.NewRequest("GET", f.ts.URL+"/v1/query?"+params, nil)
		req.Header.Set("Authorization", "Bearer "+f.reader)
		req.Header.Set("Accept", accept)
		res, err := http.DefaultClient.Do(req)
		if err != nil || res.StatusCode != 200 {
			t.Fatalf("%s: %v %v", accept, err, res.Status)
		}
		return res
	}
	// JSON as the reference, as strings per cell.
	res := fetch("application/json")
	var a jsonAnswer
	if err := json.NewDecoder(res.Body).Decode(&a); err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	cols := []string{"start", "end", "country", "events", "amount_sum", "amount_avg"}
	cell := func(v any) string {
		switch x := v.(type) {
		case nil:
			return ""
		case float64:
			return strconv.FormatFloat(x, 'g', -1, 64)
		case string:
			if ts, err := time.Parse(time.RFC3339, x); err == nil {
				return strconv.FormatInt(ts.UnixMicro(), 10)
			}
			return x
		}
		return fmt.Sprint(v)
	}
	var want [][]string
	for _, r := range a.Rows {
		var row []string
		for _, c := range cols {
			row = append(row, cell(r[c]))
		}
		want = append(want, row)
	}
	if len(want) < 6 {
		t.Fatalf("only %d rows", len(want))
	}

	// JSON lines: meta, rows, status.
	res = fetch("application/x-ndjson")
	sc := bufio.NewScanner(res.Body)
	var got [][]string
	var status map[string]any
	for n := 0; sc.Scan(); n++ {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatal(err)
		}
		switch {
		case n == 0:
			if m["meta"] == nil {
				t.Fatal("first line is not meta")
			}
		case m["status"] != nil:
			status = m
		default:
			var row []string
			for _, c := range cols {
				row = append(row, cell(m[c]))
			}
			got = append(got, row)
		}
	}
	res.Body.Close()
	if status["status"] != "ok" || int(status["rows"].(float64)) != len(want) || !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("jsonl: %v\n%v\n%v", status, got, want)
	}

	// CSV by encoding/csv: header, rows, the status record.
	res = fetch("text/csv")
	r := csv.NewReader(res.Body)
	r.FieldsPerRecord = -1
	recs, err := r.ReadAll()
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(recs[0], cols) || recs[len(recs)-1][0] != "#status" || recs[len(recs)-1][1] != "ok" {
		t.Fatalf("csv frame: %v ... %v", recs[0], recs[len(recs)-1])
	}
	got = nil
	for _, rec := range recs[1 : len(recs)-1] {
		row := slices.Clone(rec)
		for i := 0; i < 2; i++ {
			ts, _ := time.Parse(time.RFC3339, row[i])
			row[i] = strconv.FormatInt(ts.UnixMicro(), 10)
		}
		got = append(got, row)
	}
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("csv:\n%v\nwant\n%v", got, want)
	}

	// Arrow IPC stream by arrow's reader.
	res = fetch("application/vnd.apache.arrow.stream")
	ar, err := ipc.NewReader(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := ar.Schema().Metadata().GetValue("sluice.rows"); n != strconv.Itoa(len(want)) {
		t.Fatalf("arrow rows metadata %q", n)
	}
	got = nil
	for ar.Next() {
		rec := ar.Record()
		for i := 0; i < int(rec.NumRows()); i++ {
			var row []string
			for c := range cols {
				col := rec.Column(c)
				if col.IsNull(i) {
					row = append(row, "")
					continue
				}
				switch x := col.(type) {
				case *array.Timestamp:
					row = append(row, strconv.FormatInt(int64(x.Value(i)), 10))
				case *array.String:
					row = append(row, x.Value(i))
				case *array.Int64:
					row = append(row, strconv.FormatInt(x.Value(i), 10))
				case *array.Float64:
					row = append(row, strconv.FormatFloat(x.Value(i), 'g', -1, 64))
				}
			}
			got = append(got, row)
		}
	}
	if err := ar.Err(); err != nil {
		t.Fatal(err)
	}
	ar.Release()
	res.Body.Close()
	if !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("arrow:\n%v\nwant\n%v", got, want)
	}
	if ar.Schema().Field(0).Type.(*arrow.TimestampType).TimeZone != "Europe/Berlin" {
		t.Fatal("arrow timestamps lost the zone")
	}
}

// A stream cut in the middle is noticed by the client: the length
// promised is not delivered, and without it the status record is missing.
func testQueryTruncatedStreamIsNoticed(t *testing.T, f *queryFixture) {
	params := "table=events&window=1h&from=2026-03-28&to=2026-03-31&format=jsonl"
	_, _, full := do(t, "GET", f.ts.URL+"/v1/query?"+params, f.reader, nil)
	if len(full) < 1000 {
		t.Fatalf("answer too short to cut: %d bytes", len(full))
	}
	// A proxy that forwards the headers and half of the body, then closes.
	proxy := newCuttingProxy(t, f.ts.URL, len(full)/2)
	req, _ := http.NewRequest("GET", proxy+"/v1/query?"+params, nil)
	req.Header.Set("Authorization", "Bearer "+f.reader)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(res.Body)
	res.Body.Close()
	if err == nil {
		t.Fatal("a cut body was read without error")
	}
	// Where the length is lost (a proxy that re-chunks), the status record
	// is what tells: the first half of the lines has none.
	if err := checkJSONL(bytes.NewReader(full[:len(full)/2])); err == nil {
		t.Fatal("a cut JSON lines answer passed the status check")
	}
	if err := checkJSONL(bytes.NewReader(full)); err != nil {
		t.Fatalf("the whole answer failed the check: %v", err)
	}
}

// checkJSONL is what a client does: read lines up to the status record and
// make sure it says ok with as many rows as were read.
func checkJSONL(r io.Reader) error {
	sc := bufio.NewScanner(r)
	rows := -1 // the meta line
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			return err
		}
		if s, ok := m["status"]; ok {
			if s != "ok" || int(m["rows"].(float64)) != rows {
				return fmt.Errorf("status %v after %d rows", m, rows)
			}
			return nil
		}
		rows++
	}
	return fmt.Errorf("no status record after %d rows", rows)
}

func newCuttingProxy(t *testing.T, target string, n int) string {
	t.Helper()
	srv := newTestHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, _ := http.NewRequest(r.Method, target+r.URL.RequestURI(), r.Body)
		req.Header = r.Header.Clone()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			w.WriteHeader(502)
			return
		}
		defer res.Body.Close()
		for k, v := range res.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(res.StatusCode)
		_, _ = io.CopyN(w, res.Body, int64(n))
		// Returning with less than Content-Length written makes the
		// server close the connection.
	}))
	return srv
}
