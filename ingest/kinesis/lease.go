package kinesis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/sluicehq/sluice/objstore"
)

// Lease says which process reads a shard. Leases live in the lake's bucket
// (no extra database) and change only by conditional writes: a lease is
// created with PutIfAbsent and replaced with PutIfMatch against the
// version read, so of two processes racing for a lease exactly one wins.
//
// The lease is not what keeps data exact: the shard's chain in the commit
// log is the checkpoint, and its conditional links fence a zombie owner
// (one whose lease was taken while it was stalled) at its next commit. The
// lease keeps processes from reading a shard twice and spends each shard's
// GetRecords budget on one reader.
type Lease struct {
	Stream string `json:"stream"`
	Shard  string `json:"shard"`
	// Owner is the process reading the shard; "" when it is free.
	Owner string `json:"owner"`
	// Counter grows with every take, so an owner that finds another
	// counter than its own knows its lease was taken, even by itself in an
	// earlier life.
	Counter int64     `json:"counter"`
	Expires time.Time `json:"expires"`
	// Parents are the shards this one continues (split or merge): it is
	// read only once each parent's chain has ended.
	Parents []string `json:"parents,omitempty"`
	// Handoff names a process that asked the owner to let go (balancing):
	// the owner flushes, commits and frees the lease; the asker takes it.
	Handoff string `json:"handoff,omitempty"`
	// Finished: the shard's chain has ended (a hint; the chain says so).
	Finished bool `json:"finished,omitempty"`
}

// live reports whether the lease has an owner at now.
func (l Lease) live(now time.Time) bool { return l.Owner != "" && now.Before(l.Expires) }

// leaseStore reads and writes leases conditionally.
type leaseStore struct {
	b objstore.ConditionalBucket
}

// get returns the lease and its version; found is false if there is none.
func (s leaseStore) get(ctx context.Context, key string) (l Lease, version string, found bool, err error) {
	data, version, err := s.b.GetVersion(ctx, key)
	if errors.Is(err, objstore.ErrNotExist) {
		return Lease{}, "", false, nil
	}
	if err != nil {
		return Lease{}, "", false, fmt.Errorf("read lease %s: %w", key, err)
	}
	if err := json.Unmarshal(data, &l); err != nil {
		return Lease{}, "", false, fmt.Errorf("read lease %s: %w", key, err)
	}
	return l, version, true, nil
}

// put writes l: created if version is "", else replaced only if it is
// still at version. A lost race wraps objstore.ErrExists or ErrChanged.
func (s leaseStore) put(ctx context.Context, key string, l Lease, version string) error {
	data, err := json.Marshal(l)
	if err != nil {
		return err
	}
	if version == "" {
		err = s.b.PutIfAbsent(ctx, key, data)
	} else {
		err = s.b.PutIfMatch(ctx, key, data, version)
	}
	if err != nil {
		return fmt.Errorf("write lease %s: %w", key, err)
	}
	return nil
}

// lostRace reports whether err means another process wrote the lease first.
func lostRace(err error) bool {
	return errors.Is(err, objstore.ErrExists) || errors.Is(err, objstore.ErrChanged)
}

// shardView is what planning knows of one shard.
type shardView struct {
	ID      string
	Parents []string // parents still listed by the stream
	Lease   Lease
	Leased  bool // a lease object exists
}

// balance decides, purely, which shards me takes now and from which
// shard it asks the owner for a hand-off. A shard is ready when it is not
// finished and every parent is finished (a parent the stream no longer
// lists is past retention: finished). A ready shard is held by its live
// owner, or, once handed over and until its lease's expiry, by the process
// that asked for it. Each holder (me included) should hold
// ceil(ready/holders) at most: me takes what was handed to it and free or
// expired shards up to that, and if it still holds fewer than
// floor(ready/holders) it asks the holder with the most (more than one
// above me) to hand one over. Ties are broken by name, so every process
// plans alike.
func balance(me string, now time.Time, shards []shardView) (take []string, ask string) {
	ready := readyShards(shards)
	if len(ready) == 0 {
		return nil, ""
	}
	owners := map[string]bool{me: true}
	held := map[string][]string{}
	for _, s := range ready {
		if h := holder(s.Lease, now); h != "" {
			owners[h] = true
			held[h] = append(held[h], s.ID)
		}
	}
	most := (len(ready) + len(owners) - 1) / len(owners)
	least := len(ready) / len(owners)
	mine := len(held[me])
	for _, s := range ready {
		switch h := holder(s.Lease, now); {
		case h == me && !s.Lease.live(now):
			take = append(take, s.ID) // handed over to me: already counted
		case h == "" && mine < most:
			take = append(take, s.ID)
			mine++
		}
	}
	// Hand-offs already asked for count as coming.
	for _, s := range ready {
		if s.Lease.live(now) && s.Lease.Handoff == me {
			mine++
		}
	}
	if mine >= least {
		return take, ""
	}
	return take, handoffToAsk(me, mine, held, ready, now)
}

// readyShards are the shards not finished whose listed parents all are.
func readyShards(shards []shardView) []shardView {
	finished := map[string]bool{}
	listed := map[string]bool{}
	for _, s := range shards {
		listed[s.ID] = true
		if s.Lease.Finished {
			finished[s.ID] = true
		}
	}
	var ready []shardView
	for _, s := range shards {
		if finished[s.ID] {
			continue
		}
		ok := true
		for _, p := range s.Parents {
			if listed[p] && !finished[p] {
				ok = false
			}
		}
		if ok {
			ready = append(ready, s)
		}
	}
	return ready
}

// holder is who holds a lease at now: its live owner, or the process a
// hand-off reserved it for until its expiry; "" when nobody does.
func holder(l Lease, now time.Time) string {
	if l.live(now) {
		return l.Owner
	}
	if l.Handoff != "" && now.Before(l.Expires) {
		return l.Handoff // reserved for the asker
	}
	return ""
}

// handoffToAsk is the shard me, holding mine, asks the busiest other
// holder (more than one above me) to hand over: its last by name that is
// live and not already asked for. "" when there is none to ask.
func handoffToAsk(me string, mine int, held map[string][]string, ready []shardView, now time.Time) string {
	names := make([]string, 0, len(held))
	for o := range held {
		if o != me {
			names = append(names, o)
		}
	}
	sort.Strings(names)
	busiest := ""
	for _, o := range names {
		if busiest == "" || len(held[o]) > len(held[busiest]) {
			busiest = o
		}
	}
	if busiest == "" || len(held[busiest]) <= mine+1 {
		return ""
	}
	list := slices.Clone(held[busiest])
	sort.Strings(list)
	for _, id := range slices.Backward(list) {
		for _, s := range ready {
			if s.ID == id && s.Lease.Handoff == "" && s.Lease.live(now) {
				return id
			}
		}
	}
	return ""
}
