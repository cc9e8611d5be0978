package lake

import (
	"fmt"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestCheckpointAgesBounded: a table with more partitions than the limit
// (an inbox: one per object) keeps the oldest and its maximum.
func TestCheckpointAgesBounded(t *testing.T) {
	a := &checkpointAges{m: NewCheckpointMetrics(prometheus.NewRegistry()), limit: 8, tables: map[string]*tableAges{}}
	for i := range 100 {
		a.note(partitionID{"in", "inbox:s", fmt.Sprintf("obj-%03d", i)}, int64(1+i%5), 0)
	}
	a.note(partitionID{"in", "inbox:s", "old"}, 3000, 2000) // 1000 links past its checkpoint
	for i := 100; i < 200; i++ {
		a.note(partitionID{"in", "inbox:s", fmt.Sprintf("obj-%03d", i)}, 2, 0)
	}
	tab := a.tables["in"]
	if n := len(tab.parts); n > 8 {
		t.Errorf("%d partitions kept, want at most 8", n)
	}
	if _, ok := tab.parts[partitionID{"in", "inbox:s", "old"}]; !ok {
		t.Error("the partition with the oldest checkpoint was forgotten")
	}
	if got := testutil.ToFloat64(a.m.age.WithLabelValues("in")); got != 1000 {
		t.Errorf("age = %v, want 1000", got)
	}
	// Its checkpoint is written: the maximum falls to what is left.
	a.note(partitionID{"in", "inbox:s", "old"}, 3001, 3001)
	if got := testutil.ToFloat64(a.m.age.WithLabelValues("in")); got != 5 {
		t.Errorf("age after the checkpoint = %v, want 5 (the oldest kept)", got)
	}
}
