package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/sluicehq/sluice/aggregate"
	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/ingest/inbox"
	"github.com/sluicehq/sluice/ingest/kafka"
	"github.com/sluicehq/sluice/ingest/kinesis"
	"github.com/sluicehq/sluice/objstore/client"
	"github.com/sluicehq/sluice/ops"
	"github.com/sluicehq/sluice/schema"
	"github.com/sluicehq/sluice/web"
)

// File is sluice.yaml: one file for every subcommand, each reading
// the sections it needs.
type File struct {
	// TablesFile holds the table definitions, relative to this file. Empty:
	// the sample tables shipped with Sluice.
	TablesFile string       `yaml:"tables_file"`
	Kafka      kafka.Config `yaml:"kafka"`
	// Kinesis is read by tables that name a stream (kinesis: {stream: ...}).
	Kinesis kinesis.Config      `yaml:"kinesis"`
	Store   client.Config       `yaml:"store"`
	Ingest  ingest.WriterConfig `yaml:"ingest"`
	HTTP    HTTP                `yaml:"http"`
	// SummaryStore holds the summaries; keep it apart from the raw store
	// (another bucket, or another prefix), whose orphan sweep owns <table>/.
	SummaryStore *client.Config   `yaml:"summary_store"`
	Aggregate    aggregate.Config `yaml:"aggregate"`
	// RulesFile holds the ops rules (see ops/rules/sample.yaml), relative
	// to this file; empty: no rules, `sluice ops` refuses to start.
	RulesFile string     `yaml:"rules_file"`
	Ops       ops.Config `yaml:"ops"`
	// Stores are further object stores, by name, that a table's inbox may
	// read from (inbox.store); an inbox that names none reads the lake's store.
	Stores map[string]client.Config `yaml:"stores"`
	// Batch tunes `sluice batch`, the inbox source.
	Batch inbox.Config `yaml:"batch"`
	// Web is the web tier of `sluice serve`: HTTP ingest, query API, page.
	Web web.Config `yaml:"web"`

	// Tables are the tables of TablesFile (or the sample tables).
	Tables []*schema.Table `yaml:"-"`
	// Rules are the rules of RulesFile; nil without one.
	Rules *ops.RuleSet `yaml:"-"`
	path  string
}

// HTTP is the section of the process's own endpoint.
type HTTP struct {
	// Addr serves /metrics, /healthz and /readyz. Loopback by default: expose
	// it deliberately.
	Addr string `yaml:"addr"`
}

// ErrSameStore: the summaries would land where the raw store's sweep deletes.
var ErrSameStore = errors.New("summary_store must differ from store (another directory, bucket or prefix): the raw store's orphan sweep owns every key under <table>/")

// EnvRef matches ${NAME} and ${NAME:-default}: secrets can stay out of the file.
var EnvRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${NAME} and ${NAME:-default} in the scalar values of
// a YAML document (not in comments or keys), so a secret containing YAML
// syntax stays one value.
func expandEnv(data []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	var missing []string
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && EnvRef.MatchString(n.Value) {
			n.Value = EnvRef.ReplaceAllStringFunc(n.Value, func(m string) string {
				sub := EnvRef.FindStringSubmatch(m)
				if v, ok := os.LookupEnv(sub[1]); ok {
					return v
				}
				if sub[2] != "" {
					return sub[3]
				}
				missing = append(missing, sub[1])
				return m
			})
			// Numbers and booleans stay plain so they fill int and bool
			// fields; anything else is one quoted string, whatever it holds.
			n.Tag, n.Style = "!!str", yaml.DoubleQuotedStyle
			if looksTyped(n.Value) {
				n.Tag, n.Style = "", 0
			}
		}
		for i, c := range n.Content {
			if n.Kind == yaml.MappingNode && i%2 == 0 {
				continue // keys stay as written
			}
			walk(c)
		}
	}
	walk(&doc)
	if len(missing) > 0 {
		return nil, fmt.Errorf("environment variables not set: %v", missing)
	}
	if doc.Kind == 0 {
		return data, nil // empty document
	}
	return yaml.Marshal(&doc)
}

func looksTyped(v string) bool {
	if _, err := strconv.ParseFloat(v, 64); err == nil {
		return true
	}
	_, err := strconv.ParseBool(v)
	return err == nil
}

