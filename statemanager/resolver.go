package statemanager

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/redis/go-redis/v9"
)

// DomainConfig is the state manager of one configured domain.
type DomainConfig struct {
	// Client is the domain's Redis; nil uses the resolver's default client.
	Client redis.UniversalClient
	RedisConfig
}

// RedisResolver is the Resolver of RedisStores (the interface already holds
// the name Resolver in this package). It hands out one RedisStore per domain, created on first use and
// cached. A domain without an entry uses the default client with the domain
// name as key prefix, so a new saga needs no configuration change (SPEC §8).
// It is safe for concurrent use.
type RedisResolver struct {
	def      redis.UniversalClient
	defaults RedisConfig
	domains  map[string]DomainConfig

	mu     sync.Mutex
	stores map[string]*RedisStore
}

var _ Resolver = (*RedisResolver)(nil)

// NewResolver returns a resolver over the default client def (nil: only the
// configured domains resolve) and the configured domains. defaults supplies
// the shard count and ClosedTTL of every domain whose own config leaves them
// zero; when defaults.Prefix is set, unconfigured domains use the prefix
// "<defaults.Prefix>:<domain>" instead of the bare domain name.
func NewResolver(def redis.UniversalClient, defaults RedisConfig, domains map[string]DomainConfig) *RedisResolver {
	copied := make(map[string]DomainConfig, len(domains))
	for name, dc := range domains {
		copied[name] = dc
	}
	return &RedisResolver{def: def, defaults: defaults, domains: copied, stores: map[string]*RedisStore{}}
}

// Store returns the domain's store, creating it on first use.
func (r *RedisResolver) Store(domain string) (Store, error) {
	s, err := r.RedisStore(domain)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// RedisStore is Store with the concrete type, for callers that need it.
func (r *RedisResolver) RedisStore(domain string) (*RedisStore, error) {
	if domain == "" {
		return nil, errors.New("statemanager: empty domain name")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s, ok := r.stores[domain]; ok {
		return s, nil
	}
	client, cfg, err := r.configOf(domain)
	if err != nil {
		return nil, err
	}
	s, err := NewRedisStore(client, domain, cfg)
	if err != nil {
		return nil, err
	}
	r.stores[domain] = s
	return s, nil
}

func (r *RedisResolver) configOf(domain string) (redis.UniversalClient, RedisConfig, error) {
	dc, configured := r.domains[domain]
	cfg := r.defaults
	cfg.Prefix = domain
	if r.defaults.Prefix != "" {
		cfg.Prefix = r.defaults.Prefix + ":" + domain
	}
	client := r.def
	if configured {
		if dc.Prefix != "" {
			cfg.Prefix = dc.Prefix
		}
		if dc.Shards != 0 {
			cfg.Shards = dc.Shards
		}
		if dc.ClosedTTL != 0 {
			cfg.ClosedTTL = dc.ClosedTTL
		}
		if dc.Client != nil {
			client = dc.Client
		}
	}
	if client == nil {
		return nil, RedisConfig{}, fmt.Errorf("statemanager: domain %q: no state manager configured and no default Redis", domain)
	}
	return client, cfg, nil
}

// Domains lists the configured domains, sorted.
func (r *RedisResolver) Domains() []string {
	out := make([]string, 0, len(r.domains))
	for name := range r.domains {
		out = append(out, name)
	}
	sort.Strings(out)
	return out
}
