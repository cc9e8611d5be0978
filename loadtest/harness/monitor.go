package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
)

// Sample is one second of the run as the monitor saw it.
type Sample struct {
	T           float64  `json:"t"` // seconds since the start
	Acked       int64    `json:"acked"`
	Committed   int64    `json:"committed"` // raw rows + dead letters
	ProduceRate float64  `json:"produce_rate"`
	IngestRate  float64  `json:"ingest_rate"`
	PipelineLag int64    `json:"pipeline_lag"`           // acknowledged, not yet committed
	ConsumerLag *float64 `json:"consumer_lag,omitempty"` // the ingester's sluice_ingest_consumer_lag_records, summed
	CPUCores    float64  `json:"cpu_cores,omitempty"`    // of the measured process over the second
	RSSBytes    int64    `json:"rss_bytes,omitempty"`
}

// MetricLag reads the ingester's consumer lag (summed over partitions).
type MetricLag func(ctx context.Context) (float64, bool)

const lagMetric = "sluice_ingest_consumer_lag_records"

// GatherLag reads the lag gauge from an in-process registry.
func GatherLag(g prometheus.Gatherer) MetricLag {
	return func(context.Context) (float64, bool) {
		mfs, err := g.Gather()
		if err != nil {
			return 0, false
		}
		for _, mf := range mfs {
			if mf.GetName() != lagMetric {
				continue
			}
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
			return sum, true
		}
		return 0, false
	}
}

// ScrapeLag reads the lag gauge from a /metrics URL (Prometheus text format).
func ScrapeLag(url string) MetricLag {
	cl := &http.Client{Timeout: 2 * time.Second}
	return func(ctx context.Context) (float64, bool) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return 0, false
		}
		resp, err := cl.Do(req)
		if err != nil {
			return 0, false
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return 0, false
		}
		return parseLag(resp.Body)
	}
}

func parseLag(r io.Reader) (float64, bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var sum float64
	found := false
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, lagMetric) {
			continue
		}
		rest := line[len(lagMetric):]
		if rest != "" && rest[0] != '{' && rest[0] != ' ' {
			continue // another metric with this prefix
		}
		f := strings.Fields(line[strings.LastIndexByte(line, '}')+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err != nil {
			continue
		}
		sum += v
		found = true
	}
	return sum, found
}

// procStat is a process's CPU time and memory, read from /proc (Linux).
type procStat struct {
	cpu       time.Duration
	rss, peak int64 // bytes: VmRSS, VmHWM
}

func readProc(pid int) (procStat, bool) {
	var st procStat
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, false
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return st, false
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return st, false
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	st.cpu = time.Duration(ut+stt) * (time.Second / 100) // USER_HZ is 100 on Linux
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, false
	}
	for _, line := range strings.Split(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch k {
		case "VmRSS":
			dst = &st.rss
		case "VmHWM":
			dst = &st.peak
		default:
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		*dst = kb << 10
	}
	return st, true
}

// windowID names one summary window.
type windowID struct {
	Window string // 1m, 5m, ...
	Start  int64  // µs
}

// monitor samples the run once a second and notes when each summary
// window first becomes visible.
type monitor struct {
	env   Env
	ps    *producers
	start time.Time
	out   io.Writer
	total time.Duration // planned produce time, for the status line

	mu        sync.Mutex
	samples   []Sample
	firstSeen map[windowID]time.Time // summary object mtime when the window first appeared
	seenObj   map[string]objstore.ObjectAttrs
	proc0     procStat
	procLast  procStat
	procOK    bool
	phase     string
}

func newMonitor(env Env, ps *producers, start time.Time, total time.Duration) *monitor {
	m := &monitor{env: env, ps: ps, start: start, total: total, out: env.Progress,
		firstSeen: map[windowID]time.Time{}, seenObj: map[string]objstore.ObjectAttrs{}, phase: "producing"}
	if m.out == nil {
		m.out = io.Discard
	}
	if env.ProcPID > 0 {
		m.proc0, m.procOK = readProc(env.ProcPID)
		m.procLast = m.proc0
	}
	return m
}

func (m *monitor) setPhase(p string) {
	m.mu.Lock()
	m.phase = p
	m.mu.Unlock()
}

