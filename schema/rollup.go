package schema

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// MeasureKind is what a rollup measure computes over a window.
type MeasureKind string

// Measure kinds. count, sum, min, max and avg are exact; distinct is a
// HyperLogLog estimate and quantiles a DDSketch estimate, both stored as
// mergeable sketches so coarser windows never need the raw rows again.
const (
	KindCount     MeasureKind = "count"
	KindSum       MeasureKind = "sum"
	KindMin       MeasureKind = "min"
	KindMax       MeasureKind = "max"
	KindAvg       MeasureKind = "avg"
	KindDistinct  MeasureKind = "distinct"
	KindQuantiles MeasureKind = "quantiles"
)

// Rollup defaults, applied by Validate when a key is omitted.
const (
	DefaultAllowedLateness   = 30 * time.Second
	DefaultLateHorizon       = time.Hour
	DefaultDistinctPrecision = 14
	DefaultRelativeAccuracy  = 0.01

	// maxDimensions bounds the group key; more is a modelling mistake and
	// would make every window's summary as large as the raw data.
	maxDimensions = 16
	maxWindows    = 16
	maxQuantiles  = 32
	day           = 24 * time.Hour
	// maxWindow keeps window arithmetic in microseconds far from overflow.
	maxWindow = 366 * day
)

// Rollup says how a table is summarised: into windows of each size, grouped
// by the dimensions, with the measures. Windows are aligned to the Unix epoch
// (UTC), so a 1h window starts on the hour and a 1d window at midnight UTC.
type Rollup struct {
	// Windows are strictly ascending; each is a multiple of the first (the
	// finest), which either divides 1h or is a multiple of 1h dividing 24h,
	// so coarser windows are built by merging whole finer ones.
	Windows []time.Duration
	// Dimensions are the group-by fields (string, int64 or bool), possibly none.
	Dimensions []string
	// AllowedLateness is how far the watermark trails the committed event
	// time. Parse applies the defaults to omitted durations; in a Rollup
	// built in code zero means zero.
	AllowedLateness time.Duration
	// LateHorizon is how far behind the watermark a late record may be and
	// still make its windows be recomputed; later ones are counted as too late.
	LateHorizon time.Duration
	Measures    []Measure

	dimIndex []int
}

// Measure is one aggregate column (or column family) of a rollup.
type Measure struct {
	Name string
	Kind MeasureKind
	// Field is the input field; empty for count.
	Field string
	// Quantiles (kind quantiles) are the ranks to store, each in [0, 1].
	Quantiles []float64
	// RelativeAccuracy (kind quantiles) is the DDSketch's guarantee: a
	// returned quantile lies within this fraction of the true value.
	// Zero means DefaultRelativeAccuracy.
	RelativeAccuracy float64
	// Precision (kind distinct) is the HyperLogLog's log2 register count, 4
	// to 18; the standard error is 1.04/sqrt(2^Precision) (0.81% at 14).
	// Zero means DefaultDistinctPrecision.
	Precision int

	fieldIndex int
	fieldType  Type
}

// FieldIndex is the index in the table's Fields of the measure's input
// field, or -1 for count.
func (m *Measure) FieldIndex() int { return m.fieldIndex }

// DimensionIndexes are the indexes in the table's Fields of the dimensions.
func (r *Rollup) DimensionIndexes() []int { return r.dimIndex }

// Finest is the smallest window, the one built from raw data.
func (r *Rollup) Finest() time.Duration { return r.Windows[0] }

// QuantileColumn is the summary column holding quantile q of the measure:
// the measure name, then p and q in percent with _ for the decimal point,
// e.g. latency_p50, latency_p99, latency_p99_9 for 0.999.
func (m *Measure) QuantileColumn(q float64) string {
	s := strconv.FormatFloat(q, 'f', -1, 64) // "0.999", "1", "0.5"
	intPart, frac, _ := strings.Cut(s, ".")
	// Shift the decimal point two places right, textually, so 0.999 does
	// not turn into 99.89999999999999.
	frac += "00"
	pct := strings.TrimLeft(intPart+frac[:2], "0")
	if pct == "" {
		pct = "0"
	}
	if rest := strings.TrimRight(frac[2:], "0"); rest != "" {
		pct += "_" + rest
	}
	return m.Name + "_p" + pct
}

