package gen

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The truth's arithmetic on a handful of events worked out by hand: window
// boundaries (an event on a window's first microsecond, one on its last),
// coarser windows merged from finer ones, repeated users, exact sums of
// amounts that are not exact in binary, and rank-based quantiles.
func TestTruthByHand(t *testing.T) {
	base := time.Date(2026, 5, 1, 23, 59, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return base.Add(d) }
	evs := []Event{
		{TS: at(0), EventType: "purchase", Country: "DE", User: 7, Amount: 0.1, LatencyMS: 30},
		{TS: at(time.Minute - time.Microsecond), EventType: "purchase", Country: "DE", User: 7, Amount: 0.2, LatencyMS: 10},
		{TS: at(time.Minute), EventType: "purchase", Country: "DE", User: 8, Amount: 0.3, LatencyMS: 20},
		{TS: at(90 * time.Second), EventType: "click", Country: "", User: 9, LatencyMS: 5},
		{TS: at(-time.Microsecond), EventType: "purchase", Country: "DE", User: 10, Amount: 5, LatencyMS: 40},
	}
	tr, err := NewTruth(time.Minute, time.Hour, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	for i := range evs {
		tr.Add(&evs[i])
	}
	de := Group{EventType: "purchase", Country: "DE"}
	null := Group{EventType: "click"}
	us := func(d time.Duration) int64 { return at(d).UnixMicro() }
	if got, want := tr.Starts(time.Minute), []int64{us(-time.Minute), us(0), us(time.Minute)}; !slices.Equal(got, want) {
		t.Fatalf("1m starts %v, want %v", got, want)
	}
	if got, want := tr.Starts(24*time.Hour), []int64{us(-base.Sub(base.Truncate(24 * time.Hour))), us(time.Minute)}; !slices.Equal(got, want) {
		t.Fatalf("1d starts %v, want %v", got, want)
	}
	w := tr.Window(time.Minute, us(0))
	if len(w) != 1 {
		t.Fatalf("minute 23:59 has groups %v, want only %s", w, de)
	}
	s := w[de]
	a, b := 0.1, 0.2 // float64 arithmetic, not exact constant arithmetic
	if s.Count != 2 || s.Sum != a+b || s.Min != 0.1 || s.Max != 0.2 || s.Users != 1 ||
		!slices.Equal(s.Latencies, []LatencyCount{{10, 1}, {30, 1}}) {
		t.Fatalf("minute 23:59 %s: %+v", de, s)
	}
	if s.Avg() != (a+b)/2 {
		t.Fatalf("avg %v", s.Avg())
	}
	// The hour 23:00 holds 23:59 only; the day holds 23:58:59.999999 too.
	h := tr.Window(time.Hour, base.Truncate(time.Hour).UnixMicro())
	if h[de].Count != 3 || h[de].Users != 2 || h[de].Min != 0.1 || h[de].Max != 5 {
		t.Fatalf("hour 23:00 %s: %+v", de, h[de])
	}
	d := tr.Window(24*time.Hour, base.Truncate(24*time.Hour).UnixMicro())
	if d[de].Count != 3 || len(d) != 1 {
		t.Fatalf("day %s: %+v", base.Truncate(24*time.Hour), d)
	}
	next := tr.Window(24*time.Hour, us(time.Minute))
	if next[de].Count != 1 || next[null].Count != 1 || next[de].Sum != 0.3 || next[null].Sum != 0 {
		t.Fatalf("next day: %+v", next)
	}
	// Quantiles at rank floor(q*(n-1)) of {10, 20, 30, 40}.
	q := Stats{Latencies: []LatencyCount{{10, 1}, {20, 1}, {30, 1}, {40, 1}}}
	for _, c := range []struct {
		q    float64
		want int64
	}{{0, 10}, {0.5, 20}, {0.9, 30}, {0.99, 30}, {1, 40}} {
		if got, ok := q.Quantile(c.q); !ok || got != c.want {
			t.Errorf("quantile %v = %d, want %d", c.q, got, c.want)
		}
	}
	if last, ok := tr.MaxEventTime(); !ok || !last.Equal(at(90*time.Second)) || tr.Events() != 5 {
		t.Fatalf("max event time %v, events %d", last, tr.Events())
	}
}

// Sums are exact, rounded once: float64 addition in event order would
// lose both ones.
func TestTruthSumIsExact(t *testing.T) {
	tr, err := NewTruth(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for _, a := range []float64{1e16, 1, 1} {
		ev := Event{TS: base, EventType: "x", Amount: a}
		tr.Add(&ev)
	}
	if got := tr.Window(time.Minute, base.UnixMicro())[Group{EventType: "x"}].Sum; got != 1e16+2 {
		t.Fatalf("sum %v, want %v", got, 1e16+2)
	}
}

// Distinct users survive the in-place deduplication of long user lists.
func TestTruthDistinctManyUsers(t *testing.T) {
	tr, err := NewTruth(time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for i := range 50_000 {
		ev := Event{TS: base, EventType: "x", User: uint64(10_000_000 + i%7919), LatencyMS: 1}
		tr.Add(&ev)
	}
	if got := tr.Window(time.Minute, base.UnixMicro())[Group{EventType: "x"}].Users; got != 7919 {
		t.Fatalf("%d distinct users, want 7919", got)
	}
}

// Distinct users merged compaction by compaction (new users sorted and
// merged into the set before them) count as a plain map of every user does:
// users drawn at random, skewed, so that most compactions bring both new
// users and repeats, on both sides of the set's smallest and largest.
func TestTruthDistinctUsersMergedAsAdded(t *testing.T) {
	tr, err := NewTruth(time.Minute, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	r := rand.New(rand.NewPCG(3, 4))
	zipf := rand.NewZipf(r, 1.1, 1, 200_000)
	perMinute := map[int]map[uint64]bool{0: {}, 1: {}}
	all := map[uint64]bool{}
	for i := range 120_000 {
		minute := i % 2
		u := zipf.Uint64() * 7 % 200_001
		ev := Event{TS: base.Add(time.Duration(minute) * time.Minute), EventType: "x", User: u, LatencyMS: 1}
		tr.Add(&ev)
		perMinute[minute][u] = true
		all[u] = true
	}
	for minute, users := range perMinute {
		start := base.Add(time.Duration(minute) * time.Minute).UnixMicro()
		if got := tr.Window(time.Minute, start)[Group{EventType: "x"}].Users; got != int64(len(users)) {
			t.Errorf("minute %d: %d distinct users, want %d", minute, got, len(users))
		}
	}
	if got := tr.Window(time.Hour, base.UnixMicro())[Group{EventType: "x"}].Users; got != int64(len(all)) {
		t.Errorf("hour: %d distinct users, want %d", got, len(all))
	}
}

func TestNewTruthRejectsBadSizes(t *testing.T) {
	for _, sizes := range [][]time.Duration{nil, {time.Minute, 90 * time.Second}, {time.Nanosecond}} {
		if _, err := NewTruth(sizes...); err == nil {
			t.Errorf("NewTruth(%v) accepted", sizes)
		}
	}
}

// Latencies kept as counts per value (counted in place below
// denseLatencyLimit, sorted in beyond it), compacted as they grow, give the
// same rank quantiles as the plain sorted list of every latency, also for a
// coarser window merged from finer ones with values left uncompacted.
func TestTruthLatencyCountsKeepRanks(t *testing.T) {
	tr, err := NewTruth(time.Minute, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	var all []int64
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 30_011 {
		lat := int64(math.Exp(math.Log(80)+0.8*r.NormFloat64())) + 1
		if i%97 == 0 { // a tail on both sides of the dense limit
			lat = denseLatencyLimit - 50 + r.Int64N(20_000)
		}
		ev := Event{TS: base.Add(time.Duration(i%3) * time.Minute), EventType: "x", LatencyMS: lat}
		tr.Add(&ev)
		all = append(all, lat)
	}
	slices.Sort(all)
	s := tr.Window(time.Hour, base.UnixMicro())[Group{EventType: "x"}]
	if s.LatencyValues() != int64(len(all)) || s.Count != int64(len(all)) {
		t.Fatalf("%d latencies, count %d, want %d", s.LatencyValues(), s.Count, len(all))
	}
	if !slices.IsSortedFunc(s.Latencies, func(a, b LatencyCount) int { return cmp.Compare(a.Value, b.Value) }) {
		t.Fatal("latency counts not ascending")
	}
	for _, q := range []float64{0, 0.01, 0.5, 0.9, 0.985, 0.99, 0.995, 0.999, 1} {
		want := all[int(math.Floor(q*float64(len(all)-1)))]
		if got, ok := s.Quantile(q); !ok || got != want {
			t.Errorf("quantile %v = %d, want %d", q, got, want)
		}
	}
	if len(s.Latencies) > 2000 {
		t.Errorf("%d counts kept for %d latencies: not compacted by value", len(s.Latencies), len(all))
	}
}
