package main

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
)

var dashboardLine = regexp.MustCompile(`Dashboard\s+(http://\S+)`)

// checkDevDashboard finds the dashboard URL dev printed into its log, loads
// the page and uses the URL's token on the query API.
func checkDevDashboard(t *testing.T, logPath string) {
	t.Helper()
	out, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	m := dashboardLine.FindSubmatch(out)
	if m == nil {
		t.Fatalf("dev printed no dashboard URL:\n%s", out)
	}
	u, err := url.Parse(string(m[1]))
	if err != nil || u.Path != "/" || !strings.HasPrefix(u.Fragment, "token=st_") {
		t.Fatalf("dashboard URL %q: %v", m[1], err)
	}
	res, err := http.Get("http://" + u.Host + "/")
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(page), "<title>Sluice</title>") {
		t.Fatalf("GET /: %d", res.StatusCode)
	}
	req, _ := http.NewRequest("GET", "http://"+u.Host+"/v1/tables", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimPrefix(u.Fragment, "token="))
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || !strings.Contains(string(body), `"events"`) {
		t.Fatalf("GET /v1/tables with the dashboard token: %d %s", res.StatusCode, body)
	}
}
