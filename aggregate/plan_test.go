package aggregate

import (
	"slices"
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
)

var t0 = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func us(d time.Duration) int64 { return t0.Add(d).UnixMicro() }

func rec(part string, first int64, committed time.Duration, objs ...[2]time.Duration) lake.CommitRecord {
	r := lake.CommitRecord{Version: 1, Source: "kafka:events", Partition: part, FirstOffset: first, NextOffset: first + 10, CommittedAt: t0.Add(committed)}
	for i, o := range objs {
		r.Objects = append(r.Objects, lake.CommittedObject{Key: part + "/" + string(rune('a'+i)), Kind: lake.KindRaw, Rows: 5,
			MinEventTimeMicros: us(o[0]), MaxEventTimeMicros: us(o[1])})
	}
	return r
}

func inboxRec(r lake.CommitRecord) lake.CommitRecord {
	r.Source = "inbox:events"
	return r
}

func withLag(r lake.CommitRecord, lag int64) lake.CommitRecord {
	r.Lag = lag
	return r
}

func TestWatermark(t *testing.T) {
	tests := []struct {
		name   string
		recs   []lake.CommitRecord
		late   time.Duration
		idle   time.Duration
		now    time.Time
		want   time.Time
		wantOK bool
	}{
		{name: "no data", wantOK: false},
		{
			name: "slowest partition holds it back",
			recs: []lake.CommitRecord{
				rec("0", 0, time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				rec("1", 0, time.Minute, [2]time.Duration{0, 4 * time.Minute}),
			},
			want: t0.Add(4*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "allowed lateness trails it",
			recs: []lake.CommitRecord{rec("0", 0, time.Minute, [2]time.Duration{0, 10 * time.Minute})},
			late: 30 * time.Second,
			want: t0.Add(10*time.Minute + time.Microsecond - 30*time.Second), wantOK: true,
		},
		{
			name: "idle partition no longer holds it back",
			recs: []lake.CommitRecord{
				rec("0", 0, 20*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				rec("1", 0, time.Minute, [2]time.Duration{0, 2 * time.Minute}),
			},
			idle: 5 * time.Minute,
			want: t0.Add(10*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "idle 0 never idles a partition out",
			recs: []lake.CommitRecord{
				rec("0", 0, 20*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				rec("1", 0, time.Minute, [2]time.Duration{0, 2 * time.Minute}),
			},
			want: t0.Add(2*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "a partition exactly idle behind still holds it back",
			recs: []lake.CommitRecord{
				rec("0", 0, 6*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				rec("1", 0, time.Minute, [2]time.Duration{0, 2 * time.Minute}),
			},
			idle: 5 * time.Minute,
			want: t0.Add(2*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "an empty raw object moves nothing",
			recs: []lake.CommitRecord{
				rec("0", 0, time.Minute, [2]time.Duration{0, 4 * time.Minute}),
				{Source: "kafka:events", Partition: "0", FirstOffset: 10, NextOffset: 11, CommittedAt: t0.Add(2 * time.Minute),
					Objects: []lake.CommittedObject{{Key: "0/empty", Kind: lake.KindRaw, MinEventTimeMicros: us(0), MaxEventTimeMicros: us(time.Hour)}}},
			},
			want: t0.Add(4*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "batch data alone: the newest event any file brought",
			recs: []lake.CommitRecord{
				inboxRec(rec("f1#0", 0, time.Minute, [2]time.Duration{0, 10 * time.Minute})),
				inboxRec(rec("f2#0", 0, 20*time.Minute, [2]time.Duration{0, 2 * time.Minute})), // an old file, later
			},
			idle: 5 * time.Minute,
			want: t0.Add(10*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "batch data beside stream partitions that have none yet",
			recs: []lake.CommitRecord{
				{Source: "kafka:events", Partition: "0", Kind: lake.LinkGenesis, CommittedAt: t0},
				inboxRec(rec("f1#0", 0, time.Minute, [2]time.Duration{0, 7 * time.Minute})),
			},
			want: t0.Add(7*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "batch data never holds a stream's watermark back",
			recs: []lake.CommitRecord{
				rec("0", 0, time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				inboxRec(withLag(rec("f1#0", 0, time.Minute, [2]time.Duration{0, 2 * time.Minute}), 0)),
				inboxRec(rec("f2#0", 0, time.Minute, [2]time.Duration{0, 30 * time.Minute})),
			},
			want: t0.Add(10*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "a record dated in the future cannot push it past the clock",
			recs: []lake.CommitRecord{rec("0", 0, time.Minute, [2]time.Duration{0, 23 * time.Hour})},
			late: 30 * time.Second,
			now:  t0.Add(10 * time.Minute),
			want: t0.Add(10*time.Minute - 30*time.Second), wantOK: true,
		},
		{
			name: "a stuck partition with lag holds it back however long it is silent",
			recs: []lake.CommitRecord{
				rec("0", 0, 20*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				withLag(rec("1", 0, time.Minute, [2]time.Duration{0, 2 * time.Minute}), 500),
			},
			idle: 5 * time.Minute,
			now:  t0.Add(time.Hour),
			want: t0.Add(2*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "a partition that stopped for good, caught up, stops holding it back",
			recs: []lake.CommitRecord{
				rec("0", 0, 20*time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				withLag(rec("1", 0, time.Minute, [2]time.Duration{0, 2 * time.Minute}), 0),
			},
			idle: 5 * time.Minute,
			now:  t0.Add(time.Hour),
			want: t0.Add(10*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "a new partition opened on a backlog holds it until its data is in",
			recs: []lake.CommitRecord{
				rec("0", 0, time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				withLag(rec("1", 0, time.Minute), 1000), // a genesis: no objects yet
			},
			now:    t0.Add(time.Hour),
			wantOK: false,
		},
		{
			name: "a new partition with nothing to read does not hold it",
			recs: []lake.CommitRecord{
				rec("0", 0, time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				rec("1", 0, time.Minute),
			},
			want: t0.Add(10*time.Minute + time.Microsecond), wantOK: true,
		},
		{
			name: "max over a partition's records, not its last record",
			recs: []lake.CommitRecord{
				rec("0", 0, time.Minute, [2]time.Duration{0, 10 * time.Minute}),
				rec("0", 10, 2*time.Minute, [2]time.Duration{0, 3 * time.Minute}), // a late batch
			},
			want: t0.Add(10*time.Minute + time.Microsecond), wantOK: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := Watermark(tt.recs, tt.late, tt.idle, tt.now)
			if ok != tt.wantOK || (ok && !got.Equal(tt.want)) {
				t.Fatalf("Watermark = %s, %v; want %s, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestWindowInputs(t *testing.T) {
	recs := []lake.CommitRecord{
		rec("0", 0, time.Minute, [2]time.Duration{30 * time.Second, 150 * time.Second}), // windows 0,1,2
		rec("1", 0, time.Minute, [2]time.Duration{60 * time.Second, 60 * time.Second}),  // window 1, at its inclusive start
		rec("1", 10, time.Minute, [2]time.Duration{179 * time.Second, 185 * time.Second}),
	}
	got := WindowInputs(Inputs(recs), time.Minute, t0.Add(3*time.Minute))
	l0 := Link{"kafka:events", "0", 0, 0}
	l1 := Link{"kafka:events", "1", 0, 0}
	l2 := Link{"kafka:events", "1", 10, 0}
	want := map[int64][]Link{
		us(0):               {l0},
		us(time.Minute):     {l0, l1},
		us(2 * time.Minute): {l0, l2},
		// window 3 ends after `until`: not closed
	}
	if len(got) != len(want) {
		t.Fatalf("got %d windows %v, want %d", len(got), got, len(want))
	}
	for s, links := range want {
		if !slices.Equal(got[s], links) {
			t.Errorf("window %s: got %v, want %v", time.UnixMicro(s).UTC(), got[s], links)
		}
	}
}

func TestDecide(t *testing.T) {
	a := Link{"s", "0", 0, 0}
	b := Link{"s", "0", 10, 0}
	c := Link{"s", "1", 0, 0}
	wm := t0.Add(3 * time.Hour)
	const w = time.Minute
	old := us(0)                               // frozen with a 1h horizon
	recent := us(2*time.Hour + 30*time.Minute) // within the horizon
	tests := []struct {
		name    string
		links   []Link
		state   *WindowState
		start   int64
		want    Action
		wantNew []Link
	}{
		{name: "never computed", links: []Link{a}, start: old, want: Compute},
		{name: "unchanged", links: []Link{a}, state: &WindowState{Inputs: InputsHash([]Link{a}), Links: []Link{a}}, start: recent, want: Skip},
		{name: "late data within the horizon", links: []Link{a, b}, state: &WindowState{Inputs: InputsHash([]Link{a}), Links: []Link{a}}, start: recent, want: Compute},
		{name: "late data after the horizon", links: []Link{a, b, c}, state: &WindowState{Inputs: InputsHash([]Link{a}), Links: []Link{a}}, start: old, want: CountLate, wantNew: []Link{b, c}},
		{name: "late data already counted", links: []Link{a, b}, state: &WindowState{Inputs: InputsHash([]Link{a}), Seen: InputsHash([]Link{a, b}), Links: []Link{a}, Late: []Link{b}}, start: old, want: Skip},
		{name: "more late data counts only the new", links: []Link{a, b, c}, state: &WindowState{Inputs: InputsHash([]Link{a}), Seen: InputsHash([]Link{a, b}), Links: []Link{a}, Late: []Link{b}}, start: old, want: CountLate, wantNew: []Link{c}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			states := map[int64]WindowState{}
			if tt.state != nil {
				states[tt.start] = *tt.state
			}
			ds := Decide(map[int64][]Link{tt.start: tt.links}, states, w, wm, time.Hour)
			if len(ds) != 1 || ds[0].Action != tt.want || !slices.Equal(ds[0].NewLinks, tt.wantNew) {
				t.Fatalf("Decide = %+v; want action %v new %v", ds, tt.want, tt.wantNew)
			}
		})
	}
}
