// Package deploy holds no code: it tests the deployment files under deploy/
// against real processes (a built sluice binary, Debian's prometheus).
package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Grafana's variables as the test evaluates them. $__rate_interval is at
// least four scrape intervals in Grafana; 30s over a 1s scrape leaves room
// for a late scrape. $job and $table select everything, as "All" does.
var grafanaVars = []struct{ name, value string }{
	{"$__rate_interval", "30s"},
	{"$__interval", "5s"},
	{"$__range", "5m"},
	{"$job", ".*"},
	{"$table", ".*"},
}

// faultOnlyMetrics exist only after an event the test cannot cause against
// the local store of `sluice dev`, so their absence from Prometheus is
// expected; their panels must still return data (they fall back to zero)
// and the name must be one the code registers.
var faultOnlyMetrics = map[string]string{
	"sluice_sink_object_retries_total": "only after a transient object-store error; a local directory has none",
	"sluice_ops_dead_letters_total":    "only after a firing's last delivery attempt failed; dev's receiver answers every delivery",
}

// TestDashboardQueriesReturnData is issue 6's Done-when 2: a real `sluice dev`
// under load (the demo producer, plus dead letters, a failing object-store
// write and too-late records produced here), scraped every second by Debian's
// prometheus, and every query of every dashboard panel evaluated through the
// Prometheus HTTP API must return data. A second process, `sluice aggregate`
// over dev's stores, sweeps every two seconds (dev sweeps every 15m, beyond
// the test) with retention declared, and deletes an orphan planted here. The
// alert rules are loaded into the same Prometheus and must evaluate without
// error.
func TestDashboardQueriesReturnData(t *testing.T) {
	if testing.Short() {
		t.Skip("starts sluice dev and prometheus for about a minute")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("prometheus is not installed and CI is set: apt-get install -y prometheus (%v)", err)
		}
		t.Skipf("prometheus not installed (apt-get install -y prometheus): %v", err)
	}
	queries := loadDashboardQueries(t, "grafana/dashboards/*.json")
	start := time.Now()

	bin := testkit.SluiceBinary(t)
	procs := testkit.NewProcs(t, t.TempDir())

	dataDir := t.TempDir()
	kafkaAddr, httpAddr, promAddr, sweeperAddr := testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t), testkit.FreeAddr(t)

	// A file where ingest must create the directory of an event-time hour:
	// the flush of the partition that receives an event of that hour fails
	// (object-store failure, failed flush, rewind) until the file is gone.
	faultTS := time.Now().UTC().Add(-5 * time.Hour).Truncate(time.Hour).Add(7 * time.Minute)
	faultPath := filepath.Join(dataDir, "lake", "events", faultTS.Format("dt=2006-01-02"), faultTS.Format("hour=15"))
	if err := os.MkdirAll(filepath.Dir(faultPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(faultPath, []byte("in the way"), 0o644); err != nil {
		t.Fatal(err)
	}

	// An object no record names, as a flush killed between its upload and
	// its commit leaves, older than the sweeper's grace (1h): the sweep
	// must delete it and count it.
	orphan := filepath.Join(dataDir, "lake", "events", time.Now().UTC().Format("dt=2006-01-02/hour=15"), "kafka_events-9-1-killed-flush.parquet")
	if err := os.MkdirAll(filepath.Dir(orphan), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(orphan, []byte("never committed"), 0o644); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(orphan, old, old); err != nil {
		t.Fatal(err)
	}

	startProcess(t, procs, "sluice-dev", bin, "dev", "--data-dir", dataDir, "--kafka-addr", kafkaAddr,
		"--http-addr", httpAddr, "--rate", "1000", "--partitions", "4", "--flush-interval", "2s")
	startProcess(t, procs, "prometheus", promBin, "--config.file", writePromConfig(t, httpAddr, sweeperAddr),
		"--storage.tsdb.path", t.TempDir(), "--web.listen-address", promAddr, "--log.level", "warn")

	sluiceMetrics := "http://" + httpAddr + "/metrics"
	waitFor(t, 30*time.Second, "sluice dev serving /metrics", func() bool { return httpOK(sluiceMetrics) })
	waitFor(t, 30*time.Second, "prometheus ready", func() bool { return httpOK("http://" + promAddr + "/-/ready") })

	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0))
	if err != nil {
		t.Fatalf("kafka client: %v", err)
	}
	defer cl.Close()

	// Three hours back: beyond the 2h late horizon of the sample rollup once
	// the watermark is near now, so a second batch into the same minute is
	// too late.
	lateTS := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Minute).Add(20 * time.Second)
	var recs []*kgo.Record
	recs = append(recs, events(lateTS, 0, 20, "late-a")...)
	recs = append(recs, events(faultTS, 1, 5, "fault")...)
	for i, v := range []string{
		`not json`,
		`{"ts":"` + time.Now().UTC().Format(time.RFC3339) + `","event_id":"x"}`,
		`{"ts":"` + time.Now().UTC().Format(time.RFC3339) + `","event_id":"x","user_id":"u","event_type":"t","amount":"lots","latency_ms":1,"ok":true}`,
		`[1,2,3]`,
	} {
		recs = append(recs, &kgo.Record{Topic: "events", Partition: int32(2 + i%2), Value: []byte(v)})
	}
	produce(t, cl, recs)

	waitFor(t, 45*time.Second, "a failed flush in sluice's metrics", func() bool {
		return hasMetric(sluiceMetrics, "sluice_ingest_flush_failures_total")
	})
	if err := os.Remove(faultPath); err != nil {
		t.Fatal(err)
	}

	summary := filepath.Join(dataDir, "summaries", "events", "1m", lateTS.Format("dt=2006-01-02"), lateTS.Format("hour=15")+".parquet")
	waitFor(t, 60*time.Second, "the late minute summarised ("+summary+")", func() bool {
		_, err := os.Stat(summary)
		return err == nil
	})
	produce(t, cl, events(lateTS, 0, 20, "late-b"))
	waitFor(t, 60*time.Second, "too-late records in sluice's metrics", func() bool {
		return hasMetric(sluiceMetrics, "sluice_aggregate_too_late_records_total")
	})

	// Started only now: its aggregation job takes the same leases as dev's,
	// and the summary above is dev's to write.
	startProcess(t, procs, "sluice-aggregate", bin, "aggregate", "--config", writeSweeperConfig(t, dataDir, sweeperAddr))
	waitFor(t, 60*time.Second, "a sweep by sluice aggregate", func() bool {
		return hasMetric("http://"+sweeperAddr+"/metrics", "sluice_lake_sweep_last_success_timestamp_seconds")
	})
	if _, err := os.Stat(orphan); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the orphan older than the grace is still there after a sweep: %v", err)
	}
	t.Logf("load and faults in place after %s", time.Since(start).Round(time.Millisecond))

	prom := promClient{base: "http://" + promAddr}
	// Every query is retried until it returns data or the deadline passes:
	// a rate needs two scrapes in its window, and Prometheus scrapes on its
	// own clock. The first are not a panel's: the orphan's deletion counted,
	// and the retention horizons where the sweeper's table says (a whole day
	// at least 30 days and 365 days back).
	deadline := time.Now().Add(45 * time.Second)
	checks := []panelQuery{
		{file: "(test)", panel: "orphan deleted", refID: "-",
			expr: `sum(sluice_lake_sweep_deleted_objects_total{table="events",kind="uncommitted"}) >= 1`},
		{file: "(test)", panel: "raw retention horizon", refID: "-",
			expr: `time() - max(sluice_lake_retention_horizon_timestamp_seconds{table="events",area="raw"}) >= 30*86400 < 31*86400`},
		{file: "(test)", panel: "summaries retention horizon", refID: "-",
			expr: `time() - max(sluice_lake_retention_horizon_timestamp_seconds{table="events",area="summaries"}) >= 365*86400 < 366*86400`},
	}
	for _, q := range append(checks, queries...) {
		var last string
		ok := false
		began := time.Now()
		for !ok {
			last, ok = prom.hasData(q.expr)
			if ok || time.Now().After(deadline) {
				break
			}
			time.Sleep(time.Second)
		}
		if !ok {
			t.Errorf("%s: panel %q query %s returned no data: %s\n  %s", q.file, q.panel, q.refID, last, q.expr)
		} else if waited := time.Since(began); waited > 5*time.Second {
			t.Logf("panel %q query %s returned data after %s", q.panel, q.refID, waited.Round(time.Second))
		}
	}

	// A query may return data through a fallback (or ... * 0) although a
	// metric it names does not exist: check every name on its own.
	names, err := prom.metricNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queries {
		for _, m := range metricNames(q.expr) {
			if slices.Contains(names, m) {
				if _, ok := faultOnlyMetrics[m]; ok {
					t.Logf("panel %q: %s is scraped too", q.panel, m)
				}
				continue
			}
			if why, ok := faultOnlyMetrics[m]; ok {
				if !registeredInCode(t, m) {
					t.Errorf("%s: panel %q uses %s, which no package registers", q.file, q.panel, m)
				} else {
					t.Logf("panel %q: %s not scraped (%s)", q.panel, m, why)
				}
				continue
			}
			t.Errorf("%s: panel %q uses metric %s, which Sluice does not export", q.file, q.panel, m)
		}
	}

	checkRulesHealthy(t, prom)
	t.Logf("%d queries of %d panels evaluated; total %s", len(queries), countPanels(queries), time.Since(start).Round(time.Millisecond))
}

