// Planning (this file) is pure: from the commit records and the summaries'
// recorded inputs it decides which windows to compute, skip or count as too
// late. Doing it (reading objects, writing summaries) lives in service.go.

package aggregate

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/sluicehq/sluice/lake"
)

// Link names one commit record. A window's inputs are the links whose
// objects overlap it: compaction moves rows between objects but never
// changes links, so a summary's recorded inputs stay true across it.
//
// A link of a version-1 chain is named by its first offset, a version-2
// link by its number (Seq, never 0 for a link with data: 0 is a genesis);
// positions alone would not do, as a re-created topic repeats them.
type Link struct {
	Source    string `json:"source"`
	Partition string `json:"partition"`
	First     int64  `json:"first,omitempty"`
	Seq       int64  `json:"seq,omitempty"`
}

// linkOf names the record's link.
func linkOf(r lake.CommitRecord) Link {
	if r.Version == 1 {
		return Link{Source: r.Source, Partition: r.Partition, First: r.FirstOffset}
	}
	return Link{Source: r.Source, Partition: r.Partition, Seq: r.Seq}
}

func (l Link) compare(o Link) int {
	return cmp.Or(cmp.Compare(l.Source, o.Source), cmp.Compare(l.Partition, o.Partition), cmp.Compare(l.First, o.First), cmp.Compare(l.Seq, o.Seq))
}

// InputObject is one committed raw object as its commit record describes it.
type InputObject struct {
	Link        Link
	Key         string
	Rows        int64
	MinMicros   int64 // event time, inclusive
	MaxMicros   int64 // event time, inclusive
	CommittedAt time.Time
}

// Inputs lists the raw objects named by commit records.
func Inputs(recs []lake.CommitRecord) []InputObject {
	var out []InputObject
	for _, r := range recs {
		link := linkOf(r)
		for _, o := range r.Objects {
			if o.Kind != lake.KindRaw || o.Rows == 0 {
				continue
			}
			out = append(out, InputObject{Link: link, Key: o.Key, Rows: o.Rows,
				MinMicros: o.MinEventTimeMicros, MaxMicros: o.MaxEventTimeMicros, CommittedAt: r.CommittedAt})
		}
	}
	return out
}

// batchSourcePrefix starts the chain source of an inbox (batch) table.
const batchSourcePrefix = "inbox:"

// Watermark is the event time up to which the table's data is taken to be
// complete: the smallest, over the partitions still receiving data, of the
// largest event time each has committed, minus the allowed lateness, and
// never later than now minus the allowed lateness (so records dated in the
// future cannot close windows early). A partition is idle, and no longer
// holds the watermark back, only when its last link says it had no lag and
// it has not committed for idle while others did; a lagging or stuck
// partition holds it back however long it is silent, and a partition that
// has lag but no data yet (just opened on a backlog) holds it entirely: ok
// is false then, and with no data. A zero now means no cap.
//
// Batch data (chains of an inbox source, one per split of a file) never
// holds the watermark back: a split is mapped once and then silent for
// good, and files carry any event times. When the table has stream
// partitions, batch data is late data to them; when it has only batch
// data (stream partitions without any yet do not count), the watermark is
// the newest event time any file brought (minus the
// lateness), and a file with older event times recomputes the windows it
// touches as late data does (within the rollup's late_horizon).
func Watermark(recs []lake.CommitRecord, allowedLateness, idle time.Duration, now time.Time) (wm time.Time, ok bool) {
	wm, _, ok = WatermarkHeld(recs, allowedLateness, idle, now)
	return wm, ok
}

// WatermarkCause says what holds a table's watermark where it is, as
// Watermark computes it: the cause label of
// sluice_aggregate_watermark_held_by.
type WatermarkCause string

const (
	// HeldByLateness: the partition with the oldest newest event is caught
	// up and committing; the watermark trails it by the allowed lateness
	// (plus the flush interval). The normal state.
	HeldByLateness WatermarkCause = "allowed_lateness"
	// HeldByLaggingPartition: that partition's last link says it was
	// behind the broker; the watermark waits for it however long it takes.
	HeldByLaggingPartition WatermarkCause = "lagging_partition"
	// HeldByIdleWait: that partition is caught up but has committed
	// nothing for more than half the idle timeout (a partition that went
	// quiet); it stops holding once it is idle.
	HeldByIdleWait WatermarkCause = "idle_wait"
	// HeldByClock: the partitions' data reaches past the clock minus the
	// allowed lateness (records dated in the future, or a lateness below
	// the flush interval): the cap holds it.
	HeldByClock WatermarkCause = "clock_cap"
	// HeldByBacklog: a partition has lag but no data yet (opened on a
	// backlog): there is no watermark until its first data is committed.
	HeldByBacklog WatermarkCause = "backlog_genesis"
	// HeldByNoData: no partition with data is active (nothing committed
	// yet, or every partition idle): there is no watermark.
	HeldByNoData WatermarkCause = "no_data"
)

