package kafkabroker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
)

// DefaultAddr is where the broker listens unless told otherwise.
const DefaultAddr = "127.0.0.1:9092"

// SASL mechanisms accepted in SASLUser.Mechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// Config says how to run the broker. The zero value is an in-memory broker
// on DefaultAddr with no topics.
type Config struct {
	// Addr is host:port to listen on. The host must be a loopback address:
	// the broker advertises the address it listens on, has no
	// authentication by default, and is meant for one machine. Port 0 picks
	// a free port (see Broker.Addr). Default DefaultAddr.
	Addr string
	// DataDir keeps topics, records, group offsets and producer state on
	// disk and reloads them on start. Empty keeps everything in memory.
	DataDir string
	// SyncWrites fsyncs every produced batch before acknowledging it, so
	// acknowledged records survive a machine crash, not only a process
	// crash. Slower. Only meaningful with DataDir.
	SyncWrites bool
	// Topics are created at start with the given partition count (<= 0:
	// DefaultPartitions) unless they already exist in DataDir; existing
	// topics keep their partitions.
	Topics map[string]int32
	// DefaultPartitions is the partition count of auto-created topics and of
	// CreateTopics requests that ask for the default. Default 10 (kfake's).
	DefaultPartitions int32
	// AutoCreateTopics lets a metadata request create a topic it names, as
	// Kafka's auto.create.topics.enable does.
	AutoCreateTopics bool
	// ClusterID is returned in metadata; kept from DataDir if present there.
	ClusterID string
	// BrokerConfigs are initial broker-level configs, e.g.
	// "message.max.bytes": "4194304". See kfake.BrokerConfigs for the list.
	BrokerConfigs map[string]string

	// TLS, if set, makes the listener speak TLS with this server config.
	TLS *tls.Config
	// SASLUsers, if any, turn on SASL authentication; every listed user is a
	// superuser (no ACLs).
	SASLUsers []SASLUser
}

// SASLUser is one account clients may authenticate as.
type SASLUser struct {
	Mechanism string // SASLPlain, SASLScramSHA256 or SASLScramSHA512
	User      string
	Password  string
}

// Validate reports the first problem with c, after defaults are applied.
func (c Config) Validate() error {
	_, err := c.listenAddr()
	if err != nil {
		return err
	}
	if c.SyncWrites && c.DataDir == "" {
		return errors.New("sync writes need a data dir")
	}
	if c.DefaultPartitions < 0 {
		return fmt.Errorf("default partitions %d: must be >= 0", c.DefaultPartitions)
	}
	for t, p := range c.Topics {
		if err := validTopicName(t); err != nil {
			return err
		}
		if p > 1<<20 {
			return fmt.Errorf("topic %q: %d partitions is too many", t, p)
		}
	}
	for _, u := range c.SASLUsers {
		switch u.Mechanism {
		case SASLPlain, SASLScramSHA256, SASLScramSHA512:
		default:
			return fmt.Errorf("sasl user %q: unknown mechanism %q (want %s, %s or %s)",
				u.User, u.Mechanism, SASLPlain, SASLScramSHA256, SASLScramSHA512)
		}
		if u.User == "" {
			return errors.New("sasl user with an empty name")
		}
	}
	return nil
}

// listenAddr returns the validated host and port to bind.
func (c Config) listenAddr() (netip.AddrPort, error) {
	addr := c.Addr
	if addr == "" {
		addr = DefaultAddr
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("broker address %q: %w", addr, err)
	}
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("broker address %q: host must be a loopback IP: %w", addr, err)
	}
	if !ip.IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("broker address %q: host must be a loopback IP, the broker is for one machine", addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("broker address %q: bad port: %w", addr, err)
	}
	return netip.AddrPortFrom(ip, uint16(p)), nil
}

// validTopicName applies Kafka's rules, so a bad --topic fails at start
// instead of as a protocol error later.
func validTopicName(t string) error {
	if t == "" || t == "." || t == ".." {
		return fmt.Errorf("topic name %q is not allowed", t)
	}
	if len(t) > 249 {
		return fmt.Errorf("topic name %q: longer than 249 characters", t)
	}
	for _, r := range t {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q: only ASCII letters, digits, '.', '_' and '-' are allowed", t)
		}
	}
	return nil
}

// Broker is a running broker.
type Broker struct {
	c      *kfake.Cluster
	addr   string
	logger *slog.Logger

	closeOnce sync.Once
}

