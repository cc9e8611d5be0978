package ops

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/schema"
)

// Rule kinds.
const (
	KindEvent  = "event"  // a predicate on each committed record
	KindWindow = "window" // a condition on each closed window of a rollup
)

// No-data policies of a window rule: what a window without a row for a
// group that the rule has seen means. A window the watermark has not passed
// is never evaluated, so a stalled source is never taken for "no data".
const (
	NoDataOK        = "ok"        // the condition is false (counts toward resolving)
	NoDataBreaching = "breaching" // the condition is true
	NoDataKeep      = "keep"      // the group's state is left as it is
)

// Defaults of the rules file.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultAttempts     = 8
	DefaultRetrySpan    = 27 * time.Hour // the Standard Webhooks schedule: about a day and three hours
	DefaultStalledAfter = 10 * time.Minute
)

// RuleSet is a loaded, compiled rules file.
type RuleSet struct {
	Webhooks []*Webhook
	Topics   []*KafkaTopic
	Rules    []*Rule
}

// Webhook is an HTTP endpoint that receives firings as Standard Webhooks.
type Webhook struct {
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Secrets sign every delivery, each giving one "v1," signature in the
	// webhook-signature header: list the new secret next to the old one
	// while receivers switch over, then drop the old one. "whsec_" and
	// base64, as the Standard Webhooks libraries generate them.
	Secrets []string      `yaml:"secrets"`
	Timeout time.Duration `yaml:"timeout"` // per attempt; default 10s
	Retry   RetryPolicy   `yaml:"retry"`

	keys [][]byte
}

// String keeps secrets out of logs.
func (w *Webhook) String() string {
	return fmt.Sprintf("webhook %s (%s, %d secrets)", w.Name, w.URL, len(w.Secrets))
}

// RetryPolicy spreads Attempts deliveries over Span: attempt i waits about
// Span/(2^(Attempts-1)-1)·2^(i-1) after the one before, with ±20% jitter.
// After the last one fails the firing goes to the dead letters.
type RetryPolicy struct {
	Attempts int           `yaml:"attempts"` // default 8
	Span     time.Duration `yaml:"span"`     // default 27h
}

// KafkaTopic is a topic that receives firings as records keyed by firing id.
type KafkaTopic struct {
	Name    string   `yaml:"name"`
	Topic   string   `yaml:"topic"`
	Brokers []string `yaml:"brokers"` // default: the brokers the caller passes to Load
}

// Rule is one compiled rule.
type Rule struct {
	Name  string
	Table string
	Kind  string
	// Version is a hash of the rule's definition: a changed rule fires
	// anew (its firing ids change), an unchanged one never twice.
	Version string

	When   string
	Absent bool

	// Window rules.
	Window        time.Duration
	GroupBy       []string
	For           int // consecutive breaching windows before firing (>= 1)
	KeepFiringFor int // consecutive clear windows before resolving (0: the first)
	Resolve       bool
	NoData        string
	StalledAfter  time.Duration

	Webhook string // one of Webhook and Topic names the action
	Topic   string
	Body    string

	cond *vm.Program // nil for absence rules
	body *vm.Program // nil: the record's or window's values
	env  map[string]any
	dims []int // indexes into the rollup dimensions of GroupBy
}

type ruleFile struct {
	Webhooks    []*Webhook    `yaml:"webhooks"`
	KafkaTopics []*KafkaTopic `yaml:"kafka_topics"`
	Rules       []ruleYAML    `yaml:"rules"`
}

type ruleYAML struct {
	Name          string    `yaml:"name"`
	Table         string    `yaml:"table"`
	When          yaml.Node `yaml:"when"`
	Absent        bool      `yaml:"absent"`
	Window        string    `yaml:"window"`
	GroupBy       []string  `yaml:"group_by"`
	For           int       `yaml:"for"`
	KeepFiringFor int       `yaml:"keep_firing_for"`
	Resolve       bool      `yaml:"resolve"`
	MissingData   struct {
		NoData       string        `yaml:"no_data"`
		StalledAfter time.Duration `yaml:"stalled_after"`
	} `yaml:"missing_data"`
	Action struct {
		Webhook string    `yaml:"webhook"`
		Kafka   string    `yaml:"kafka"`
		Body    yaml.Node `yaml:"body"`
	} `yaml:"action"`
}

