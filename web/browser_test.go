package web_test

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/sluicehq/sluice/internal/browsertest"
)

// testBrowser opens the dashboard in headless Chromium with a read token,
// waits for its charts, checks its numbers against the query API, runs a
// query from the builder and saves a screenshot; the page must log no
// console errors.
func testBrowser(t *testing.T, f *queryFixture) {
	path := browsertest.Path(t)
	if path == "" {
		t.Skip("no Chromium and it could not be installed (scripts/chromium.sh install needs root or sudo and the Debian archive)")
	}
	tok := mintToken(t, f.ts.URL, f.reader, `{"scopes":["read:events"]}`)
	br := browsertest.Open(t, path, 90*time.Second)
	ctx, errorsSoFar := br.Ctx, br.Errors

	shared := url.Values{"table": {"events"}, "window": {"1d"}, "tz": {"Europe/Berlin"}, "from": {"2026-03-28"}, "to": {"2026-03-31"}}
	pageURL := f.ts.URL + "/?" + shared.Encode() + "#token=" + tok
	attr := func(sel, name string) string { return br.Attr(t, sel, name) }
	err := chromedp.Do(ctx,
		chromedp.Navigate(pageURL),
		chromedp.WaitVisible(chromedp.CSS(`#panel-events[data-state="done"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#chart-events .uplot canvas`)),
		chromedp.WaitVisible(chromedp.CSS(`#b-status[data-state="done"]`)),
	)
	if err != nil {
		t.Fatalf("page did not load: %v (console: %v)", err, errorsSoFar())
	}
	total, totalQuery, rows := attr(`#stat-total-events`, "data-value"), attr(`#stat-total-events`, "data-query"), attr(`#b-status`, "data-rows")
	firstEvents, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#b-result tr:nth-child(2) td:nth-child(3)`)))
	if err != nil {
		t.Fatal(err)
	}

	// The panel's number, from the query it names, through the API.
	code, _, raw := do(t, "GET", f.ts.URL+"/v1/query?"+totalQuery, tok, nil)
	var a jsonAnswer
	if code != 200 || json.Unmarshal(raw, &a) != nil {
		t.Fatalf("panel query: %d %.200s", code, raw)
	}
	var sum float64
	for _, r := range a.Rows {
		sum += r["events"].(float64)
	}
	if total != strconv.FormatFloat(sum, 'f', -1, 64) || sum == 0 {
		t.Fatalf("page shows %s events in the last hour, the API says %v", total, sum)
	}
	// The shared query the builder ran on load.
	_, want, _ := f.query(t, shared.Encode())
	if rows != strconv.Itoa(len(want.Rows)) || firstEvents != fmt.Sprint(want.Rows[0]["events"]) {
		t.Fatalf("builder shows %s rows, first day %s events; the API %d rows, %v", rows, firstEvents, len(want.Rows), want.Rows[0]["events"])
	}

	// One query typed into the builder: its URL becomes shareable.
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS(`#b-group`), "country"),
		chromedp.SetValue(chromedp.CSS(`#b-order`), "events"),
		chromedp.SetValue(chromedp.CSS(`#b-limit`), "2"),
		chromedp.Click(chromedp.CSS(`#b-run`)),
		chromedp.WaitVisible(chromedp.CSS(`#b-status[data-state="done"][data-rows="6"]`)),
	)
	if err != nil {
		t.Fatalf("builder query: %v (console: %v)", err, errorsSoFar())
	}
	search, err := chromedp.Run(ctx, chromedp.Evaluate[string](`location.search`))
	if err != nil {
		t.Fatal(err)
	}
	sq, _ := url.ParseQuery(strings.TrimPrefix(search, "?"))
	if sq.Get("group_by") != "country" || sq.Get("limit") != "2" || sq.Get("table") != "events" {
		t.Fatalf("builder URL %q does not hold the query", search)
	}
	_, top, _ := f.query(t, sq.Encode())
	if len(top.Rows) != 6 {
		t.Fatalf("the builder's URL gives %d rows through the API, the page showed 6", len(top.Rows))
	}
	br.Screenshot(t, "dashboard.png")
	if errs := errorsSoFar(); len(errs) > 0 {
		t.Fatalf("console errors: %v", errs)
	}
}