// WatermarkCauses lists every cause, in the order above.
var WatermarkCauses = []WatermarkCause{HeldByLateness, HeldByLaggingPartition, HeldByIdleWait, HeldByClock, HeldByBacklog, HeldByNoData}

// WatermarkHeld is Watermark, and also says what holds the watermark: the
// partition that sets the minimum (lagging, gone quiet, or neither), the
// clock's cap, or, when ok is false, a backlog without data or no data.
func WatermarkHeld(recs []lake.CommitRecord, allowedLateness, idle time.Duration, now time.Time) (wm time.Time, cause WatermarkCause, ok bool) {
	return WatermarkOfHeld(chainMarks(recs), allowedLateness, idle, now)
}

// chainMarks sums up each partition's chain as its end says it.
func chainMarks(recs []lake.CommitRecord) []lake.ChainMark {
	var marks []lake.ChainMark
	index := map[[2]string]int{}
	for _, r := range recs {
		k := [2]string{r.Source, r.Partition}
		i, seen := index[k]
		if !seen {
			i = len(marks)
			index[k] = i
			marks = append(marks, lake.ChainMark{Source: r.Source, Partition: r.Partition, Seq: -1})
		}
		marks[i].Advance(r) // records come in chain order: the last link's lag stays
	}
	return marks
}

// WatermarkOf is Watermark from what each partition's chain says at its
// end (lake.ChainMark), so a run that reads only new links keeps it exact.
func WatermarkOf(marks []lake.ChainMark, allowedLateness, idle time.Duration, now time.Time) (wm time.Time, ok bool) {
	wm, _, ok = WatermarkOfHeld(marks, allowedLateness, idle, now)
	return wm, ok
}

// WatermarkOfHeld is WatermarkOf with what holds the watermark (see
// WatermarkHeld).
func WatermarkOfHeld(marks []lake.ChainMark, allowedLateness, idle time.Duration, now time.Time) (wm time.Time, cause WatermarkCause, ok bool) {
	var newest time.Time
	for _, m := range marks {
		if m.LastCommit.After(newest) {
			newest = m.LastCommit
		}
	}
	// causeOf ranks what a partition holding the watermark means:
	// 2 lagging, 1 quiet for over half the idle timeout, 0 neither.
	causeOf := func(p *lake.ChainMark) int {
		switch {
		case p.Lag > 0:
			return 2
		case idle > 0 && newest.Sub(p.LastCommit) > idle/2:
			return 1
		}
		return 0
	}
	minActive := int64(1<<63 - 1)
	var holder *lake.ChainMark
	batchMax, streams := int64(-1<<63), 0
	for i := range marks {
		p := &marks[i]
		if strings.HasPrefix(p.Source, batchSourcePrefix) {
			if p.HasData {
				batchMax = max(batchMax, p.MaxEventMicros)
			}
			continue
		}
		if !p.HasData {
			if p.Lag > 0 {
				return time.Time{}, HeldByBacklog, false // data on its way, of unknown time
			}
			continue // only dead letters so far, or nothing to read
		}
		streams++
		if p.Lag == 0 && idle > 0 && newest.Sub(p.LastCommit) > idle {
			continue
		}
		// Of partitions with equal minima the one with the most telling
		// cause is named (lagging, then quiet), whatever the order.
		if p.MaxEventMicros < minActive || (holder != nil && p.MaxEventMicros == minActive && causeOf(p) > causeOf(holder)) {
			minActive, holder = p.MaxEventMicros, p
		}
	}
	switch {
	case streams == 0 && batchMax != -1<<63:
		// Batch data only: the newest event time any file brought.
		minActive, cause = batchMax, HeldByLateness
	case holder == nil:
		return time.Time{}, HeldByNoData, false
	default:
		cause = [...]WatermarkCause{HeldByLateness, HeldByIdleWait, HeldByLaggingPartition}[causeOf(holder)]
	}
	// An event at time t proves the stream reached t; windows ending at or
	// before t+1µs minus the lateness are complete.
	wm = time.UnixMicro(minActive + 1).UTC().Add(-allowedLateness)
	if !now.IsZero() {
		if limit := now.UTC().Add(-allowedLateness); wm.After(limit) {
			wm, cause = limit, HeldByClock
		}
	}
	return wm, cause, true
}