// rollupYAML is the file form: durations as text so that days (1d) work,
// and pointers to tell an omitted setting from an explicit zero.
// omitempty only shapes what MarshalYAML writes.
type rollupYAML struct {
	Windows         []string      `yaml:"windows,flow"`
	Dimensions      []string      `yaml:"dimensions,omitempty,flow"`
	AllowedLateness *string       `yaml:"allowed_lateness,omitempty"`
	LateHorizon     *string       `yaml:"late_horizon,omitempty"`
	Measures        []measureYAML `yaml:"measures"`
}

type measureYAML struct {
	Name             string    `yaml:"name"`
	Kind             string    `yaml:"kind"`
	Field            string    `yaml:"field,omitempty"`
	Quantiles        []float64 `yaml:"quantiles,omitempty,flow"`
	RelativeAccuracy *float64  `yaml:"relative_accuracy,omitempty"`
	Precision        *int      `yaml:"precision,omitempty"`
}

// UnmarshalYAML decodes the rollup: section. Unknown keys are errors here
// too (a nested Decode does not inherit the file decoder's strictness).
func (r *Rollup) UnmarshalYAML(n *yaml.Node) error {
	if err := checkKeys(n, "rollup", "windows", "dimensions", "allowed_lateness", "late_horizon", "measures"); err != nil {
		return err
	}
	var y rollupYAML
	if err := n.Decode(&y); err != nil {
		return err
	}
	for _, c := range mappingValue(n, "measures") {
		if err := checkKeys(c, "measure", "name", "kind", "field", "quantiles", "relative_accuracy", "precision"); err != nil {
			return err
		}
	}
	out := Rollup{Dimensions: y.Dimensions, AllowedLateness: -1, LateHorizon: -1}
	wnodes := mappingValue(n, "windows")
	for i, w := range y.Windows {
		d, err := parseDuration(w)
		if err != nil {
			return fmt.Errorf("line %d: rollup: windows: %w", wnodes[i].Line, err)
		}
		out.Windows = append(out.Windows, d)
	}
	for _, p := range []struct {
		key string
		src *string
		dst *time.Duration
	}{{"allowed_lateness", y.AllowedLateness, &out.AllowedLateness}, {"late_horizon", y.LateHorizon, &out.LateHorizon}} {
		if p.src == nil {
			continue
		}
		d, err := parseDuration(*p.src)
		if err != nil {
			return fmt.Errorf("line %d: rollup: %s: %w", n.Line, p.key, err)
		}
		if d < 0 {
			return fmt.Errorf("line %d: rollup: %s must not be negative, got %s", n.Line, p.key, *p.src)
		}
		*p.dst = d
	}
	for _, m := range y.Measures {
		mm := Measure{Name: m.Name, Kind: MeasureKind(m.Kind), Field: m.Field, Quantiles: m.Quantiles}
		if m.RelativeAccuracy != nil {
			if *m.RelativeAccuracy == 0 {
				return fmt.Errorf("line %d: rollup: measure %q: relative_accuracy must be in (0, 1), got 0", n.Line, m.Name)
			}
			mm.RelativeAccuracy = *m.RelativeAccuracy
		}
		if m.Precision != nil {
			if *m.Precision == 0 {
				return fmt.Errorf("line %d: rollup: measure %q: precision must be in [4, 18], got 0", n.Line, m.Name)
			}
			mm.Precision = *m.Precision
		}
		out.Measures = append(out.Measures, mm)
	}
	*r = out
	return nil
}

func checkKeys(n *yaml.Node, what string, allowed ...string) error {
	if n.Kind != yaml.MappingNode {
		return nil // Decode reports the type mismatch with its own words
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		ok := false
		for _, a := range allowed {
			if k.Value == a {
				ok = true
				break
			}
		}
		if !ok {
			return fmt.Errorf("line %d: unknown key %q in %s (want one of %s)", k.Line, k.Value, what, strings.Join(allowed, ", "))
		}
	}
	return nil
}

func mappingValue(n *yaml.Node, key string) []*yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key && n.Content[i+1].Kind == yaml.SequenceNode {
			return n.Content[i+1].Content
		}
	}
	return nil
}

// parseDuration is time.ParseDuration plus whole days ("1d", "7d").
func parseDuration(s string) (time.Duration, error) {
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseInt(d, 10, 64)
		if err != nil || n < 0 || n > int64(maxWindow/day) {
			return 0, fmt.Errorf("bad duration %q: days must be a whole number up to %d", s, maxWindow/day)
		}
		return time.Duration(n) * day, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("bad duration %q (want e.g. 30s, 5m, 1h or 1d)", s)
	}
	return d, nil
}

