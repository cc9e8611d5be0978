package aggregate

import (
	"testing"
	"time"

	"github.com/sluicehq/sluice/lake"
)

// TestAddedLinksTakesOnlyWhatMergesExactly: a window is brought up to date
// by merging its new links only when its summary says which links it holds
// and nothing was left out of it; otherwise it is recomputed.
func TestAddedLinksTakesOnlyWhatMergesExactly(t *testing.T) {
	const w = time.Minute
	start := time.Date(2026, 11, 25, 23, 40, 0, 0, time.UTC).UnixMicro()
	l1 := Link{Source: "kafka:events", Partition: "0", Seq: 1}
	l2 := Link{Source: "kafka:events", Partition: "0", Seq: 2}
	l3 := Link{Source: "kafka:events", Partition: "1", Seq: 1}
	obj := func(l Link, key string, from, to int64) InputObject {
		return InputObject{Link: l, Key: key, Rows: 10, MinMicros: from, MaxMicros: to}
	}
	in := []InputObject{
		obj(l1, "a", start, start+10),
		obj(l2, "b", start+20, start+30),
		obj(l2, "b-next-hour", start+w.Microseconds(), start+w.Microseconds()+5), // outside the window
		obj(l3, "c", start+40, start+50),
	}
	raw := rawInputs{liveByKey: map[string]lake.LiveObject{}, byLink: map[Link][]InputObject{}}
	for _, o := range in {
		raw.byLink[o.Link] = append(raw.byLink[o.Link], o)
		raw.liveByKey[o.Key] = lake.LiveObject{CommittedObject: lake.CommittedObject{Key: o.Key, Rows: o.Rows}}
	}
	d := Decision{Start: start, Action: Compute, Inputs: []Link{l1, l2, l3}}
	held := WindowState{LinksExact: true, Links: []Link{l1}, Inputs: InputsHash([]Link{l1})}

	var a addedLinks
	if !a.add(held, d, w, raw) {
		t.Fatal("a window holding l1 that gains l2 and l3 was not taken")
	}
	if len(a.groups) != 1 || len(a.groups[0].objs) != 2 || a.groups[0].objs[0].Key != "b" || a.groups[0].objs[1].Key != "c" {
		t.Fatalf("took %+v, want the objects b and c (not a, held; not b-next-hour, outside)", a.groups[0].objs)
	}
	for _, c := range []struct {
		why  string
		prev WindowState
		raw  func() rawInputs
	}{
		{"links not recorded (an older summary)", WindowState{LinksExact: true, Inputs: InputsHash([]Link{l1})}, nil},
		{"links recorded before they were exact (an older summary)", WindowState{Links: []Link{l1}, Inputs: InputsHash([]Link{l1})}, nil},
		{"links that do not hash to its inputs", WindowState{LinksExact: true, Links: []Link{l1}, Inputs: InputsHash([]Link{l1, l2})}, nil},
		{"records counted too late", WindowState{LinksExact: true, Links: []Link{l1}, Inputs: InputsHash([]Link{l1}), TooLate: 3}, nil},
		{"a link counted too late", WindowState{LinksExact: true, Links: []Link{l1}, Inputs: InputsHash([]Link{l1}), Late: []Link{l2}}, nil},
		{"a link it holds that is gone", WindowState{LinksExact: true, Links: []Link{l1, {Source: "kafka:events", Partition: "9"}},
			Inputs: InputsHash([]Link{l1, {Source: "kafka:events", Partition: "9"}})}, nil},
		{"no new link", WindowState{LinksExact: true, Links: []Link{l1, l2, l3}, Inputs: InputsHash([]Link{l1, l2, l3})}, nil},
		{"a new link's object compacted away", held, func() rawInputs {
			r := raw
			r.liveByKey = map[string]lake.LiveObject{"a": raw.liveByKey["a"], "b": raw.liveByKey["b"]}
			return r
		}},
	} {
		r := raw
		if c.raw != nil {
			r = c.raw()
		}
		var a addedLinks
		if a.add(c.prev, d, w, r) || len(a.groups) != 0 {
			t.Errorf("%s: taken for merging, want recomputed", c.why)
		}
	}
}
