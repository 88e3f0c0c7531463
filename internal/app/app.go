// Package app wires one sagarunner process from its configuration: the
// state managers, the engine over the loaded sagas, the Kafka runner and the
// HTTP gateway. The command line and the end-to-end tests both build
// processes through it, so the tests run exactly what the binary runs.
package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/sagarunner/sagarunner/actions"
	"github.com/sagarunner/sagarunner/auth"
	"github.com/sagarunner/sagarunner/config"
	"github.com/sagarunner/sagarunner/gateway"
	"github.com/sagarunner/sagarunner/instances"
	"github.com/sagarunner/sagarunner/metrics"
	"github.com/sagarunner/sagarunner/runner"
	"github.com/sagarunner/sagarunner/saga"
	"github.com/sagarunner/sagarunner/sagas"
	"github.com/sagarunner/sagarunner/statemanager"
	"github.com/sagarunner/sagarunner/timers"
	"github.com/sagarunner/sagarunner/tracing"
	"github.com/sagarunner/sagarunner/ui"
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
	// stopTracing flushes and stops the tracer provider New built from
	// the environment; a no-op when tracing is off or Options gave one.
	stopTracing tracing.Shutdown
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
	// PublishSagaTopics adds the loaded sagas' trigger topics to
	// http.publishTopics, so POST /topics/{topic} can start them: what
	// `dev` wants, and never the default of a deployment.
	PublishSagaTopics bool
	// TracerProvider, when set, receives the spans instead of the
	// provider the OTEL_* environment variables describe (tests pass an
	// in-memory one). The caller shuts it down.
	TracerProvider trace.TracerProvider
	// DevUserPicker lets the web inbox's sign-in page offer the static
	// tokens' users to pick from (`dev` only: it signs in without a token).
	DevUserPicker bool
}

