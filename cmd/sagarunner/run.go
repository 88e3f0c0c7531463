package main

import (
	"fmt"

	"github.com/sagarunner/sagarunner/internal/app"

	"github.com/spf13/cobra"
)

func newRunCmd() *cobra.Command {
	var insecure bool
	cmd := &cobra.Command{
		Use:   "run --config sagarunner.yaml",
		Short: "Run a runner against real Kafka brokers and Redis (production)",
		Long: "Joins the consumer group on the configured brokers, runs the sagas, fires the deadlines of\n" +
			"the partitions it owns and serves the HTTP gateway. Start several for more throughput and\n" +
			"fail-over: they share the partitions. Refuses to start without authentication unless\n" +
			"--insecure is given. SIGTERM finishes in-flight records, commits and leaves the group.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			log := newLogger(cfg.Log)
			if !cfg.AuthEnabled() {
				if !insecure && cfg.HTTP.Addr != "" {
					return fmt.Errorf("no authentication configured (auth.tokens or auth.jwt.secret): " +
						"refusing to serve HTTP where every caller is trusted; configure auth, or pass --insecure")
				}
				if cfg.HTTP.Addr != "" {
					log.Warn("authentication is off (--insecure): every HTTP caller is trusted")
				}
			}
			a, err := app.New(cfg, log, app.Options{})
			if err != nil {
				return err
			}
			defer a.Close()
			log.Info("sagarunner running", "brokers", cfg.Brokers, "group", cfg.Group, "redis", cfg.Redis.Addr,
				"http", cfg.HTTP.Addr, "publishTopics", cfg.HTTP.PublishTopics, "sagas", len(a.Sagas().Sagas))
			return a.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&insecure, "insecure", false, "serve HTTP with no authentication (every caller trusted)")
	addConfigFlags(cmd, "brokers", "redis", "sagas", "http", "group")
	return cmd
}
