package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/sluicehq/sluice/internal/app"
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
			return app.Serve(cmd.Context(), g.console(), configPath)
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "path to sluice.yaml")
	return cmd
}

func newKeysCmd(g *globals) *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "keys create|list|revoke --config sluice.yaml",
		Short: "Manage the web tier's API keys (stored hashed in the lake)",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			_ = cmd.Help()
			return app.Usagef("a subcommand is required")
		},
	}
	cmd.PersistentFlags().StringVarP(&configPath, "config", "c", "", "path to sluice.yaml")
	var ko app.KeyOptions
	create := &cobra.Command{
		Use:   "create --scope append:<table>|read:<table>|admin [--scope ...]",
		Short: "Create a key; its secret is printed once and never stored",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.CreateKey(cmd.Context(), g.console(), configPath, ko)
		},
	}
	create.Flags().StringArrayVar(&ko.Scopes, "scope", nil, "a scope: append:<table>, read:<table> (table * for all) or admin; repeatable")
	create.Flags().StringVar(&ko.Name, "name", "", "a note on what the key is for")
	create.Flags().Float64Var(&ko.Rate, "rate", 0, fmt.Sprintf("requests per second (0: the server's default, %d)", auth.DefaultRatePerSec))
	create.Flags().IntVar(&ko.Burst, "burst", 0, fmt.Sprintf("burst of requests (0: the server's default, %d)", auth.DefaultBurst))
	list := &cobra.Command{
		Use:   "list",
		Short: "List keys by their visible prefix",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return app.ListKeys(cmd.Context(), g.console(), configPath)
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke <key id>",
		Short: "Revoke a key (and the tokens it signed)",
		Args:  usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			return app.RevokeKey(cmd.Context(), g.console(), configPath, args[0])
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
