package kafka

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest"
	"github.com/sluicehq/sluice/internal/kafkabroker"
	"github.com/sluicehq/sluice/internal/testkit"
	"github.com/sluicehq/sluice/internal/testkit/kafkatest"
	"github.com/sluicehq/sluice/objstore/objstoretest"
	"github.com/sluicehq/sluice/schema"
)

func TestKafkaSecurityValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		sasl SASL
		tls  TLS
		want error
	}{
		{name: "none"},
		{name: "plain", sasl: SASL{Mechanism: SASLPlain, Username: "u", Password: "p"}},
		{name: "scram 256", sasl: SASL{Mechanism: SASLScramSHA256, Username: "u", Password: "p"}},
		{name: "scram 512 with tls", sasl: SASL{Mechanism: SASLScramSHA512, Username: "u", Password: "p"}, tls: TLS{Enabled: true}},
		{name: "unknown mechanism", sasl: SASL{Mechanism: "GSSAPI", Username: "u", Password: "p"}, want: ErrBadSASLMechanism},
		{name: "lower-case mechanism", sasl: SASL{Mechanism: "plain", Username: "u", Password: "p"}, want: ErrBadSASLMechanism},
		{name: "no username", sasl: SASL{Mechanism: SASLPlain, Password: "p"}, want: ErrNoSASLUsername},
		{name: "no password", sasl: SASL{Mechanism: SASLScramSHA256, Username: "u"}, want: ErrNoSASLPassword},
		{name: "credentials without mechanism", sasl: SASL{Username: "u", Password: "p"}, want: ErrSASLWithoutMech},
		{name: "cert without key", tls: TLS{Enabled: true, CertFile: "c.pem"}, want: ErrTLSCertWithoutKey},
		{name: "key without cert", tls: TLS{Enabled: true, KeyFile: "k.pem"}, want: ErrTLSCertWithoutKey},
		{name: "tls files but disabled", tls: TLS{CAFile: "ca.pem"}, want: ErrTLSNotEnabled},
		{name: "skip verify but disabled", tls: TLS{InsecureSkipVerify: true}, want: ErrTLSNotEnabled},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Brokers: []string{"127.0.0.1:1"}, SASL: tc.sasl, TLS: tc.tls}.WithDefaults()
			err := cfg.Validate()
			if !errors.Is(err, tc.want) {
				t.Fatalf("Validate() = %v, want %v", err, tc.want)
			}
			_, err = cfg.SecurityOpts()
			if !errors.Is(err, tc.want) {
				t.Fatalf("SecurityOpts() = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestTLSBadFiles(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tls  TLS
		want string
	}{
		{name: "missing ca file", tls: TLS{Enabled: true, CAFile: filepath.Join(dir, "nope.pem")}, want: "ca_file"},
		{name: "ca file without a certificate", tls: TLS{Enabled: true, CAFile: notPEM}, want: "no PEM certificate"},
		{name: "bad key pair", tls: TLS{Enabled: true, CertFile: notPEM, KeyFile: notPEM}, want: "client certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Config{TLS: tc.tls}.SecurityOpts()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("SecurityOpts() = %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestConfigRedactsPassword: every way a config is printed or logged
// leaves the password out.
func TestConfigRedactsPassword(t *testing.T) {
	const secret = "hunter2-s3cr3t"
	cfg := Config{Brokers: []string{"b:9092"}, Group: "g",
		SASL: SASL{Mechanism: SASLScramSHA512, Username: "alice", Password: secret},
		TLS:  TLS{Enabled: true, CAFile: "/etc/ca.pem"}}
	var jsonLog, textLog bytes.Buffer
	slog.New(slog.NewJSONHandler(&jsonLog, nil)).Info("start", "kafka", cfg, "sasl", cfg.SASL)
	slog.New(slog.NewTextHandler(&textLog, nil)).Info("start", "kafka", cfg, "sasl", cfg.SASL)
	wrapped := struct{ Kafka Config }{cfg}
	for name, out := range map[string]string{
		"String":        cfg.String(),
		"%v":            fmt.Sprintf("%v", cfg),
		"%+v":           fmt.Sprintf("%+v", cfg),
		"%#v":           fmt.Sprintf("%#v", cfg),
		"%+v of parent": fmt.Sprintf("%+v", wrapped),
		"%#v of sasl":   fmt.Sprintf("%#v", cfg.SASL),
		"slog json":     jsonLog.String(),
		"slog text":     textLog.String(),
	} {
		t.Run(name, func(t *testing.T) {
			if strings.Contains(out, secret) {
				t.Fatalf("password printed: %s", out)
			}
			if !strings.Contains(out, "alice") || !strings.Contains(out, redacted) {
				t.Fatalf("want the user and %s in %s", redacted, out)
			}
		})
	}
}

// TestKafkaSecurityEndToEnd runs the source against a broker that requires
// SASL (and TLS, and client certificates) with each mechanism: with the
// right settings every record is committed once; with wrong ones CheckKafka
// fails and names what was tried.
func TestKafkaSecurityEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("starts brokers")
	}
	cert := testkit.NewCert(t)
	users := []kafkabroker.SASLUser{
		{Mechanism: SASLPlain, User: "plain-user", Password: "plain-pass"},
		{Mechanism: SASLScramSHA256, User: "scram256-user", Password: "scram256-pass"},
		{Mechanism: SASLScramSHA512, User: "scram512-user", Password: "scram512-pass"},
	}
	serverTLS := cert.ServerConfig()
	mutualTLS := serverTLS.Clone()
	mutualTLS.ClientAuth, mutualTLS.ClientCAs = tls.RequireAndVerifyClientCert, cert.Pool
	startBroker := func(t *testing.T, tc *tls.Config) string {
		return kafkatest.StartBroker(t, kafkabroker.Config{Topics: map[string]int32{testTopic: 2}, TLS: tc, SASLUsers: users}).Addr()
	}
	verified := TLS{Enabled: true, CAFile: cert.CertFile}
	for _, tc := range []struct {
		name    string
		server  *tls.Config
		sasl    SASL
		tls     TLS
		wantErr string // empty: ingest must work
	}{
		{name: "plain", sasl: SASL{Mechanism: SASLPlain, Username: "plain-user", Password: "plain-pass"}},
		{name: "scram-sha-256", sasl: SASL{Mechanism: SASLScramSHA256, Username: "scram256-user", Password: "scram256-pass"}},
		{name: "scram-sha-512 over tls", server: serverTLS, tls: verified,
			sasl: SASL{Mechanism: SASLScramSHA512, Username: "scram512-user", Password: "scram512-pass"}},
		{name: "plain over mutual tls", server: mutualTLS,
			tls:  TLS{Enabled: true, CAFile: cert.CertFile, CertFile: cert.CertFile, KeyFile: cert.KeyFile},
			sasl: SASL{Mechanism: SASLPlain, Username: "plain-user", Password: "plain-pass"}},
		{name: "wrong password", sasl: SASL{Mechanism: SASLScramSHA256, Username: "scram256-user", Password: "wrong"},
			wantErr: `SASL SCRAM-SHA-256 as "scram256-user"`},
		{name: "wrong mechanism for the user", sasl: SASL{Mechanism: SASLScramSHA512, Username: "plain-user", Password: "plain-pass"},
			wantErr: "SASL SCRAM-SHA-512"},
		{name: "no sasl", wantErr: "no SASL"},
		{name: "tls client to tls broker without the ca", server: serverTLS, tls: TLS{Enabled: true},
			sasl: SASL{Mechanism: SASLPlain, Username: "plain-user", Password: "plain-pass"}, wantErr: "TLS on"},
		{name: "plain tcp to tls broker", server: serverTLS,
			sasl: SASL{Mechanism: SASLPlain, Username: "plain-user", Password: "plain-pass"}, wantErr: "TLS off"},
		{name: "mutual tls without a client certificate", server: mutualTLS, tls: verified,
			sasl: SASL{Mechanism: SASLPlain, Username: "plain-user", Password: "plain-pass"}, wantErr: "TLS on"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := startBroker(t, tc.server)
			cfg := Config{Brokers: []string{addr}, Group: "secure", SASL: tc.sasl, TLS: tc.tls,
				SessionTimeout: 6 * time.Second, RebalanceTimeout: 5 * time.Second}.WithDefaults()
			opts, err := cfg.SecurityOpts()
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			err = CheckKafka(ctx, cfg, opts...)
			cancel()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("CheckKafka = %v, want an error mentioning %q", err, tc.wantErr)
				}
				if tc.sasl.Password != "" && strings.Contains(err.Error(), tc.sasl.Password) {
					t.Fatalf("the error shows the password: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("CheckKafka: %v", err)
			}
			want := produceSecure(t, addr, opts, 600, 25)
			b := objstoretest.NewLocal(t)
			w, err := ingest.NewWriter(ingest.WriterConfig{FlushRecords: 200, FlushInterval: 200 * time.Millisecond}, b, testLogger(t), nil)
			if err != nil {
				t.Fatal(err)
			}
			src, err := NewSource(cfg, []*schema.Table{testkit.SampleTable(t)}, w, testLogger(t), nil, opts...)
			if err != nil {
				t.Fatal(err)
			}
			runCtx, stop := context.WithCancel(context.Background())
			rs := &runningSource{cancel: stop, done: make(chan error, 1), w: w}
			go func() { rs.done <- src.Run(runCtx) }()
			waitCommitted(t, b, "events", 600, 30*time.Second)
			rs.stop(t)
			checkExactlyOnce(t, want, readCommitted(t, b, "events"))
		})
	}
}

// produceSecure produces n records (every badEvery-th malformed) with the
// given client options.
func produceSecure(t *testing.T, addr string, opts []kgo.Opt, n, badEvery int) produced {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.RoundRobinPartitioner())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	out := produced{good: map[string]bool{}, bad: map[string]bool{}, badValues: map[string][]byte{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	start := time.Now().UTC().Add(-time.Hour)
	for i := range n {
		isBad := i%badEvery == badEvery-1
		value := goodEvent(i, start.Add(time.Duration(i)*time.Millisecond))
		if isBad {
			value = []byte(`{"ts":`)
		}
		wg.Add(1)
		cl.Produce(context.Background(), &kgo.Record{Topic: testTopic, Value: value}, func(r *kgo.Record, err error) {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = err
				return
			}
			k := fmt.Sprintf("%d/%d", r.Partition, r.Offset)
			if isBad {
				out.bad[k], out.badValues[k] = true, r.Value
			} else {
				out.good[k] = true
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("produce: %v", firstErr)
	}
	return out
}