// New builds a process; Run starts it and Close releases it.
func New(cfg *config.Config, log *slog.Logger, opt Options) (*App, error) {
	set, err := LoadSagas(cfg.Sagas, log)
	if err != nil {
		return nil, err
	}
	tp, stopTracing, err := tracerProvider(opt, log)
	if err != nil {
		return nil, err
	}
	var redisHooks []redis.Hook
	if tp != nil {
		redisHooks = append(redisHooks, tracing.RedisHook(tp))
	}
	stores, defRedis, closeStores, err := buildStores(cfg, redisHooks...)
	if err != nil {
		_ = stopTracing(context.Background())
		return nil, err
	}
	a := &App{cfg: cfg, log: log, sagas: set, stores: stores, closeStores: closeStores, listener: opt.Listener, stopTracing: stopTracing}
	ok := false
	defer func() {
		if !ok {
			a.Close()
		}
	}()
	keyCtx, cancelKey := context.WithTimeout(context.Background(), signingKeyTimeout)
	signingKey, err := SigningKey(keyCtx, cfg, defRedis)
	cancelKey()
	if err != nil {
		return nil, err
	}
	var inst *instances.Store
	if cfg.Instances.Enabled {
		inst, err = instances.NewStore(defRedis, instances.Config{Prefix: cfg.Instances.Prefix, Shards: cfg.Instances.Shards,
			TimelineCap: cfg.Instances.TimelineCap, Retention: cfg.Instances.Retention})
		if err != nil {
			return nil, err
		}
	}
	a.engine, err = saga.NewEngine(set, saga.Config{
		Topics: actions.Topics{Continuations: cfg.Topics.Requests, Notifications: cfg.Topics.Notifications,
			TaskEvents: cfg.Topics.TaskEvents},
		DeadLetter:     cfg.Topics.DeadLetter,
		Stores:         stores,
		MaxRecordBytes: cfg.Runner.MaxRecordBytes,
		SigningKey:     signingKey,
		MaxHops:        cfg.Runner.MaxHops,
		AdminRoles:     cfg.Auth.AdminRoles,
		TrackInstances: inst != nil,
		Instances:      instancesReader(inst),
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
	runnerOpts := []runner.Option{runner.WithLogger(log), runner.WithMetrics(m), runner.WithTracerProvider(tp)}
	outputs := append([]string{cfg.Topics.Replies, cfg.Topics.TaskEvents}, publishTopics(set)...)
	if inst != nil {
		runnerOpts = append(runnerOpts, runner.WithInstances(inst, cfg.Topics.Audit))
		outputs = append(outputs, cfg.Topics.Audit)
	}
	a.runner, err = runner.New(runner.Config{
		Brokers:           cfg.Brokers,
		Group:             cfg.Group,
		RequestTopic:      cfg.Topics.Requests,
		CreateTopics:      cfg.Topics.Create,
		Partitions:        cfg.Topics.Partitions,
		ReplicationFactor: cfg.Topics.ReplicationFactor,
		OutputTopics:      outputs,
		BatchSize:         cfg.Runner.BatchSize,
		KeyConcurrency:    cfg.Runner.KeyConcurrency,
		MaxInFlight:       cfg.Runner.MaxInFlight,
		MaxInFlightBytes:  cfg.Runner.MaxInFlightBytes,
		MaxAttempts:       cfg.Runner.MaxAttempts,
		MaxRecordBytes:    cfg.Runner.MaxRecordBytes,
		StuckAfter:        cfg.Runner.StuckAfter,
		InstanceID:        cfg.Kafka.InstanceID,
		Timers: timers.Config{
			PollInterval: cfg.Timers.PollInterval,
			BatchSize:    cfg.Timers.BatchSize,
			MaxIdle:      cfg.Timers.MaxIdle,
			Domains:      cfg.Timers.Domains,
		},
	}, a.engine, stores, append(runnerOpts, runner.WithKafkaOptions(append(kopts,
		kgo.SessionTimeout(cfg.Kafka.SessionTimeout), kgo.RebalanceTimeout(cfg.Kafka.RebalanceTimeout))...))...)
	if err != nil {
		return nil, err
	}
	if cfg.HTTP.Addr != "" {
		gwOpts := append(slices.Clone(kopts), kgo.ProducerLinger(0))
		if tp != nil {
			gwOpts = append(gwOpts, kgo.WithHooks(tracing.ProduceHook(tp)))
		}
		a.gwClient, err = kgo.NewClient(gwOpts...)
		if err != nil {
			return nil, err
		}
		authCfg, err := AuthConfig(cfg)
		if err != nil {
			return nil, err
		}
		a.gateway, err = gateway.New(gateway.Config{
			Addr:          cfg.HTTP.Addr,
			RequestTopic:  cfg.Topics.Requests,
			ReplyTopic:    cfg.Topics.Replies,
			Timeout:       cfg.HTTP.Timeout,
			MaxBody:       cfg.HTTP.MaxBody,
			PublishRoles:  cfg.HTTP.PublishRoles,
			PublishTopics: PublishTopics(cfg, set, opt.PublishSagaTopics),
			InternalTopics: []string{cfg.Topics.Notifications, cfg.Topics.TaskEvents, cfg.Topics.Audit,
				cfg.Topics.DeadLetter},
			ReadTimeout:    cfg.HTTP.ReadTimeout,
			WriteTimeout:   cfg.HTTP.WriteTimeout,
			IdleTimeout:    cfg.HTTP.IdleTimeout,
			MaxHeaderBytes: cfg.HTTP.MaxHeaderBytes,
			Auth:           authCfg,
			UI:             ui.Config{TaskEventTopic: cfg.Topics.TaskEvents, AuditTopic: cfg.Topics.Audit, DevUsers: devUsers(cfg, opt.DevUserPicker)},
		}, gateway.Deps{Sagas: set, Stores: stores, Instances: inst, Client: a.gwClient, Logger: log, Metrics: m, Ready: a.runner.Readiness,
			TracerProvider: tp})
		if err != nil {
			return nil, err
		}
	}
	ok = true
	return a, nil
}

// devUsers are the static tokens' users for the web inbox's picker.
func devUsers(cfg *config.Config, picker bool) []ui.DevUser {
	if !picker {
		return nil
	}
	out := make([]ui.DevUser, 0, len(cfg.Auth.Tokens))
	for _, t := range cfg.Auth.Tokens {
		out = append(out, ui.DevUser{User: t.User, Token: t.Token, Roles: t.Roles, Tenant: t.Tenant})
	}
	return out
}

// instancesReader is inst for the engine, or a nil interface when tracking
// is off (a nil *Store in an interface would not read as off).
func instancesReader(inst *instances.Store) actions.Instances {
	if inst == nil {
		return nil
	}
	return inst
}

// LoadSagas loads the sagas of dir beside the built-in /ProceedTask and
// /TimeoutTask, so those hooks are served whatever folder is configured. A
// saga of dir with a built-in's name or trigger path replaces it, with one
// warning naming both, unless its file is a copy of the built-in one.
func LoadSagas(dir string, log *slog.Logger) (*saga.Set, error) {
	set, shadowed, err := saga.LoadWithBuiltIns(actions.Default, sagas.BuiltIn(), dir)
	if err != nil {
		return nil, fmt.Errorf("load sagas from %s:\n%w", dir, err)
	}
	for _, s := range shadowed {
		if !s.Same {
			log.Warn("a saga of the sagas folder replaces a built-in saga",
				"builtIn", s.BuiltIn.Name, "builtInPath", s.BuiltIn.Trigger.Path,
				"saga", s.By.Name, "path", s.By.Trigger.Path, "file", fmt.Sprintf("%s:%d", s.By.File, s.By.Line))
		}
	}
	return set, nil
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
	// Beside the runner, never before it: a slow Redis must not delay
	// start-up for a warning.
	wg.Add(1)
	go func() { defer wg.Done(); a.warnStaleVersions(ctx) }()
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
	if a.stopTracing != nil {
		ctx, cancel := context.WithTimeout(context.Background(), tracingFlushTimeout)
		if err := a.stopTracing(ctx); err != nil {
			a.log.Warn("tracing: spans not flushed at shutdown", "err", err)
		}
		cancel()
	}
}

// AuthConfig maps the auth section onto the authenticator's config. A
// static token listed twice is an error naming positions only.
func AuthConfig(cfg *config.Config) (auth.Config, error) {
	list := make([]auth.StaticToken, 0, len(cfg.Auth.Tokens))
	for _, t := range cfg.Auth.Tokens {
		list = append(list, auth.StaticToken{Token: t.Token, Identity: auth.Identity{User: t.User, Roles: t.Roles, Tenant: t.Tenant}})
	}
	tokens, err := auth.TokenMap(list)
	if err != nil {
		return auth.Config{}, fmt.Errorf("auth.tokens: %w", err)
	}
	j := cfg.Auth.JWT
	return auth.Config{
		Tokens: tokens,
		JWT: auth.JWT{Secret: j.Secret, Issuer: j.Issuer, Audience: j.Audience, UserClaim: j.UserClaim,
			RolesClaim: j.RolesClaim, TenantClaim: j.TenantClaim, OptionalExp: !j.RequireExp},
		AdminRoles: cfg.Auth.AdminRoles,
	}, nil
}

// PublishTopics is http.publishTopics, plus the sagas' trigger topics when
// withSagas is set, less any internal topic among those (a saga may be
// triggered by one, and the gateway refuses to list it).
func PublishTopics(cfg *config.Config, set *saga.Set, withSagas bool) []string {
	out := append([]string(nil), cfg.HTTP.PublishTopics...)
	if !withSagas {
		return out
	}
	internal := cfg.InternalTopics()
	for _, t := range set.Topics() {
		if internal[t] == "" && !strings.HasPrefix(t, "__") && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// SigningKeyRedisKey holds the continuation signing key in the default
// Redis when runner.signingKey is not configured.
const SigningKeyRedisKey = "sagarunner:signing-key"

// signingKeyTimeout bounds the start-up round trips for the signing key.
const signingKeyTimeout = 10 * time.Second

// SigningKey returns the key that signs continuations: runner.signingKey
// as given, or else the key kept in rdb at SigningKeyRedisKey. The first
// runner to start draws 32 random bytes and stores them with SET NX, and
// every runner then reads what is stored, so all runners sharing the Redis
// sign with one key and a continuation produced by one is accepted by the
// others, whoever wins the race. The key never expires: continuations
// signed with it wait in Kafka and in stored tasks for as long as tasks do.
func SigningKey(ctx context.Context, cfg *config.Config, rdb redis.UniversalClient) ([]byte, error) {
	if k := cfg.Runner.SigningKey; k != "" {
		if len(k) < config.MinSigningKeyBytes {
			return nil, fmt.Errorf("runner.signingKey: must be at least %d bytes, got %d", config.MinSigningKeyBytes, len(k))
		}
		return []byte(k), nil
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("signing key: draw: %w", err)
	}
	if err := rdb.SetNX(ctx, SigningKeyRedisKey, fresh, 0).Err(); err != nil {
		return nil, fmt.Errorf("signing key: store it in Redis at %s (or configure runner.signingKey): %w", SigningKeyRedisKey, err)
	}
	key, err := rdb.Get(ctx, SigningKeyRedisKey).Bytes()
	if err != nil {
		return nil, fmt.Errorf("signing key: read it from Redis at %s: %w", SigningKeyRedisKey, err)
	}
	if len(key) < config.MinSigningKeyBytes {
		return nil, fmt.Errorf("signing key: Redis key %s holds %d bytes, fewer than %d; delete it or configure runner.signingKey",
			SigningKeyRedisKey, len(key), config.MinSigningKeyBytes)
	}
	return key, nil
}

// publishTopics lists the topics Publish steps send to, so the runner can
// create them with the others: a missing one would stall its partition.
func publishTopics(set *saga.Set) []string {
	seen := map[string]bool{}
	var out []string
	for _, g := range set.Sagas {
		for _, st := range g.Steps {
			w, ok := st.Action.(actions.TopicWriter)
			if !ok {
				continue
			}
			for _, t := range w.WritesTo() {
				if t != "" && !seen[t] {
					seen[t] = true
					out = append(out, t)
				}
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
	res, _, closeAll, err := buildStores(c)
	return res, closeAll, err
}

// buildStores is BuildStores that also returns the default connection.
// hooks (tracing's) are added to every connection.
func buildStores(c *config.Config, hooks ...redis.Hook) (*statemanager.RedisResolver, redis.UniversalClient, func(), error) {
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
	for _, cl := range clients {
		for _, h := range hooks {
			cl.AddHook(h)
		}
	}
	defaults := storeConfig(c.Redis)
	defaults.EarlyTTL, defaults.EarlyMax = c.Tasks.EarlyTTL, c.Tasks.EarlyMax
	res := statemanager.NewResolver(def, defaults, domains, statemanager.WithMaxStores(c.Redis.MaxDomains))
	closeAll := func() {
		for _, cl := range clients {
			_ = cl.Close()
		}
	}
	return res, def, closeAll, nil
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

// tracingFlushTimeout bounds the export of the last spans at shutdown, so
// an unreachable collector cannot hold the process.
const tracingFlushTimeout = 5 * time.Second

// tracerProvider is opt.TracerProvider, or else the one the OTEL_*
// environment variables describe; nil when tracing is off. The Shutdown is
// the app's to call only for the latter.
func tracerProvider(opt Options, log *slog.Logger) (trace.TracerProvider, tracing.Shutdown, error) {
	if opt.TracerProvider != nil {
		return opt.TracerProvider, func(context.Context) error { return nil }, nil
	}
	tp, stop, err := tracing.FromEnv(context.Background())
	if err != nil {
		return nil, nil, err
	}
	if tp != nil {
		log.Info("tracing on: exporting spans over OTLP as the OTEL_* environment variables say")
		// The SDK reports failed exports here, at most once per batch;
		// by default they would bypass the configured log format.
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing: export failed", "err", err) }))
	}
	return tp, stop, nil
}
