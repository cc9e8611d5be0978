package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/parquet-go/parquet-go"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/lake"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/schema"
)

// groupState is where one group of a window rule stands.
type groupState struct {
	Dims    map[string]any `json:"dims,omitempty"`
	Firing  bool           `json:"firing,omitempty"`
	Pending int            `json:"pending,omitempty"` // consecutive breaching windows while not firing
	Clear   int            `json:"clear,omitempty"`   // consecutive clear windows while firing
}

// snapshot is the rule's group states before the window at Start was
// evaluated: late data that changes that window replays from here.
type snapshot struct {
	Start  int64                  `json:"start"`
	Groups map[string]*groupState `json:"groups"`
}

// ruleState is a window rule's progress, kept in the lake so a restarted
// or another evaluator continues where it stopped: no re-fire (the same
// transitions give the same ids) and no false resolve (a firing group is
// still firing after a restart).
type ruleState struct {
	Version   string                 `json:"version"`
	Next      int64                  `json:"next"` // start (µs) of the next window to evaluate; 0: not started
	Groups    map[string]*groupState `json:"groups"`
	Seen      map[int64]string       `json:"seen,omitempty"` // inputs hash of each evaluated window within the late horizon
	Snapshots []snapshot             `json:"snapshots,omitempty"`
	Stalled   int64                  `json:"stalled,omitempty"` // watermark (µs) at which a stall was reported; 0: none

	fired []*Entry // firings of this evaluation, logged before the state is saved
}

// Step is the pure state machine of one group in one window: breaching
// tells whether the condition holds (or data is absent, for absence
// rules). It returns the notice to send ("" for none).
func Step(g *groupState, breaching bool, r *Rule) string {
	if breaching {
		g.Clear = 0
		if g.Firing {
			return ""
		}
		g.Pending++
		if g.Pending >= r.For {
			g.Firing, g.Pending = true, 0
			return StateFiring
		}
		return ""
	}
	g.Pending = 0
	if !g.Firing {
		return ""
	}
	g.Clear++
	if g.Clear > r.KeepFiringFor {
		g.Firing, g.Clear = false, 0
		if r.Resolve {
			return StateResolved
		}
	}
	return ""
}

// unit is one summary object read: its rows by window start and the
// window states the aggregator recorded.
type unit struct {
	rows   map[int64][]map[string]any
	states map[int64]aggregate.WindowState
}

func (s *Service) readUnit(ctx context.Context, t *schema.Table, key string, convs []colConv) (*unit, error) {
	u := &unit{rows: map[int64][]map[string]any{}, states: map[int64]aggregate.WindowState{}}
	rc, err := s.summaries.Get(ctx, key)
	if objstore.IsNotExist(err) {
		return u, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read summary %s: %w", key, err)
	}
	data, err := io.ReadAll(rc)
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("read summary %s: %w", key, err)
	}
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("open summary %s: %w", key, err)
	}
	if meta, ok := f.Lookup(aggregate.MetaWindowStates); ok {
		var byTime map[string]aggregate.WindowState
		if err := json.Unmarshal([]byte(meta), &byTime); err != nil {
			return nil, fmt.Errorf("summary %s: window states: %w", key, err)
		}
		for k, v := range byTime {
			ts, err := time.Parse(time.RFC3339Nano, k)
			if err != nil {
				return nil, fmt.Errorf("summary %s: window %q: %w", key, k, err)
			}
			u.states[ts.UnixMicro()] = v
		}
	}
	err = readRows(data, convs, func(row map[string]any) error {
		start := row["window_start"].(time.Time).UnixMicro()
		u.rows[start] = append(u.rows[start], maps.Clone(row))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("summary %s: %w", key, err)
	}
	return u, nil
}

// windowReader caches the summary units read in one evaluation.
type windowReader struct {
	s     *Service
	t     *schema.Table
	w     time.Duration
	convs []colConv
	units map[int64]*unit
}

func (wr *windowReader) unit(ctx context.Context, start int64) (*unit, error) {
	us := start - start%aggregate.Unit(wr.w).Microseconds()
	if u, ok := wr.units[us]; ok {
		return u, nil
	}
	u, err := wr.s.readUnit(ctx, wr.t, aggregate.SummaryKey(wr.t.Name, wr.w, time.UnixMicro(us)), wr.convs)
	if err != nil {
		return nil, err
	}
	wr.units[us] = u
	return u, nil
}

