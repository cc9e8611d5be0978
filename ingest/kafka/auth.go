package kafka

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// SASL mechanisms accepted in SASL.Mechanism.
const (
	SASLPlain       = "PLAIN"
	SASLScramSHA256 = "SCRAM-SHA-256"
	SASLScramSHA512 = "SCRAM-SHA-512"
)

// redacted stands in for a secret wherever a config is printed or logged.
const redacted = "[REDACTED]"

// Named security config errors.
var (
	ErrBadSASLMechanism  = errors.New("kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
	ErrNoSASLUsername    = errors.New("kafka.sasl.username is empty")
	ErrNoSASLPassword    = errors.New("kafka.sasl.password is empty")
	ErrSASLWithoutMech   = errors.New("kafka.sasl has credentials but no mechanism")
	ErrTLSCertWithoutKey = errors.New("kafka.tls.cert_file and kafka.tls.key_file must be set together")
	ErrTLSNotEnabled     = errors.New("kafka.tls has files or options set but enabled is false")
)

// SASL authenticates the client to the brokers. The zero value means no
// SASL. Without TLS, PLAIN sends the password in clear text: use it over TLS.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512; empty: no SASL.
	Mechanism string `yaml:"mechanism"`
	Username  string `yaml:"username"`
	// Password is never printed or logged (see String and LogValue); put
	// ${KAFKA_PASSWORD} here to keep it out of the file.
	Password string `yaml:"password"`
}

// TLS encrypts (and with a client certificate, authenticates) the
// connections to the brokers. The zero value means plain TCP.
type TLS struct {
	Enabled bool `yaml:"enabled"`
	// CAFile is a PEM bundle of the CAs that signed the brokers'
	// certificates; empty: the system roots.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are a PEM client certificate and its key, for
	// brokers that require mutual TLS. Both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ServerName overrides the name checked in the broker's certificate;
	// empty: the host of the address dialled.
	ServerName string `yaml:"server_name"`
	// InsecureSkipVerify accepts any broker certificate. For tests only: it
	// makes TLS open to a man in the middle.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Validate reports the first invalid SASL field.
func (s SASL) Validate() error {
	switch s.Mechanism {
	case "":
		if s.Username != "" || s.Password != "" {
			return fmt.Errorf("ingest: %w", ErrSASLWithoutMech)
		}
		return nil
	case SASLPlain, SASLScramSHA256, SASLScramSHA512:
	default:
		return fmt.Errorf("ingest: %w (got %q)", ErrBadSASLMechanism, s.Mechanism)
	}
	switch {
	case s.Username == "":
		return fmt.Errorf("ingest: %w", ErrNoSASLUsername)
	case s.Password == "":
		return fmt.Errorf("ingest: %w", ErrNoSASLPassword)
	}
	return nil
}

// Validate reports the first invalid TLS field. Files are read by Config, so
// that a missing file is reported with its path when the client starts.
func (t TLS) Validate() error {
	if !t.Enabled {
		if t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" || t.ServerName != "" || t.InsecureSkipVerify {
			return fmt.Errorf("ingest: %w", ErrTLSNotEnabled)
		}
		return nil
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return fmt.Errorf("ingest: %w", ErrTLSCertWithoutKey)
	}
	return nil
}

// String shows the mechanism and user, never the password.
func (s SASL) String() string {
	if s.Mechanism == "" && s.Username == "" && s.Password == "" {
		return "{}"
	}
	return fmt.Sprintf("{mechanism:%s username:%s password:%s}", s.Mechanism, s.Username, redactedIfSet(s.Password))
}

// GoString keeps %#v from printing the password too.
func (s SASL) GoString() string { return "kafka.SASL" + s.String() }

// LogValue makes slog print the mechanism and user, never the password.
func (s SASL) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("mechanism", s.Mechanism),
		slog.String("username", s.Username),
		slog.String("password", redactedIfSet(s.Password)),
	)
}

func redactedIfSet(secret string) string {
	if secret == "" {
		return ""
	}
	return redacted
}

// String prints the config with the SASL password redacted.
func (c Config) String() string {
	return fmt.Sprintf("{brokers:%v group:%s client_id:%s start_offset:%s instance_id:%s sasl:%s tls:%+v}",
		c.Brokers, c.Group, c.ClientID, c.StartOffset, c.InstanceID, c.SASL, c.TLS)
}

// GoString keeps %#v from printing the password too.
func (c Config) GoString() string { return "kafka.Config" + c.String() }

// LogValue makes slog print the config with the SASL password redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("brokers", strings.Join(c.Brokers, ",")),
		slog.String("group", c.Group),
		slog.String("client_id", c.ClientID),
		slog.String("start_offset", c.StartOffset),
		slog.String("instance_id", c.InstanceID),
		slog.Any("sasl", c.SASL),
		slog.Bool("tls", c.TLS.Enabled),
	)
}

// SecurityOpts turns the sasl and tls sections into client options for
// NewKafkaSource (and any other client of the same brokers). It reads the
// TLS files, so it fails if they are missing or malformed.
func (c Config) SecurityOpts() ([]kgo.Opt, error) {
	if err := c.SASL.Validate(); err != nil {
		return nil, err
	}
	if err := c.TLS.Validate(); err != nil {
		return nil, err
	}
	var opts []kgo.Opt
	if c.TLS.Enabled {
		tc, err := c.TLS.Config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if m := c.SASL.mechanism(); m != nil {
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (s SASL) mechanism() sasl.Mechanism {
	switch s.Mechanism {
	case SASLPlain:
		return plain.Auth{User: s.Username, Pass: s.Password}.AsMechanism()
	case SASLScramSHA256:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha256Mechanism()
	case SASLScramSHA512:
		return scram.Auth{User: s.Username, Pass: s.Password}.AsSha512Mechanism()
	}
	return nil
}

// Config builds the client TLS config from the files named.
func (t TLS) Config() (*tls.Config, error) {
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         t.ServerName,
		InsecureSkipVerify: t.InsecureSkipVerify, //nolint:gosec // documented test-only switch
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka.tls.ca_file %s: no PEM certificate in it", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka.tls client certificate %s, key %s: %w", t.CertFile, t.KeyFile, err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// CheckKafka connects to the brokers with the config's security options and
// returns nil once one answers, or an error naming the brokers, mechanism and
// user (never the password) when none does within ctx. Wrong credentials or
// a TLS mismatch otherwise show only as fetch errors while nothing is
// ingested; checked at start, they stop the process with a reason.
func CheckKafka(ctx context.Context, c Config, opts ...kgo.Opt) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.ClientID)}, opts...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	// Ping retries on its own only within one request; a few bounded rounds
	// ride out a broker that is still starting.
	var last error
	for attempt := 0; attempt < 10; attempt++ {
		if last = cl.Ping(ctx); last == nil {
			return nil
		}
		if ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	who := "no SASL"
	if c.SASL.Mechanism != "" {
		who = fmt.Sprintf("SASL %s as %q", c.SASL.Mechanism, c.SASL.Username)
	}
	tlsState := "off"
	if c.TLS.Enabled {
		tlsState = "on"
	}
	return fmt.Errorf("kafka: no broker of %v answered (%s, TLS %s); check the address, credentials and TLS settings: %w",
		c.Brokers, who, tlsState, last)
}