// Start starts the broker and returns once it accepts connections. The
// caller must Close it.
func Start(cfg Config, logger *slog.Logger) (*Broker, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	ap, _ := cfg.listenAddr()
	if cfg.DataDir != "" {
		n, err := rebuildSequenceWindows(cfg.DataDir)
		if err != nil {
			return nil, fmt.Errorf("rebuild producer state from the log in %s: %w", cfg.DataDir, err)
		}
		if n > 0 {
			logger.Info("producer sequence state rebuilt from the log", "windows", n)
		}
	}
	opts := cfg.clusterOpts(ap.Addr().String(), int(ap.Port()), logger)
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("start kafka broker on %s: %w", ap, err)
	}
	addrs := c.ListenAddrs()
	if len(addrs) != 1 {
		c.Close()
		return nil, fmt.Errorf("start kafka broker: listening on %d addresses, want 1", len(addrs))
	}
	b := &Broker{c: c, addr: addrs[0], logger: logger}

	names, err := b.createTopics(cfg.Topics)
	if err != nil {
		b.Close()
		return nil, err
	}
	logger.Info("kafka broker started", "addr", b.addr, "data_dir", cfg.DataDir,
		"sync_writes", cfg.SyncWrites, "topics", strings.Join(names, ","))
	return b, nil
}

// clusterOpts are kfake's options for cfg: one broker on host:port.
func (cfg Config) clusterOpts(host string, port int, logger *slog.Logger) []kfake.Opt {
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		kfake.Ports(port),
		// kfake binds 127.0.0.1; bind the configured loopback host instead
		// (e.g. ::1), and never anything else.
		kfake.ListenFn(func(network, address string) (net.Listener, error) {
			_, port, err := net.SplitHostPort(address)
			if err != nil {
				return nil, err
			}
			return net.Listen(network, net.JoinHostPort(host, port))
		}),
		kfake.WithLogger(slogAdapter{logger.With("component", "kafkabroker")}),
	}
	if cfg.ClusterID != "" {
		opts = append(opts, kfake.ClusterID(cfg.ClusterID))
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	if cfg.SyncWrites {
		opts = append(opts, kfake.SyncWrites())
	}
	if cfg.DefaultPartitions > 0 {
		opts = append(opts, kfake.DefaultNumPartitions(int(cfg.DefaultPartitions)))
	}
	if cfg.AutoCreateTopics {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if len(cfg.BrokerConfigs) > 0 {
		opts = append(opts, kfake.BrokerConfigs(cfg.BrokerConfigs))
	}
	if cfg.TLS != nil {
		opts = append(opts, kfake.TLS(cfg.TLS))
	}
	if len(cfg.SASLUsers) > 0 {
		opts = append(opts, kfake.EnableSASL())
		for _, u := range cfg.SASLUsers {
			opts = append(opts, kfake.Superuser(u.Mechanism, u.User, u.Password))
		}
	}

	return opts
}

// createTopics creates the configured topics (name: partitions) that do
// not exist yet and returns every configured name, in order.
func (b *Broker) createTopics(topics map[string]int32) ([]string, error) {
	// Create configured topics in name order so logs and topic IDs are
	// stable. Topics loaded from DataDir are kept as they are: a topic's
	// partition count is part of its data.
	names := make([]string, 0, len(topics))
	for t := range topics {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, t := range names {
		want := topics[t]
		if b.c.TopicInfo(t) != nil {
			if have := int32(len(b.c.PartitionInfos(t))); want > 0 && have != want {
				b.logger.Warn("topic exists with a different partition count; keeping it",
					"topic", t, "partitions", have, "configured", want)
			}
			continue
		}
		if err := b.c.CreateTopic(t, want, nil); err != nil {
			return nil, fmt.Errorf("create topic %s: %w", t, err)
		}
	}
	return names, nil
}

// Addr is the host:port the broker listens on and advertises.
func (b *Broker) Addr() string { return b.addr }

// Cluster is the underlying kfake cluster, for tests that inject faults or
// inspect partitions.
func (b *Broker) Cluster() *kfake.Cluster { return b.c }

// Close stops listening, writes remaining state to DataDir and closes files.
// It is safe to call more than once.
func (b *Broker) Close() {
	b.closeOnce.Do(func() {
		b.c.Close()
		b.logger.Info("kafka broker stopped", "addr", b.addr)
	})
}

// Run blocks until ctx is done, then closes the broker. It returns nil: the
// broker has no failure mode after Start that would stop it.
func (b *Broker) Run(ctx context.Context) error {
	<-ctx.Done()
	b.Close()
	return nil
}

// slogAdapter sends kfake's printf-style logs to slog. kfake logs every
// request at its Info level, so that maps to slog Debug.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Logf(level kfake.LogLevel, format string, args ...any) {
	var lv slog.Level
	switch level {
	case kfake.LogLevelError:
		lv = slog.LevelError
	case kfake.LogLevelWarn:
		lv = slog.LevelWarn
	case kfake.LogLevelInfo:
		lv = slog.LevelDebug
	default:
		lv = slog.LevelDebug - 4
	}
	if !a.l.Enabled(context.Background(), lv) {
		return
	}
	a.l.Log(context.Background(), lv, fmt.Sprintf(format, args...))
}