// LoadRules reads and compiles the rules file at path against tables.
// defaultBrokers are used by kafka_topics without brokers of their own.
func LoadRules(path string, tables []*schema.Table, defaultBrokers []string) (*RuleSet, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load rules: %w", err)
	}
	return ParseRules(data, path, tables, defaultBrokers)
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// ParseRules decodes and compiles a rules file; filename labels errors,
// which read "file:line:col: rule "name": what".
func ParseRules(data []byte, filename string, tables []*schema.Table, defaultBrokers []string) (*RuleSet, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f ruleFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: no rules defined", filename)
		}
		return nil, fmt.Errorf("%s: %s", filename, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(f.Rules) == 0 {
		return nil, fmt.Errorf("%s: no rules defined", filename)
	}
	byTable := map[string]*schema.Table{}
	for _, t := range tables {
		byTable[t.Name] = t
	}
	rs := &RuleSet{}
	targets := map[string]string{}
	for i, w := range f.Webhooks {
		if w == nil || !nameRE.MatchString(w.Name) {
			return nil, fmt.Errorf("%s: webhook #%d: name must be lower-case letters, digits, _ and -", filename, i+1)
		}
		if err := w.prepare(); err != nil {
			return nil, fmt.Errorf("%s: webhook %q: %w", filename, w.Name, err)
		}
		if targets[w.Name] != "" {
			return nil, fmt.Errorf("%s: webhook %q: name used twice", filename, w.Name)
		}
		targets[w.Name] = "webhook"
		rs.Webhooks = append(rs.Webhooks, w)
	}
	for i, k := range f.KafkaTopics {
		if k == nil || !nameRE.MatchString(k.Name) {
			return nil, fmt.Errorf("%s: kafka topic #%d: name must be lower-case letters, digits, _ and -", filename, i+1)
		}
		if k.Topic == "" {
			return nil, fmt.Errorf("%s: kafka topic %q: topic is missing", filename, k.Name)
		}
		if len(k.Brokers) == 0 {
			k.Brokers = defaultBrokers
		}
		if len(k.Brokers) == 0 {
			return nil, fmt.Errorf("%s: kafka topic %q: no brokers (list them, or configure kafka.brokers)", filename, k.Name)
		}
		if targets[k.Name] != "" {
			return nil, fmt.Errorf("%s: kafka topic %q: name used twice", filename, k.Name)
		}
		targets[k.Name] = "kafka"
		rs.Topics = append(rs.Topics, k)
	}
	seen := map[string]bool{}
	lines := strings.Split(string(data), "\n")
	for i := range f.Rules {
		y := &f.Rules[i]
		r, err := compileRule(y, byTable, targets, filename, lines)
		if err != nil {
			return nil, err
		}
		if seen[r.Table+"/"+r.Name] {
			return nil, fmt.Errorf("%s: rule %q: defined twice for table %s", filename, r.Name, r.Table)
		}
		seen[r.Table+"/"+r.Name] = true
		rs.Rules = append(rs.Rules, r)
	}
	return rs, nil
}

func (w *Webhook) prepare() error {
	if !strings.HasPrefix(w.URL, "http://") && !strings.HasPrefix(w.URL, "https://") {
		return fmt.Errorf("url %q: want http:// or https://", w.URL)
	}
	if len(w.Secrets) == 0 {
		return errors.New("secrets: at least one whsec_ secret is needed to sign deliveries")
	}
	w.keys = nil
	for i, s := range w.Secrets {
		k, err := DecodeSecret(expandEnv(s))
		if err != nil {
			return fmt.Errorf("secret #%d: %w", i+1, err)
		}
		w.keys = append(w.keys, k)
	}
	if w.Timeout == 0 {
		w.Timeout = DefaultTimeout
	}
	if w.Timeout < 0 {
		return errors.New("timeout must be positive")
	}
	if w.Retry.Attempts == 0 {
		w.Retry.Attempts = DefaultAttempts
	}
	if w.Retry.Span == 0 {
		w.Retry.Span = DefaultRetrySpan
	}
	if w.Retry.Attempts < 1 || w.Retry.Attempts > 30 || w.Retry.Span < 0 {
		return errors.New("retry: attempts must be 1 to 30 and span positive")
	}
	return nil
}

// expandEnv replaces ${VAR} and ${VAR:-default}, so secrets stay out of
// the file.
func expandEnv(s string) string {
	return os.Expand(s, func(k string) string {
		name, def, hasDef := strings.Cut(k, ":-")
		if v, ok := os.LookupEnv(name); ok && v != "" {
			return v
		}
		if hasDef {
			return def
		}
		return ""
	})
}

