package lake

import (
	"fmt"
	"testing"
)

func TestRecordCacheIsBoundedAndKeepsTheRecentlyUsed(t *testing.T) {
	c := newRecordCache(1000)
	for i := range 50 {
		c.put(fmt.Sprint(i), cachedRecord{size: 100})
		if i == 5 {
			if _, ok := c.get("0"); !ok { // used again: stays
				t.Fatal("key 0 evicted too early")
			}
		}
		if i > 5 {
			c.get("0")
		}
	}
	if c.size > 1000 || c.len() != 10 {
		t.Fatalf("%d entries of %d bytes, want 10 within 1000", c.len(), c.size)
	}
	if _, ok := c.get("0"); !ok {
		t.Error("the most recently used key was evicted")
	}
	if _, ok := c.get("1"); ok {
		t.Error("an old key survived")
	}
	c.put("big", cachedRecord{size: 5000}) // larger than the bound: kept alone
	if c.len() != 1 || c.size != 5000 {
		t.Errorf("after a huge entry: %d entries, %d bytes", c.len(), c.size)
	}
}