// WindowInputs maps the start (micros) of every window of size w that ends
// at or before until to the sorted links of the objects overlapping it.
func WindowInputs(objs []InputObject, w time.Duration, until time.Time) map[int64][]Link {
	wu := w.Microseconds()
	limit := until.UnixMicro()
	out := map[int64][]Link{}
	for _, o := range objs {
		for s := floorTo(o.MinMicros, wu); s <= o.MaxMicros && s+wu <= limit; s += wu {
			out[s] = append(out[s], o.Link)
		}
	}
	for s, links := range out {
		slices.SortFunc(links, Link.compare)
		out[s] = slices.CompactFunc(links, func(a, b Link) bool { return a == b })
	}
	return out
}

// InputsHash names a set of links; equal sets have equal hashes.
func InputsHash(links []Link) string {
	h := sha256.New()
	var buf []byte
	for _, l := range links {
		buf = buf[:0]
		buf = append(buf, l.Source...)
		buf = append(buf, 0)
		buf = append(buf, l.Partition...)
		buf = append(buf, 0)
		buf = strconv.AppendInt(buf, l.First, 10)
		if l.Seq != 0 {
			buf = append(buf, '#')
			buf = strconv.AppendInt(buf, l.Seq, 10)
		}
		buf = append(buf, '\n')
		h.Write(buf)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// WindowState is what a summary records about one window it holds.
type WindowState struct {
	// Inputs is the hash of the links the summary was computed from.
	Inputs string `json:"inputs"`
	// Seen is the hash of every link known for the window when it was last
	// looked at, including those that came too late to be counted.
	Seen string `json:"seen"`
	// Links are the links the summary was computed from (finest windows only).
	Links []Link `json:"links,omitempty"`
	// LinksExact: the summary holds the rows of Links and of no other link.
	// Set since runs read the chains and the live objects as one view
	// (lake.CommitLog.LiveSnapshot); a summary written before may hold the
	// rows of a link committed between two reads without naming it, so
	// only one with LinksExact may have new links merged into it.
	LinksExact bool `json:"links_exact,omitempty"`
	// Late are the links counted as too late (finest windows only).
	Late []Link `json:"late,omitempty"`
	// TooLate counts records that reached the window after it was frozen.
	TooLate int64 `json:"too_late,omitempty"`
}

// Action says what to do with one window.
type Action int

const (
	Skip      Action = iota // the summary holds exactly the current inputs
	Compute                 // new, or changed within the late horizon
	CountLate               // changed after it was frozen: count the new records as too late
)

// Decision is the plan for one window.
type Decision struct {
	Start  int64 // micros
	Action Action
	Inputs []Link
	Hash   string
	// NewLinks are the links the summary does not hold (for CountLate).
	NewLinks []Link
}

// Decide plans every closed window of one size. A window whose summary was
// computed from different inputs is recomputed while it ends within horizon
// of the watermark; after that it is frozen and new inputs only count as
// too late, so summaries do not change forever.
func Decide(windows map[int64][]Link, states map[int64]WindowState, w time.Duration, watermark time.Time, horizon time.Duration) []Decision {
	frozenBefore := watermark.Add(-horizon).UnixMicro()
	out := make([]Decision, 0, len(windows))
	for start, links := range windows {
		d := Decision{Start: start, Inputs: links, Hash: InputsHash(links)}
		st, have := states[start]
		switch {
		case !have:
			d.Action = Compute
		case st.Inputs == d.Hash || st.Seen == d.Hash:
			d.Action = Skip
		case start+w.Microseconds() > frozenBefore:
			d.Action = Compute
		default:
			d.Action = CountLate
			d.NewLinks = difference(difference(links, st.Links), st.Late)
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b Decision) int { return cmp.Compare(a.Start, b.Start) })
	return out
}

// difference returns the links in a that are not in b; both sorted.
func difference(a, b []Link) []Link {
	var out []Link
	i := 0
	for _, l := range a {
		for i < len(b) && b[i].compare(l) < 0 {
			i++
		}
		if i < len(b) && b[i] == l {
			continue
		}
		out = append(out, l)
	}
	return out
}

// Unit is the span of event time whose windows of one size share a summary
// object: an hour for windows shorter than an hour, a day otherwise. Live
// operation rewrites one small object a minute instead of creating one.
func Unit(w time.Duration) time.Duration {
	if w < time.Hour {
		return time.Hour
	}
	return 24 * time.Hour
}

func floorTo(t, step int64) int64 {
	q := t / step
	if t%step != 0 && t < 0 {
		q--
	}
	return q * step
}