// evalWindows evaluates a window rule on every window closed since its
// state's Next, in order, and stops at the first window the aggregator has
// not summarised with its current inputs yet. Windows the watermark has not
// passed are never evaluated: a stalled source is reported as stalled
// (once per stall), never as "no data".
func (s *Service) evalWindows(ctx context.Context, t *schema.Table, r *Rule) error {
	key := lake.OpsRuleStateKey(t.Name, r.Name)
	st, ver, err := s.loadRuleState(ctx, key, r)
	if err != nil {
		return err
	}
	recs, err := s.commits.Records(ctx, t.Name)
	if err != nil {
		return err
	}
	now := s.now()
	wm, ok := aggregate.Watermark(recs, t.Rollup.AllowedLateness, s.cfg.IdleTimeout, now)
	if !ok {
		return nil
	}
	w := r.Window
	wu := w.Microseconds()
	inputs := aggregate.WindowInputs(aggregate.Inputs(recs), w, wm)

	changed, err := s.checkStall(ctx, t, r, st, wm, now)
	if err != nil {
		return err
	}
	if s.startFrom(st, inputs, wm, wu) {
		changed = true
	}
	evaluated, err := s.evalClosed(ctx, t, r, st, inputs, wm)
	if err != nil {
		return err
	}
	changed = changed || evaluated
	// Forget what the late horizon no longer reaches.
	frozen := wm.Add(-t.Rollup.LateHorizon).UnixMicro()
	st.Snapshots = slices.DeleteFunc(st.Snapshots, func(x snapshot) bool { return x.Start+wu <= frozen })
	for k := range st.Seen {
		if k+wu <= frozen {
			delete(st.Seen, k)
		}
	}
	if !changed {
		return nil
	}
	if err := s.recordAll(ctx, st.fired); err != nil {
		return err
	}
	return s.saveRuleState(ctx, key, ver, st)
}

// loadRuleState reads a rule's state and its version ("" when there is
// none yet). A new or changed rule starts afresh: its firing ids differ.
func (s *Service) loadRuleState(ctx context.Context, key string, r *Rule) (*ruleState, string, error) {
	st := &ruleState{}
	data, ver, err := s.lakeB.GetVersion(ctx, key)
	switch {
	case objstore.IsNotExist(err):
		ver = ""
	case err != nil:
		return nil, "", fmt.Errorf("read rule state %s: %w", key, err)
	default:
		if err := json.Unmarshal(data, st); err != nil {
			return nil, "", fmt.Errorf("read rule state %s: %w", key, err)
		}
	}
	if st.Version != r.Version {
		st = &ruleState{Version: r.Version}
	}
	if st.Groups == nil {
		st.Groups = map[string]*groupState{}
	}
	if st.Seen == nil {
		st.Seen = map[int64]string{}
	}
	return st, ver, nil
}

// checkStall reports a stall (once per stall) when the watermark trails
// the clock by more than stalled_after, and says whether st changed.
func (s *Service) checkStall(ctx context.Context, t *schema.Table, r *Rule, st *ruleState, wm, now time.Time) (bool, error) {
	lag := now.Sub(wm) - t.Rollup.AllowedLateness
	if lag <= r.StalledAfter {
		s.m.stalled.WithLabelValues(t.Name).Set(0)
		if st.Stalled != 0 {
			st.Stalled = 0
			return true, nil
		}
		return false, nil
	}
	s.m.stalled.WithLabelValues(t.Name).Set(1)
	if st.Stalled == wm.UnixMicro() || st.Stalled != 0 {
		return false, nil
	}
	wu := r.Window.Microseconds()
	e := s.windowEntry(r, StateStalled, "", nil, floorMicros(wm.UnixMicro(), wu)-wu, r.Window,
		map[string]any{"watermark": wm, "lag_seconds": lag.Seconds()})
	if err := s.record(ctx, e); err != nil {
		return false, err
	}
	st.Stalled = wm.UnixMicro()
	return true, nil
}