type panelQuery struct {
	file, panel, refID, expr string
}

// loadDashboardQueries returns every target of every panel (nested in rows
// too) with Grafana's variables replaced.
func loadDashboardQueries(t *testing.T, glob string) []panelQuery {
	t.Helper()
	files, err := filepath.Glob(glob)
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboards match %s (%v)", glob, err)
	}
	var out []panelQuery
	for _, f := range files {
		var d dashboard
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		var walk func([]panel)
		walk = func(ps []panel) {
			for _, p := range ps {
				walk(p.Panels)
				if p.Type == "row" {
					continue
				}
				if len(p.Targets) == 0 {
					t.Errorf("%s: panel %q has no queries", f, p.Title)
				}
				for _, tg := range p.Targets {
					expr := tg.Expr
					for _, v := range grafanaVars {
						expr = strings.ReplaceAll(expr, v.name, v.value)
					}
					if strings.Contains(expr, "$") {
						t.Errorf("%s: panel %q: unknown Grafana variable in %s", f, p.Title, expr)
						continue
					}
					out = append(out, panelQuery{file: filepath.Base(f), panel: p.Title, refID: tg.RefID, expr: expr})
				}
			}
		}
		walk(d.Panels)
	}
	if len(out) == 0 {
		t.Fatal("the dashboards hold no queries")
	}
	return out
}

