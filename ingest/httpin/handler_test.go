package httpin_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluicehq/sluice/ingest/httpin"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

// Every dead-letter reason comes back for its record, in request order,
// and only the accepted records reach the lake.
func TestHTTPIngestRefusalReasons(t *testing.T) {
	b := objstoretest.NewLocal(t)
	s := startStack(t, b, httpin.Config{})
	now := time.Now().UTC().Add(-time.Minute)
	ts := now.Format(time.RFC3339Nano)
	cases := []struct {
		line   string
		reason schema.Reason // "" for accepted
	}{
		{event("ok-1", now), ""},
		{`{"pad":"` + strings.Repeat("x", 70_000) + `"}`, schema.ReasonTooLarge},
		{`{"ts":`, schema.ReasonMalformedJSON},
		{`{"ts":"` + ts + `","event_id":"a` + "\xff" + `b","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`, schema.ReasonInvalidUTF8},
		{`[1,2]`, schema.ReasonNotObject},
		{`{"ts":"` + ts + `","event_id":"w","user_id":"u","event_type":"e","amount":"lots","latency_ms":1,"ok":true}`, schema.ReasonWrongType},
		{`{"ts":"` + ts + `","event_id":"r","user_id":"u","event_type":"e","amount":1,"latency_ms":1e300,"ok":true}`, schema.ReasonNumberOutOfRange},
		{`{"ts":"` + ts + `","event_id":"m","event_type":"e","amount":1,"latency_ms":1,"ok":true}`, schema.ReasonMissingField},
		{`{"ts":"yesterday","event_id":"b","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`, schema.ReasonBadEventTime},
		{`{"ts":"1999-01-01T00:00:00Z","event_id":"o","user_id":"u","event_type":"e","amount":1,"latency_ms":1,"ok":true}`, schema.ReasonAbsurdEventTime},
		{event("ok-2", now), ""},
	}
	var body bytes.Buffer
	for _, c := range cases {
		body.WriteString(c.line + "\n")
	}
	code, resp, raw := post(t, s.URL+"/v1/tables/events/events", body.Bytes(), nil)
	if code != http.StatusOK || !resp.Durable {
		t.Fatalf("status %d, body %.300s", code, raw)
	}
	if len(resp.Results) != len(cases) || resp.Accepted != 2 || resp.Refused != len(cases)-2 {
		t.Fatalf("got %d results, %d accepted, %d refused", len(resp.Results), resp.Accepted, resp.Refused)
	}
	seen := map[schema.Reason]bool{}
	for i, c := range cases {
		got := resp.Results[i]
		want := "accepted"
		if c.reason != "" {
			want = "refused"
		}
		if got.Status != want || got.Reason != string(c.reason) {
			t.Errorf("record %d: got %+v, want %s %s", i, got, want, c.reason)
		}
		seen[c.reason] = true
	}
	for _, r := range schema.Reasons() {
		if !seen[r] {
			t.Errorf("no case for reason %s", r)
		}
	}
	checkExactlyOnce(t, map[string]bool{"ok-1": true, "ok-2": true}, committedIDs(t, b))
}

