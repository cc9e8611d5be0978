package kinesis

import (
	"slices"
	"testing"
	"time"
)

func TestBalance(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	live := func(owner string) Lease { return Lease{Owner: owner, Counter: 1, Expires: now.Add(time.Minute)} }
	expired := func(owner string) Lease { return Lease{Owner: owner, Counter: 1, Expires: now.Add(-time.Second)} }
	handed := func(to string) Lease { return Lease{Counter: 1, Handoff: to, Expires: now.Add(time.Minute)} }
	done := Lease{Finished: true, Counter: 3}
	shards := func(ls ...Lease) []shardView {
		out := make([]shardView, len(ls))
		for i, l := range ls {
			out[i] = shardView{ID: "s" + string(rune('0'+i)), Lease: l, Leased: l.Counter > 0}
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		me       string
		shards   []shardView
		wantTake []string
		wantAsk  string
	}{
		{"alone takes every free shard", "a", shards(Lease{}, Lease{}, Lease{}, Lease{}), []string{"s0", "s1", "s2", "s3"}, ""},
		{"expired leases are free", "a", shards(expired("b"), expired("b")), []string{"s0", "s1"}, ""},
		{"a newcomer asks the busiest for one", "b", shards(live("a"), live("a"), live("a"), live("a")), nil, "s3"},
		{"it takes what was handed to it and asks on", "b", shards(live("a"), live("a"), live("a"), handed("b")), []string{"s3"}, "s2"},
		{"the old owner leaves a handed shard alone", "a", shards(live("a"), live("a"), live("a"), handed("b")), nil, ""},
		{"a hand-off to a process long gone is free again", "a", shards(live("a"), Lease{Counter: 1, Handoff: "b", Expires: now.Add(-time.Second)}), []string{"s1"}, ""},
		{"balanced: 2,1,1 of 4 stays", "c", shards(live("a"), live("a"), live("b"), live("c")), nil, ""},
		{"one above is close enough", "b", shards(live("a"), live("a"), live("b")), nil, ""},
		{"takes free ones only up to its share", "c", shards(live("a"), live("b"), Lease{}, Lease{}, Lease{}, Lease{}), []string{"s2", "s3"}, ""},
		{"a shard already asked for is not asked again", "b", shards(live("a"), live("a"), Lease{Owner: "a", Counter: 1, Expires: now.Add(time.Minute), Handoff: "c"}), nil, "s1"},
		{"a hand-off asked for counts as coming", "b", shards(live("a"), live("a"), Lease{Owner: "a", Counter: 1, Expires: now.Add(time.Minute), Handoff: "b"}), nil, ""},
		{"finished shards count for nothing", "a", shards(done, done, Lease{}), []string{"s2"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			take, ask := balance(tc.me, now, tc.shards)
			if !slices.Equal(take, tc.wantTake) || ask != tc.wantAsk {
				t.Errorf("balance = %v, %q; want %v, %q", take, ask, tc.wantTake, tc.wantAsk)
			}
		})
	}
}

func TestBalanceChildrenWaitForParents(t *testing.T) {
	now := time.Now()
	parent := shardView{ID: "p", Lease: Lease{Owner: "a", Counter: 1, Expires: now.Add(time.Minute)}}
	left := shardView{ID: "l", Parents: []string{"p"}}
	right := shardView{ID: "r", Parents: []string{"p", "gone"}} // "gone" is past retention: not listed
	if take, _ := balance("b", now, []shardView{parent, left, right}); len(take) != 0 {
		t.Errorf("children taken while their parent is read: %v", take)
	}
	parent.Lease = Lease{Counter: 1, Finished: true}
	if take, _ := balance("b", now, []shardView{parent, left, right}); !slices.Equal(take, []string{"l", "r"}) {
		t.Errorf("after the parent finished: take %v, want both children", take)
	}
}