type dashboard struct {
	Panels []panel `json:"panels"`
}

type panel struct {
	Type    string   `json:"type"`
	Title   string   `json:"title"`
	Panels  []panel  `json:"panels"`
	Targets []target `json:"targets"`
}

type target struct {
	RefID string `json:"refId"`
	Expr  string `json:"expr"`
}

func countPanels(qs []panelQuery) int {
	seen := map[string]bool{}
	for _, q := range qs {
		seen[q.file+"/"+q.panel] = true
	}
	return len(seen)
}

var metricName = regexp.MustCompile(`\b(?:sluice|process|go)_[a-z0-9_]+\b`)

// metricNames lists the metric names an expression reads.
func metricNames(expr string) []string {
	var out []string
	for _, m := range metricName.FindAllString(expr, -1) {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// registeredInCode reports whether a non-test Go file of the packages that
// define Sluice's metrics names m as a string literal.
func registeredInCode(t *testing.T, m string) bool {
	t.Helper()
	for _, dir := range []string{"../objstore", "../lake", "../ingest", "../aggregate", "../ops", "../internal"} {
		found := false
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(`"`+m+`"`)) {
				found = true
				return filepath.SkipAll
			}
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", dir, err)
		}
		if found {
			return true
		}
	}
	return false
}

// startProcess runs a child until the test ends, then interrupts it (sluice
// flushes on SIGINT) and waits up to 20s for it; the tails of the
// children's output are logged if the test fails.
func startProcess(t *testing.T, procs *testkit.Procs, name, bin string, args ...string) {
	t.Helper()
	p, _, err := procs.Start(name, bin, false, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = p.Stop(syscall.SIGINT, 20*time.Second) })
}