// A JSON array, one object and gzip-compressed lines all arrive; a body
// that is not gzip or not a JSON array is a clear 400.
func TestHTTPIngestBodyFormats(t *testing.T) {
	b := objstoretest.NewLocal(t)
	s := startStack(t, b, httpin.Config{})
	url := s.URL + "/v1/tables/events/events"
	now := time.Now().Add(-time.Minute)
	want := map[string]bool{}

	arr := "[" + event("arr-1", now) + ",\n " + event("arr-2", now) + "]"
	if code, resp, raw := post(t, url, []byte(arr), nil); code != 200 || resp.Accepted != 2 {
		t.Fatalf("array: %d %s", code, raw)
	}
	one := strings.Replace(event("one", now), ",", ",\n  ", -1) // pretty-printed over lines
	if code, resp, raw := post(t, url, []byte(one), nil); code != 200 || resp.Accepted != 1 {
		t.Fatalf("object: %d %s", code, raw)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	for i := range 100 {
		fmt.Fprintln(zw, event(fmt.Sprintf("gz-%d", i), now))
		want[fmt.Sprintf("gz-%d", i)] = true
	}
	zw.Close()
	if code, resp, raw := post(t, url, gz.Bytes(), map[string]string{"Content-Encoding": "gzip"}); code != 200 || resp.Accepted != 100 {
		t.Fatalf("gzip: %d %.200s", code, raw)
	}
	for _, id := range []string{"arr-1", "arr-2", "one"} {
		want[id] = true
	}

	for _, c := range []struct {
		name string
		body []byte
		hdr  map[string]string
		code int
	}{
		{"not gzip", []byte(event("x", now)), map[string]string{"Content-Encoding": "gzip"}, 400},
		{"truncated gzip", gz.Bytes()[:gz.Len()/2], map[string]string{"Content-Encoding": "gzip"}, 400},
		{"unknown encoding", []byte(event("x", now)), map[string]string{"Content-Encoding": "br"}, 415},
		{"bad array", []byte("[" + event("x", now) + ",{"), nil, 400},
		{"empty", []byte("  \n"), nil, 400},
		{"bad wait", []byte(event("x", now)), nil, 400},
	} {
		u := url
		if c.name == "bad wait" {
			u += "?wait=maybe"
		}
		if code, _, raw := post(t, u, c.body, c.hdr); code != c.code || !strings.Contains(raw, `"error"`) {
			t.Errorf("%s: got %d %s, want %d with an error", c.name, code, raw, c.code)
		}
	}
	if code, _, _ := post(t, s.URL+"/v1/tables/nope/events", []byte(event("x", now)), nil); code != 404 {
		t.Errorf("unknown table: %d", code)
	}
	checkExactlyOnce(t, want, committedIDs(t, b))
}

// Bodies over the limit, as sent or once unzipped, and requests with too
// many records are 413 and leave nothing in the lake.
func TestHTTPIngestOversized(t *testing.T) {
	b := objstoretest.NewLocal(t)
	s := startStack(t, b, httpin.Config{MaxBodyBytes: 64 << 10, MaxRecords: 50})
	url := s.URL + "/v1/tables/events/events"
	now := time.Now().Add(-time.Minute)
	var big bytes.Buffer
	for i := 0; big.Len() <= 64<<10; i++ {
		fmt.Fprintln(&big, event(fmt.Sprintf("big-%d", i), now))
	}
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	zw.Write([]byte(event("bomb", now)))
	zw.Write(bytes.Repeat([]byte(" "), 10<<20))
	zw.Close()
	var many bytes.Buffer
	for i := range 51 {
		fmt.Fprintln(&many, event(fmt.Sprintf("many-%d", i), now))
	}
	for name, c := range map[string]struct {
		body []byte
		hdr  map[string]string
	}{
		"big":  {big.Bytes(), nil},
		"bomb": {bomb.Bytes(), map[string]string{"Content-Encoding": "gzip"}},
		"many": {many.Bytes(), nil},
	} {
		if code, _, raw := post(t, url, c.body, c.hdr); code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s: got %d %.200s, want 413", name, code, raw)
		}
	}
	if got := committedIDs(t, b); len(got) != 0 {
		t.Fatalf("refused requests left %d events in the lake", len(got))
	}
}

// wait=false answers 202 before the records are durable; they still land.
func TestHTTPIngestAsync(t *testing.T) {
	b := objstoretest.NewLocal(t)
	s := startStack(t, b, httpin.Config{})
	code, resp, raw := post(t, s.URL+"/v1/tables/events/events?wait=false", []byte(event("async", time.Now().Add(-time.Minute))), nil)
	if code != http.StatusAccepted || resp.Durable {
		t.Fatalf("got %d %s, want 202 not durable", code, raw)
	}
	for i := 0; ; i++ {
		if committedIDs(t, b)["async"] == 1 {
			break
		}
		if i == 100 {
			t.Fatal("the 202's record never reached the lake")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Retries with one Idempotency-Key, sequential, concurrent and after a
// server restart, put the records in the lake once and get the first
// answer back; the key with other records is 422.
func TestHTTPIngestIdempotencyKey(t *testing.T) {
	b := objstoretest.NewLocal(t)
	s := startStack(t, b, httpin.Config{})
	url := s.URL + "/v1/tables/events/events"
	now := time.Now().Add(-time.Minute)
	body := []byte(event("idem-1", now) + "\n" + event("idem-2", now) + "\n{bad\n")
	hdr := map[string]string{"Idempotency-Key": "k-1"}
	code, first, raw := post(t, url, body, hdr)
	if code != 200 || first.Replayed || first.Accepted != 2 {
		t.Fatalf("first: %d %s", code, raw)
	}
	var wg sync.WaitGroup
	codes := make([]int, 8)
	replays := make([]httpin.Response, 8)
	for i := range codes {
		wg.Add(1)
		go func() { defer wg.Done(); codes[i], replays[i], _ = post(t, url, body, hdr) }()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 || !replays[i].Replayed || replays[i].Accepted != 2 || replays[i].Results[2].Reason != "malformed_json" {
			t.Errorf("retry %d: %d %+v", i, c, replays[i])
		}
	}
	if code, _, raw := post(t, url, []byte(event("other", now)), hdr); code != http.StatusUnprocessableEntity {
		t.Errorf("key reused for other records: %d %s", code, raw)
	}
	// Concurrent first attempts of a new key: one wins, the others wait
	// for it or replay it.
	body2 := []byte(event("idem-3", now))
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i], _, _ = post(t, url, body2, map[string]string{"Idempotency-Key": "k-2"})
		}()
	}
	wg.Wait()
	if slices.ContainsFunc(codes, func(c int) bool { return c != 200 }) {
		t.Errorf("concurrent first attempts: %v", codes)
	}
	s.stop()
	s.stop = nil
	s2 := startStack(t, b, httpin.Config{})
	code, again, raw := post(t, s2.URL+"/v1/tables/events/events", body, hdr)
	if code != 200 || !again.Replayed {
		t.Fatalf("after restart: %d %s", code, raw)
	}
	checkExactlyOnce(t, map[string]bool{"idem-1": true, "idem-2": true, "idem-3": true}, committedIDs(t, b))
}

