package schema

import "testing"

// A pool hands out slices with room for what was asked, gives back the
// slices it was handed, and keeps no more than its bounds: a class keeps
// maxFreePerClass slices, a pool maxFreeBytes in all.
func TestBufPoolTakesWhatItKeepsWithinItsBounds(t *testing.T) {
	var bp bufPool[int64]
	for _, n := range []int{1, 7, 8, 9, 1000, 1 << 20} {
		if s := bp.take(n); cap(s) < n || len(s) != 0 || cap(s) >= 2*n && n > 1 {
			t.Errorf("take(%d): len %d, cap %d; want 0 and [%d, %d)", n, len(s), cap(s), n, 2*n)
		}
	}
	s := make([]int64, 3, 1000) // class 9: [512, 1024)
	bp.put(s)
	if got := bp.take(500); cap(got) != 1000 {
		t.Errorf("take(500) after a put of cap 1000: cap %d, want the slice put", cap(got))
	}
	for range 2 * maxFreePerClass {
		bp.put(make([]int64, 0, 1000))
	}
	if got := len(bp.classes[9]); got != maxFreePerClass {
		t.Errorf("class 9 keeps %d slices, want %d", got, maxFreePerClass)
	}
	big := maxFreeBytes / 8 / 2 // half the bound, in int64s
	for range 4 {
		bp.put(make([]int64, 0, big))
	}
	if bp.held > maxFreeBytes {
		t.Errorf("the pool keeps %d bytes, more than %d", bp.held, maxFreeBytes)
	}
	for bp.held > 0 {
		before := bp.held
		for k := range bp.classes {
			for len(bp.classes[k]) > 0 {
				bp.take(1 << k)
			}
		}
		if bp.held == before {
			t.Fatalf("the pool says it keeps %d bytes, but has no slice to give", bp.held)
		}
	}
}
