package gen

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

// jsonEvent mirrors the sample table's fields; pointers tell null apart.
type jsonEvent struct {
	TS        *string  `json:"ts"`
	EventID   *string  `json:"event_id"`
	UserID    *string  `json:"user_id"`
	EventType *string  `json:"event_type"`
	Country   *string  `json:"country"`
	Device    *string  `json:"device"`
	Amount    *float64 `json:"amount"`
	LatencyMS *int64   `json:"latency_ms"`
	OK        *bool    `json:"ok"`
}

func mustNew(t testing.TB, cfg Config) *Generator {
	t.Helper()
	g, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestDeterministic(t *testing.T) {
	tests := []struct {
		name     string
		a, b     Config
		wantSame bool
	}{
		{name: "same seed", a: Config{Seed: 7}, b: Config{Seed: 7}, wantSame: true},
		{name: "same seed with lateness", a: Config{Seed: 7, LateShare: 0.1, LateBy: time.Hour}, b: Config{Seed: 7, LateShare: 0.1, LateBy: time.Hour}, wantSame: true},
		{name: "different seed", a: Config{Seed: 7}, b: Config{Seed: 8}, wantSame: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ga, gb := mustNew(t, tc.a), mustNew(t, tc.b)
			var bufA, bufB []byte
			for range 5000 {
				bufA, _, _ = ga.Next(bufA)
				bufA = append(bufA, '\n')
				bufB, _, _ = gb.Next(bufB)
				bufB = append(bufB, '\n')
			}
			if same := bytes.Equal(bufA, bufB); same != tc.wantSame {
				t.Fatalf("streams equal = %v, want %v", same, tc.wantSame)
			}
		})
	}
}

func TestEventsAreValidJSONMatchingEvent(t *testing.T) {
	g := mustNew(t, Config{Seed: 1, Users: 1000, LateShare: 0.05, LateBy: 2 * time.Hour, NullShare: 0.01})
	seenIDs := make(map[string]bool)
	types := make(map[string]int)
	nullCountry := 0
	const n = 20000
	var buf []byte
	for i := range n {
		value, key, ev := g.Next(buf[:0])
		buf = value
		var je jsonEvent
		dec := json.NewDecoder(bytes.NewReader(value))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&je); err != nil {
			t.Fatalf("event %d: %v: %s", i, err, value)
		}
		if je.TS == nil || je.EventID == nil || je.UserID == nil || je.EventType == nil || je.Amount == nil || je.LatencyMS == nil || je.OK == nil {
			t.Fatalf("event %d: required field missing or null: %s", i, value)
		}
		ts, err := time.Parse(time.RFC3339Nano, *je.TS)
		if err != nil {
			t.Fatalf("event %d: ts: %v", i, err)
		}
		if !ts.Equal(ev.TS) || ts.Location() != time.UTC || len(*je.TS) != len("2006-01-02T15:04:05.000000Z") {
			t.Fatalf("event %d: ts %q, Event.TS %v", i, *je.TS, ev.TS)
		}
		if string(key) != *je.UserID || ev.UserID() != *je.UserID {
			t.Fatalf("event %d: key %q, user_id %q, Event %q", i, key, *je.UserID, ev.UserID())
		}
		if *je.EventID != ev.EventIDString() || len(*je.EventID) != 32 {
			t.Fatalf("event %d: event_id %q", i, *je.EventID)
		}
		if seenIDs[*je.EventID] {
			t.Fatalf("event %d: duplicate event_id %s", i, *je.EventID)
		}
		seenIDs[*je.EventID] = true
		if (*je.EventType == "purchase") != (*je.Amount > 0) {
			t.Fatalf("event %d: %s with amount %v", i, *je.EventType, *je.Amount)
		}
		if *je.LatencyMS < 1 {
			t.Fatalf("event %d: latency %d", i, *je.LatencyMS)
		}
		if je.Country == nil {
			nullCountry++
		} else if len(*je.Country) != 2 || strings.ToUpper(*je.Country) != *je.Country {
			t.Fatalf("event %d: country %q", i, *je.Country)
		}
		types[*je.EventType]++
		if ev.Seq != uint64(i) {
			t.Fatalf("event %d: seq %d", i, ev.Seq)
		}
	}
	if len(types) != len(eventTypes) {
		t.Errorf("saw %d event types, want %d: %v", len(types), len(eventTypes), types)
	}
	if types["page_view"] < types["purchase"]*5 {
		t.Errorf("event types not weighted: %v", types)
	}
	if nullCountry == 0 || nullCountry > n/20 {
		t.Errorf("%d null countries of %d with NullShare 1%%", nullCountry, n)
	}
}

func TestSizeAboutTwoHundredTenBytes(t *testing.T) {
	g := mustNew(t, Config{Seed: 3})
	const n = 10000
	total := 0
	var buf []byte
	for range n {
		buf, _, _ = g.Next(buf[:0])
		total += len(buf)
	}
	avg := float64(total) / n
	if avg < 195 || avg > 225 {
		t.Fatalf("average event size %.1f bytes, want about 210", avg)
	}
	t.Logf("average event size %.1f bytes", avg)
}

