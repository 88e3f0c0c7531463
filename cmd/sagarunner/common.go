package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/statemanager"
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

// redisClient opens a connection; several comma-separated addresses select
// Redis Cluster.
func redisClient(r config.Redis) redis.UniversalClient {
	addrs := strings.Split(r.Addr, ",")
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:    addrs,
		DB:       r.DB,
		Username: r.Username,
		Password: r.Password,
	})
}

func storeConfig(r config.Redis) statemanager.RedisConfig {
	return statemanager.RedisConfig{Prefix: r.Prefix, Shards: r.Shards, ClosedTTL: r.ClosedTTL}
}

// buildStores opens the default Redis connection and one per configured
// domain with its own address. The returned func closes them all.
func buildStores(c *config.Config) (*statemanager.RedisResolver, func(), error) {
	def := redisClient(c.Redis)
	clients := []redis.UniversalClient{def}
	domains := map[string]statemanager.DomainConfig{}
	for _, sm := range c.StateManagers {
		r := sm.Redis
		if r.Shards == 0 {
			r.Shards = c.Redis.Shards
		}
		if r.ClosedTTL == 0 {
			r.ClosedTTL = c.Redis.ClosedTTL
		}
		dc := statemanager.DomainConfig{RedisConfig: storeConfig(r)}
		if r.Addr != "" && r.Addr != c.Redis.Addr {
			if r.Username == "" && r.Password == "" {
				r.Username, r.Password = c.Redis.Username, c.Redis.Password
			}
			cl := redisClient(r)
			clients = append(clients, cl)
			dc.Client = cl
		}
		domains[sm.Domain] = dc
	}
	res := statemanager.NewResolver(def, storeConfig(c.Redis), domains)
	closeAll := func() {
		for _, cl := range clients {
			_ = cl.Close()
		}
	}
	return res, closeAll, nil
}

// kafkaOpts are the client options every Kafka client of the process shares.
func kafkaOpts(c *config.Config) ([]kgo.Opt, error) {
	opts := []kgo.Opt{kgo.SeedBrokers(c.Brokers...), kgo.ClientID(c.Kafka.ClientID)}
	if c.Kafka.TLS {
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	switch strings.ToLower(c.Kafka.SASLMechanism) {
	case "":
	case "plain":
		opts = append(opts, kgo.SASL(plain.Auth{User: c.Kafka.SASLUser, Pass: c.Kafka.SASLPassword}.AsMechanism()))
	case "scram-sha-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.Kafka.SASLUser, Pass: c.Kafka.SASLPassword}.AsSha256Mechanism()))
	case "scram-sha-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: c.Kafka.SASLUser, Pass: c.Kafka.SASLPassword}.AsSha512Mechanism()))
	default:
		return nil, fmt.Errorf("unknown SASL mechanism %q", c.Kafka.SASLMechanism)
	}
	return opts, nil
}