// run samples every second until ctx is done.
func (m *monitor) run(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	commits := lake.NewCommitLog(m.env.Raw)
	last := Sample{}
	lastAt := m.start
	for {
		select {
		case <-ctx.Done():
			fmt.Fprint(m.out, "\r\x1b[K")
			return
		case now := <-tick.C:
			s := Sample{T: now.Sub(m.start).Seconds(), Acked: m.ps.acked.Load()}
			if recs, err := commits.Records(ctx, m.env.Table.Name); err == nil {
				for _, r := range recs {
					if m.env.Source == "" || r.Source == m.env.Source {
						s.Committed += r.Records + r.DeadLetters
					}
				}
			} else {
				s.Committed = last.Committed
			}
			dt := now.Sub(lastAt).Seconds()
			s.ProduceRate = float64(s.Acked-last.Acked) / dt
			s.IngestRate = float64(s.Committed-last.Committed) / dt
			s.PipelineLag = max(0, s.Acked-s.Committed)
			if m.env.ConsumerLag != nil {
				if v, ok := m.env.ConsumerLag(ctx); ok {
					s.ConsumerLag = &v
				}
			}
			if m.procOK {
				if p, ok := readProc(m.env.ProcPID); ok {
					s.CPUCores = (p.cpu - m.procLast.cpu).Seconds() / dt
					s.RSSBytes = p.rss
					m.mu.Lock()
					m.procLast = p
					m.mu.Unlock()
				}
			}
			if m.env.Summaries != nil {
				m.scanSummaries(ctx)
			}
			m.mu.Lock()
			m.samples = append(m.samples, s)
			phase := m.phase
			m.mu.Unlock()
			m.status(s, phase)
			last, lastAt = s, now
		}
	}
}

func (m *monitor) status(s Sample, phase string) {
	el := time.Duration(s.T * float64(time.Second)).Round(time.Second)
	remain := ""
	if phase == "producing" && m.total > 0 {
		remain = fmt.Sprintf(" (%s left)", max(0, m.total-el).Round(time.Second))
	}
	cl := ""
	if s.ConsumerLag != nil {
		cl = fmt.Sprintf("  consumer lag %s", count(int64(*s.ConsumerLag)))
	}
	fmt.Fprintf(m.out, "\r\x1b[K%s %s%s  rate %s/s  sent %s  committed %s  lag %s%s",
		phase, el, remain, count(int64(s.ProduceRate)), count(s.Acked), count(s.Committed), count(s.PipelineLag), cl)
}

// scanSummaries reads summary objects that changed since the last look and
// notes the windows that appear in them for the first time.
func (m *monitor) scanSummaries(ctx context.Context) {
	var changed []objstore.ObjectAttrs
	_ = m.env.Summaries.Iter(ctx, m.env.Table.Name+"/", func(a objstore.ObjectAttrs) error {
		if !strings.HasSuffix(a.Key, ".parquet") {
			return nil
		}
		if prev, ok := m.seenObj[a.Key]; !ok || prev.Size != a.Size || !prev.LastModified.Equal(a.LastModified) {
			changed = append(changed, a)
		}
		return nil
	})
	for _, a := range changed {
		states, err := readWindowStates(ctx, m.env.Summaries, a.Key)
		if err != nil {
			continue
		}
		m.seenObj[a.Key] = a
		w := windowOfKey(m.env.Table.Name, a.Key)
		m.mu.Lock()
		for start := range states {
			id := windowID{w, start}
			if _, ok := m.firstSeen[id]; !ok {
				m.firstSeen[id] = a.LastModified
			}
		}
		m.mu.Unlock()
	}
}

func (m *monitor) result() ([]Sample, map[windowID]time.Time, procStat, procStat, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fs := make(map[windowID]time.Time, len(m.firstSeen))
	for k, v := range m.firstSeen {
		fs[k] = v
	}
	return append([]Sample(nil), m.samples...), fs, m.proc0, m.procLast, m.procOK
}

// windowOfKey returns the window name of a summary key
// `<table>/<window>/dt=.../<unit>.parquet`.
func windowOfKey(table, key string) string {
	rest := strings.TrimPrefix(key, table+"/")
	w, _, _ := strings.Cut(rest, "/")
	return w
}

// windowsMetaKey is the summary footer key holding the window states; it
// mirrors aggregate's unexported constant (the file format is the contract).
const windowsMetaKey = "sluice.windows"

// readWindowStates reads a summary object's window states, by window
// start (µs).
func readWindowStates(ctx context.Context, b objstore.BucketReader, key string) (map[int64]aggregate.WindowState, error) {
	data, err := readAll(ctx, b, key)
	if err != nil {
		return nil, err
	}
	return windowStates(key, data)
}

func windowStates(key string, data []byte) (map[int64]aggregate.WindowState, error) {
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return nil, fmt.Errorf("open summary %s: %w", key, err)
	}
	out := map[int64]aggregate.WindowState{}
	meta, ok := f.Lookup(windowsMetaKey)
	if !ok {
		return out, nil
	}
	var byTime map[string]aggregate.WindowState
	if err := json.Unmarshal([]byte(meta), &byTime); err != nil {
		return nil, fmt.Errorf("summary %s: window states: %w", key, err)
	}
	for k, v := range byTime {
		ts, err := time.Parse(time.RFC3339Nano, k)
		if err != nil {
			return nil, fmt.Errorf("summary %s: window %q: %w", key, k, err)
		}
		out[ts.UnixMicro()] = v
	}
	return out, nil
}

func readAll(ctx context.Context, b objstore.BucketReader, key string) ([]byte, error) {
	rc, err := b.Get(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", key, err)
	}
	return data, nil
}

// count prints n with thousands separators.
func count(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