func TestUserSkew(t *testing.T) {
	const users, n = 1000, 50000
	g := mustNew(t, Config{Seed: 5, Users: users})
	counts := make(map[uint64]int)
	var buf []byte
	for range n {
		var ev Event
		buf, _, ev = g.Next(buf[:0])
		if ev.User < userBase || ev.User >= userBase+users {
			t.Fatalf("user %d outside [%d, %d)", ev.User, userBase, userBase+users)
		}
		counts[ev.User]++
	}
	top := 0
	for _, c := range counts {
		top = max(top, c)
	}
	uniform := float64(n) / users
	if len(counts) < users/2 {
		t.Fatalf("only %d distinct users of %d", len(counts), users)
	}
	if float64(top) < 10*uniform {
		t.Fatalf("top user has %d events, uniform share is %.0f: not skewed", top, uniform)
	}
}

func TestEventTime(t *testing.T) {
	start := time.Date(2026, 3, 1, 23, 59, 59, 0, time.UTC)
	tests := []struct {
		name     string
		cfg      Config
		check    func(t *testing.T, i int, ev Event)
		wantLate bool
	}{
		{
			name: "advances at events per second",
			cfg:  Config{Start: start, EventsPerSecond: 4},
			check: func(t *testing.T, i int, ev Event) {
				if want := start.Add(time.Duration(i) * 250 * time.Millisecond); !ev.TS.Equal(want) {
					t.Fatalf("event %d at %v, want %v", i, ev.TS, want)
				}
			},
		},
		{
			name: "late events lie in the past within late by",
			cfg:  Config{Start: start, EventsPerSecond: 1000, LateShare: 0.3, LateBy: time.Hour},
			check: func(t *testing.T, i int, ev Event) {
				onTime := start.Add(time.Duration(i) * time.Millisecond)
				if !ev.Late && !ev.TS.Equal(onTime) {
					t.Fatalf("on-time event %d at %v, want %v", i, ev.TS, onTime)
				}
				if ev.Late && (!ev.TS.Before(onTime) || ev.TS.Before(onTime.Add(-time.Hour))) {
					t.Fatalf("late event %d at %v, on time %v", i, ev.TS, onTime)
				}
			},
			wantLate: true,
		},
		{
			name: "clock",
			cfg:  Config{Clock: func() time.Time { return time.Date(2030, 5, 6, 7, 8, 9, 123456789, time.FixedZone("x", 3600)) }},
			check: func(t *testing.T, _ int, ev Event) {
				if want := time.Date(2030, 5, 6, 6, 8, 9, 123456000, time.UTC); !ev.TS.Equal(want) {
					t.Fatalf("event at %v, want %v", ev.TS, want)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := mustNew(t, tc.cfg)
			late := 0
			var buf []byte
			for i := range 2000 {
				var ev Event
				buf, _, ev = g.Next(buf[:0])
				tc.check(t, i, ev)
				if ev.Late {
					late++
				}
			}
			if tc.wantLate != (late > 0) {
				t.Fatalf("%d late events", late)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{name: "negative users", cfg: Config{Users: -1}},
		{name: "too many users", cfg: Config{Users: MaxUsers + 1}},
		{name: "zipf s of one", cfg: Config{ZipfS: 1}},
		{name: "zipf s NaN", cfg: Config{ZipfS: nan()}},
		{name: "negative rate", cfg: Config{EventsPerSecond: -5}},
		{name: "late share above one", cfg: Config{LateShare: 1.5, LateBy: time.Second}},
		{name: "late share without late by", cfg: Config{LateShare: 0.1}},
		{name: "negative late by", cfg: Config{LateBy: -time.Second}},
		{name: "null share negative", cfg: Config{NullShare: -0.1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil {
				t.Fatal("New accepted a bad config")
			}
		})
	}
}

func TestSingleUser(t *testing.T) {
	g := mustNew(t, Config{Users: 1})
	for range 100 {
		_, key, _ := g.Next(nil)
		if string(key) != "u_10000000" {
			t.Fatalf("key %q", key)
		}
	}
}

func TestNextDoesNotAllocate(t *testing.T) {
	g := mustNew(t, Config{Seed: 9, LateShare: 0.1, LateBy: time.Minute, NullShare: 0.01})
	buf := make([]byte, 0, 1024)
	allocs := testing.AllocsPerRun(1000, func() {
		buf, _, _ = g.Next(buf[:0])
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per event, want 0", allocs)
	}
}

func nan() float64 { var z float64; return z / z }

func BenchmarkNext(b *testing.B) {
	g := mustNew(b, Config{Seed: 1})
	buf := make([]byte, 0, 4096)
	var n int
	b.ReportAllocs()
	for b.Loop() {
		var v []byte
		v, _, _ = g.Next(buf[:0])
		n += len(v)
	}
	b.SetBytes(int64(n / max(b.N, 1)))
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// The event time formatted from the cached second equals the full format,
// for times in any order (late events jump back), before 1970 and at
// second boundaries.
func TestEventTimeFormatMatchesTimestamp(t *testing.T) {
	g, err := New(Config{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(3, 4))
	base := time.Date(2026, 11, 30, 23, 59, 58, 0, time.UTC).UnixMicro()
	uss := []int64{0, -1, -1_000_000, -1_000_001, base, base + 999_999, base + 1_000_000, base - 1}
	for range 10_000 {
		uss = append(uss, base+r.Int64N(5_000_000)-2_500_000)
	}
	for _, us := range uss {
		got := string(g.appendEventTime(nil, us))
		want := string(appendTimestamp(nil, time.UnixMicro(us).UTC()))
		if got != want {
			t.Fatalf("%d µs: %s, want %s", us, got, want)
		}
	}
}