func compileRule(y *ruleYAML, tables map[string]*schema.Table, targets map[string]string, filename string, lines []string) (*Rule, error) {
	where := func(n *yaml.Node) string {
		if n != nil && n.Line > 0 {
			return fmt.Sprintf("%s:%d:%d", filename, n.Line, n.Column)
		}
		return filename
	}
	fail := func(n *yaml.Node, format string, a ...any) error {
		return fmt.Errorf("%s: rule %q: %s", where(n), y.Name, fmt.Sprintf(format, a...))
	}
	if !nameRE.MatchString(y.Name) {
		return nil, fmt.Errorf("%s: rule %q: name must be lower-case letters, digits, _ and -, starting with a letter", filename, y.Name)
	}
	t := tables[y.Table]
	if t == nil {
		return nil, fail(nil, "unknown table %q", y.Table)
	}
	r := &Rule{Name: y.Name, Table: y.Table, When: y.When.Value, Absent: y.Absent, GroupBy: y.GroupBy,
		For: y.For, KeepFiringFor: y.KeepFiringFor, Resolve: y.Resolve,
		NoData: y.MissingData.NoData, StalledAfter: y.MissingData.StalledAfter,
		Webhook: y.Action.Webhook, Topic: y.Action.Kafka, Body: y.Action.Body.Value}
	if err := r.checkAction(targets, fail); err != nil {
		return nil, err
	}
	var err error
	if y.Window == "" {
		err = r.compileEvent(t, fail)
	} else {
		err = r.compileWindow(t, y.Window, fail)
	}
	if err != nil {
		return nil, err
	}
	if err := r.compileExprs(y, filename, lines); err != nil {
		return nil, err
	}
	r.Version = ruleVersion(y)
	return r, nil
}

// ruleFail makes a rule's error, placed at n in the file (nil: the file).
type ruleFail func(n *yaml.Node, format string, a ...any) error

// checkAction checks that the rule names one target, of the kind it says.
func (r *Rule) checkAction(targets map[string]string, fail ruleFail) error {
	switch {
	case r.Webhook != "" && r.Topic != "":
		return fail(nil, "action: name either webhook or kafka, not both")
	case r.Webhook != "" && targets[r.Webhook] != "webhook":
		return fail(nil, "action: no webhook named %q", r.Webhook)
	case r.Topic != "" && targets[r.Topic] != "kafka":
		return fail(nil, "action: no kafka topic named %q", r.Topic)
	case r.Webhook == "" && r.Topic == "":
		return fail(nil, "action: name a webhook or a kafka topic")
	}
	return nil
}

// compileEvent checks an event rule (no window:) on table t.
func (r *Rule) compileEvent(t *schema.Table, fail ruleFail) error {
	r.Kind = KindEvent
	if r.Absent || len(r.GroupBy) > 0 || r.For != 0 || r.KeepFiringFor != 0 || r.Resolve || r.NoData != "" || r.StalledAfter != 0 {
		return fail(nil, "absent, group_by, for, keep_firing_for, resolve and missing_data need window:")
	}
	if r.When == "" {
		return fail(nil, "when: an event rule needs a condition")
	}
	r.env = recordEnv(t)
	return nil
}

// compileWindow checks a window rule over the rollup window named window
// of table t and fills in its defaults.
func (r *Rule) compileWindow(t *schema.Table, window string, fail ruleFail) error {
	r.Kind = KindWindow
	if t.Rollup == nil {
		return fail(nil, "window: table %s has no rollup", t.Name)
	}
	var w time.Duration
	for _, cand := range t.Rollup.Windows {
		if aggregate.WindowName(cand) == window {
			w = cand
		}
	}
	if w == 0 {
		names := make([]string, len(t.Rollup.Windows))
		for i, cand := range t.Rollup.Windows {
			names[i] = aggregate.WindowName(cand)
		}
		return fail(nil, "window %q is not one of the rollup's windows (%s)", window, strings.Join(names, ", "))
	}
	r.Window = w
	for _, g := range r.GroupBy {
		i := slices.Index(t.Rollup.Dimensions, g)
		if i < 0 {
			return fail(nil, "group_by: %q is not a dimension of the rollup (%s)", g, strings.Join(t.Rollup.Dimensions, ", "))
		}
		r.dims = append(r.dims, i)
	}
	if r.Absent == (r.When != "") {
		return fail(nil, "a window rule has either when: (a condition) or absent: true")
	}
	if r.For == 0 {
		r.For = 1
	}
	if r.For < 1 || r.KeepFiringFor < 0 {
		return fail(nil, "for must be at least 1 window and keep_firing_for not negative")
	}
	switch r.NoData {
	case "":
		r.NoData = NoDataKeep
	case NoDataOK, NoDataBreaching, NoDataKeep:
	default:
		return fail(nil, "missing_data.no_data %q: want ok, breaching or keep", r.NoData)
	}
	if r.StalledAfter == 0 {
		r.StalledAfter = DefaultStalledAfter
	}
	r.env = windowEnv(t)
	return nil
}