// A claim left pending by a server that died is settled from the chain on
// retry: records its incarnation committed are not sent again, the rest
// are.
func TestHTTPIngestIdempotencyAfterCrash(t *testing.T) {
	b := objstoretest.NewLocal(t)
	ctx := context.Background()
	now := time.Now().Add(-time.Minute)
	line := func(id string) []byte { return []byte(event(id, now)) }
	var first bytes.Buffer
	want := map[string]bool{}
	for i := range 10 {
		first.Write(append(line(fmt.Sprintf("a%d", i)), '\n'))
		want[fmt.Sprintf("a%d", i)] = true
	}
	s := startStack(t, b, httpin.Config{})
	if code, _, raw := post(t, s.URL+"/v1/tables/events/events", first.Bytes(), nil); code != 200 {
		t.Fatalf("%d %s", code, raw)
	}
	s.stop()
	s.stop = nil
	chain, err := lake.NewCommitLog(b).Chain(ctx, "events", httpin.SourceName("events"), "test")
	if err != nil || len(chain.Records) == 0 {
		t.Fatalf("chain: %v", err)
	}
	sid := chain.Records[0].SourceID

	// "whole": its records were positions 0-4 of the dead incarnation, all
	// committed. "part": positions 5-14, of which 5-9 were committed before
	// the crash (a5..a9) and b0..b4 were lost.
	whole := [][]byte{line("a0"), line("a1"), line("a2"), line("a3"), line("a4")}
	part := [][]byte{line("a5"), line("a6"), line("a7"), line("a8"), line("a9"), line("b0"), line("b1"), line("b2"), line("b3"), line("b4")}
	if err := httpin.WriteClaim(ctx, b, "events", "whole", whole, []httpin.Span{{SourceID: sid, Partition: "test", First: 0, Next: 5}}); err != nil {
		t.Fatal(err)
	}
	if err := httpin.WriteClaim(ctx, b, "events", "part", part, []httpin.Span{{SourceID: sid, Partition: "test", First: 5, Next: 15}}); err != nil {
		t.Fatal(err)
	}
	s2 := startStack(t, b, httpin.Config{})
	for key, recs := range map[string][][]byte{"whole": whole, "part": part} {
		code, resp, raw := post(t, s2.URL+"/v1/tables/events/events", bytes.Join(recs, []byte("\n")), map[string]string{"Idempotency-Key": key})
		if code != 200 || !resp.Replayed || !resp.Durable {
			t.Fatalf("%s: %d %s", key, code, raw)
		}
	}
	for i := range 5 {
		want[fmt.Sprintf("b%d", i)] = true
	}
	checkExactlyOnce(t, want, committedIDs(t, b))
}

// Claims past their TTL are swept; live ones stay.
func TestHTTPIngestSweepsOldClaims(t *testing.T) {
	b := objstoretest.NewLocal(t)
	ctx := context.Background()
	if err := httpin.WriteClaim(ctx, b, "events", "fresh", nil, nil); err != nil {
		t.Fatal(err)
	}
	h := newBareHandler(t, b, httpin.Config{IdempotencyTTL: time.Hour})
	if n, err := h.SweepClaims(ctx); err != nil || n != 0 {
		t.Fatalf("swept %d (%v) of a fresh claim", n, err)
	}
	h.SetNow(func() time.Time { return time.Now().Add(3 * time.Hour) }) // past TTL and slack
	if n, err := h.SweepClaims(ctx); err != nil || n != 1 {
		t.Fatalf("swept %d (%v), want 1", n, err)
	}
}
