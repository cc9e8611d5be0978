package gen

import (
	"fmt"
	"math"
	"math/big"
	"slices"
	"sync"
	"time"
)

// Truth is what a stream of generated events adds up to, per rollup window
// and group, computed from the Event values alone: it shares no code with
// the engine it is meant to check (no window, grouping or accumulator
// helper of the aggregate or schema packages), so a bug there cannot hide
// in both. It follows the sample table's rollup: groups are (event_type,
// country), and it keeps, per group, the exact count, the exact sum, min
// and max of amount, every latency_ms (for exact rank-based quantiles) and
// the distinct users.
//
// Windows are aligned to the Unix epoch in UTC: a window of size w holding
// event time t starts at t floored to a multiple of w. Details are kept
// per window of the finest size; coarser windows are merged from them when
// asked for.
//
// Memory grows with the distinct values, not with the events: latencies
// are kept as counts per value and users as a set, each compacted as it
// grows (a few bytes an event between compactions), plus a few hundred
// bytes per finest window and group. Safe for concurrent use.
type Truth struct {
	fineUS int64
	sizes  []time.Duration

	mu       sync.Mutex
	windows  map[int64]map[Group]*truthGroup // by finest window start (µs)
	events   int64
	maxEvent int64
}

// Group is one group of the sample table's rollup. Country is "" for null.
type Group struct {
	EventType string
	Country   string
}

func (g Group) String() string {
	c := g.Country
	if c == "" {
		c = "NULL"
	}
	return g.EventType + "/" + c
}

type truthGroup struct {
	count    int64
	sum      *big.Float // exact sum of amounts
	min, max float64
	// Latencies below denseLatencyLimit are counted by value in latDense
	// (latDense[v] events had latency v): nearly all of them, and an
	// increment costs far less than sorting them in (the sort was the
	// largest cost of the truth in a load test flat out). The rest, the
	// long tail, are gathered in lat and folded into latRuns by sorting.
	latDense []uint32
	lat      []int32        // tail latencies added since the last compaction
	latRuns  []LatencyCount // every tail latency before them, by value
	users    []uint32
	usersSet int // users[:usersSet] is sorted and without repeats
}

// LatencyCount is how many events of a group had one latency_ms value.
type LatencyCount struct {
	Value int64
	N     int64
}

// denseLatencyLimit bounds the latencies counted by value: at most 4096
// counters of 4 bytes (16 KiB) per group and finest window, grown as values
// come. The sorted counts took 16 bytes per distinct value, and a busy
// group has a thousand or more, so this costs no more memory.
const denseLatencyLimit = 4096

func (g *truthGroup) addLatency(ms int64) {
	if ms >= 0 && ms < denseLatencyLimit {
		if int(ms) >= len(g.latDense) {
			n := min(max(2*len(g.latDense), int(ms)+1, 256), denseLatencyLimit)
			g.latDense = append(g.latDense, make([]uint32, n-len(g.latDense))...)
		}
		if g.latDense[ms] < math.MaxUint32 { // else the tail counts it
			g.latDense[ms]++
			return
		}
	}
	g.lat = append(g.lat, int32(min(ms, math.MaxInt32)))
	if len(g.lat) >= 2*len(g.latRuns)+1024 {
		g.compactLatencies()
	}
}

// latencies returns every latency of g as counts by value, ascending.
func (g *truthGroup) latencies() []LatencyCount {
	g.compactLatencies()
	var dense []LatencyCount
	for v, n := range g.latDense {
		if n > 0 {
			dense = append(dense, LatencyCount{Value: int64(v), N: int64(n)})
		}
	}
	return mergeLatencies(dense, g.latRuns)
}

// compactLatencies folds g.lat into g.latRuns.
func (g *truthGroup) compactLatencies() {
	if len(g.lat) == 0 {
		return
	}
	slices.Sort(g.lat)
	runs := make([]LatencyCount, 0, len(g.latRuns)+64)
	for _, l := range g.lat {
		if n := len(runs); n > 0 && runs[n-1].Value == int64(l) {
			runs[n-1].N++
		} else {
			runs = append(runs, LatencyCount{Value: int64(l), N: 1})
		}
	}
	g.latRuns = mergeLatencies(g.latRuns, runs)
	g.lat = g.lat[:0]
}

