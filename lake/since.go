package lake

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/sluicehq/sluice/objstore"
	"golang.org/x/sync/errgroup"
)

// ChainMark is how far a reader has read one partition's chain, and what it
// learned on the way that it would otherwise have to read the whole chain
// again for (the watermark's inputs).
type ChainMark struct {
	Source    string `json:"source"`
	Partition string `json:"partition"`
	// Seq is the last link read; Next and SourceID are where the chain ended
	// after it, so the links after it can be checked to continue it.
	Seq      int64    `json:"seq"`
	Next     Position `json:"next"`
	SourceID string   `json:"source_id,omitempty"`
	// Genesis is false for a chain of version-1 links only: such a chain is
	// read whole every time (an older binary may still extend it).
	Genesis bool `json:"genesis"`
	// Bucketed says link Seq was read from its bucket (LinkKey), so the
	// links after it are in buckets too and a listing starts there. False
	// for a link stored flat by an older binary, and in marks written
	// before buckets: a listing then starts at the link's flat name, which
	// sorts before every later link in either layout.
	Bucketed bool `json:"bucketed,omitempty"`
	// MaxEventMicros is the largest event time of the chain's raw rows;
	// HasData says whether it has any.
	MaxEventMicros int64     `json:"max_event_us,omitempty"`
	HasData        bool      `json:"has_data,omitempty"`
	LastCommit     time.Time `json:"last_commit"`
	Lag            int64     `json:"lag,omitempty"` // of the last link
}

// Advance moves the mark over r, the link after it.
func (m *ChainMark) Advance(r CommitRecord) {
	m.Source, m.Partition = r.Source, r.Partition
	m.Seq, m.Next = r.Seq, r.Next
	if r.Version >= 2 {
		m.Genesis = true
	}
	m.Bucketed = r.Version >= 2 && !r.flat
	if r.Kind == LinkGenesis || r.Kind == LinkReset {
		m.SourceID = r.SourceID
	}
	if r.CommittedAt.After(m.LastCommit) {
		m.LastCommit = r.CommittedAt
	}
	m.Lag = r.Lag
	for _, o := range r.Objects {
		if o.Kind == KindRaw && o.Rows > 0 && (!m.HasData || o.MaxEventTimeMicros > m.MaxEventMicros) {
			m.MaxEventMicros, m.HasData = o.MaxEventTimeMicros, true
		}
	}
}

// AdvanceMarks moves (a copy of) marks over the fresh links that LinksSince
// returned for them, adding a mark for a partition new to them, and returns
// the marks and the fresh links in order.
func AdvanceMarks(marks []ChainMark, fresh []Chain) ([]ChainMark, []CommitRecord) {
	marks = slices.Clone(marks)
	index := make(map[[2]string]int, len(marks))
	for i, m := range marks {
		index[[2]string{m.Source, m.Partition}] = i
	}
	var recs []CommitRecord
	for _, ch := range fresh {
		k := [2]string{ch.Source, ch.Partition}
		i, ok := index[k]
		if !ok {
			i = len(marks)
			index[k] = i
			marks = append(marks, ChainMark{Source: ch.Source, Partition: ch.Partition, Seq: -1})
		}
		for _, r := range ch.Records {
			marks[i].Advance(r)
		}
		recs = append(recs, ch.Records...)
	}
	return marks, recs
}

// MarkChains returns the marks at the ends of chains.
func MarkChains(chains []Chain) []ChainMark {
	out := make([]ChainMark, 0, len(chains))
	for _, c := range chains {
		if len(c.Records) == 0 {
			continue
		}
		m := ChainMark{Source: c.Source, Partition: c.Partition, Seq: -1}
		for _, r := range c.Records {
			m.Advance(r)
		}
		out = append(out, m)
	}
	return out
}

// linkMax sorts after every link and checkpoint name of a partition, so a
// listing that starts after prefix+linkMax goes on with the next partition.
const linkMax = linkPrefix + "\U0010FFFF"

// LinksSince returns, per partition of the table, the links after its mark
// (for a partition without a mark, or with only version-1 links, the whole
// chain, less the links up to the mark), in (source, partition, seq) order.
//
// It costs one listing per partition and one read per new link, not one per
// link ever written: the listing of a marked partition starts after its
// marked link (StartAfter), takes the links that follow, and stops at the
// first key of the next partition, which is how new partitions are found.
// (A partition whose name extends another's by a "/" segment, which only
// an inbox could create, may be found only when the table is read whole.)
//
// A link that does not continue the chain (a missing number, a link that
// does not start where the chain ends) ends the partition's new links here;
// Chain reports it.
func (l *CommitLog) LinksSince(ctx context.Context, table string, marks []ChainMark) ([]Chain, error) {
	chains, _, err := l.linksSince(ctx, table, marks)
	return chains, err
}

