package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/expr-lang/expr"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// cursor is how far a table's event rules have evaluated one partition's
// chain: every link before NextSeq is done (its firings logged).
type cursor struct {
	NextSeq int64 `json:"next_seq"`
	// Rules are the versions of the event rules the cursor is for; a
	// changed rule set starts from the cursor, not from the beginning.
	Rules []string `json:"rules,omitempty"`
}

// evalEvents evaluates the table's event rules on every committed link
// after each partition's cursor, in chain order. A link's firings are
// logged before the cursor moves past it, so a crash re-evaluates at most
// the links after the cursor and logs nothing twice (the ids exist).
func (s *Service) evalEvents(ctx context.Context, t *schema.Table, rules []*Rule) error {
	chains, err := s.commits.Chains(ctx, t.Name)
	if err != nil {
		return err
	}
	convs := recordConvs(t)
	// Partitions are independent (a cursor each): a few at a time.
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, ch := range chains {
		if ch.Source == "" || len(ch.Records) == 0 {
			continue
		}
		g.Go(func() error { return s.evalChain(ctx, t, rules, convs, ch) })
	}
	return g.Wait()
}

func (s *Service) evalChain(ctx context.Context, t *schema.Table, rules []*Rule, convs []colConv, ch lake.Chain) error {
	key := lake.OpsCursorKey(t.Name, ch.Source, ch.Partition)
	var cur cursor
	data, ver, err := s.lakeB.GetVersion(ctx, key)
	switch {
	case objstore.IsNotExist(err):
		if s.cfg.Start == StartEnd {
			end, _ := ch.End()
			cur.NextSeq = end.Seq
		}
		body, _ := json.Marshal(cur)
		if err := s.lakeB.PutIfAbsent(ctx, key, body); err != nil && !objstore.IsExists(err) {
			return fmt.Errorf("create cursor %s: %w", key, err)
		}
		if data, ver, err = s.lakeB.GetVersion(ctx, key); err != nil {
			return fmt.Errorf("read cursor %s: %w", key, err)
		}
		fallthrough
	case err == nil:
		if err := json.Unmarshal(data, &cur); err != nil {
			return fmt.Errorf("read cursor %s: %w", key, err)
		}
	default:
		return fmt.Errorf("read cursor %s: %w", key, err)
	}
	for _, rec := range ch.Records {
		if rec.Seq < cur.NextSeq {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if rec.Kind == "" || rec.Kind == lake.LinkData {
			var fired []*Entry
			for _, o := range rec.Objects {
				if o.Kind != lake.KindRaw || o.Rows == 0 {
					continue
				}
				err := s.evalObject(ctx, t, rules, convs, o, &fired, nil)
				if objstore.IsNotExist(err) {
					// Compacted, and the sweeper has deleted it: the rows
					// are in the objects compaction wrote.
					err = s.evalCompacted(ctx, t, rules, convs, rec, o, &fired)
				}
				if err != nil {
					return fmt.Errorf("%s/%s link %d: %w", ch.Source, ch.Partition, rec.Seq, err)
				}
			}
			if err := s.recordAll(ctx, fired); err != nil {
				return fmt.Errorf("%s/%s link %d: %w", ch.Source, ch.Partition, rec.Seq, err)
			}
		}
		cur.NextSeq = rec.Seq + 1
		body, _ := json.Marshal(cur)
		if err := s.lakeB.PutIfMatch(ctx, key, body, ver); err != nil {
			// Another evaluator moved the cursor: it has logged these
			// links' firings too; stop and read it again next round.
			return fmt.Errorf("advance cursor %s: %w", key, err)
		}
		if _, ver, err = s.lakeB.GetVersion(ctx, key); err != nil {
			return fmt.Errorf("read cursor %s: %w", key, err)
		}
	}
	return nil
}

// evalObject reads one committed raw object, checked against its record,
// and adds a firing for every row each rule matches to fired.
// keep, if not nil, selects the rows to evaluate.
func (s *Service) evalObject(ctx context.Context, t *schema.Table, rules []*Rule, convs []colConv, o lake.CommittedObject, fired *[]*Entry,
	keep func(row map[string]any) bool) error {
	rc, err := s.lakeB.Get(ctx, o.Key)
	if err != nil {
		return fmt.Errorf("read %s: %w", o.Key, err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return fmt.Errorf("read %s: %w", o.Key, err)
	}
	if err := lake.CheckObject(o, data); err != nil {
		return err
	}
	return readRows(data, convs, func(row map[string]any) error {
		if keep != nil && !keep(row) {
			return nil
		}
		for _, r := range rules {
			s.m.evaluated.WithLabelValues(t.Name, r.Name).Inc()
			out, err := expr.Run(r.cond, row)
			if err != nil {
				s.m.evalErrors.WithLabelValues(t.Name, r.Name).Inc()
				continue
			}
			if ok, _ := out.(bool); !ok {
				continue
			}
			e, err := s.eventEntry(r, row)
			if err != nil {
				return err
			}
			*fired = append(*fired, e)
		}
		return nil
	})
}

// RecordPosition names a raw row: source/partition/offset.
func RecordPosition(row map[string]any) string {
	return fmt.Sprintf("%v/%v/%v", row[schema.ColSource], row[schema.ColPartition], row[schema.ColOffset])
}

func (s *Service) eventEntry(r *Rule, row map[string]any) (*Entry, error) {
	pos := RecordPosition(row)
	id := FiringID(r.Name, r.Version, "", pos, StateFired)
	now := s.now().UTC()
	values, err := r.values(row)
	if err != nil {
		return nil, err
	}
	payload, err := json.Marshal(map[string]any{"type": "sluice.rule." + StateFired, "timestamp": now,
		"data": map[string]any{"id": id, "table": r.Table, "rule": r.Name, "state": StateFired, "position": pos, "values": jsonSafe(values)}})
	if err != nil {
		return nil, fmt.Errorf("rule %s: payload: %w", r.Name, err)
	}
	return &Entry{ID: id, Table: r.Table, Rule: r.Name, RuleVersion: r.Version, State: StateFired, Position: pos,
		Target: r.target(), Payload: payload, CreatedAt: now, Status: StatusPending}, nil
}

func (r *Rule) target() string {
	if r.Webhook != "" {
		return "webhook:" + r.Webhook
	}
	return "kafka:" + r.Topic
}

// values is the action's body: the body template's map, or a copy of env.
func (r *Rule) values(env map[string]any) (any, error) {
	if r.body == nil {
		cp := make(map[string]any, len(env))
		for k, v := range env {
			if k != "null" {
				cp[k] = v
			}
		}
		return cp, nil
	}
	out, err := expr.Run(r.body, env)
	if err != nil {
		// A body that fails (arithmetic on NULL) still sends the firing,
		// with the reason, rather than dropping it.
		return map[string]any{"body_error": err.Error()}, nil
	}
	return out, nil
}

// evalCompacted evaluates the rows of link rec's object o, which a
// compaction replaced and the sweeper deleted, from the live compacted
// objects: the rows of rec's partition whose position is in the link's
// range and whose event time is in o's (objects are per event-time hour,
// so rows of the link's other objects are not taken twice).
func (s *Service) evalCompacted(ctx context.Context, t *schema.Table, rules []*Rule, convs []colConv, rec lake.CommitRecord, o lake.CommittedObject, fired *[]*Entry) error {
	live, err := s.commits.LiveObjects(ctx, t.Name)
	if err != nil {
		return err
	}
	first, next := rec.Offsets()
	et := t.Fields[t.EventTimeIndex()].Name
	keep := func(row map[string]any) bool {
		off, _ := row[schema.ColOffset].(int64)
		if row[schema.ColSource] != rec.Source || row[schema.ColPartition] != rec.Partition || off < first || (next >= 0 && off >= next) {
			return false
		}
		ts, ok := row[et].(time.Time)
		return ok && ts.UnixMicro() >= o.MinEventTimeMicros && ts.UnixMicro() <= o.MaxEventTimeMicros
	}
	found := false
	for _, lo := range live {
		if lo.Compaction == "" || lo.Kind != lake.KindRaw || (lo.Partition != "" && (lo.Source != rec.Source || lo.Partition != rec.Partition)) ||
			lo.MaxEventTimeMicros < o.MinEventTimeMicros || lo.MinEventTimeMicros > o.MaxEventTimeMicros {
			continue
		}
		found = true
		if err := s.evalObject(ctx, t, rules, convs, lo.CommittedObject, fired, keep); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("read %s: %w, and no compacted object holds its rows", o.Key, objstore.ErrNotExist)
	}
	return nil
}
