package app

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sluicehq/sluice/ingest/httpin"
	"github.com/sluicehq/sluice/objstore/client"
	"github.com/sluicehq/sluice/web"
	"github.com/sluicehq/sluice/web/auth"
)

// Serve runs the web tier (HTTP ingest, query API, dashboard) until ctx is
// done: HTTP stops first, letting requests in flight have their records
// committed, then the web tier commits what is queued.
func Serve(ctx context.Context, c Console, configPath string) error {
	cfg, err := LoadRequiredConfig(configPath)
	if err != nil {
		return err
	}
	logger := c.Logger
	reg, err := newRegistry()
	if err != nil {
		return err
	}
	pm := newProcMetrics(reg)
	raw, err := client.NewBucket(ctx, "raw", cfg.Store, logger, pm.stores())
	if err != nil {
		return err
	}
	ws, err := web.New(ctx, cfg.Web, cfg.Tables, raw, logger, reg, pm.writers())
	if err != nil {
		return err
	}
	if len(cfg.Kafka.Brokers) > 0 {
		// Kafka-fed tables take HTTP events too: produced with the
		// client's defaults, acks=all and idempotent writes.
		secOpts, err := cfg.Kafka.SecurityOpts()
		if err != nil {
			return err
		}
		cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(cfg.Kafka.Brokers...)}, secOpts...)...)
		if err != nil {
			return fmt.Errorf("kafka producer: %w", err)
		}
		defer cl.Close()
		ws.SetProducer(httpin.KafkaProducer{Client: cl})
	}
	if cfg.SummaryStore != nil {
		sums, err := client.NewBucket(ctx, "summary", *cfg.SummaryStore, logger, pm.stores())
		if err != nil {
			return err
		}
		ws.SetSummaries(sums)
	}
	srv, err := listenHTTP(cfg.HTTP.Addr, reg, raw, logger)
	if err != nil {
		return err
	}
	ws.Mount(srv)
	logger.Info("web tier serving", "url", "http://"+srv.Addr()+"/")
	g := newGroup(ctx)
	g.add(ctx, srv.Run)
	g.add(ctx, ws.Run)
	return g.run()
}

// openKeyStore opens the API keys kept in the configured lake.
func openKeyStore(ctx context.Context, c Console, configPath string) (*auth.KeyStore, error) {
	cfg, err := LoadRequiredConfig(configPath)
	if err != nil {
		return nil, err
	}
	b, err := client.NewBucket(ctx, "raw", cfg.Store, c.Logger, nil)
	if err != nil {
		return nil, err
	}
	return auth.NewKeyStore(b)
}

// KeyOptions are the flags of `sluice keys create`.
type KeyOptions struct {
	Scopes []string
	Name   string
	Rate   float64
	Burst  int
}

// CreateKey creates a key and prints its secret, once.
func CreateKey(ctx context.Context, c Console, configPath string, o KeyOptions) error {
	if len(o.Scopes) == 0 {
		return Usagef("--scope is required")
	}
	var ss auth.Scopes
	for _, s := range o.Scopes {
		sc, err := auth.ParseScope(s)
		if err != nil {
			return Usagef("%v", err)
		}
		ss = append(ss, sc)
	}
	ks, err := openKeyStore(ctx, c, configPath)
	if err != nil {
		return err
	}
	k, secret, err := ks.Create(ctx, o.Name, ss, o.Rate, o.Burst)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "created %s %v\n%s\nThe key is shown only now: store it.\n", k.ID, k.Scopes, secret)
	return nil
}

// ListKeys prints the keys by their visible prefix.
func ListKeys(ctx context.Context, c Console, configPath string) error {
	ks, err := openKeyStore(ctx, c, configPath)
	if err != nil {
		return err
	}
	keys, err := ks.List(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(c.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tCREATED\tREVOKED")
	for _, k := range keys {
		rev := "-"
		if !k.Revoked.IsZero() {
			rev = k.Revoked.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", k.ID, k.Name, k.Scopes, k.Created.Format(time.RFC3339), rev)
	}
	return tw.Flush()
}

// RevokeKey revokes a key and the tokens it signed.
func RevokeKey(ctx context.Context, c Console, configPath, id string) error {
	ks, err := openKeyStore(ctx, c, configPath)
	if err != nil {
		return err
	}
	k, err := ks.Revoke(ctx, id)
	if errors.Is(err, auth.ErrBadKey) {
		return Usagef("%v", err)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "revoked %s at %s\n", k.ID, k.Revoked.Format(time.RFC3339))
	return nil
}