// compactUsers sorts the users added since the last compaction, drops
// repeats and merges them into the sorted set before them: sorting only
// the new ones costs a fraction of sorting the whole set again (it was the
// largest single cost of the truth in a load test).
func (g *truthGroup) compactUsers() {
	set, added := g.users[:g.usersSet], g.users[g.usersSet:]
	slices.Sort(added)
	added = slices.Compact(added)
	merged := make([]uint32, 0, len(set)+len(added))
	for len(set) > 0 && len(added) > 0 {
		switch {
		case set[0] < added[0]:
			merged, set = append(merged, set[0]), set[1:]
		case set[0] > added[0]:
			merged, added = append(merged, added[0]), added[1:]
		default:
			merged = append(merged, set[0])
			set, added = set[1:], added[1:]
		}
	}
	merged = append(merged, set...)
	g.users = append(merged, added...)
	g.usersSet = len(g.users)
}

// mergeLatencies merges two ascending count lists into a new one.
func mergeLatencies(a, b []LatencyCount) []LatencyCount {
	out := make([]LatencyCount, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0].Value < b[0].Value:
			out, a = append(out, a[0]), a[1:]
		case a[0].Value > b[0].Value:
			out, b = append(out, b[0]), b[1:]
		default:
			out = append(out, LatencyCount{Value: a[0].Value, N: a[0].N + b[0].N})
			a, b = a[1:], b[1:]
		}
	}
	out = append(out, a...)
	return append(out, b...)
}

// sumPrec holds any sum of float64 values exactly: their bits span at most
// 2^1024 down to 2^-1074, plus carries.
const sumPrec = 2200

// NewTruth returns an empty truth for windows of the given sizes. Every size
// must be a positive multiple of the smallest one, whole microseconds.
func NewTruth(sizes ...time.Duration) (*Truth, error) {
	if len(sizes) == 0 {
		return nil, fmt.Errorf("truth: no window sizes")
	}
	fine := slices.Min(sizes)
	if fine < time.Microsecond || fine%time.Microsecond != 0 {
		return nil, fmt.Errorf("truth: window %s: must be a positive whole number of microseconds", fine)
	}
	for _, s := range sizes {
		if s%fine != 0 {
			return nil, fmt.Errorf("truth: window %s is not a multiple of %s", s, fine)
		}
	}
	return &Truth{
		fineUS:   fine.Microseconds(),
		sizes:    slices.Sorted(slices.Values(sizes)),
		windows:  map[int64]map[Group]*truthGroup{},
		maxEvent: math.MinInt64,
	}, nil
}

// Sizes returns the window sizes, ascending.
func (t *Truth) Sizes() []time.Duration { return slices.Clone(t.sizes) }

// floorDiv floors a to a multiple of b (b > 0), also for negative a.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q * b
}

// Add counts one event.
func (t *Truth) Add(ev *Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.addLocked(ev)
}

// AddAll counts every event of evs, taking the lock once.
func (t *Truth) AddAll(evs []Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range evs {
		t.addLocked(&evs[i])
	}
}

func (t *Truth) addLocked(ev *Event) {
	us := ev.TS.UnixMicro()
	start := floorDiv(us, t.fineUS)
	k := Group{EventType: ev.EventType, Country: ev.Country}
	groups := t.windows[start]
	if groups == nil {
		groups = map[Group]*truthGroup{}
		t.windows[start] = groups
	}
	g := groups[k]
	if g == nil {
		g = &truthGroup{sum: new(big.Float).SetPrec(sumPrec), min: ev.Amount, max: ev.Amount}
		groups[k] = g
	}
	g.count++
	if ev.Amount != 0 {
		g.sum.Add(g.sum, big.NewFloat(ev.Amount))
	}
	g.min = math.Min(g.min, ev.Amount)
	g.max = math.Max(g.max, ev.Amount)
	g.addLatency(ev.LatencyMS)
	g.users = append(g.users, uint32(ev.User))
	if len(g.users) >= 2*g.usersSet+1024 {
		g.compactUsers()
	}
	t.events++
	t.maxEvent = max(t.maxEvent, us)
}

