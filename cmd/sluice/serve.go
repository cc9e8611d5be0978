package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/sluicehq/sluice/ingest/httpin"
	"github.com/sluicehq/sluice/internal/httpserver"
	"github.com/sluicehq/sluice/objstore"
	"github.com/sluicehq/sluice/web"
	"github.com/sluicehq/sluice/web/auth"
)

func newServeCmd(g *globals) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "serve --config sluice.yaml",
		Short: "Serve the web tier: HTTP ingest, the query API and the dashboard (API keys required)",
		Long: `Serves on http.addr (loopback unless configured otherwise):
  POST /v1/tables/{table}/events   HTTP ingest: committed to the lake for tables declared
                                   with "http: {}", produced (acks=all) to the topic of
                                   Kafka-fed tables when kafka.brokers is set
  GET|POST /v1/query               the query API over the summaries
  POST /v1/tokens                  short read-only tokens for embedding
  /                                the dashboard page
Create keys with "sluice keys create".`,
		Args: usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadRequiredConfig(configPath)
			if err != nil {
				return err
			}
			return runServe(cmd.Context(), g, cfg)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "path to sluice.yaml")
	return cmd
}

func runServe(ctx context.Context, g *globals, cfg *fileConfig) error {
	logger := g.Logger()
	reg := prometheus.NewRegistry()
	if err := httpserver.RegisterRuntimeCollectors(reg); err != nil {
		return err
	}
	pm := newProcMetrics(reg)
	raw, err := openBucket(ctx, cfg.Store, logger, pm)
	if err != nil {
		return err
	}
	ws, err := web.New(ctx, cfg.Web, cfg.tables, raw, logger, reg, pm.writers())
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
		sums, err := openNamedBucket(ctx, "summary", *cfg.SummaryStore, logger, pm)
		if err != nil {
			return err
		}
		ws.SetSummaries(sums)
	}
	srv := httpserver.New(cfg.HTTP.Addr, reg, logger)
	srv.AddReadiness("object-store", func(ctx context.Context) error {
		_, err := raw.Attributes(ctx, "_sluice/readyz-probe")
		if err != nil && !errors.Is(err, objstore.ErrNotExist) {
			return err
		}
		return nil
	})
	ws.Mount(srv)
	if err := srv.Listen(); err != nil {
		return err
	}
	logger.Info("web tier serving", "url", "http://"+srv.Addr()+"/")
	grp, gctx := errgroup.WithContext(ctx)
	grp.Go(func() error { return srv.Run(gctx) })
	grp.Go(func() error { return ws.Run(gctx) })
	return grp.Wait()
}

func newKeysCmd(g *globals) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "keys create|list|revoke --config sluice.yaml",
		Short: "Manage the web tier's API keys (stored hashed in the lake)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return usageErrorf("a subcommand is required")
		},
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "path to sluice.yaml")
	open := func(ctx context.Context) (*auth.KeyStore, error) {
		cfg, err := loadRequiredConfig(configPath)
		if err != nil {
			return nil, err
		}
		b, err := openBucket(ctx, cfg.Store, g.Logger(), nil)
		if err != nil {
			return nil, err
		}
		return auth.NewKeyStore(b)
	}
	var (
		scopes []string
		name   string
		rate   float64
		burst  int
	)
	create := &cobra.Command{
		Use:   "create --scope append:<table>|read:<table>|admin [--scope ...]",
		Short: "Create a key; its secret is printed once and never stored",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(scopes) == 0 {
				return usageErrorf("--scope is required")
			}
			var ss auth.Scopes
			for _, s := range scopes {
				sc, err := auth.ParseScope(s)
				if err != nil {
					return usageErrorf("%v", err)
				}
				ss = append(ss, sc)
			}
			ks, err := open(cmd.Context())
			if err != nil {
				return err
			}
			k, secret, err := ks.Create(cmd.Context(), name, ss, rate, burst)
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "created %s %v\n%s\nThe key is shown only now: store it.\n", k.ID, k.Scopes, secret)
			return nil
		},
	}
	create.Flags().StringArrayVar(&scopes, "scope", nil, "a scope: append:<table>, read:<table> (table * for all) or admin; repeatable")
	create.Flags().StringVar(&name, "name", "", "a note on what the key is for")
	create.Flags().Float64Var(&rate, "rate", 0, fmt.Sprintf("requests per second (0: the server's default, %d)", auth.DefaultRatePerSec))
	create.Flags().IntVar(&burst, "burst", 0, fmt.Sprintf("burst of requests (0: the server's default, %d)", auth.DefaultBurst))
	list := &cobra.Command{
		Use:   "list",
		Short: "List keys by their visible prefix",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ks, err := open(cmd.Context())
			if err != nil {
				return err
			}
			keys, err := ks.List(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(g.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tSCOPES\tCREATED\tREVOKED")
			for _, k := range keys {
				rev := "-"
				if !k.Revoked.IsZero() {
					rev = k.Revoked.Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\n", k.ID, k.Name, k.Scopes, k.Created.Format(time.RFC3339), rev)
			}
			return tw.Flush()
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke <key id>",
		Short: "Revoke a key (and the tokens it signed)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			ks, err := open(cmd.Context())
			if err != nil {
				return err
			}
			k, err := ks.Revoke(cmd.Context(), args[0])
			if errors.Is(err, auth.ErrBadKey) {
				return usageErrorf("%v", err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(g.stdout, "revoked %s at %s\n", k.ID, k.Revoked.Format(time.RFC3339))
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