// Load reads, expands, decodes and validates the sluice.yaml at path.
func Load(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	data, err := expandEnv(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var cfg File
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	cfg.path = path
	if err := cfg.resolve(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &cfg, nil
}

// resolve fills defaults, loads the tables and validates every section.
func (c *File) resolve() error {
	if c.TablesFile == "" {
		c.Tables = schema.SampleTables()
	} else {
		tables, err := schema.Load(c.relative(c.TablesFile))
		if err != nil {
			return err
		}
		c.Tables = tables
	}
	c.Kafka = c.Kafka.WithDefaults()
	c.Kinesis = c.Kinesis.WithDefaults()
	if err := c.Kinesis.Validate(); err != nil {
		return err
	}
	c.Ingest = c.Ingest.WithDefaults()
	if c.HTTP.Addr == "" {
		c.HTTP.Addr = "127.0.0.1:8080"
	}
	switch {
	case c.Store.LocalDir != "" && c.Store.S3 != nil:
		return client.ErrTwoStores
	case c.Store.LocalDir == "" && c.Store.S3 == nil:
		return client.ErrNoStore
	case c.Store.S3 != nil:
		if err := c.Store.S3.Validate(); err != nil {
			return fmt.Errorf("store.s3: %w", err)
		}
	}
	if err := c.Ingest.Validate(); err != nil {
		return err
	}
	c.Aggregate = c.Aggregate.WithDefaults()
	if err := c.Aggregate.Validate(); err != nil {
		return err
	}
	c.Ops = c.Ops.WithDefaults()
	if err := c.Ops.Validate(); err != nil {
		return err
	}
	if c.RulesFile != "" {
		rs, err := ops.LoadRules(c.relative(c.RulesFile), c.Tables, c.Kafka.Brokers)
		if err != nil {
			return err
		}
		c.Rules = rs
	}
	if err := CheckSweepGrace(c.Aggregate.Sweep.Grace, c); err != nil {
		return fmt.Errorf("aggregate.sweep.grace: %w", err)
	}
	c.Batch = c.Batch.WithDefaults()
	if err := c.Batch.Validate(); err != nil {
		return err
	}
	if err := c.checkInboxStores(); err != nil {
		return err
	}
	return c.checkSummaryStore()
}

// relative resolves a path given in the file against the file's directory.
func (c *File) relative(p string) string {
	if !filepath.IsAbs(p) && c.path != "" {
		return filepath.Join(filepath.Dir(c.path), p)
	}
	return p
}

// checkInboxStores validates the further stores and the inboxes that name one.
func (c *File) checkInboxStores() error {
	for name, st := range c.Stores {
		switch {
		case st.LocalDir != "" && st.S3 != nil, st.LocalDir == "" && st.S3 == nil:
			return fmt.Errorf("stores.%s: set exactly one of local_dir and s3", name)
		case st.S3 != nil:
			if err := st.S3.Validate(); err != nil {
				return fmt.Errorf("stores.%s.s3: %w", name, err)
			}
		}
	}
	for _, t := range c.Tables {
		if t.SourceKind() == schema.SourceInbox && t.Inbox.Store != "" {
			if _, ok := c.Stores[t.Inbox.Store]; !ok {
				return fmt.Errorf("table %s: inbox.store %q is not one of stores", t.Name, t.Inbox.Store)
			}
		}
	}
	return nil
}

// checkSummaryStore validates the summary store, apart from the raw store.
func (c *File) checkSummaryStore() error {
	if c.SummaryStore == nil {
		return nil
	}
	switch {
	case c.SummaryStore.LocalDir != "" && c.SummaryStore.S3 != nil:
		return fmt.Errorf("summary_%w", client.ErrTwoStores)
	case c.SummaryStore.LocalDir == "" && c.SummaryStore.S3 == nil:
		return fmt.Errorf("summary_%w", client.ErrNoStore)
	case c.SummaryStore.LocalDir != "" && c.SummaryStore.LocalDir == c.Store.LocalDir:
		return ErrSameStore
	case c.SummaryStore.S3 != nil && c.Store.S3 != nil && c.SummaryStore.S3.Endpoint == c.Store.S3.Endpoint &&
		c.SummaryStore.S3.Bucket == c.Store.S3.Bucket && c.SummaryStore.S3.Prefix == c.Store.S3.Prefix:
		return ErrSameStore
	case c.SummaryStore.S3 != nil:
		if err := c.SummaryStore.S3.Validate(); err != nil {
			return fmt.Errorf("summary_store.s3: %w", err)
		}
	}
	return nil
}

// ErrSweepGrace says the grace is too short for what may still commit.
var ErrSweepGrace = errors.New("the sweep grace must be longer than ingest.flush_timeout and aggregate.compaction.commit_within, or a flush or compaction still in progress could lose its objects")

// CheckSweepGrace checks that grace outlasts every flush and compaction
// that may still commit the objects a sweep would take for orphans.
func CheckSweepGrace(grace time.Duration, cfg *File) error {
	within := cfg.Aggregate.Compaction.WithDefaults().CommitWithin
	if grace <= cfg.Ingest.FlushTimeout || grace <= within {
		return fmt.Errorf("%w (grace %s, flush_timeout %s, commit_within %s)", ErrSweepGrace, grace, cfg.Ingest.FlushTimeout, within)
	}
	return nil
}
