package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/sagarunner/sagarunner/config"
)

// configFlags are the flags every command that talks to Kafka or Redis takes;
// each maps onto one configuration key.
var configFlags = map[string]string{
	"brokers": "brokers",
	"redis":   "redis.addr",
	"sagas":   "sagas",
	"http":    "http.addr",
	"group":   "group",
}

func addConfigFlags(cmd *cobra.Command, names ...string) {
	fs := cmd.Flags()
	fs.String("config", "", "configuration file (YAML); SAGARUNNER_* environment variables and flags override it")
	for _, n := range names {
		switch n {
		case "brokers":
			fs.StringSlice("brokers", nil, "Kafka seed brokers, comma separated (default localhost:9092)")
		case "redis":
			fs.String("redis", "", "Redis address host:port (default 127.0.0.1:6379)")
		case "sagas":
			fs.String("sagas", "", "folder of YAML saga definitions (default ./sagas)")
		case "http":
			fs.String("http", "", "HTTP gateway listen address (default :8080)")
		case "group":
			fs.String("group", "", "Kafka consumer group (default sagarunner)")
		}
	}
}

func loadConfig(cmd *cobra.Command) (*config.Config, error) {
	file, _ := cmd.Flags().GetString("config")
	bind := map[string]string{}
	for flag, key := range configFlags {
		if cmd.Flags().Lookup(flag) != nil {
			bind[flag] = key
		}
	}
	return config.Load(file, cmd.Flags(), bind)
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}