// validate applies defaults and checks the rollup against its table t
// (whose fields are already valid). Errors name the measure or setting.
func (r *Rollup) validate(t *Table) error {
	wrap := func(err error) error { return fmt.Errorf("rollup: %w", err) }
	if r.AllowedLateness < 0 {
		r.AllowedLateness = DefaultAllowedLateness
	}
	if r.LateHorizon < 0 {
		r.LateHorizon = DefaultLateHorizon
	}
	if err := checkWindows(r.Windows); err != nil {
		return wrap(err)
	}
	if len(r.Dimensions) > maxDimensions {
		return wrap(fmt.Errorf("%d dimensions, at most %d allowed", len(r.Dimensions), maxDimensions))
	}
	// Column names of the summary must be unique: window bounds, the
	// dimensions and every measure's columns share one namespace.
	cols := map[string]string{"window_start": "the window bounds", "window_end": "the window bounds"}
	claim := func(col, owner string) error {
		if other, ok := cols[col]; ok {
			return fmt.Errorf("%s: summary column %q is already used by %s", owner, col, other)
		}
		cols[col] = owner
		return nil
	}
	r.dimIndex = make([]int, len(r.Dimensions))
	for i, d := range r.Dimensions {
		fi := t.FieldIndex(d)
		if fi < 0 {
			return wrap(fmt.Errorf("dimension %q is not a field of the table", d))
		}
		switch ft := t.Fields[fi].Type; ft {
		case TypeString, TypeInt64, TypeBool:
		default:
			return wrap(fmt.Errorf("dimension %q has type %s, want string, int64 or bool", d, ft))
		}
		if err := claim(d, fmt.Sprintf("dimension %q", d)); err != nil {
			return wrap(err)
		}
		r.dimIndex[i] = fi
	}
	for i := range r.Measures {
		m := &r.Measures[i]
		if err := checkName("measure", m.Name); err != nil {
			if m.Name != "" {
				return wrap(fmt.Errorf("measure %q: %w", m.Name, err))
			}
			return wrap(fmt.Errorf("measure #%d: %w", i+1, err))
		}
		if err := m.validate(t); err != nil {
			return wrap(fmt.Errorf("measure %q: %w", m.Name, err))
		}
		for _, c := range m.Columns() {
			if err := claim(c, fmt.Sprintf("measure %q", m.Name)); err != nil {
				return wrap(err)
			}
		}
	}
	return nil
}

func checkWindows(ws []time.Duration) error {
	if len(ws) == 0 {
		return errors.New("windows: none defined (e.g. windows: [1m, 1h])")
	}
	if len(ws) > maxWindows {
		return fmt.Errorf("windows: %d defined, at most %d allowed", len(ws), maxWindows)
	}
	f := ws[0]
	switch {
	case f < time.Second || f%time.Second != 0:
		return fmt.Errorf("windows: finest window %s must be a whole number of seconds", f)
	case f <= time.Hour && time.Hour%f != 0:
		return fmt.Errorf("windows: finest window %s must divide 1h", f)
	case f > time.Hour && (f%time.Hour != 0 || day%f != 0):
		return fmt.Errorf("windows: finest window %s must divide 1h, or be a multiple of 1h that divides 24h", f)
	}
	for i, w := range ws[1:] {
		switch {
		case w <= ws[i]:
			return fmt.Errorf("windows: %s after %s: windows must be strictly ascending", w, ws[i])
		case w%f != 0:
			return fmt.Errorf("windows: %s is not a multiple of the finest window %s", w, f)
		case w > maxWindow:
			return fmt.Errorf("windows: %s is longer than %s", w, maxWindow)
		}
	}
	return nil
}