// startFrom sets where evaluation goes on: for a new state, the last
// closed window (or the first with data, from the beginning); after late
// data, a window already evaluated whose inputs changed (within the late
// horizon, where the aggregator recomputes it) is evaluated again from the
// state before it, and every window after it. It says whether st changed.
func (s *Service) startFrom(st *ruleState, inputs map[int64][]aggregate.Link, wm time.Time, wu int64) bool {
	changed := false
	if st.Next == 0 {
		st.Next = floorMicros(wm.UnixMicro(), wu) - wu
		if s.cfg.Start == StartBeginning {
			for start := range inputs {
				st.Next = min(st.Next, start)
			}
		}
		changed = true
	}
	for _, sn := range st.Snapshots {
		if seen, ok := st.Seen[sn.Start]; ok && seen != aggregate.InputsHash(inputs[sn.Start]) {
			st.Next, st.Groups = sn.Start, cloneGroups(sn.Groups)
			st.Snapshots = slices.DeleteFunc(st.Snapshots, func(x snapshot) bool { return x.Start >= sn.Start })
			return true
		}
	}
	return changed
}

// evalClosed evaluates the windows from st.Next that the watermark has
// passed, in order, up to the first the aggregator has not summarised with
// its current inputs yet, and says whether it evaluated any.
func (s *Service) evalClosed(ctx context.Context, t *schema.Table, r *Rule, st *ruleState, inputs map[int64][]aggregate.Link, wm time.Time) (bool, error) {
	wu := r.Window.Microseconds()
	changed := false
	wr := &windowReader{s: s, t: t, w: r.Window, convs: summaryConvs(t), units: map[int64]*unit{}}
	for start := st.Next; start+wu <= wm.UnixMicro(); start += wu {
		if err := ctx.Err(); err != nil {
			break
		}
		links := inputs[start]
		hash := aggregate.InputsHash(links)
		u, err := wr.unit(ctx, start)
		if err != nil {
			return changed, err
		}
		if len(links) > 0 {
			ws, ok := u.states[start]
			if !ok || (ws.Inputs != hash && ws.Seen != hash) {
				break // not summarised with its current inputs yet
			}
		}
		prevUnit, err := wr.unit(ctx, start-wu)
		if err != nil {
			return changed, err
		}
		st.Snapshots = append(st.Snapshots, snapshot{Start: start, Groups: cloneGroups(st.Groups)})
		if err := s.evalWindow(ctx, t, r, st, start, u.rows[start], prevUnit.rows[start-wu]); err != nil {
			return changed, err
		}
		st.Seen[start] = hash
		st.Next = start + wu
		changed = true
	}
	return changed, nil
}

// saveRuleState writes st over version ver (creates it when ver is "").
func (s *Service) saveRuleState(ctx context.Context, key, ver string, st *ruleState) error {
	body, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if ver == "" {
		err = s.lakeB.PutIfAbsent(ctx, key, body)
	} else {
		err = s.lakeB.PutIfMatch(ctx, key, body, ver)
	}
	if err != nil {
		return fmt.Errorf("save rule state %s: %w", key, err)
	}
	return nil
}

func floorMicros(t, step int64) int64 {
	q := t / step
	if t%step != 0 && t < 0 {
		q--
	}
	return q * step
}

func cloneGroups(g map[string]*groupState) map[string]*groupState {
	out := make(map[string]*groupState, len(g))
	for k, v := range g {
		c := *v
		out[k] = &c
	}
	return out
}

// groupKey names a group by the rule's group_by values.
func (r *Rule) groupKey(t *schema.Table, row map[string]any) (string, map[string]any) {
	var b strings.Builder
	dims := map[string]any{}
	for _, name := range r.GroupBy {
		v := deref(row[name])
		dims[name] = v
		fmt.Fprintf(&b, "%s=%v;", name, jsonText(v))
	}
	return b.String(), dims
}

func deref(v any) any {
	switch p := v.(type) {
	case *string:
		if p != nil {
			return *p
		}
	case *int64:
		if p != nil {
			return *p
		}
	case *bool:
		if p != nil {
			return *p
		}
	case *float64:
		if p != nil {
			return *p
		}
	case *time.Time:
		if p != nil {
			return *p
		}
	default:
		return v
	}
	return nil
}