// writePromConfig scrapes the sluice processes every second and loads the
// alert rules, so that a rule that does not parse stops Prometheus from
// starting.
func writePromConfig(t *testing.T, targets ...string) string {
	t.Helper()
	rules, err := filepath.Abs("prometheus/rules")
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
rule_files:
  - %s/*.yml
scrape_configs:
  - job_name: sluice-dev
    static_configs:
      - targets: [%s]
`, rules, quoteAll(targets))
	p := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}

// writeSweeperConfig writes the config of `sluice aggregate` over dev's
// stores: the lease as dev's (leases of different lengths would fence each
// other out), a sweep every 2s with the default grace (1h), and the sample
// table with retention declared, so the sweeper writes a retention record
// and publishes its horizons (30 days back: no data of the test is there).
func writeSweeperConfig(t *testing.T, dataDir, httpAddr string) string {
	t.Helper()
	dir := t.TempDir()
	tables, err := os.ReadFile("../schema/tables/events.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tables = append(bytes.TrimRight(tables, "\n"), "\n    retention: {raw: 30d, summaries: 365d}\n"...)
	if err := os.WriteFile(filepath.Join(dir, "tables.yaml"), tables, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf(`tables_file: tables.yaml
store: {local_dir: %q}
summary_store: {local_dir: %q}
http: {addr: %q}
aggregate:
  interval: 50s
  lease: 1m
  idle_timeout: 1m
  sweep: {every: 2s}
`, filepath.Join(dataDir, "lake"), filepath.Join(dataDir, "summaries"), httpAddr)
	p := filepath.Join(dir, "sluice.yaml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitFor polls cond every 250ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second}

func httpOK(u string) bool {
	resp, err := httpClient.Get(u)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// hasMetric reports whether a /metrics page holds a sample of the family.
func hasMetric(u, family string) bool {
	resp, err := httpClient.Get(u)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, family+"{") || strings.HasPrefix(line, family+" ") {
			return true
		}
	}
	return false
}

// events returns n valid records of the sample table at ts for one partition.
func events(ts time.Time, partition int32, n int, idPrefix string) []*kgo.Record {
	out := make([]*kgo.Record, n)
	for i := range out {
		v := fmt.Sprintf(`{"ts":%q,"event_id":"%s-%d","user_id":"u_%d","event_type":"page_view","country":"DE","device":"mobile","amount":%d.5,"latency_ms":%d,"ok":true}`,
			ts.Add(time.Duration(i)*time.Millisecond).Format(time.RFC3339Nano), idPrefix, i, i%7, i, 10+i)
		out[i] = &kgo.Record{Topic: "events", Partition: partition, Value: []byte(v)}
	}
	return out
}

func produce(t *testing.T, cl *kgo.Client, recs []*kgo.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

type promClient struct{ base string }

type promResponse struct {
	Status    string          `json:"status"`
	Error     string          `json:"error"`
	ErrorType string          `json:"errorType"`
	Data      json.RawMessage `json:"data"`
}

func (p promClient) get(path string, q url.Values) (json.RawMessage, error) {
	resp, err := httpClient.Get(p.base + path + "?" + q.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r promResponse
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("GET %s: decode: %w", path, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("GET %s: %s: %s", path, r.ErrorType, r.Error)
	}
	return r.Data, nil
}

// hasData evaluates expr now and reports whether some series has a finite
// value; otherwise it says what came back.
func (p promClient) hasData(expr string) (string, bool) {
	data, err := p.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return err.Error(), false
	}
	var res struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return err.Error(), false
	}
	if res.ResultType != "vector" {
		return "result type " + res.ResultType, false
	}
	if len(res.Result) == 0 {
		return "empty result", false
	}
	var vals []string
	for _, s := range res.Result {
		v, _ := s.Value[1].(string)
		var f float64
		if _, err := fmt.Sscan(v, &f); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) {
			return "", true
		}
		vals = append(vals, v)
	}
	return fmt.Sprintf("%d series, none finite: %v", len(res.Result), vals), false
}

func (p promClient) metricNames() ([]string, error) {
	data, err := p.get("/api/v1/label/__name__/values", nil)
	if err != nil {
		return nil, err
	}
	var names []string
	if err := json.Unmarshal(data, &names); err != nil {
		return nil, err
	}
	// Histograms are exported as _bucket, _sum and _count series only.
	sort.Strings(names)
	return names, nil
}

// checkRulesHealthy requires every rule of deploy/prometheus/rules to have
// been evaluated without error against the live data.
func checkRulesHealthy(t *testing.T, p promClient) {
	t.Helper()
	var lastErr error
	deadline := time.Now().Add(15 * time.Second)
	for {
		lastErr = rulesHealthy(p)
		if lastErr == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if lastErr != nil {
		t.Error(lastErr)
	}
}

func rulesHealthy(p promClient) error {
	data, err := p.get("/api/v1/rules", nil)
	if err != nil {
		return err
	}
	var res struct {
		Groups []struct {
			Name  string `json:"name"`
			Rules []struct {
				Name           string    `json:"name"`
				Health         string    `json:"health"`
				LastError      string    `json:"lastError"`
				LastEvaluation time.Time `json:"lastEvaluation"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return err
	}
	var errs []error
	n := 0
	for _, g := range res.Groups {
		for _, r := range g.Rules {
			n++
			if r.Health != "ok" || r.LastEvaluation.IsZero() {
				errs = append(errs, fmt.Errorf("rule %s/%s: health %q %s", g.Name, r.Name, r.Health, r.LastError))
			}
		}
	}
	if n == 0 {
		errs = append(errs, errors.New("prometheus loaded no rules"))
	}
	return errors.Join(errs...)
}