// compileExprs compiles the condition and the action's body against the
// rule's environment; errors are placed in the file.
func (r *Rule) compileExprs(y *ruleYAML, filename string, lines []string) error {
	if r.When != "" {
		p, err := expr.Compile(r.When, expr.Env(r.env), expr.AsBool())
		if err != nil {
			return exprError(lines, filename, y.Name, "when", &y.When, err)
		}
		r.cond = p
	}
	if r.Body != "" {
		p, err := expr.Compile(r.Body, expr.Env(r.env))
		if err == nil {
			if k := p.Node().Type(); k != nil && k.Kind() != reflect.Map && k.Kind() != reflect.Interface {
				err = fmt.Errorf("want a map ({\"key\": value, ...}), got %s", k)
			}
		}
		if err != nil {
			return exprError(lines, filename, y.Name, "action.body", &y.Action.Body, err)
		}
		r.body = p
	}
	return nil
}

// exprError places an expression's error in the file: the scalar's own
// position plus the offset inside it (quoted scalars start one column on;
// block scalars on the next line).
func exprError(lines []string, filename, rule, key string, n *yaml.Node, err error) error {
	line, col := n.Line, n.Column
	msg := err.Error()
	var fe *file.Error
	if errors.As(err, &fe) {
		msg = fe.Message
		switch n.Style {
		case yaml.LiteralStyle, yaml.FoldedStyle:
			// The content starts on the next line, at the indentation of
			// its first line.
			line += fe.Line
			col = fe.Column + 1
			if first := n.Line; first < len(lines) {
				col += len(lines[first]) - len(strings.TrimLeft(lines[first], " "))
			}
		case yaml.DoubleQuotedStyle, yaml.SingleQuotedStyle:
			line += fe.Line - 1
			if fe.Line == 1 {
				col += 1 + fe.Column
			} else {
				col = fe.Column + 1
			}
		default:
			line += fe.Line - 1
			if fe.Line == 1 {
				col += fe.Column
			} else {
				col = fe.Column + 1
			}
		}
	}
	return fmt.Errorf("%s:%d:%d: rule %q: %s: %s", filename, line, col, rule, key, msg)
}

// ruleVersion hashes what decides firings; renaming the action or editing
// the body does not re-fire old records.
func ruleVersion(y *ruleYAML) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%v\x00%s\x00%v\x00%d\x00%d\x00%v\x00%s", y.Table, y.Name, y.When.Value, y.Absent, y.Window,
		y.GroupBy, y.For, y.KeepFiringFor, y.Resolve, y.MissingData.NoData)
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Typed placeholders for the checker: nullable fields are pointers, so
// `country != nil` type-checks and a NULL compares as nil at run time.
var (
	strType   = ""
	intType   = int64(0)
	floatType = float64(0)
	boolType  = false
	timeType  = time.Time{}
)

func fieldValue(f *schema.Field) any {
	var v any
	switch f.Type {
	case schema.TypeString:
		v = strType
		if f.Nullable {
			v = (*string)(nil)
		}
	case schema.TypeInt64:
		v = intType
		if f.Nullable {
			v = (*int64)(nil)
		}
	case schema.TypeFloat64:
		v = floatType
		if f.Nullable {
			v = (*float64)(nil)
		}
	case schema.TypeBool:
		v = boolType
		if f.Nullable {
			v = (*bool)(nil)
		}
	case schema.TypeTimestamp:
		v = timeType
		if f.Nullable {
			v = (*time.Time)(nil)
		}
	}
	return v
}

// recordEnv: the table's fields, the metadata columns, and null.
func recordEnv(t *schema.Table) map[string]any {
	env := map[string]any{"null": nil, schema.ColSource: strType, schema.ColPartition: strType, schema.ColOffset: intType}
	for i := range t.Fields {
		env[t.Fields[i].Name] = fieldValue(&t.Fields[i])
	}
	return env
}

// measureColumns lists the plain (queryable) columns of the rollup's
// measures: what a window rule can test.
func measureColumns(t *schema.Table) []string {
	var out []string
	for i := range t.Rollup.Measures {
		for _, c := range t.Rollup.Measures[i].Columns() {
			if !strings.Contains(c, "__") {
				out = append(out, c)
			}
		}
	}
	return out
}

// windowEnv: every measure column as float64, the same of the previous
// window as prev_<column> (nil if the group had no row there: rate of
// change), the dimensions, window_start/window_end and null.
func windowEnv(t *schema.Table) map[string]any {
	env := map[string]any{"null": nil, "window_start": timeType, "window_end": timeType}
	for _, c := range measureColumns(t) {
		env[c] = floatType
		env["prev_"+c] = (*float64)(nil)
	}
	for _, d := range t.Rollup.Dimensions {
		f := t.Fields[t.FieldIndex(d)]
		f.Nullable = true // a dimension's value may be NULL in a summary row
		env[d] = fieldValue(&f)
	}
	return env
}

//go:embed rules/sample.yaml
var sampleRules []byte

// SampleRules is the rules file `sluice dev` ships with.
func SampleRules() []byte { return slices.Clone(sampleRules) }