func jsonText(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// dimsKey names a summary row by all rollup dimensions (to find the same
// row in the previous window).
func dimsKey(t *schema.Table, row map[string]any) string {
	var b strings.Builder
	for _, d := range t.Rollup.Dimensions {
		b.WriteString(jsonText(deref(row[d])))
		b.WriteByte(0)
	}
	return b.String()
}

// evalWindow evaluates one closed window: each group breaches if one of
// its rows meets the condition (or, for absence, has no row); groups seen
// before without a row here follow the no-data policy.
func (s *Service) evalWindow(ctx context.Context, t *schema.Table, r *Rule, st *ruleState, start int64, rows, prev []map[string]any) error {
	s.m.evaluated.WithLabelValues(t.Name, r.Name).Inc()
	seen := s.evalGroups(t, r, rows, prev)
	if len(r.GroupBy) == 0 && seen[""] == nil {
		if _, ok := st.Groups[""]; !ok {
			st.Groups[""] = &groupState{}
		}
	}
	keys := slices.Sorted(maps.Keys(st.Groups))
	for gk := range seen {
		if _, ok := st.Groups[gk]; !ok {
			st.Groups[gk] = &groupState{Dims: seen[gk].dims}
			keys = append(keys, gk)
		}
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for _, gk := range keys {
		g := st.Groups[gk]
		res := seen[gk]
		var breach bool
		var values map[string]any
		switch {
		case r.Absent:
			breach = res == nil
		case res != nil:
			breach, values = res.breach, res.values
		case r.NoData == NoDataOK:
			breach = false
		case r.NoData == NoDataBreaching:
			breach = true
		default: // keep: the state stands still
			continue
		}
		notice := Step(g, breach, r)
		if notice == "" {
			continue
		}
		if values == nil {
			values = map[string]any{}
			if res == nil {
				values["no_data"] = true
			}
		}
		st.fired = append(st.fired, s.windowEntry(r, notice, gk, g.Dims, start, r.Window, values))
	}
	return nil
}

// groupResult is what a window's rows say about one group.
type groupResult struct {
	breach bool
	values map[string]any // the environment of the first row that breached
	dims   map[string]any
}

// evalGroups evaluates the rule's condition on the window's rows, each
// with the previous window's row of its dimensions as prev_<column>, and
// returns the result of each group seen (absent rules only see groups).
func (s *Service) evalGroups(t *schema.Table, r *Rule, rows, prev []map[string]any) map[string]*groupResult {
	prevByDims := map[string]map[string]any{}
	for _, p := range prev {
		prevByDims[dimsKey(t, p)] = p
	}
	seen := map[string]*groupResult{}
	for _, row := range rows {
		gk, dims := r.groupKey(t, row)
		res := seen[gk]
		if res == nil {
			res = &groupResult{dims: dims}
			seen[gk] = res
		}
		if r.Absent {
			continue
		}
		env := maps.Clone(row)
		p := prevByDims[dimsKey(t, row)]
		for _, c := range measureColumns(t) {
			var pv *float64
			if p != nil {
				if f, ok := p[c].(float64); ok {
					pv = &f
				}
			}
			env["prev_"+c] = pv
		}
		env["null"] = nil
		out, err := expr.Run(r.cond, env)
		if err != nil {
			s.m.evalErrors.WithLabelValues(t.Name, r.Name).Inc()
			continue
		}
		if b, _ := out.(bool); b && !res.breach {
			res.breach, res.values = true, env
		}
	}
	return seen
}

func (s *Service) windowEntry(r *Rule, state, gk string, dims map[string]any, start int64, w time.Duration, env map[string]any) *Entry {
	ws := time.UnixMicro(start).UTC()
	we := ws.Add(w)
	id := FiringID(r.Name, r.Version, gk, ws.Format(time.RFC3339Nano), state)
	now := s.now().UTC()
	var values any
	if r.body != nil && state != StateStalled {
		values, _ = r.values(env)
	} else {
		cp := map[string]any{}
		for k, v := range env {
			if k != "null" {
				cp[k] = deref(v)
			}
		}
		values = cp
	}
	values = jsonSafe(values)
	payload, _ := json.Marshal(map[string]any{"type": "sluice.rule." + state, "timestamp": now,
		"data": map[string]any{"id": id, "table": r.Table, "rule": r.Name, "state": state, "group": dims,
			"window_start": ws, "window_end": we, "values": values}})
	return &Entry{ID: id, Table: r.Table, Rule: r.Name, RuleVersion: r.Version, State: state, Group: dims,
		WindowStart: &ws, WindowEnd: &we, Target: r.target(), Payload: payload, CreatedAt: now, Status: StatusPending}
}

// jsonSafe replaces what JSON cannot carry (NaN and infinities: a measure
// over no values) with null.
func jsonSafe(v any) any {
	switch x := v.(type) {
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil
		}
	case *float64:
		if x != nil {
			return jsonSafe(*x)
		}
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = jsonSafe(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = jsonSafe(e)
		}
		return out
	}
	return v
}
