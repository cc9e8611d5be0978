package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/sluicehq/sluice/internal/browsertest"
	"github.com/sluicehq/sluice/internal/testkit"
)

// devAnswer is the JSON answer of dev's query API, as much as the browser
// test reads.
type devAnswer struct {
	Meta struct {
		Columns []struct{ Name, Measure string }
	}
	Rows   []map[string]any
	Status string
}

// devQuery runs a query on dev's API with the dashboard's token; ok is
// false (with the reason) unless it answered 200 with a complete body.
func devQuery(host, token string, q url.Values) (a devAnswer, ok bool, why string) {
	req, err := http.NewRequest("GET", "http://"+host+"/v1/query?"+q.Encode(), nil)
	if err != nil {
		return a, false, err.Error()
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return a, false, err.Error()
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		return a, false, fmt.Sprintf("%d %.300s", res.StatusCode, body)
	}
	if err := json.Unmarshal(body, &a); err != nil || (a.Status != "" && a.Status != "ok") {
		return a, false, fmt.Sprintf("answer %.300s: %v", body, err)
	}
	return a, true, ""
}

// countColumn names the answer's count measure, as the page picks it.
func (a devAnswer) countColumn() string {
	for _, c := range a.Meta.Columns {
		if c.Measure == "count" {
			return c.Name
		}
	}
	return ""
}

func (a devAnswer) total() float64 {
	col, sum := a.countColumn(), 0.0
	for _, r := range a.Rows {
		if v, ok := r[col].(float64); ok {
			sum += v
		}
	}
	return sum
}

// cells renders the answer as the page's result table does: a header of
// column names, then one row per result, integers as JavaScript's String
// prints them and nulls as "–" (the test asks only for counts, so no
// fractions).
func (a devAnswer) cells() [][]string {
	head := []string{}
	for _, c := range a.Meta.Columns {
		head = append(head, c.Name)
	}
	out := [][]string{head}
	for _, r := range a.Rows {
		row := []string{}
		for _, c := range a.Meta.Columns {
			switch v := r[c.Name].(type) {
			case nil:
				row = append(row, "–")
			case float64:
				row = append(row, strconv.FormatFloat(v, 'f', -1, 64))
			default:
				row = append(row, fmt.Sprint(v))
			}
		}
		out = append(out, row)
	}
	return out
}

// lastHour is the panel's query as the page builds it at now: the hour of
// one-minute windows up to the next whole minute, zero-filled.
func lastHour(now time.Time) url.Values {
	to := now.UTC().Truncate(time.Minute)
	if !to.Equal(now) {
		to = to.Add(time.Minute)
	}
	const iso = "2006-01-02T15:04:05.000Z" // JavaScript's toISOString
	return url.Values{"table": {"events"}, "window": {"1m"}, "from": {to.Add(-time.Hour).Format(iso)},
		"to": {to.Format(iso)}, "fill": {"zero"}}
}