// linksSince is LinksSince that also counts the keys it passed over: links
// beyond a gap, links that do not continue their chain, garbage, and a new
// partition's anomalies. The sweeper deletes no uncommitted object while
// there are any: an object such a key names may be committed by a repair.
func (l *CommitLog) linksSince(ctx context.Context, table string, marks []ChainMark) (_ []Chain, skipped int, err error) {
	if err := ValidateCommitNames(table, "s", "p"); err != nil {
		return nil, 0, fmt.Errorf("read links: %w", err)
	}
	byPID := make(map[partitionID]ChainMark, len(marks))
	for _, m := range marks {
		byPID[partitionID{table, m.Source, m.Partition}] = m
	}
	prefix := CommitPrefix(table)
	var out []Chain
	startAfter := ""
	var cur *partitionID // the partition whose links the listing is in
	var curMark ChainMark
	var curLast int64 // the number of the last link key taken
	var keys []objstore.ObjectAttrs
	// Each pass lists at least one new key; a bound keeps a store that
	// ignores StartAfter from looping.
	maxPasses := 2*len(marks) + 1<<20
	for pass := 0; pass < maxPasses; pass++ {
		var next string
		err := objstore.IterAfter(ctx, l.b, prefix, startAfter, func(a objstore.ObjectAttrs) error {
			src, part, name, ok := splitCommitKey(prefix, a.Key)
			if !ok {
				skipped++
				return nil // garbage outside any partition: Chains reports it
			}
			if cur != nil && src == cur.source && part == cur.partition {
				if n, ok := linkNumber(name); ok {
					switch {
					case n <= curMark.Seq:
						return nil // before the mark, in its bucket (a listing from its flat name)
					case n == curLast+1,
						// a flat name then the bucketed one: the move
						// marker and the link (readLinks tells them apart)
						n == curLast && len(keys) > 0 && isFlatKey(keys[len(keys)-1].Key) && !isFlatKey(a.Key):
						keys = append(keys, a)
						curLast = n
						return nil
					}
				}
				skipped++
				return nil // a link beyond a gap, or garbage: skipped here
			}
			next = a.Key
			return errStopWalk
		})
		if err != nil && !errors.Is(err, errStopWalk) {
			return nil, 0, fmt.Errorf("list links of %s: %w", table, err)
		}
		if cur != nil {
			recs, markers, err := l.readLinks(ctx, keys, curMark)
			if err != nil {
				return nil, 0, err
			}
			skipped += len(keys) - len(recs) - markers
			if len(recs) > 0 {
				out = append(out, Chain{Table: table, Source: cur.source, Partition: cur.partition, Records: recs})
			}
			cur, keys = nil, nil
		}
		if next == "" {
			return out, skipped, nil
		}
		src, part, _, _ := splitCommitKey(prefix, next)
		pid := partitionID{table, src, part}
		if m, ok := byPID[pid]; ok && m.Genesis {
			cur, curMark, curLast = &pid, m, m.Seq
			startAfter = flatLinkKey(table, src, part, m.Seq)
			if m.Bucketed {
				startAfter = LinkKey(table, src, part, m.Seq)
			}
			continue
		}
		chain, err := l.Chain(ctx, table, src, part)
		if err != nil {
			return nil, 0, err
		}
		skipped += len(chain.Anomalies)
		if m, ok := byPID[pid]; ok {
			i := 0
			for i < len(chain.Records) && chain.Records[i].Seq <= m.Seq {
				i++
			}
			chain.Records = chain.Records[i:]
		}
		if len(chain.Records) > 0 {
			chain.Anomalies = nil
			out = append(out, chain)
		}
		startAfter = PartitionCommitPrefix(table, src, part) + linkMax
	}
	return nil, 0, fmt.Errorf("list links of %s: the listing does not advance", table)
}

// splitCommitKey splits a key under a table's commit prefix into source,
// partition and the name of the object in the partition's directory.
func splitCommitKey(prefix, key string) (source, partition, name string, ok bool) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok {
		return "", "", "", false
	}
	source, rest, ok = strings.Cut(rest, "/")
	i := strings.LastIndex(rest, "/")
	if !ok || i <= 0 {
		return "", "", "", false
	}
	partition, name = rest[:i], rest[i+1:]
	if j := strings.LastIndex(partition, "/"); j > 0 && isPartitionDirName(partition[j+1:]) {
		partition = partition[:j] // a link in its bucket, or a checkpoint
	}
	return source, partition, name, true
}

// readLinks reads the links at keys (consecutive numbers after mark), in
// parallel and through the cache, and returns those that continue the chain
// and how many of the keys were move markers.
func (l *CommitLog) readLinks(ctx context.Context, keys []objstore.ObjectAttrs, mark ChainMark) (_ []CommitRecord, markers int, _ error) {
	results := make([]cachedRecord, len(keys))
	found := make([]bool, len(keys))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(commitFetchParallelism)
	for i, a := range keys {
		l.mu.Lock()
		c, ok := l.cache.get(a.Key)
		l.mu.Unlock()
		if ok && c.size == a.Size && c.modTime.Equal(a.LastModified) {
			results[i], found[i] = c, true
			continue
		}
		g.Go(func() error {
			c, ok, err := l.load(gctx, a)
			if err != nil {
				return err
			}
			results[i], found[i] = c, ok
			if ok {
				l.mu.Lock()
				l.cache.put(a.Key, c)
				l.mu.Unlock()
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, 0, err
	}
	end := End{Seq: mark.Seq + 1, Next: mark.Next, SourceID: mark.SourceID, Genesis: true}
	var out []CommitRecord
	for i := range keys {
		if found[i] && results[i].marker {
			markers++
			continue // the move marker before the chain's first bucketed link
		}
		if !found[i] || results[i].bad != "" {
			break
		}
		r := results[i].rec
		if i+1 < len(keys) && found[i+1] && results[i+1].bad == "" && !results[i+1].marker && results[i+1].rec.Seq == r.Seq {
			l.logger.Warn("link is stored twice, flat and in its bucket: the chain forked; reading stops there",
				"key", keys[i].Key, "other", keys[i+1].Key)
			break
		}
		if err := fits(r, end, true); err != nil {
			l.logger.Warn("link does not continue its chain; reading stops there", "key", keys[i].Key, "why", err.Error())
			break
		}
		out = append(out, r)
		end = End{Seq: r.Seq + 1, Next: r.Next, SourceID: end.SourceID, Genesis: true}
		if r.Kind == LinkGenesis || r.Kind == LinkReset {
			end.SourceID = r.SourceID
		}
	}
	return out, markers, nil
}