func (m *Measure) validate(t *Table) error {
	m.fieldIndex, m.fieldType = -1, ""
	if m.Kind != KindQuantiles && len(m.Quantiles) > 0 {
		return fmt.Errorf("quantiles apply to kind quantiles only, not %s", m.Kind)
	}
	if m.Kind != KindQuantiles && m.RelativeAccuracy != 0 {
		return fmt.Errorf("relative_accuracy applies to kind quantiles only, not %s", m.Kind)
	}
	if m.Kind != KindDistinct && m.Precision != 0 {
		return fmt.Errorf("precision applies to kind distinct only, not %s", m.Kind)
	}
	var want []Type
	switch m.Kind {
	case KindCount:
		if m.Field != "" {
			return errors.New("kind count takes no field: it counts rows")
		}
		return nil
	case KindSum, KindAvg:
		want = []Type{TypeInt64, TypeFloat64}
	case KindMin, KindMax:
		want = []Type{TypeInt64, TypeFloat64, TypeTimestamp}
	case KindDistinct:
		switch {
		case m.Precision == 0:
			m.Precision = DefaultDistinctPrecision
		case m.Precision < 4 || m.Precision > 18:
			return fmt.Errorf("precision must be in [4, 18], got %d", m.Precision)
		}
	case KindQuantiles:
		want = []Type{TypeInt64, TypeFloat64}
		switch ra := m.RelativeAccuracy; {
		case ra == 0:
			m.RelativeAccuracy = DefaultRelativeAccuracy
		case !(ra > 0 && ra < 1):
			return fmt.Errorf("relative_accuracy must be in (0, 1), got %v", ra)
		}
		if err := m.validateQuantiles(); err != nil {
			return err
		}
	case "":
		return errors.New("kind is missing (want count, sum, min, max, avg, distinct or quantiles)")
	default:
		return fmt.Errorf("unknown kind %q (want count, sum, min, max, avg, distinct or quantiles)", string(m.Kind))
	}
	return m.validateField(t, want)
}

// validateQuantiles checks the quantiles listed: some, not too many, each
// in [0, 1] with at most 6 decimal places, none twice.
func (m *Measure) validateQuantiles() error {
	if len(m.Quantiles) == 0 {
		return errors.New("quantiles: none listed (e.g. quantiles: [0.5, 0.99])")
	}
	if len(m.Quantiles) > maxQuantiles {
		return fmt.Errorf("quantiles: %d listed, at most %d allowed", len(m.Quantiles), maxQuantiles)
	}
	for i, q := range m.Quantiles {
		if !(q >= 0 && q <= 1) || math.IsNaN(q) {
			return fmt.Errorf("quantile %v is outside [0, 1]", q)
		}
		if s := strconv.FormatFloat(q, 'f', -1, 64); len(s) > 8 {
			return fmt.Errorf("quantile %v has more than 6 decimal places", q)
		}
		for _, p := range m.Quantiles[:i] {
			if p == q {
				return fmt.Errorf("quantile %v is listed twice", q)
			}
		}
	}
	return nil
}

// validateField checks that the measure names a field of t of one of the
// types want lists (nil: any), and remembers it.
func (m *Measure) validateField(t *Table, want []Type) error {
	if m.Field == "" {
		return fmt.Errorf("kind %s needs a field", m.Kind)
	}
	fi := t.FieldIndex(m.Field)
	if fi < 0 {
		return fmt.Errorf("field %q is not a field of the table", m.Field)
	}
	ft := t.Fields[fi].Type
	if want != nil {
		ok := false
		for _, w := range want {
			ok = ok || ft == w
		}
		if !ok {
			names := make([]string, len(want))
			for i, w := range want {
				names[i] = string(w)
			}
			return fmt.Errorf("field %q has type %s, kind %s needs %s", m.Field, ft, m.Kind, strings.Join(names, " or "))
		}
	}
	m.fieldIndex = fi
	m.fieldType = ft
	return nil
}

// Columns are the summary columns the measure produces, in order. Columns
// with __ after the name hold mergeable state (sketches, the exact sum of a
// float field as non-overlapping float64 parts, avg's sum and count); the
// others are plain values for any Parquet reader.
func (m *Measure) Columns() []string {
	switch m.Kind {
	case KindSum:
		if m.floatInput() {
			return []string{m.Name, m.Name + "__xsum"}
		}
	case KindAvg:
		if m.floatInput() {
			return []string{m.Name, m.Name + "__sum", m.Name + "__count", m.Name + "__xsum"}
		}
		return []string{m.Name, m.Name + "__sum", m.Name + "__count"}
	case KindDistinct:
		return []string{m.Name, m.Name + "__hll"}
	case KindQuantiles:
		cols := make([]string, 0, len(m.Quantiles)+1)
		for _, q := range m.Quantiles {
			cols = append(cols, m.QuantileColumn(q))
		}
		return append(cols, m.Name+"__sketch")
	}
	return []string{m.Name}
}

// floatInput reports whether the measure reads a float64 field; valid only
// after validation, when the field type is known.
func (m *Measure) floatInput() bool { return m.fieldType == TypeFloat64 }

// FieldType is the type of the measure's input field ("" for count).
func (m *Measure) FieldType() Type { return m.fieldType }