// TestDevDashboardInBrowser opens the page of a running `sluice dev` in
// headless Chromium, the way a new user does: the URL dev prints, with its
// read token. Once dev has summaries, the page's charts must draw, the
// number it shows must equal the query API's answer to the query the page
// names, a query run from the builder must show the API's answer and leave
// a shareable URL, and the page must log no console errors. The
// screenshot is kept as dev-dashboard.png under $SLUICE_ARTIFACTS (or
// .artifacts/). dev's first one-minute summary takes a minute or two, so
// this runs with SLUICE_LONG=1.
func TestDevDashboardInBrowser(t *testing.T) {
	if os.Getenv("SLUICE_LONG") == "" {
		t.Skip("waits for dev's first summaries (one to two minutes); SLUICE_LONG=1 runs it")
	}
	path := browsertest.Path(t)
	if path == "" {
		t.Skip("no Chromium and it could not be installed (scripts/chromium.sh install needs root or sudo and the Debian archive)")
	}
	bin := testkit.SluiceBinary(t)
	dir := t.TempDir()
	cs := testkit.NewProcs(t, dir)
	dataDir := filepath.Join(dir, "sluice-data")
	dev, _, err := cs.Start("dev", bin, false, "dev", "--data-dir", dataDir,
		"--kafka-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--rate", "500")
	if err != nil {
		t.Fatal(err)
	}
	started := time.Now()

	// The dashboard URL dev prints, with its read token in the fragment.
	var pageURL *url.URL
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline) && pageURL == nil; {
		time.Sleep(200 * time.Millisecond)
		if !dev.Alive() {
			t.Fatal("sluice dev exited")
		}
		out, _ := os.ReadFile(dev.LogPath)
		if m := dashboardLine.FindSubmatch(out); m != nil {
			if pageURL, err = url.Parse(string(m[1])); err != nil {
				t.Fatalf("dashboard URL %q: %v", m[1], err)
			}
		}
	}
	if pageURL == nil {
		t.Fatal("dev printed no dashboard URL within 60s")
	}
	host, token := pageURL.Host, strings.TrimPrefix(pageURL.Fragment, "token=")
	if token == pageURL.Fragment {
		t.Fatalf("dashboard URL %s carries no token", pageURL)
	}

	// Wait until dev has summaries: the panel's query counts events.
	var why string
	for deadline := time.Now().Add(150 * time.Second); ; {
		a, ok, w := devQuery(host, token, lastHour(time.Now()))
		if ok && a.total() > 0 {
			break
		}
		why = w
		if !dev.Alive() {
			t.Fatal("sluice dev exited")
		}
		if time.Now().After(deadline) {
			t.Fatalf("no summarised events through the query API within %s of starting dev (last answer: %s)", time.Since(started).Round(time.Second), why)
		}
		time.Sleep(2 * time.Second)
	}
	t.Logf("first summaries through the API after %s", time.Since(started).Round(time.Second))

	br := browsertest.Open(t, path, 2*time.Minute)
	ctx := br.Ctx

	// The panel's total, against the API. dev keeps summarising while the
	// page loads, so an attempt counts only if the API gave the same rows
	// just before the page loaded and just after, for the query the page
	// names; a new window landing in between is retried (bounded).
	compared := false
	for attempt := 1; attempt <= 4 && !compared; attempt++ {
		want := lastHour(time.Now())
		before, ok, w := devQuery(host, token, want)
		if !ok {
			t.Fatalf("panel query before loading: %s", w)
		}
		err := chromedp.Do(ctx,
			chromedp.Navigate(pageURL.String()),
			chromedp.WaitVisible(chromedp.CSS(`body[data-state="ready"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#panel-events[data-state="done"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#chart-events .uplot canvas`)),
		)
		if err != nil {
			t.Fatalf("page did not load: %v (console: %v)", err, br.Errors())
		}
		shown, named := br.Attr(t, `#stat-total-events`, "data-value"), br.Attr(t, `#stat-total-events`, "data-query")
		q, err := url.ParseQuery(named)
		if err != nil {
			t.Fatalf("the panel names the query %q: %v", named, err)
		}
		after, ok, w := devQuery(host, token, q)
		if !ok {
			t.Fatalf("the panel's query %q: %s", named, w)
		}
		if !reflect.DeepEqual(q, want) || !reflect.DeepEqual(before.Rows, after.Rows) {
			t.Logf("attempt %d: the minute turned or a window landed while the page loaded; again", attempt)
			continue
		}
		sum := after.total()
		if shown != strconv.FormatFloat(sum, 'f', -1, 64) || sum == 0 {
			t.Fatalf("the page shows %s events in the last hour, the query API %v for the same query (%s)", shown, sum, named)
		}
		t.Logf("the page shows %s events in the last hour, as the API does", shown)
		compared = true
	}
	if !compared {
		t.Fatal("dev's summaries changed during each of 4 page loads: nothing compared")
	}

	// One query from the builder: events per country per minute, top 3 by
	// count, over the minutes dev has run; the URL must carry it.
	col := ""
	if a, ok, w := devQuery(host, token, lastHour(time.Now())); !ok {
		t.Fatal(w)
	} else if col = a.countColumn(); col == "" {
		t.Fatalf("the events table has no count measure: %+v", a.Meta.Columns)
	}
	const iso = "2006-01-02T15:04:05Z"
	from := started.UTC().Truncate(time.Minute).Add(-time.Minute)
	ran := false
	for attempt := 1; attempt <= 4 && !ran; attempt++ {
		to := time.Now().UTC().Truncate(time.Minute).Add(time.Minute)
		want := url.Values{"table": {"events"}, "window": {"1m"}, "tz": {"UTC"}, "from": {from.Format(iso)}, "to": {to.Format(iso)},
			"group_by": {"country"}, "measures": {col}, "order_by": {col}, "order": {"desc"}, "limit": {"3"}}
		before, ok, w := devQuery(host, token, want)
		if !ok {
			t.Fatalf("builder query before running: %s", w)
		}
		if len(before.Rows) == 0 {
			t.Fatalf("the builder's query has no rows through the API: %v", want)
		}
		err := chromedp.Do(ctx,
			chromedp.SetValue(chromedp.CSS(`#b-window`), "1m"),
			chromedp.SetValue(chromedp.CSS(`#b-from`), want.Get("from")),
			chromedp.SetValue(chromedp.CSS(`#b-to`), want.Get("to")),
			chromedp.SetValue(chromedp.CSS(`#b-group`), "country"),
			chromedp.SetValue(chromedp.CSS(`#b-measures`), col),
			chromedp.SetValue(chromedp.CSS(`#b-order`), col),
			chromedp.SetValue(chromedp.CSS(`#b-limit`), "3"),
			chromedp.SetAttributeValue(chromedp.CSS(`#b-status`), "data-state", "idle"),
			chromedp.Click(chromedp.CSS(`#b-run`)),
			chromedp.WaitVisible(chromedp.CSS(`#b-status[data-state="done"]`)),
		)
		if err != nil {
			t.Fatalf("builder query: %v (console: %v)", err, br.Errors())
		}
		search, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.search`))
		if err != nil {
			t.Fatal(err)
		}
		table, err := chromedp.Run(ctx, chromedp.Evaluate[[][]string](
			`Array.from(document.querySelectorAll("#b-result tr")).map(tr => Array.from(tr.children).map(c => c.textContent))`))
		if err != nil {
			t.Fatal(err)
		}
		sq, err := url.ParseQuery(strings.TrimPrefix(search, "?"))
		if err != nil || !reflect.DeepEqual(sq, want) {
			t.Fatalf("the builder's URL %q does not hold the query %v", search, want)
		}
		after, ok, w := devQuery(host, token, sq)
		if !ok {
			t.Fatalf("the builder's URL through the API: %s", w)
		}
		if !reflect.DeepEqual(before.Rows, after.Rows) {
			t.Logf("attempt %d: a window landed while the builder ran; again", attempt)
			continue
		}
		if wantCells := after.cells(); !reflect.DeepEqual(table, wantCells) {
			t.Fatalf("the builder shows\n%v\nthe query API answers\n%v", table, wantCells)
		}
		t.Logf("the builder shows the API's %d rows for %s", len(after.Rows), search)
		ran = true
	}
	if !ran {
		t.Fatal("dev's summaries changed during each of 4 builder runs: nothing compared")
	}

	br.Screenshot(t, "dev-dashboard.png")
	if errs := br.Errors(); len(errs) > 0 {
		t.Fatalf("console errors: %v", errs)
	}
	if code, err := dev.Stop(syscall.SIGINT, 60*time.Second); err != nil || code != 0 {
		t.Fatalf("sluice dev did not stop cleanly on Ctrl-C: exit %d, %v", code, err)
	}
}
