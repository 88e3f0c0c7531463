package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

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

// app is one runner process: the engine over the loaded sagas, the Kafka
// runner and, when an HTTP address is set, the gateway.
type app struct {
	cfg         *config.Config
	log         *slog.Logger
	sagas       *saga.Set
	stores      *statemanager.RedisResolver
	closeStores func()
	engine      *saga.Engine
	runner      *runner.Runner
	gateway     *gateway.Gateway
	gwClient    *kgo.Client
}

func newApp(cfg *config.Config, log *slog.Logger) (*app, error) {
	set, err := saga.Load(actions.Default, cfg.Sagas)
	if err != nil {
		return nil, fmt.Errorf("load sagas from %s:\n%w", cfg.Sagas, err)
	}
	stores, closeStores, err := buildStores(cfg)
	if err != nil {
		return nil, err
	}
	a := &app{cfg: cfg, log: log, sagas: set, stores: stores, closeStores: closeStores}
	ok := false
	defer func() {
		if !ok {
			a.close()
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
	m := metrics.New(prometheus.DefaultRegisterer)
	kopts, err := kafkaOpts(cfg)
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
		Timers: timers.Config{
			PollInterval: cfg.Timers.PollInterval,
			BatchSize:    cfg.Timers.BatchSize,
			Domains:      cfg.Timers.Domains,
		},
	}, a.engine, stores, runner.WithLogger(log), runner.WithMetrics(m), runner.WithKafkaOptions(kopts...))
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

// run runs the runner and the gateway until ctx ends or one of them fails,
// then shuts both down gracefully.
func (a *app) run(ctx context.Context) error {
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
		start("gateway", a.gateway.Run)
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

func (a *app) close() {
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
