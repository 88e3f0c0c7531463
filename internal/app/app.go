// Package app wires one sagarunner process from its configuration: the
// state managers, the engine over the loaded sagas, the Kafka runner and the
// HTTP gateway. The command line and the end-to-end tests both build
// processes through it, so the tests run exactly what the binary runs.
package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/gateway"
	"github.com/sagarunner/sagarunner/metrics"
	"github.com/sagarunner/sagarunner/runner"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/timers"
)

// App is one runner process: the engine over the loaded sagas, the Kafka
// runner and, when an HTTP address is set, the gateway.
type App struct {
	cfg         *config.Config
	log         *slog.Logger
	sagas       *saga.Set
	stores      *statemanager.RedisResolver
	closeStores func()
	engine      *saga.Engine
	runner      *runner.Runner
	gateway     *gateway.Gateway
	gwClient    *kgo.Client
	listener    net.Listener
}

// Sagas returns the loaded sagas.
func (a *App) Sagas() *saga.Set { return a.sagas }

// Runner returns the Kafka runner.
func (a *App) Runner() *runner.Runner { return a.runner }

// Gateway returns the HTTP gateway, nil when HTTP is off.
func (a *App) Gateway() *gateway.Gateway { return a.gateway }

// Stores returns the state managers.
func (a *App) Stores() *statemanager.RedisResolver { return a.stores }

// Options adjusts how New builds a process; the zero value is what the
// binary uses.
type Options struct {
	// Registerer receives the Prometheus collectors (default: the global
	// registry).
	Registerer prometheus.Registerer
	// Listener, when set, serves the gateway instead of listening on
	// cfg.HTTP.Addr (tests bind port 0).
	Listener net.Listener
}

// New builds a process; Run starts it and Close releases it.
func New(cfg *config.Config, log *slog.Logger, opt Options) (*App, error) {
	set, err := saga.Load(actions.Default, cfg.Sagas)
	if err != nil {
		return nil, fmt.Errorf("load sagas from %s:\n%w", cfg.Sagas, err)
	}
	stores, closeStores, err := BuildStores(cfg)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, sagas: set, stores: stores, closeStores: closeStores, listener: opt.Listener}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	a.engine, err = saga.NewEngine(set, saga.Config{
		Topics:     actions.Topics{Continuations: cfg.Topics.Requests, Notifications: cfg.Topics.Notifications},
		DeadLetter: cfg.Topics.DeadLetter,
		Stores:     stores,
	})
	if err != nil {
		return nil, err
	}
	reg := opt.Registerer
	if reg == nil {
		reg = prometheus.DefaultRegisterer
	}
	m := metrics.New(reg)
	kopts, err := KafkaOpts(cfg)
	if err != nil {
		return nil, err
	}
	a.runner, err = runner.New(runner.Config{
		Brokers:           cfg.Brokers,
		Group:             cfg.Group,
		RequestTopic:      cfg.Topics.Requests,
		CreateTopics:      cfg.Topics.Create,
		Partitions:        cfg.Topics.Partitions,
		ReplicationFactor: cfg.Topics.ReplicationFactor,
		OutputTopics:      append([]string{cfg.Topics.Replies}, publishTopics(set)...),
		BatchSize:         cfg.Runner.BatchSize,
		KeyConcurrency:    cfg.Runner.KeyConcurrency,
		MaxInFlight:       cfg.Runner.MaxInFlight,
		Timers: timers.Config{
			PollInterval: cfg.Timers.PollInterval,
			BatchSize:    cfg.Timers.BatchSize,
			Domains:      cfg.Timers.Domains,
		},
	}, a.engine, stores, runner.WithLogger(log), runner.WithMetrics(m), runner.WithKafkaOptions(append(kopts,
		kgo.SessionTimeout(cfg.Kafka.SessionTimeout), kgo.RebalanceTimeout(cfg.Kafka.RebalanceTimeout))...))
	if err != nil {
		return nil, err
	}
	if cfg.HTTP.Addr != "" {
		a.gwClient, err = kgo.NewClient(append(kopts, kgo.ProducerLinger(0))...)
		if err != nil {
			return nil, err
		}
		tokens := map[string]auth.Identity{}
		for _, t := range cfg.Auth.Tokens {
			tokens[t.Token] = auth.Identity{User: t.User, Roles: t.Roles}
		}
		a.gateway, err = gateway.New(gateway.Config{
			Addr:         cfg.HTTP.Addr,
			RequestTopic: cfg.Topics.Requests,
			ReplyTopic:   cfg.Topics.Replies,
			Timeout:      cfg.HTTP.Timeout,
			MaxBody:      cfg.HTTP.MaxBody,
			PublishRoles: cfg.HTTP.PublishRoles,
			Auth: auth.Config{
				Tokens: tokens,
				JWT: auth.JWT{Secret: cfg.Auth.JWT.Secret, Issuer: cfg.Auth.JWT.Issuer,
					Audience: cfg.Auth.JWT.Audience, UserClaim: cfg.Auth.JWT.UserClaim,
					RolesClaim: cfg.Auth.JWT.RolesClaim},
			},
		}, gateway.Deps{Sagas: set, Stores: stores, Client: a.gwClient, Logger: log, Metrics: m, Ready: a.runner.Ready})
		if err != nil {
			return nil, err
		}
	}
	ok = true
	return a, nil
}

// Run runs the runner and the gateway until ctx ends or one of them fails,
// then shuts both down gracefully.
func (a *App) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	start("runner", a.runner.Run)
	if a.gateway != nil {
		if a.listener != nil {
			start("gateway", func(ctx context.Context) error { return a.gateway.Serve(ctx, a.listener) })
		} else {
			start("gateway", a.gateway.Run)
		}
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func collect(ch <-chan error) []error {
	var out []error
	for err := range ch {
		out = append(out, err)
	}
	return out
}

// Close releases the connections New opened; call it after Run returns.
func (a *App) Close() {
	if a.gwClient != nil {
		a.gwClient.Close()
	}
	if a.closeStores != nil {
		a.closeStores()
	}
}

// publishTopics lists the topics Publish steps send to, so the runner can
// create them with the others: a missing one would stall its partition.
func publishTopics(set *saga.Set) []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range set.Sagas {
		for _, st := range g.Steps {
			if st.ActionName != "Publish" {
				continue
			}
			if t, _ := st.Params["topic"].(string); t != "" && !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// RedisClient opens a connection; several comma-separated addresses select
// Redis Cluster.
func RedisClient(r config.Redis) redis.UniversalClient {
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

// BuildStores opens the default Redis connection and one per configured
// domain with its own address. The returned func closes them all.
func BuildStores(c *config.Config) (*statemanager.RedisResolver, func(), error) {
	def := RedisClient(c.Redis)
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
			cl := RedisClient(r)
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

// KafkaOpts are the client options every Kafka client of the process shares.
func KafkaOpts(c *config.Config) ([]kgo.Opt, error) {
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
