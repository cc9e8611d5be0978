package lake

import "container/list"

// DefaultCacheBytes bounds the parsed records a CommitLog keeps (about the
// size of the JSON they were read from). 64 MiB holds some 150,000 links:
// the working set of an aggregator over weeks of a busy table; past that the
// least recently used are read again when needed.
const DefaultCacheBytes = 64 << 20

// recordCache is an LRU of parsed commit records by key, bounded by bytes.
// Not safe for concurrent use: the CommitLog's mutex guards it.
type recordCache struct {
	max, size int64
	order     *list.List // front: most recently used; values are *cacheEntry
	byKey     map[string]*list.Element
}

type cacheEntry struct {
	key string
	rec cachedRecord
}

func newRecordCache(maxBytes int64) *recordCache {
	return &recordCache{max: maxBytes, order: list.New(), byKey: map[string]*list.Element{}}
}

func (c *recordCache) get(key string) (cachedRecord, bool) {
	e, ok := c.byKey[key]
	if !ok {
		return cachedRecord{}, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*cacheEntry).rec, true
}

func (c *recordCache) put(key string, rec cachedRecord) {
	if e, ok := c.byKey[key]; ok {
		c.size -= e.Value.(*cacheEntry).rec.size
		e.Value.(*cacheEntry).rec = rec
		c.size += rec.size
		c.order.MoveToFront(e)
	} else {
		c.byKey[key] = c.order.PushFront(&cacheEntry{key: key, rec: rec})
		c.size += rec.size
	}
	for c.size > c.max && c.order.Len() > 1 {
		oldest := c.order.Back()
		ent := oldest.Value.(*cacheEntry)
		c.order.Remove(oldest)
		delete(c.byKey, ent.key)
		c.size -= ent.rec.size
	}
}

func (c *recordCache) len() int { return c.order.Len() }