// Events is the number of events added.
func (t *Truth) Events() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.events
}

// MaxEventTime is the latest event time added; ok is false before the first.
func (t *Truth) MaxEventTime() (time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.events == 0 {
		return time.Time{}, false
	}
	return time.UnixMicro(t.maxEvent).UTC(), true
}

// Starts lists the starts of the windows of size w that hold events,
// ascending.
func (t *Truth) Starts(w time.Duration) []int64 {
	wu := w.Microseconds()
	t.mu.Lock()
	seen := map[int64]bool{}
	for s := range t.windows {
		seen[floorDiv(s, wu)] = true
	}
	t.mu.Unlock()
	return slices.Sorted(func(yield func(int64) bool) {
		for s := range seen {
			if !yield(s) {
				return
			}
		}
	})
}

// Stats is the exact aggregate of one group in one window.
type Stats struct {
	Count int64
	// Sum is the exact sum of the amounts, rounded once to the nearest
	// float64 (ties to even).
	Sum      float64
	Min, Max float64
	// Latencies are the latency_ms values, ascending, each with how many
	// events had it.
	Latencies []LatencyCount
	// Users is the number of distinct users.
	Users int64
}

// Avg is the average amount as a user computes it from the summary's
// columns: Sum / Count in float64.
func (s Stats) Avg() float64 { return s.Sum / float64(s.Count) }

// Quantile is the exact rank-based quantile q of the latencies: the value
// at 0-based position floor(q*(n-1)) of the sorted values, the rank a
// quantile sketch estimates. ok is false with no values.
func (s Stats) Quantile(q float64) (v int64, ok bool) {
	n := s.LatencyValues()
	if n == 0 || !(q >= 0 && q <= 1) {
		return 0, false
	}
	rank := min(max(int64(math.Floor(q*float64(n-1))), 0), n-1)
	for _, c := range s.Latencies {
		if rank < c.N {
			return c.Value, true
		}
		rank -= c.N
	}
	return 0, false // not reached: the counts add up to n
}

// LatencyValues is how many latencies there are, repeats included.
func (s Stats) LatencyValues() int64 {
	var n int64
	for _, c := range s.Latencies {
		n += c.N
	}
	return n
}

// Window returns the groups of the window of size w starting at start
// (µs), merged from the finest windows it covers. w must be one of Sizes.
func (t *Truth) Window(w time.Duration, start int64) map[Group]Stats {
	wu := w.Microseconds()
	type acc struct {
		count    int64
		sum      *big.Float
		min, max float64
		lat      []LatencyCount
		users    []uint32
	}
	accs := map[Group]*acc{}
	t.mu.Lock()
	for s := start; s < start+wu; s += t.fineUS {
		for k, g := range t.windows[s] {
			a := accs[k]
			if a == nil {
				a = &acc{sum: new(big.Float).SetPrec(sumPrec), min: g.min, max: g.max}
				accs[k] = a
			}
			a.count += g.count
			a.sum.Add(a.sum, g.sum)
			a.min = math.Min(a.min, g.min)
			a.max = math.Max(a.max, g.max)
			a.lat = mergeLatencies(a.lat, g.latencies())
			a.users = append(a.users, g.users...)
		}
	}
	t.mu.Unlock()
	out := make(map[Group]Stats, len(accs))
	for k, a := range accs {
		sum, _ := a.sum.Float64() // big.Float rounds to nearest even
		out[k] = Stats{Count: a.count, Sum: sum, Min: a.min, Max: a.max,
			Latencies: a.lat, Users: int64(len(sortedSet(a.users)))}
	}
	return out
}

// sortedSet sorts v and drops repeats, in place.
func sortedSet(v []uint32) []uint32 {
	slices.Sort(v)
	return slices.Compact(v)
}
