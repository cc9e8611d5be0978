package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browserPath finds Chromium, installing Debian's package with
// scripts/chromium.sh when it is missing; "" if that is impossible.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "../scripts/chromium.sh", "install").Output()
	if err != nil {
		t.Logf("installing chromium failed: %v", err)
		return ""
	}
	return strings.TrimSpace(string(out))
}

// artifactDir is where the screenshot goes: $SLUICE_ARTIFACTS, or
// .artifacts/ at the repository root.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("SLUICE_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", ".artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// testBrowser opens the dashboard in headless Chromium with a read token,
// waits for its charts, checks its numbers against the query API, runs a
// query from the builder and saves a screenshot; the page must log no
// console errors.
func testBrowser(t *testing.T, f *queryFixture) {
	path := browserPath(t)
	if path == "" {
		t.Skip("no Chromium and it could not be installed (scripts/chromium.sh install needs root or sudo and the Debian archive)")
	}
	tok := mintToken(t, f.ts.URL, f.reader, `{"scopes":["read:events"]}`)
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(path), chromedp.NoSandbox,
		chromedp.WindowSize(1280, 1400), chromedp.Flag("disable-dev-shm-usage", true))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	defer cancelT()

	var mu sync.Mutex
	var consoleErrors []string
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, fmt.Sprintf("%v %s", a.Value, a.Description))
				}
				consoleErrors = append(consoleErrors, "console.error: "+strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			d := ev.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			consoleErrors = append(consoleErrors, fmt.Sprintf("exception: %s at %s:%d", msg, d.URL, d.LineNumber))
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError {
				consoleErrors = append(consoleErrors, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	}
	if err := chromedp.Listen(ctx, listen); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	errorsSoFar := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(consoleErrors)
	}

	shared := url.Values{"table": {"events"}, "window": {"1d"}, "tz": {"Europe/Berlin"}, "from": {"2026-03-28"}, "to": {"2026-03-31"}}
	pageURL := f.ts.URL + "/?" + shared.Encode() + "#token=" + tok
	attr := func(sel, name string) string {
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
		if err != nil {
			t.Fatalf("%s[%s]: %v (console: %v)", sel, name, err, errorsSoFar())
		}
		return v.Value
	}
	if _, err := chromedp.Call(ctx, cdplog.Enable, cdp.Empty{}); err != nil {
		t.Fatal(err)
	}
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
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100: PNG
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
	out := filepath.Join(artifactDir(t), "dashboard.png")
	if err := os.WriteFile(out, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", out)
	if errs := errorsSoFar(); len(errs) > 0 {
		t.Fatalf("console errors: %v", errs)
	}
}
